"""Supplement to r01 (no proxy started): what one 256 KiB read costs in `h2.receive_data`, as
worker.h2.connection._received calls it (the same machine settings), before any of our
budget checks runs.  Frame mixes: PING, empty SETTINGS, WINDOW_UPDATE, PRIORITY, HEADERS+RST_STREAM."""
import sys, time, struct
import os; sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..')))
import h2.connection, h2.config, h2.events
from worker.h2.machine import new_machine, local_settings
from worker.h2 import defences
import h2.settings, hyperframe.frame as F
from hpack import Encoder
PRE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
def fr(t, fl, sid, payload): return struct.pack(">I", len(payload))[1:] + bytes([t, fl]) + struct.pack(">I", sid) + payload
settings = fr(4, 0, 0, b"")
def mk():
    m = new_machine(); c = h2.settings.SettingCodes
    m.local_settings = local_settings({c.MAX_CONCURRENT_STREAMS: 100, c.MAX_HEADER_LIST_SIZE: 65536, c.HEADER_TABLE_SIZE: 4096, c.INITIAL_WINDOW_SIZE: 65535, c.ENABLE_CONNECT_PROTOCOL: 1})
    m.initiate_connection(); m.receive_data(PRE + settings); m.data_to_send(); return m
N = 256*1024
def run(name, unit):
    buf = (unit * (N // len(unit) + 1))[:N - N % len(unit)]
    m = mk(); t = time.perf_counter(); ev = m.receive_data(buf); dt = time.perf_counter() - t
    out = len(m.data_to_send())
    print(f"{name:28s} frames/read={N//len(unit):6d} events={len(ev):6d} h2.receive_data={dt*1000:7.1f} ms out={out}")
run("PING", fr(6, 0, 0, b"12345678"))
run("SETTINGS (empty)", settings)
run("WINDOW_UPDATE conn +1", fr(8, 0, 0, struct.pack(">I", 1)))
run("PRIORITY", fr(2, 0, 3, struct.pack(">IB", 0, 15)))
enc = Encoder()
hb = enc.encode([(":method","GET"),(":scheme","https"),(":path","/"),(":authority","a")])
units = b"".join(fr(1, 5, sid, hb) + fr(3, 0, sid, struct.pack(">I", 8)) for sid in range(1, 2*20000, 2))
m = mk(); t=time.perf_counter(); ev = m.receive_data(units[:N - N % 30]); dt=time.perf_counter()-t
print(f"HEADERS+RST pairs            bytes={N} events={len(ev)} {dt*1000:.1f} ms")

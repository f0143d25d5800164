"""r03: what a hostile client costs a victim on the same (single) worker: a keep-alive victim's
request latency while an over-limit client reconnects as fast as it can (each refused at accept),
while garbage PROXY headers arrive as fast as they can, and with neither (baseline)."""
import threading
import time

from h import Backend, Victim, connect, start_proxy
from support import free_port

PHASE = 3.0
PP = free_port()
backend = Backend()
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                limits={"per_client": {"connections": 1}},
                listen=lambda port: [f"127.0.0.1:{port}", {"address": f"127.0.0.1:{PP}", "proxy_protocol": True}])


def flood(kind, stop, counter):
    held = connect(p.port, "127.0.0.66") if kind == "refused" else None    # the one it may hold
    while not stop.is_set():
        try:
            s = connect(PP if kind == "garbage" else p.port, "127.0.0.66", timeout=2)
            if kind == "garbage":       # a malformed PROXY header (closed at once), 2 KiB of v2 TLVs
                s.sendall(b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n" if counter[0] % 2 else
                          b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x08\x00" + b"\x05\x00\x01x" * 512)
            s.close()
        except OSError:
            pass
        counter[0] += 1
    if held:
        held.close()


for kind in ("baseline", "refused", "garbage"):
    victim = Victim(p.port)
    stop, counter = threading.Event(), [0]
    threads = [threading.Thread(target=flood, args=(kind, stop, counter)) for _ in range(3 if kind != "baseline" else 0)]
    for t in threads:
        t.start()
    time.sleep(PHASE)
    stop.set()
    for t in threads:
        t.join()
    print(f"{kind:10} attacker connections {counter[0]:6}: victim {victim.stop()}")

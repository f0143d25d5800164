"""TLS 1.3 KeyUpdate (update_requested) from a client in the lane, between requests and while waiting."""
import ctypes, os, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conf import openssl, readahead
import scen
from scen import run, get, read_resp

lib = openssl._lib
lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]

def sc_keyupdate(s, buf, out, proxy):
    p = readahead.ssl_pointer(s._sslobj)
    res = []
    for i in range(5):
        assert lib.SSL_key_update(p, 1) == 1
        s.sendall(get(f"/ku{i}"))          # KeyUpdate goes out with this write
        res.append(read_resp(s, buf)[:12])
        s.sendall(get(f"/big{i}"))
        assert lib.SSL_key_update(p, 1) == 1
        time.sleep(0.05)
        b = read_resp(s, buf); res.append(len(b))
        s.sendall(get(f"/after{i}")); res.append(read_resp(s, buf)[:14])
    out["res"] = res

if __name__ == "__main__":
    for sw in ("1", "0"):
        with tempfile.TemporaryDirectory() as d:
            print("LANE_TLS=" + sw, run(sw, sc_keyupdate, d), flush=True)

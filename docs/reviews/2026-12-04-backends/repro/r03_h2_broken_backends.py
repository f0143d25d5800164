"""HTTP/2 (h2c prior knowledge) client, one connection: a long stream (/slow: 20 x 1 KiB, one
per 0.1 s) stays open while streams to broken backends run beside it.  Each broken stream must
end in a 502 (before the head) or RST_STREAM (after), and the slow stream must finish whole."""
import sys
import time

from h import RawBackend, proxy
from cases import CASES

sys.path.insert(0, "/tmp/rev-backends/tests")
from h2client import H2Client  # noqa: E402

EXTRA = {
    "cut_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000,
    "cut_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"x" * 4096 + b"\r\n5\r\nab",
    "bad_chunk_late": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",   # then "zz\r\n"
    "interim_x50": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 50 + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "s100_h2": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
}


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        name = head.target.rsplit("/", 1)[-1]
        if name == "slow":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20480\r\n\r\n")
            for _ in range(20):
                time.sleep(0.1)
                conn.send(b"s" * 1024)
            continue
        data = EXTRA.get(name) or CASES[name]
        conn.send(data)
        if name.startswith("cut_"):
            time.sleep(0.2)
            conn.reset()
            return
        if name == "bad_chunk_late":
            time.sleep(0.2)
            conn.send(b"zz\r\n")
            return


if __name__ == "__main__":
    backend = RawBackend(handler)
    p = proxy([{"path": "/", "to": backend.url + "/"}], timeouts={"proxy": 2}, h2c=True)
    names = sys.argv[1:] or ["cl_te", "chunk_bad_size", "trailer_cl", "too_big_head", "many_fields", "s999", "s600",
                             "reason_nul", "high_value", "te_xchunked", "s101_plain", "no_length_ka", "s204_body",
                             "cut_cl", "cut_chunked", "bad_chunk_late", "interim_x50", "s100_h2", "body_longer"]
    c = H2Client(p.port)
    slow = c.request("GET", "/slow")
    ids = {name: c.request("GET", "/c/" + name) for name in names}
    try:
        c.wait(lambda: all(c.streams[i].finished for i in ids.values()) and c.streams[slow].finished, 15, "all")
    except AssertionError as e:
        print("!!", e)
    for name, i in ids.items():
        st = c.streams[i]
        print(f"{name:16s} status={st.status} interim={len(st.interim)} body={bytes(st.body[:40])!r} "
              f"len={len(st.body)} ended={st.ended} reset={getattr(st, 'reset', None)}")
    st = c.streams[slow]
    print(f"{'slow':16s} status={st.status} len={len(st.body)} ended={st.ended} reset={getattr(st, 'reset', None)}"
          f" goaway={c.goaway}")
    time.sleep(0.3)
    print("\n".join(x[-150:] for x in p.error_text().splitlines() if "error" in x or "Traceback" in x))
    c.close()
    p.stop()
    backend.close()

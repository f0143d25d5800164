"""The differential corpus: every request in corpus_requests.py and every backend response in
corpus_responses.py sent through mpm-proxy, nginx and HAProxy in turn (one peer at a time), each in
front of the same recording raw backend.  Prints, per case and peer: the statuses the client read
(`C` = the proxy closed the client connection; `bN` = requests the backend parsed), and writes the
full results (client bytes, backend bytes) as JSON next to this script (results_*.json).
Takes about 6 minutes.  Usage: /work/main/.venv/bin/python repro/run_corpus.py [requests|responses]"""
import json, os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _peers as peers
import corpus_requests, corpus_responses

SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


def response_answer(head, body, n):
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    path = parts[1] if len(parts) > 1 else b""
    if path.startswith(b"/r/"):
        what, data, method, close = corpus_responses.R[path[3:].decode()]
        return (data, close)
    return SECOND


def mpm(bp, w):
    return peers.Mpm(bp, w, routes=f'  - {{path: /, to: "http://127.0.0.1:{bp}/", preserve_host: true}}\n')


def run_requests(p, be):
    res = {}
    for cid, what, data in corpus_requests.C:
        t0 = time.monotonic()
        out, closed = peers.exchange(p.port, data, idle=0.4, total=3)
        time.sleep(0.15)
        res[cid] = {"what": what, "resp": out.decode("latin-1"), "closed": closed, "status": peers.statuses(out),
                    "backend": {str(k): v.decode("latin-1") for k, v in be.since(t0).items()},
                    "nreq": len(be.heads_since(t0))}
    return res


def run_responses(p, be):
    res = {}
    for cid, (what, data, method, close) in corpus_responses.R.items():
        t0 = time.monotonic()
        first = method + b" /r/" + cid.encode() + b" HTTP/1.1\r\nHost: a.test\r\n\r\n"
        second = b"GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n"
        out, closed = peers.exchange(p.port, None, idle=0.5, total=4, chunks=[first, b"", b"", second])
        time.sleep(0.1)
        res[cid] = {"what": what, "resp": out.decode("latin-1"), "closed": closed, "status": peers.statuses(out),
                    "backend": {str(k): v.decode("latin-1") for k, v in be.since(t0).items()},
                    "nreq": len(be.heads_since(t0))}
    return res


def table(results):
    names = list(results)
    first = results[names[0]]
    print("%-5s %-45s | %-14s | %-14s | %-14s" % ("id", "what", *names))
    for cid in first:
        row = []
        for n in names:
            x = results[n][cid]
            row.append(f'{",".join(x["status"]) or "-"}{" C" if x["closed"] else ""} b{x["nreq"]}')
        print("%-5s %-45s | %-14s | %-14s | %-14s" % (cid, first[cid]["what"][:45], *row))


def main():
    kinds = sys.argv[1:] or ["requests", "responses"]
    for kind in kinds:
        fn = run_requests if kind == "requests" else run_responses
        answer = peers.default_answer if kind == "requests" else response_answer
        results = {}
        for name, cls in peers.PEERS.items():
            results[name] = peers.run_with(mpm if name == "mpm" else cls, fn, answer=answer)
        json.dump(results, open(os.path.join(HERE, f"results_{kind}.json"), "w"), indent=1)
        print(f"\n## {kind}\n")
        table(results)


if __name__ == "__main__":
    main()

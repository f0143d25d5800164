"""CPU per client byte for HTTP/2 header blocks within the limits (64 KiB header list, 4 KiB
HPACK table): a field added to the dynamic table once is then sent as a 1-byte index, so a
~1.8 KB HEADERS frame carries ~1,800 fields (36 bytes each against the list limit), which h2's
pure-Python HPACK decoder expands and our conversion walks before the request's own limits
(header_fields: 100, 431) are applied.  Per-client request rate limits do not help: the
rate bucket is consulted after the decode.

Each case: 300 requests on one h2c connection (batches of 50 streams, each answered before
the next batch), worker CPU per request and per KiB the client sent.  1 worker; the rate
limit raised so every request reaches its answer (431 or 200/404) rather than 429.
  h2-min     minimal GET
  h2-1800    GET + 1,800 indexed copies of `x-a: b`      (answer: 431)
  h2-crumbs  GET + 1,500 indexed `cookie: a=b` crumbs    (joined into one cookie line; 1,800
             would pass the 64 KiB list limit: 41 bytes each)
  h1-1800    HTTP/1.1 GET + 1,800 `x-a: b` lines, one per connection (answer: 431)
`--nginx`: the same against nginx (1 worker).  `--default-limits`: mpm with its default per-client
request rate (100/s, burst 200), so most requests get 429 (the decode still happens)."""
import socket
import sys
import time

import h2.events
import hpack

from h import Backend, Nginx, arm, cpu_s, h2_machine, h2_socket, show, start_proxy

arm(150)


def ok(sock, head, buf):
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


be = Backend(ok)
if "--nginx" in sys.argv:
    p = Nginx([("/", be.port)])
    pid, WHO = p.worker_pid(), "nginx"
elif "--default-limits" in sys.argv:     # per_client requests 100/s, burst 200: beyond, 429 (after the decode)
    p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
    pid, WHO = p.worker_pids()[0], "mpm (default rate limits)"
else:
    p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                    limits={"per_client": {"connections": 200, "tunnels": 100,
                                           "requests": {"rate": 100000, "burst": 100000}}})
    pid, WHO = p.worker_pids()[0], "mpm"
time.sleep(0.5)
N, BATCH = 300, 50


def h2_case(label, extra):
    s = h2_socket(p)
    c = h2_machine()
    c.local_settings.max_header_list_size = 1 << 20
    s.sendall(c.data_to_send())
    enc = hpack.Encoder()
    enc.header_table_size = 4096
    c.encoder = enc
    sent = 0
    statuses = {}
    c0 = cpu_s(pid)
    done = 0
    while done < N:
        sids = []
        for _ in range(BATCH):
            sid = c.get_next_available_stream_id()
            sids.append(sid)
            c.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"),
                                 (b":path", b"/x"), *extra], end_stream=True)
        out = c.data_to_send()
        sent += len(out)
        s.sendall(out)
        s.settimeout(10)
        while not all(sid in statuses for sid in sids):
            data = s.recv(1 << 20)
            if not data:
                show(label, "connection closed")
                return
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    statuses[ev.stream_id] = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.StreamReset):
                    statuses[ev.stream_id] = b"RST%d" % ev.error_code
            s.sendall(c.data_to_send())
        done += BATCH
    cpu = cpu_s(pid) - c0
    answers = list(statuses.values())
    show(f"{WHO} {label}", f"{N} requests, client sent {sent >> 10} KiB; worker CPU {cpu:.2f} s: "
         f"{cpu / N * 1e3:.2f} ms a request, {cpu / max(sent >> 10, 1) * 1e3:.2f} ms per KiB sent; "
         f"answers { {a: answers.count(a) for a in set(answers)} }")
    s.close()


def h1_case(label, lines):
    head = b"GET /x HTTP/1.1\r\nHost: a.test\r\n" + lines + b"Connection: close\r\n\r\n"
    c0 = cpu_s(pid)
    answers = {}
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", getattr(p, "h1port", p.port)))
        s.sendall(head)
        data = s.recv(100)
        answers[data[9:12]] = answers.get(data[9:12], 0) + 1
        s.close()
    cpu = cpu_s(pid) - c0
    show(f"{WHO} {label}", f"{N} requests of {len(head)} bytes; worker CPU {cpu:.2f} s: {cpu / N * 1e3:.2f} ms a "
         f"request, {cpu / (N * len(head) >> 10) * 1e3:.3f} ms per KiB sent; answers {answers}")


h2_case("h2-min", [])
h2_case("h2-1800 (x-a: b)", [(b"x-a", b"b")] * 1800)
h2_case("h2-crumbs (cookie: a=b)", [(b"cookie", b"a=b")] * 1500)
h1_case("h1-1800 (x-a: b)", b"x-a: b\r\n" * 1800)
p.stop()

"""`limits.per_client.connections` is checked only after the TLS handshake (README: "one over is
closed at accept, before anything is read").  One address can (a) hold as many unfinished
handshakes as the worker has room for, for `timeouts.handshake` each, and (b) make the worker
do a full handshake (key exchange + signature) for every connection it then refuses.
per_client.connections 5, 1 worker, threads_per_child 64, handshake timeout 10 s."""
import socket, ssl, time, psutil
from h import Backend, cert_files, client_context, ok_script, read_all, start_proxy

be = Backend(ok_script)
cert, key = cert_files("localhost", "127.0.0.1")
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "tls": {"cert": cert, "key": key},
                                      "http2": False}],
                mpm={"workers": 1, "threads_per_child": 64, "server_limit": 16, "graceful_timeout": 10},
                limits={"per_client": {"connections": 5}},
                timeouts={"handshake": 10, "client_header": 5, "keepalive": 5, "connect": 2, "proxy": 10})
proc = psutil.Process(p.worker_pids()[0])
HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"     # the first bytes of a ClientHello, then nothing

# (a) 60 stalled handshakes from 127.0.0.5
held = [socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.5", 0)) for _ in range(60)]
for s in held:
    s.sendall(HELLO_START)
time.sleep(1.0)
open_now = sum(1 for s in held if read_all(s, 0.01) == b"")
st = p.status()
w = st["workers"][0]
print(f"(a) 60 stalled handshakes from one address (limit 5): {open_now} still open after 1 s; "
      f"worker connections={w.get('connections')} ; clients table: {st.get('clients')}")
# the worker is full (64 of 64): a client from another address still gets in (the oldest handshake is closed)
more = [socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.5", 0)) for _ in range(4)]
for s in more:
    s.sendall(HELLO_START)
time.sleep(0.3)
v = client_context().wrap_socket(socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.9", 0)),
                                 server_hostname="localhost")
v.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
print(f"    with the worker full of them, a client from 127.0.0.9 -> {v.recv(100)[:15]!r} (a stalled one was closed for room)")
v.close()
for s in held + more:
    s.close()
time.sleep(0.5)

# (b) 100 full handshakes from one address while it holds its 5 connections
ctx = client_context()
keep = []
for _ in range(5):
    c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.6", 0)),
                        server_hostname="localhost")
    c.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.recv(100)
    keep.append(c)
cpu0 = sum(proc.cpu_times()[:2])
done = refused = 0
for _ in range(100):
    raw = socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.6", 0))
    try:
        c = ctx.wrap_socket(raw, server_hostname="localhost")
        done += 1
        c.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        if not c.recv(100):
            refused += 1
    except (ssl.SSLError, OSError):
        refused += 1
    raw.close()
cpu = sum(proc.cpu_times()[:2]) - cpu0
print(f"(b) 100 more connections from an address at its limit: {done} completed the TLS handshake, {refused} "
      f"then refused; worker CPU {1000 * cpu:.0f} ms ({10 * cpu:.1f} ms a refused connection)")
print("refusal log lines:", [l[l.find("]", 30) + 2:][:110] for l in p.error_text().splitlines() if "per-client" in l][:2])
for c in keep:
    c.close()
p.stop()

"""https:// backends: a certificate for another name, one from an unknown CA, a backend that
speaks plain HTTP, and a backend that resets during the handshake."""
import os, sys, socket, ssl, tempfile
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, ca, cert_files, ok_script, read_all, recv_head, start_proxy
import trustme


def ctx_for(*names, authority=None):
    c = (authority or ca()).issue_cert(*names)
    d = tempfile.mkdtemp()
    c.private_key_pem.write_to_path(d + "/k"); c.cert_chain_pems[0].write_to_path(d + "/c")
    x = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); x.load_cert_chain(d + "/c", d + "/k")
    return x


def reset_script(s, rec):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


capath = tempfile.mktemp(suffix=".pem")
ca().cert_pem.write_to_path(capath)
good = Backend(ok_script, tls_context=ctx_for("127.0.0.1"))
wrong_name = Backend(ok_script, tls_context=ctx_for("other.example"))
unknown_ca = Backend(ok_script, tls_context=ctx_for("127.0.0.1", authority=trustme.CA()))
plain = Backend(ok_script)
rst = Backend(reset_script)
routes = [{"path": f"/{n}/", "to": f"https://127.0.0.1:{b.port}/", "tls": {"ca": capath}}
          for n, b in (("good", good), ("wrongname", wrong_name), ("unknownca", unknown_ca), ("plain", plain),
                       ("rst", rst))]
p = start_proxy(routes)
for n in ("good", "wrongname", "unknownca", "plain", "rst"):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /%s/ HTTP/1.1\r\nHost: a\r\n\r\n" % n.encode())
    print(f"{n:10s} -> {read_all(s, 3, limit=30)[:30]!r}")
    s.close()
print("\n".join(l for l in p.error_text().splitlines() if "TLS" in l or "certif" in l or "backend" in l))
print("backend handshakes that reached the app:", [len(b.conns) for b in (good, wrong_name, unknown_ca)])
p.stop()

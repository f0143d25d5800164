"""Exploration: TLS session resumption and a TLS keep-alive connection across FROM -> TO.
usage: explore_tls.py FROM TO"""
import os, socket, ssl, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Install, free_port, tree  # noqa: E402
src, dst = sys.argv[1], sys.argv[2]
inst = Install(tree(src))
cert, key = os.path.join(inst.dir, "cert.pem"), os.path.join(inst.dir, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", cert, "-days", "2", "-subj", "/CN=localhost"], capture_output=True, check=True, timeout=30)
tport = free_port()
text = open(inst.config_path).read().replace(f'listen: ["127.0.0.1:{inst.port}"]',
    f'listen: ["127.0.0.1:{inst.port}", {{address: "127.0.0.1:{tport}", tls: {{cert: {cert}, key: {key}}}}}]')
open(inst.config_path, "w").write(text)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def tls_get(session=None, path="/t", keep=False):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tport), timeout=5), session=session)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1].endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    return s, data, s.session, s.session_reused
try:
    inst.start()
    s, d, sess, _ = tls_get(); print("first:", d.split(b"\r\n")[0], "session", bool(sess)); s.close()
    s, d, sess2, reused = tls_get(sess); print("resume before upgrade: reused", reused); s.close()
    ka, d, _, _ = tls_get(path="/ka")
    inst.swap(tree(dst))
    r = inst.ctl("upgrade", timeout=90); print("upgrade", r.returncode, r.stdout.strip(), r.stderr.strip())
    for i in range(4):
        s, d, _, reused = tls_get(sess2, path=f"/r{i}"); print("resume after upgrade: reused", reused, d.split(b"\r\n")[0]); s.close()
    try:
        ka.sendall(b"GET /ka2 HTTP/1.1\r\nHost: x\r\n\r\n"); out = ka.recv(65536)
        print("TLS keep-alive after upgrade:", out.split(b"\r\n\r\n")[0].decode(errors="replace").replace("\r\n", " | ")[:200])
    except Exception as e:
        print("TLS keep-alive after upgrade: FAILED", repr(e))
    st = inst.status(); print("status tls:", st and st.get("tls"))
finally:
    print("killed", inst.cleanup())
    print("\n".join(l for l in inst.log_text().splitlines() if ("warn" in l.lower() or "error" in l.lower() or "ticket" in l.lower()) and "GET" not in l)[-2000:])

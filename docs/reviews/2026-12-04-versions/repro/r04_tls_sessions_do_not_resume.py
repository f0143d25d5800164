"""r04: TLS sessions made before `mpmctl upgrade` from a release before 33324cb (2026-12-03
13:33) to HEAD do not resume after it: every client makes a full handshake, and no log line
says why (HEAD's session-id context gained an element; the ticket keys are the same).

usage: r04_tls_sessions_do_not_resume.py [OLD_COMMIT [REVERSE]]   (default f31b70d; with a
second argument "reverse", HEAD -> OLD_COMMIT, the rollback)

Steps: a master of OLD_COMMIT with a TLS listener (self-signed certificate, no key file: the
keys the master generates are handed to the next master); a TLS 1.3 session made and resumed
once; the installed code switched to HEAD; `mpmctl upgrade`; the session resumed 3 times.
PASS when all 3 resume (as they do HEAD -> HEAD), or when the new master logs that sessions
from before start over.
"""
import os
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Install, free_port, tree  # noqa: E402

OLD = sys.argv[1] if len(sys.argv) > 1 else "f31b70d"
REVERSE = len(sys.argv) > 2 and sys.argv[2] == "reverse"
FIRST, SECOND = ("HEAD", OLD) if REVERSE else (OLD, "HEAD")


def main() -> int:
    inst = Install(tree(FIRST))
    detail, verdict = [], "FAIL"
    cert, key = os.path.join(inst.dir, "cert.pem"), os.path.join(inst.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   capture_output=True, check=True, timeout=30)
    tport = free_port()
    text = open(inst.config_path).read().replace(
        f'listen: ["127.0.0.1:{inst.port}"]',
        f'listen: ["127.0.0.1:{inst.port}", {{address: "127.0.0.1:{tport}", tls: {{cert: {cert}, key: {key}}}}}]')
    open(inst.config_path, "w").write(text)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    def get(session=None):
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", tport), timeout=5), session=session) as s:
            s.sendall(b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n")[0], s.session, s.session_reused
    try:
        inst.start()
        line, session, _ = get()
        line, session, reused = get(session)
        detail.append(f"before the upgrade ({FIRST}): {line!r}, resumed {reused}")
        inst.swap(tree(SECOND))
        r = inst.ctl("upgrade", timeout=90)
        detail.append(f"mpmctl upgrade to {SECOND}: exit {r.returncode} {r.stdout.strip()!r} {r.stderr.strip()!r}")
        results = []
        for _ in range(3):
            line, _, reused = get(session)
            results.append(reused)
        detail.append(f"after the upgrade: resumed {results} ({line!r})")
        said = [l for l in inst.log_text().splitlines() if "session" in l.lower() and ("start over" in l or "resume" in l)]
        detail += ["log: " + l for l in said]
        verdict = "PASS" if all(results) or said else "FAIL"
    finally:
        detail.append(f"killed at cleanup: {inst.cleanup()}")
    print(f"{verdict}: TLS session resumption across the upgrade {FIRST} -> {SECOND}")
    for line in detail:
        print("  " + line)
    return 0 if verdict == "PASS" else 1


sys.exit(main())

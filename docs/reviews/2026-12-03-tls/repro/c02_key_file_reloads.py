"""c02 (found sound): the operator's session_ticket_key at reload.  A short file, a FIFO, a
directory and a missing file each get FILE:LINE and the running keys keep serving (sessions
issued before still resume); a changed valid file takes over (old sessions: full handshake),
and listing the old file second keeps them resuming (nginx's practice)."""
import os
import ssl

import h

ca = h.trustme.CA()
site = h.pair(ca, "site", "localhost")
first = h.write("ticket.key", os.urandom(80))
be = h.backend()
p = h.proxy([{"tls": {"cert": site[0], "key": site[1]}}], [{"path": "/", "to": be.url + "/"}], workers=2,
            tls={"session_ticket_key": first})
ctx = {v: h.client_context(ca, v) for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)}


def sessions():
    return {v: h.get(p.port, c, "localhost")[2] for v, c in ctx.items()}


def resumes(saved):
    return {v.name: h.get(p.port, c, "localhost", session=saved[v])[1] for v, c in ctx.items()}


saved = sessions()
fifo = os.path.join(h.TMP, "fifo.key")
os.mkfifo(fifo)
for label, path in (("short", h.write("short.key", os.urandom(47))), ("fifo", fifo), ("directory", h.TMP),
                    ("missing", os.path.join(h.TMP, "none.key"))):
    p.config["tls"]["session_ticket_key"] = path
    p.write_config()
    result = p.reload()
    print(f"{label:9}: rc={result.returncode} {(result.stdout + result.stderr).strip()[-150:]}")
    print("           generation", p.status()["generation"], "old sessions resume:", resumes(saved))
os.rename(first, first + ".old")
h.write("ticket.key", os.urandom(80))
p.config["tls"]["session_ticket_key"] = first
p.write_config()
print("changed  :", p.reload().stdout.strip(), "old sessions resume:", (p.wait_ready(generation=2), resumes(saved))[1])
p.config["tls"]["session_ticket_key"] = [first, first + ".old"]
p.write_config()
print("old 2nd  :", p.reload().stdout.strip(), "old sessions resume:", (p.wait_ready(generation=3), resumes(saved))[1])
print("status:", p.status()["tls"])

"""A failed `mpmctl upgrade` must change nothing.  The new master installs the session-ticket
keys its config names into the *shared* ticket-key memfd (TicketKeys.configure in
Master.__init__) before it has bound anything; when it then fails (here: a listen address
another program holds), the old master serves on with the new master's keys: its config says
"generated", the table says "file" (or the reverse), and every ticket issued before the
attempt stops resuming."""
import json, os, socket, sys, time
from h import *  # noqa

b = backend()
p = proxy([{"path": "/", "to": b.url + "/"}], workers=1)
old = p.proc.pid
before = p.status()["tls"]
print("before:", {k: before.get(k) for k in ("source", "keys", "rotations", "key_age")})

d = p.dir
with open(os.path.join(d, "ticket.key"), "wb") as f:
    f.write(os.urandom(80))
blocker = socket.socket(); blocker.bind(("127.0.0.1", 0)); blocker.listen(1)   # a port another program holds
cfg = dict(p.config)
cfg["listen"] = [f"127.0.0.1:{p.port}", f"127.0.0.1:{blocker.getsockname()[1]}"]
cfg["tls"] = {"session_ticket_key": ["ticket.key"]}
p.write_config(cfg)
r = upgrade(p)
print("mpmctl upgrade ->", r.returncode, (r.stdout + r.stderr).strip())
time.sleep(0.5)
after = p.status()["tls"]
print("after: ", {k: after.get(k) for k in ("source", "keys", "rotations", "key_age")})
ok = (r.returncode != 0 and p.proc.poll() is None and after.get("source") == before.get("source")
      and after.get("keys") == before.get("keys") and after.get("key_age", 0) >= before.get("key_age", 0))
result(ok, "a failed upgrade leaves the old master's session-ticket keys as they were")

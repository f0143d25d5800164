"""r04: many distinct clients that each hold a connection fill the client table (table: 64, the
smallest); a client whose bucket is full is then untracked, and none of its limits apply."""
import time

from h import Backend, connect, get, start_proxy

backend = Backend()
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                limits={"per_client": {"table": 64, "requests": {"rate": 1, "burst": 1}}})
held = []
for i in range(2, 200):                      # 198 addresses, each holding one idle connection
    held.append(connect(p.port, f"127.0.1.{i}"))
time.sleep(0.5)
print("status:", p.status()["clients"])
statuses = [get(p.port, "/", f"127.0.2.{i}") for i in range(2, 40) for _ in range(3)]
per_client = [statuses[i:i + 3] for i in range(0, len(statuses), 3)]
unlimited = sum(1 for triple in per_client if triple.count(200) == 3)
print(f"clients with 3 requests in a row at 1/s burst 1: {unlimited} of {len(per_client)} got 200 x3 (untracked)")
print("status:", p.status()["clients"])
print("error log:", [line for line in p.error_text().splitlines() if "client table full" in line][-1:])
for s in held:
    s.close()

"""r08: a file path the loader accepts but no process can open (a NUL byte, or a lone surrogate
from a YAML escape, in log.access): the reload is accepted, the old generation is retired, and
every new worker dies at start: nothing serves (the crash loop is throttled, the outage stays).
conf/loader._log_file exists to refuse exactly this case."""
import time
import yaml
from h import get, proxy, write_raw

p = proxy(workers=1)
doc = dict(p.config)
doc.pop("log")
write_raw(p, yaml.safe_dump(doc, sort_keys=False) +
          f'log: {{level: info, error: "{p.error_log}", access: "{p.dir}/access\\0.log"}}\n')
print("configtest:", p.mpmctl("configtest").stdout.strip() or p.mpmctl("configtest").stderr.strip()[-120:])
r = p.mpmctl("reload")
print(f"reload: rc={r.returncode} {(r.stdout + r.stderr).strip()[:100]}")
time.sleep(2.0)
print("GET ->", get(p))
print("error log:", [line[:150] for line in p.error_text().splitlines() if "crash" in line or "died" in line][-2:])
p.stop()

"""An HTTP/2 client's tiny SETTINGS_MAX_HEADER_LIST_SIZE makes a GET on a balancer route go
to every member (failover after the 502), and our own 502 head is itself over the limit.
Run from the frozen copy:  cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python \
    /work/main/docs/reviews/2026-12-04-fixes/repro/h2_limit_failover.py"""
import sys, os, tempfile, time
sys.path.insert(0, os.getcwd())
import h2.settings
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, serve_simple

backends = [RawBackend(serve_simple) for _ in range(3)]
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, [{"path": "/", "to": "balancer://c/"}], workers=1,
              balancers={"c": {"members": [{"url": b.url} for b in backends]}})
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
try:
    proxy.start()
    for limit in (None, 100, 40):
        for b in backends: b.reset_records()
        settings = {h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limit} if limit is not None else None
        c = H2Client(proxy.port, settings=settings)
        sid = c.request("GET", "/x")
        try:
            c.wait(lambda: c.streams[sid].finished or c.closed, 5, "response")
        except Exception as e:
            print("wait:", e)
        s = c.streams[sid]
        print(f"limit={limit}: status={s.status} headers={getattr(s,'headers',None)} "
              f"backend requests={[len(b.requests) for b in backends]} goaway={c.goaway}")
        c.close()
    time.sleep(0.5)
    print("--- error log"); print(proxy.error_text()[-1500:])
    print("--- access"); print("\n".join(proxy.access_lines()[-4:]))
    print("--- status"); print(proxy.mpmctl("balancer").stdout[-800:])
finally:
    proxy.stop()
    for b in backends: b.close()

"""r03: limits.http2_streams above 4294967295 is accepted (configtest: Syntax OK), and then every
HTTP/2 connection is reset: SETTINGS_MAX_CONCURRENT_STREAMS is a 32-bit field (RFC 9113 §6.5.1),
hyperframe's struct.pack raises in H2Connection.__init__, and the error log gets a traceback.

Cause: conf/loader.py _limits reads http2_streams with sec.integer(key, default, 1) and no upper bound.

Steps: configtest a file with limits.http2_streams: 8589934592 and an h2c listener; start it; send the
HTTP/2 preface and an empty SETTINGS frame.  PASS when configtest rejects the value with FILE:LINE, or
when the connection gets a SETTINGS frame back."""
import time

from _common import HttpBackend, Proxy, verdict, workdir

backend = HttpBackend()
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1, limits={"http2_streams": 2 ** 33})
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"configtest: rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
if check.returncode != 0:
    verdict(":" in check.stderr, "rejected at configtest")
try:
    proxy.start()
    sock = proxy.connect()
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    sock.settimeout(3)
    try:
        reply = sock.recv(100)
    except OSError as exc:
        reply = repr(exc).encode()
    time.sleep(0.5)
    log = proxy.error_text()
    print("reply:", reply[:60])
    print("error log:", [line for line in log.splitlines() if "error" in line.lower()][:2],
          "... last line:", log.strip().splitlines()[-1])
finally:
    proxy.stop()
verdict(reply[3:4] == b"\x04", "an HTTP/2 connection was refused under a configuration configtest accepted")

"""r11: listen ports are read with str.isdigit() and int() (conf/addresses.py _port), which take more
than ASCII digits: "127.0.0.1:８０８０" (fullwidth digits) is accepted as port 8080; "127.0.0.1:8²" and a
5,000-digit port are refused with Python's own messages ("invalid literal for int() with base 10",
"Exceeds the limit (4300 digits) for integer string conversion ... use sys.set_int_max_str_digits()").
nginx, Apache and HAProxy accept only ASCII digits in a port.

PASS when all three are refused with a message about the port."""
from _common import load, verdict

route = 'routes:\n  - {path: /, to: "http://127.0.0.1:9/"}\n'
bad = []
for port in ("８０８０", "8²", "1" * 5000):
    kind, result = load(f'listen: ["127.0.0.1:{port}"]\n' + route)
    shown = str(result.listeners[0]) if kind == "OK" else result.split(": ", 1)[1][:150]
    print(f"port {port[:12]!r}{'...' if len(port) > 12 else ''}: {kind}: {shown}")
    if kind == "OK" or "int()" in shown or "set_int_max_str_digits" in shown:
        bad.append(port[:12])
verdict(not bad, f"{len(bad)} of 3 ports mishandled")

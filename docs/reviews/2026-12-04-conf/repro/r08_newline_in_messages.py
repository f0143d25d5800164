"""r08: values with a line break are echoed verbatim into error messages, so one problem prints as
several lines, and a crafted value prints a line that looks like another FILE:LINE error (or, in the
master's error log, like another log line).  Messages quote the value with '{value}' rather than
repr()/an escape (e.g. conf/routes.py _prefix, conf/fields.py Section.__init__ and .choice,
conf/addresses.py parse_listen).  Related: a `to:` URL with "\\n" or "\\t" inside is accepted, those
characters silently removed by urllib's urlsplit (conf/addresses.py parse_url), so the proxy uses a
URL the file does not show.

Steps: load files whose route.path, log.level, a key and a listen address hold "\\n"; load a `to:`
with "\\n" inside.  PASS when every error line starts with FILE:LINE: and is one line per problem, and
the `to:` with a line break is refused."""
from _common import load, verdict

head = 'listen: ["127.0.0.1:18080"]\n'
route = 'routes:\n  - {path: /, to: "http://127.0.0.1:9/"}\n'
cases = {
    "route.path": head + 'routes:\n  - {path: "a\\n/etc/mpm.yaml:99: listen is fine", to: "http://127.0.0.1:9/"}\n',
    "log.level": head + route + 'log: {level: "x\\ny"}\n',
    "a key": head + route + '"foo\\nbar": 1\n',
    "listen": 'listen: ["127.0.0.1:1\\n2"]\n' + route,
}
bad = []
for name, text in cases.items():
    kind, message = load(text)
    lines = message.splitlines() if kind == "ERR" else []
    path = lines[0].split(":", 1)[0] if lines else ""
    stray = [line for line in lines if not line.startswith(path + ":")]
    print(f"{name}: {len(lines)} lines for 1 problem: {lines}")
    if len(lines) != 1 or stray:
        bad.append(name)
kind, config = load(head + 'routes:\n  - {path: /, to: "http://127.0.0.1:9/\\nadmin/"}\n')
shown = config.routes[0].target.path if kind == "OK" else None
print(f'to: "http://127.0.0.1:9/\\nadmin/" -> {kind}' + (f", backend path {shown!r}" if kind == "OK" else ""))
if kind == "OK":
    bad.append("to with a line break accepted")
verdict(not bad, "; ".join(bad))

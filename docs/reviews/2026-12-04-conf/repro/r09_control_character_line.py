"""r09: a control character anywhere in the file (a form feed ^L page break, an ESC from a pasted
terminal colour code, a NUL, DEL) is reported at line 1 as an internal failure, over two lines:

  FILE:1: the configuration could not be checked: ReaderError: unacceptable character #x000c: ...
    in "<unicode string>", position 91 (please report this)

Cause: conf/yamlnodes.py parse() builds LineLoader(text) before its try; PyYAML's Reader checks the
whole text in its constructor and raises ReaderError (a YAMLError with a character position, not a
mark), which reaches load_config's catch-all (conf/loader.py, "could not be checked").

Steps: put "\\f" (and ESC, NUL, DEL) on line 5 of a valid file.  PASS when the error names line 5, on one
line, without "please report this"."""
from _common import load, verdict

base = 'listen: ["127.0.0.1:18080"]\nroutes:\n  - {path: /, to: "http://127.0.0.1:9/"}\n# part two\n'
bad = []
for char in ("\f", "\x1b", "\x00", "\x7f"):
    kind, message = load(base + char + "\nmpm: {workers: 2}\n")
    lines = message.splitlines()
    print(f"{char!r} on line 5 -> {lines}")
    if kind != "ERR" or len(lines) != 1 or ":5: " not in lines[0] or "please report" in message:
        bad.append(repr(char))
verdict(not bad, "wrong line / internal-error wording for " + ", ".join(bad))

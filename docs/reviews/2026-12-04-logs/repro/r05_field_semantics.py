"""Findings 5-8 (low): what some access-log fields say, against Apache's mod_log_config.
  5  %b counts chunked framing (Apache's r->bytes_sent is counted before the CHUNK filter)
  6  %t is when the line is written, not when the request was received (Apache's %t)
  7  a tunnel's line: no %X field, and its %b counts the 101 head (an exchange's %b never
     counts a head)
  8  JSON: an invalid UTF-8 byte and the literal text backslash-x-f-f give the same value
  9  a complete, valid request line is logged "-" when a header field is too large (431),
     and for every HTTP/2 stream refused by the head checks (414/431)"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy, respond, send, wait_lines  # noqa: E402
from rawbackend import echo  # noqa: E402
from wsutil import switch_response, upgrade_request  # noqa: E402


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        if head.target == "/chunked":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
        elif head.target == "/eof":
            conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 20)
            return
        elif head.target == "/slow":
            time.sleep(2)
            conn.send(respond(200, b"late"))
        elif head.target == "/ws":
            conn.send(switch_response("websocket", head.raw))
            echo(conn)
            return
        else:
            conn.send(respond(200, b"ok"))


be = RawBackend(handler)
p = proxy([{"path": "/", "to": be.url}], workers=1)
req = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
send(p, req % b"/chunked")
send(p, req % b"/eof")
t_sent = time.strftime("%H:%M:%S")
send(p, req % b"/slow")
s = p.connect()
s.sendall(upgrade_request("/ws"))
time.sleep(0.3)
head = s.recv(4096)
s.sendall(b"0123456789")
time.sleep(0.2)
s.recv(100)
s.close()
send(p, b"GET /big-field HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70000 + b"\r\nConnection: close\r\n\r\n")
lines = wait_lines(p, 5, 5)
time.sleep(1.2)
lines = p.access_lines()
for line in lines:
    print(" ", line)
print(f"5: /chunked payload is 8 bytes, /eof 20 bytes (Apache %b: 8 and 20)")
print(f"6: /slow was received at {t_sent}; Apache's %t would say that second")
print(f"7: the 101 head the client got is {len(head)} bytes; tunnel payload 10 bytes each way")
print("9: the 431's request line was 'GET /big-field HTTP/1.1'")

# 8: JSON ambiguity
pj = proxy([{"path": "/", "to": be.url}], workers=1, log={"format": "json"})
send(pj, b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\r\nConnection: close\r\n\r\n")
send(pj, b"GET /b HTTP/1.1\r\nHost: x\r\nUser-Agent: \\xff\r\nConnection: close\r\n\r\n")
records = [json.loads(line) for line in wait_lines(pj, 2, 5)]
print("8: byte 0xff ->", json.dumps(records[0]["user_agent"]), "; the four characters \\xff ->",
      json.dumps(records[1]["user_agent"]), "; same:", records[0]["user_agent"] == records[1]["user_agent"])

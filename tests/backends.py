"""Backends that behave like real servers, for tests that need a correct peer rather than
a scripted one (for that, see rawbackend.py):

- `HttpBackend`: HTTP/1.1 on h11 in threads of the test process (an independent implementation),
  answering through `handler(request, body) -> (status, headers, body)` and recording every request.
- `WebSocketBackend`: the `websockets` library's server in a thread; echo unless told otherwise.
- `BenchBackend`: the bundled `python -m bench.backends` as its own process.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading

import h11
from support import ROOT, free_port, wait_for


class HttpBackend:
    """A threaded HTTP/1.1 server built on h11 (an independent implementation).

    `handler(request, body) -> (status, headers, body)`; every request it receives is
    recorded with the id of the connection it came on."""

    def __init__(self, handler=None):
        self.handler = handler or (lambda req, body: (200, [("Content-Type", "text/plain")], b"hello"))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict] = []
        self.connections = 0
        self.raw: list[bytes] = []       # every byte received, per connection
        self.closing = False
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        h = h11.Connection(h11.SERVER)
        index = len(self.raw)
        self.raw.append(b"")
        conn.settimeout(30)
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    self.raw[index] += data
                    h.receive_data(data)
                    continue
                if isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    body = b""
                    while True:
                        ev = h.next_event()
                        if ev is h11.NEED_DATA:
                            data = conn.recv(65536)
                            self.raw[index] += data
                            h.receive_data(data)
                        elif isinstance(ev, h11.Data):
                            body += ev.data
                        elif isinstance(ev, h11.EndOfMessage):
                            break
                        else:
                            return
                    record = {"method": event.method.decode(), "target": event.target.decode(),
                              "headers": [(k.decode(), v.decode()) for k, v in event.headers],
                              "body": body, "conn": conn_id}
                    self.requests.append(record)
                    status, headers, payload = self.handler(record, body)
                    if not any(k.lower() == "content-length" for k, _ in headers) and \
                            not any(k.lower() == "transfer-encoding" for k, _ in headers):
                        headers = [*headers, ("Content-Length", str(len(payload)))]
                    conn.sendall(h.send(h11.Response(status_code=status, headers=headers)))
                    if payload:
                        conn.sendall(h.send(h11.Data(data=payload)))
                    conn.sendall(h.send(h11.EndOfMessage()))
                    if h.our_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            conn.close()

    def header(self, index: int, name: str) -> list[str]:
        return [v for k, v in self.requests[index]["headers"] if k.lower() == name.lower()]

    def close(self) -> None:
        self.closing = True
        self.sock.close()


class WebSocketBackend:
    """The `websockets` library's server in a thread: echo by default.

    `handler(connection)` is looked up for every connection, so a test that owns the backend
    may replace it; `requests` records every handshake request."""

    def __init__(self, handler=None, **serve_kwargs):
        from websockets.asyncio.server import serve
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.handler = handler or self.echo
        self.requests: list = []
        ready = threading.Event()

        async def main():
            async def record(connection):
                self.requests.append(connection.request)
                await self.handler(connection)
            self.stop_event = asyncio.Event()
            async with serve(record, "127.0.0.1", self.port, max_size=None, **serve_kwargs):
                ready.set()
                await self.stop_event.wait()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    @staticmethod
    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)


class BenchBackend:
    """`python -m bench.backends` (raw epoll, its own process): GET / demo page, /ws echo."""

    def __init__(self, directory: str):
        self.log = open(os.path.join(directory, "bench-backend.log"), "w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backends", "--host", "127.0.0.1", "--port", "0"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"bench backend exited: {self.output()}")
            m = re.search(r"listening on https?://[^:\s]+:(\d+)", self.output())
            return int(m.group(1)) if m else None
        self.port = wait_for(listening, 15, 0.05, "bench backend listening")

    def output(self) -> str:
        # Read through a file description of our own: the child writes through the one `self.log`
        # shares with it, so a seek here would move where its next write lands.  (Under
        # PYTHONUNBUFFERED its print is two writes; a seek between them put the "\n" over the "l"
        # of "listening", and the port was never found: a clean-clone CI run failed so.)
        with open(self.log.name, "rb") as log:
            return log.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

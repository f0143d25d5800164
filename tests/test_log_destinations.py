"""Log destinations that misbehave must cost the server nothing but the lines they do not take
(review 2026-12-03-operating): journald's stream socket that stops reading (under systemd,
stdout and stderr are that socket), a log reader that stops reading a pipe, a full disk.

Real masters and workers, real sockets on loopback; the "journald" is one end of a Unix
stream socket pair that the test reads, or does not."""

from __future__ import annotations

import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from proxyproc import Proxy
from rawbackend import RawBackend
from support import ROOT, wait_for

REQUEST = "GET /logged/{} HTTP/1.1\r\nHost: t\r\nUser-Agent: {}\r\n\r\n"


@pytest.fixture
def raw_backend():
    backend = RawBackend()
    yield backend
    backend.close()


def _start_with(proxy: Proxy, stdout: socket.socket | None = None,
                stderr: socket.socket | None = None) -> None:
    """Proxy.start, with the master's (and so the workers') stdout or stderr on a socket."""
    proxy.write_config()
    proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path],
                                  stdout=(stdout or proxy.stdout).fileno(),
                                  stderr=(stderr or proxy.stderr).fileno(), cwd=ROOT)
    proxy.seen_pids.add(proxy.proc.pid)
    proxy.wait_ready()


def _keepalive_requests(port: int, count: int, timeout: float = 2.0, first: int = 0, agent: str = "t") -> int:
    """`count` requests one after the other on one connection; how many were answered."""
    answered = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for n in range(first, first + count):
                sock.sendall(REQUEST.format(n, agent).encode())
                data = b""
                while b"raw:/logged/%d" % n not in data:
                    more = sock.recv(65536)
                    if not more:
                        return answered
                    data += more
                answered += 1
        except TimeoutError:
            pass
    return answered


def _read_until(sock: socket.socket, received: bytearray, needle: bytes, timeout: float = 5.0) -> None:
    sock.settimeout(0.2)

    def found() -> bool:
        try:
            received.extend(sock.recv(1 << 20))
        except TimeoutError:
            pass
        return needle in received
    wait_for(found, timeout, 0, f"{needle!r} through the socket")


def test_a_journald_socket_that_stops_reading_does_not_stop_the_worker(tmp_path, raw_backend):
    """stdout is a stream socket nobody reads (a stalled journald), `log.access: "-"`: the worker
    goes on serving, and the lines it queued meanwhile arrive once the socket is read again."""
    journald, stdout = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stdout.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)     # full after a few dozen lines
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["access"] = "-"
    try:
        _start_with(proxy, stdout=stdout)
        stdout.close()
        count = 1000        # 64 KiB are batched before the first write: ~550 lines
        assert _keepalive_requests(proxy.port, count) == count     # (parent: 551, then no answer)
        received = bytearray()
        _read_until(journald, received, b'"GET /logged/%d ' % (count - 1))
        assert received.count(b'"GET /logged/') == count
    finally:
        journald.close()
        proxy.stop()


def test_the_master_goes_on_when_journald_stops_reading_its_log(tmp_path, raw_backend):
    """stderr is a stream socket that is full (a stalled journald), `log.error: "-"`: a reload
    is answered and done, `mpmctl status` answers, and the master's lines arrive once the
    socket is read again."""
    journald, stderr = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["error"] = "-"
    try:
        _start_with(proxy, stderr=stderr)
        journald.setblocking(False)
        try:
            while journald.recv(1 << 20):       # what the master said at start: read
                pass
        except BlockingIOError:
            pass
        try:
            while True:                         # then the socket is full: nobody reads
                stderr.send(b"-" * 4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        try:
            reload = proxy.mpmctl("reload", timeout=5)
            status = proxy.mpmctl("status", timeout=5)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the master blocked on its log: {exc}") from None   # (parent: here)
        assert reload.returncode == 0 and status.returncode == 0, (reload, status)
        proxy.wait_ready(generation=2)
        received = bytearray()
        _read_until(journald, received, b"reloaded: generation 2")
    finally:
        journald.close()
        stderr.close()
        proxy.stop()


class FifoReader:
    """The log shipper at the other end of a FIFO: a thread that reads while `reading` is set
    (a reader that stops, SIGSTOP-like, keeps the FIFO open and reads nothing)."""

    def __init__(self, path: str, piece: int = 1 << 20):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.piece = piece              # bytes per read: a small one keeps the pipe nearly full
        self.reading = threading.Event()
        self.reading.set()
        self.received = bytearray()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            if not self.reading.wait(0.05):
                continue
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    self.received += os.read(self.fd, self.piece)
                except BlockingIOError:
                    pass

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        os.close(self.fd)


def test_a_log_reader_that_stops_reading_costs_the_worker_nothing(tmp_path, raw_backend):
    """`log.access` is a FIFO whose reader stops reading: the worker's CPU per request stays what
    it was (the lines queue up to MAX_PENDING, then are dropped), and once the reader reads
    again every line is there or counted as dropped."""
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    fifo = os.path.join(proxy.dir, "access.fifo")
    os.makedirs(proxy.dir, exist_ok=True)
    os.mkfifo(fifo)
    proxy.config["log"]["access"] = fifo
    reader = FifoReader(fifo)           # before the worker opens it (else: ENXIO, retried in 5 s)
    try:
        proxy.start()
        worker = psutil.Process(proxy.worker_pids()[0])
        agent = "a" * 4000              # 4 KiB lines: MAX_PENDING (4 MiB) is ~1,000 of them

        def cpu_of(first: int, count: int) -> float:
            before = sum(worker.cpu_times()[:2])
            assert _keepalive_requests(proxy.port, count, first=first, agent=agent) == count
            return sum(worker.cpu_times()[:2]) - before
        reading = cpu_of(0, 1000)
        reader.reading.clear()
        stopped = cpu_of(1000, 1100)
        # (parent: 0.10 s with the reader reading, 1.3-1.5 s stopped: each line joined the whole queue again)
        assert stopped < 2 * reading + 0.1, f"worker CPU for 1,000 requests: {reading:.2f} s with the " \
                                            f"reader reading, {stopped:.2f} s with it stopped"
        reader.reading.set()
        sent = 2100
        deadline = time.monotonic() + 10
        while not re.search(rb"\[(\d+) log lines dropped", reader.received) and time.monotonic() < deadline:
            sent += _keepalive_requests(proxy.port, 1, first=sent)     # turns of the loop drain the queue
            time.sleep(0.01)
        found = re.search(rb"\[(\d+) log lines dropped", reader.received)
        assert found, "no count of the lines dropped within 10 s of the reader reading again"

        def logged_or_counted() -> int:
            # Every count, not the first alone: while the queue drains, a reader slow to take one
            # write backs the sink off for ACCESS_FLUSH, the queue can pass MAX_PENDING again, and
            # that second run of drops has its own count (CI failed here on the first alone).
            counts = re.findall(rb"\[(\d+) log lines dropped", reader.received)
            return reader.received.count(b'"GET /logged/') + sum(map(int, counts))
        try:
            wait_for(lambda: logged_or_counted() >= sent, 5, 0.05, "every line logged or counted")
        except AssertionError:
            raise AssertionError(f"{logged_or_counted()} of {sent} lines logged or counted; markers: "
                                 f"{re.findall(rb'[[][^]]*dropped[^]]*[]]', reader.received)}") from None
        assert logged_or_counted() == sent
        # The count stands where the gap is: between the last line before it and the first after
        # (it came after the lines logged once the reader read again, review 2026-12-04-logs #4).
        sent += _keepalive_requests(proxy.port, 1, first=sent)
        wait_for(lambda: b"GET /logged/%d " % (sent - 1) in reader.received, 3, 0.05, "one line after the count")
        numbers = [int(m) if m else None for m in re.findall(rb'\[\d+ log lines dropped|GET /logged/(\d+) ',
                                                               bytes(reader.received))]
        gap = numbers.index(None)
        assert numbers[gap + 1] == numbers[gap - 1] + int(found.group(1)) + 1, numbers[gap - 2:gap + 3]
    finally:
        reader.close()
        proxy.stop()


def test_a_full_disk_is_said_once_and_the_worker_serves_on(proxy_factory, raw_backend):
    """`log.access` on a full disk (/dev/full: every write fails with ENOSPC): the requests are
    answered, and stderr says once which log fails and why (the lines are counted, and the count
    is written into the log when it takes lines again)."""
    proxy = proxy_factory([{"path": "/", "to": raw_backend.url + "/"}], workers=1,
                          log={"access": "/dev/full"})
    worker = proxy.worker_pids()[0]
    assert _keepalive_requests(proxy.port, 200) == 200
    # (parent: no word at all)
    wait_for(lambda: "cannot write log" in proxy.stderr_text(), 3, 0.05, "a word about the lost lines")
    assert _keepalive_requests(proxy.port, 200, first=200) == 200
    said = re.findall(rf"mpm worker {worker}: cannot write log /dev/full: No space left on device; .*",
                      proxy.stderr_text())
    assert len(said) == 1, said
    assert proxy.worker_pids() == [worker]


def test_a_backlog_is_written_as_fast_as_the_reader_takes_it(tmp_path, raw_backend):
    """A reader that stopped reads again while no request comes: the ~1.1 MiB the worker queued
    meanwhile arrive at the reader's pace, not one pipe-full per idle turn of the loop."""
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    fifo = os.path.join(proxy.dir, "access.fifo")
    os.makedirs(proxy.dir, exist_ok=True)
    os.mkfifo(fifo)
    proxy.config["log"]["access"] = fifo
    reader = FifoReader(fifo)
    try:
        proxy.start()
        reader.reading.clear()
        assert _keepalive_requests(proxy.port, 300, agent="a" * 4000) == 300
        time.sleep(0.3)                  # the worker is idle now
        started = time.monotonic()
        reader.reading.set()
        wait_for(lambda: reader.received.count(b'"GET /logged/') == 300, 10, 0.02, "the 300 lines")
        took = time.monotonic() - started
        assert took < 2.0, f"the backlog took {took:.1f} s to arrive"     # (parent: 4.0 s)
    finally:
        reader.close()
        proxy.stop()


def test_workers_sharing_a_pipe_never_write_into_each_others_lines(tmp_path, raw_backend):
    """Two workers' access logs into one FIFO whose reader stopped, then reads in small pieces:
    every line arrives whole.  A write to a pipe of more than PIPE_BUF bytes may go in part, and
    the other worker's lines then went into the middle of a line; to a pipe, lines now go at most
    PIPE_BUF bytes at a time, cut at a line's end (POSIX makes those writes whole)."""
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=2)
    fifo = os.path.join(proxy.dir, "access.fifo")
    os.makedirs(proxy.dir, exist_ok=True)
    os.mkfifo(fifo)
    proxy.config["log"]["access"] = fifo
    reader = FifoReader(fifo, piece=300)
    try:
        proxy.start()
        reader.reading.clear()
        clients = [threading.Thread(target=_keepalive_requests, args=(proxy.port, 40),
                                    kwargs={"first": 40 * i, "agent": "a" * 3000}) for i in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        reader.reading.set()
        wait_for(lambda: reader.received.count(b"\n") >= 320, 8, 0.02, "the 320 lines")
        whole = re.compile(rb'127\.0\.0\.1 - - \[[^]]+\] "GET /logged/\d+ HTTP/1\.1" 200 \d+ "-" "a{3000}" \d+ '
                           rb'"/" "http://127\.0\.0\.1:\d+" [+X-]')
        torn = [line[:60] + line[-80:] for line in bytes(reader.received).split(b"\n")[:-1] if not whole.fullmatch(line)]
        assert not torn, f"{len(torn)} of 320 lines torn: {torn[:3]}"     # (parent: 2-12 torn, 12 runs of 13)
    finally:
        reader.close()
        proxy.stop()


def test_a_full_disk_said_on_a_stderr_that_stopped_reading_does_not_stop_the_worker(tmp_path, raw_backend):
    """`log.access` on a full disk and stderr a pipe whose reader stopped (the log shipper that
    stalls on the same full disk): the word on stderr about the lost lines must not wait for
    the reader; the requests are answered."""
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1,
                  log={"access": "/dev/full"})
    reader, writer = os.pipe()
    filler = os.open(f"/proc/self/fd/{writer}", os.O_WRONLY | os.O_NONBLOCK)   # O_NONBLOCK ours alone
    try:
        with pytest.raises(BlockingIOError):
            while True:
                os.write(filler, b"x" * 65536)
        proxy.write_config()
        proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
        proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
        proxy.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path],
                                      stdout=proxy.stdout, stderr=writer, cwd=ROOT)
        proxy.seen_pids.add(proxy.proc.pid)
        proxy.wait_ready()
        # Requests for 1.5 s, past the access log's first flush (ACCESS_FLUSH, 1 s, or an idle turn):
        # (parent: the flush failed, the word on stderr then held the worker in pipe_write)
        served, deadline = 0, time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert _keepalive_requests(proxy.port, 1, timeout=1.0, first=served) == 1, f"after {served} requests"
            served += 1
            time.sleep(0.05)             # a client's pace, so that the loop has idle turns
    finally:
        os.close(writer)
        os.close(filler)
        os.close(reader)
        proxy.stop()


def test_workers_sharing_journalds_socket_never_write_into_each_others_lines(tmp_path, raw_backend):
    """As the pipe test above, with stdout journald's stream socket (systemd's default for "-"):
    a send to it took as much as fitted and left the rest of a line for a later turn, and another
    worker's lines went in between (6 of 725 lines spliced, review 2026-12-04-logs #2).  Now a
    send is at most one of the kernel's socket buffers, which goes whole or not at all."""
    journald, stdout = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stdout.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=2)
    proxy.config["log"]["access"] = "-"
    received, stop = bytearray(), threading.Event()

    def read_slowly() -> None:          # a journald that falls behind: small reads, with pauses
        journald.settimeout(0.2)
        while not stop.is_set():
            try:
                received.extend(journald.recv(300))
            except TimeoutError:
                continue
            except OSError:
                return
            time.sleep(0.002)
    reader = threading.Thread(target=read_slowly)
    try:
        _start_with(proxy, stdout=stdout)
        stdout.close()
        reader.start()
        clients = [threading.Thread(target=_keepalive_requests, args=(proxy.port, 40),
                                    kwargs={"first": 40 * i, "agent": "a" * 150 * (i + 1)}) for i in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        wait_for(lambda: received.count(b"\n") >= 320, 15, 0.05, "the 320 lines")
        whole = re.compile(rb'127\.0\.0\.1 - - \[[^]]+\] "GET /logged/\d+ HTTP/1\.1" 200 \d+ "-" "a+" \d+ '
                           rb'"/" "http://127\.0\.0\.1:\d+" [+X-]')
        torn = [line[:60] + line[-80:] for line in bytes(received).split(b"\n")[:-1] if not whole.fullmatch(line)]
        assert not torn, f"{len(torn)} of 320 lines spliced: {torn[:3]}"
    finally:
        stop.set()
        if reader.is_alive():
            reader.join(5)
        journald.close()
        proxy.stop()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to make a stdout pipe the proxy may not reopen")
@pytest.mark.parametrize("kind", ["pipe", "fifo"])
def test_a_stdout_pipe_the_worker_may_not_reopen_never_blocks_it(tmp_path, raw_backend, kind):
    """A non-root process whose stdout pipe is root's (a container with a non-root USER) cannot
    reopen /proc/self/fd/1 (EACCES): the sink kept a blocking dup, and once the log reader
    stopped the worker slept in pipe_write: no client answered (review 2026-12-04-logs #1).
    Made here without a second user: the pipe is nobody's and the proxy runs as root without
    CAP_DAC_OVERRIDE, so the reopen fails as it would.  A named FIFO takes no RWF_NOWAIT (nor
    do pipes before Linux 6.4, nor a C library without pwritev2): polled for room instead
    (review 2026-12-04-today #1); never O_NONBLOCK on a description others share."""
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["access"] = "-"
    proxy.write_config()
    if kind == "pipe":
        read_end, write_end = os.pipe()
        os.fchown(write_end, 65534, 65534)
    else:
        fifo = str(tmp_path / "stdout.fifo")
        os.mkfifo(fifo, 0o600)
        os.chown(fifo, 65534, 65534)
        read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        write_end = os.open(fifo, os.O_WRONLY)
    proxy.stdout = open(os.devnull, "wb")      # (Proxy.stop closes both)
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable,
                                   "-m", "mpm", "start", "-c", proxy.config_path],
                                  stdout=write_end, stderr=proxy.stderr, cwd=ROOT)
    os.close(write_end)
    proxy.seen_pids.add(proxy.proc.pid)
    try:
        proxy.wait_ready()
        with open(f"/proc/{proxy.worker_pids()[0]}/fdinfo/1") as f:
            flags = int(f.read().split("flags:")[1].split()[0], 8)
        assert not flags & os.O_NONBLOCK, "the reopen worked, or O_NONBLOCK was set on the shared description"
        # Nobody reads: 64 KiB of 300-byte lines fill the pipe after ~220 (parent: no answer after 212).
        assert _keepalive_requests(proxy.port, 1500, agent="u" * 200) == 1500
        assert _keepalive_requests(proxy.port, 1, first=1500) == 1, "a new client is answered"
        with open(f"/proc/{proxy.worker_pids()[0]}/fdinfo/1") as f:
            assert not int(f.read().split("flags:")[1].split()[0], 8) & os.O_NONBLOCK, "the shared flag was set"
    finally:
        proxy.stop()
        os.close(read_end)


def test_the_count_of_lines_a_full_disk_lost_is_json_in_a_json_log(proxy_factory, raw_backend):
    """`log.format: json`: the "[N log lines dropped]" line was plain text, the one line of the
    file a JSON-lines reader could not parse (review 2026-12-04-logs #4).  The worker's file size
    limit (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) loses lines; then the file is
    emptied and the limit lifted."""
    proxy = proxy_factory([{"path": "/", "to": raw_backend.url + "/"}], workers=1, log={"format": "json"})
    pid = proxy.worker_pids()[0]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))
    assert _keepalive_requests(proxy.port, 40) == 40
    wait_for(lambda: "cannot write log" in proxy.stderr_text(), 5, 0.05, "the failure said on stderr")
    os.truncate(proxy.access_log, 0)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert _keepalive_requests(proxy.port, 3, first=100) == 3

    def records() -> list[dict]:
        with open(proxy.access_log, encoding="utf-8") as f:
            return [json.loads(line) for line in f]      # every line is JSON
    found = wait_for(lambda: (r := records()) and any("dropped" in x for x in r) and len(r) >= 4 and r, 5, 0.1,
                     "the lines after the recovery and the count")
    marker = next(x for x in found if "dropped" in x)
    assert marker["dropped"] > 0 and "File too large" in marker["reason"], marker

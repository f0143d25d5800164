"""Operating faults a review found (each test failed before 486e18b / df37a20).

- a reload whose `log.access` is a FIFO nobody reads yet (a log shipper's pipe, restarting)
  leaves a worker serving: requests are answered 200 after the reload, the worker says once on
  stderr that it cannot open the log, and once a reader opens the FIFO the access lines arrive
  (the open is tried again every 5 s), followed by a count of the lines dropped meanwhile;
- a pidfile a crash left behind whose pid now belongs to another program (here a `sleep`) is
  not an mpm master: `mpmctl reload` and `mpmctl stop` say "not running" and leave that
  program alone, and `mpmctl start` starts a real master over the pidfile;
- behind a trusted proxy, an X-Forwarded-For hop with an IPv6 scope ("fe80::1%<anything>",
  spaces and quotes included) does not name the client: the access log's first field is the
  proxy's own address, with none of the client's text injected.

Everything runs for real on loopback: a master started through the CLI (`python -m mpm`, from
the checkout under test), an h11 backend, raw-socket clients; every wait has a deadline."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

import psutil
import pytest
from proxyproc import Proxy, wait_access
from rawsock import get_status
from support import wait_for


def _get(proxy, path: str = "/", headers: str = "") -> int | str:
    return get_status(proxy, path, headers, timeout=3)


# == 1. a log target that will not open at worker start ========================================

def _reload_to_fifo(proxy_factory, http_backend) -> tuple[Proxy, str]:
    """A proxy serving with a regular access log, reloaded to a FIFO that has no reader: the
    new generation's worker is up and generation 1 has gone.  (proxy, FIFO path)."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    assert _get(proxy, "/before") == 200
    fifo = os.path.join(proxy.dir, "access.fifo")
    os.mkfifo(fifo)
    proxy.config["log"]["access"] = fifo
    proxy.write_config()
    result = proxy.reload()
    assert result.returncode == 0, result.stderr
    try:
        proxy.wait_ready(generation=2, timeout=10)
    except AssertionError:
        said = [line for line in proxy.error_text().splitlines() if "Errno" in line or "crash-looping" in line]
        raise AssertionError("no worker of generation 2 came up after a reload to an access log that is a "
                             "FIFO with no reader; the error log says:\n" + "\n".join(said[-4:])) from None
    wait_for(lambda: all(w["generation"] == 2 for w in proxy.status()["workers"]), 10, 0.1,
             "generation 1 to be retired")
    return proxy, fifo


@pytest.mark.timeout(40)
def test_reload_to_a_fifo_without_reader_keeps_serving(proxy_factory, http_backend):
    """An operator points `log.access` at a log shipper's pipe and reloads while the shipper
    is not reading: the site stays up, and stderr says why no access lines are written."""
    proxy, fifo = _reload_to_fifo(proxy_factory, http_backend)
    worker = proxy.worker_pids()[0]
    statuses = [_get(proxy, f"/after/{n}") for n in range(5)]
    assert statuses == [200] * 5, f"requests after the reload to a FIFO access log with no reader: {statuses}"
    assert proxy.worker_pids() == [worker], "the worker did not survive serving with its log unopenable"
    said = re.findall(rf"mpm worker {worker}: cannot open log {re.escape(fifo)}: .*", proxy.stderr_text())
    assert len(said) == 1, f"what worker {worker} said on stderr about its log: {said}"


@pytest.mark.timeout(40)
def test_access_lines_arrive_once_the_fifo_has_a_reader(proxy_factory, http_backend):
    """The log shipper starts reading the pipe after the reload: from then on, within the 5 s
    retry, the access lines arrive, and the lines lost before are counted, not silently lost."""
    proxy, fifo = _reload_to_fifo(proxy_factory, http_backend)
    assert [_get(proxy, f"/unread/{n}") for n in range(2)] == [200, 200]
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = b""
    try:
        deadline, n = time.monotonic() + 12, 0
        while time.monotonic() < deadline and not (b"/read/" in received and b"log lines dropped" in received):
            if b"/read/" not in received:
                n += 1
                assert _get(proxy, f"/read/{n}") == 200
            readable, _, _ = select.select([reader], [], [], 0.25)
            if readable:
                try:
                    received += os.read(reader, 65536)
                except BlockingIOError:
                    pass
    finally:
        os.close(reader)
    text = received.decode(errors="replace")
    assert re.search(r'"GET /read/\d+ HTTP/1.1" 200', text), \
        f"no access line through the FIFO within 12 s of a reader opening it; it carried {text!r}"
    assert re.search(r"\[\d+ log lines dropped", text), f"the lines dropped meanwhile are not counted: {text!r}"
    assert "/unread/" not in text


@pytest.mark.timeout(40)
def test_a_reload_to_an_error_log_fifo_without_reader_leaves_the_master_answering(proxy_factory, http_backend):
    """Review 2026-12-03-reload #2: the master opened `log.error` with a blocking open, which
    for a FIFO nobody reads waits for a reader: after the new generation had forked, the
    master hung for good (no control socket, no respawn, no stop but SIGKILL).  It opens it as
    the workers do now: its lines are dropped until a reader comes, and stderr says so."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    fifo = os.path.join(proxy.dir, "error.fifo")
    os.mkfifo(fifo)
    proxy.config["log"]["error"] = fifo
    proxy.write_config()
    started = time.monotonic()
    result = proxy.reload()
    assert result.returncode == 0 and "reloaded: generation 2" in result.stdout, result
    assert time.monotonic() - started < 10
    proxy.wait_ready(generation=2, timeout=10)
    worker = proxy.worker_pids()[0]
    os.kill(worker, signal.SIGKILL)           # the master reaps and respawns: its loop runs
    wait_for(lambda: (pids := proxy.worker_pids()) and pids != [worker], 10, 0.1, "a worker respawned")
    assert _get(proxy, "/after") == 200
    assert re.search(rf"mpm master {proxy.proc.pid}: cannot open log {re.escape(fifo)}: ", proxy.stderr_text())


# == 2. a stale pidfile naming another program =================================================

@pytest.mark.timeout(40)
def test_a_pidfile_naming_an_unrelated_process_is_neither_respected_nor_signalled(proxy_factory, http_backend):
    """After a crash the pidfile's pid may belong to another program by the time the service is
    started again: mpmctl must not signal it, and must start the proxy anyway."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False)
    proxy.write_config()
    pidfile = os.path.join(proxy.dir, "run", "mpm.pid")
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        with open(pidfile, "w") as f:
            f.write(f"{stranger.pid}\n")
        for verb in ("reload", "stop"):
            result = proxy.mpmctl(verb)
            time.sleep(0.3)      # a signal sent would have landed
            assert stranger.poll() is None, \
                f"`mpmctl {verb}` signalled the unrelated pid {stranger.pid} in the pidfile " \
                f"(it exited {stranger.returncode}; mpmctl exited {result.returncode}: {result.stdout}{result.stderr})"
            assert result.returncode == 3 and "not running" in result.stderr, (verb, result)
        try:
            proxy.start()
        except AssertionError as exc:
            raise AssertionError(f"`mpmctl start` over a pidfile naming a `sleep`: {exc}") from None
        assert int(open(pidfile).read()) == proxy.proc.pid
        assert "mpm" in " ".join(psutil.Process(proxy.proc.pid).cmdline())
        assert _get(proxy, "/") == 200
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation=2)
        assert _get(proxy, "/") == 200
        assert stranger.poll() is None, f"the unrelated pid {stranger.pid} exited ({stranger.returncode})"
    finally:
        if stranger.poll() is None:
            os.kill(stranger.pid, signal.SIGKILL)
        stranger.wait(5)


# == 3. X-Forwarded-For with an IPv6 scope ====================================================

# A whole forged combined-format line after the scope; no "/" or "%" in it, which the address
# parser refuses in a scope.
FORGED = 'fe80::1%x - - [01-Jan-2000:00:00:00 +0000] "DELETE forged-entry HTTP-1.1" 200 1 "-" "-" 1 "-" "-" -'


@pytest.mark.timeout(30)
def test_a_forwarded_hop_with_an_ipv6_scope_does_not_name_the_client(proxy_factory, http_backend):
    """A client behind a trusted proxy picks its X-Forwarded-For: the access log's first field
    must still be an address, never the client's text (spaces, quotes, a whole forged line)."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"trusted_proxies": ["127.0.0.0/8"], "per_client": {"connections": 100}})
    assert _get(proxy, "/plain-hop", "X-Forwarded-For: 203.0.113.7\r\n") == 200
    assert _get(proxy, "/scoped-hop", f"X-Forwarded-For: {FORGED}\r\n") == 200
    assert _get(proxy, "/short-scope", "X-Forwarded-For: fe80::1%eth0\r\n") == 200
    plain = wait_access(proxy, "/plain-hop")
    assert len(plain) == 1 and plain[0].split(" ", 1)[0] == "203.0.113.7", plain     # the trust holds
    for marker in ("/scoped-hop", "/short-scope"):
        lines = wait_access(proxy, marker)
        assert len(lines) == 1, (marker, proxy.access_lines())
        assert lines[0].split(" ", 1)[0] == "127.0.0.1", \
            f"the first field of the access line of {marker}, whose X-Forwarded-For has a scope: {lines[0]!r}"
    log = "\n".join(proxy.access_lines())
    assert "forged-entry" not in log and "fe80" not in log and "01-Jan-2000" not in log, log

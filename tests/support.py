"""The smallest helpers every test module uses: where the repository is, a free port,
and polling for a condition with a deadline."""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import time

import trustme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_handed_out: set[int] = set()
_pick = random.SystemRandom()       # not the random module's state, which hypothesis seeds in its tests


def _below_ephemeral() -> range | None:
    """Ports just under the kernel's ephemeral range (net.ipv4.ip_local_port_range), or None when
    there is no room there.  The kernel takes the local port of every outgoing connection from
    that range, as it takes bind(0)'s."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(max(1024, low - 12000), low) if low - 12000 >= 1024 else None


_SPAN = _below_ephemeral()


def free_port(udp: bool = False) -> int:
    """A port the OS says is free and this test process has not handed out before: the OS
    may offer a port again as soon as its probe socket closes, so two calls for one
    config (a data listener and the admin listener, say) could otherwise get the same one.
    Taken below the ephemeral range where there is room: a port from bind(0) is free only until
    its probe closes, and until the master binds it any outgoing connection on the machine (the
    tests make thousands) may take it as its local port (CI 2026-12-06: "cannot bind listen
    127.0.0.1:48139: Address already in use").  `udp`: free for UDP too (a DNS server's)."""
    while True:
        with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                s.bind(("127.0.0.1", _pick.choice(_SPAN) if _SPAN is not None else 0))
                port = s.getsockname()[1]
                if udp:
                    probe.bind(("127.0.0.1", port))
            except OSError:
                continue        # in use: another one
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns something true (returned) or `timeout` runs out (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not): a process may exit between the
    open and the read of its /proc file, which then raises ESRCH, so both count as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, `timeout` seconds for a graceful exit, then SIGKILL: how every server a test
    starts (mpm, Apache, HAProxy) is stopped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cert_files(ca, directory, *names: str) -> tuple[str, str]:
    """A certificate for `names` issued by `ca` (a trustme.CA), written to `directory`:
    (certificate path, key path)."""
    cert = ca.issue_cert(*names)
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    return cert_path, key_path


def serve_tls(proxy, directory) -> None:
    """Make `proxy` (a proxyproc.Proxy, not started) listen with TLS, and its `connect` give a
    TLS client that trusts it (`wrap` makes one of a connected socket): what a test runs over
    its connections then runs over TLS."""
    ca = trustme.CA()
    cert, key = cert_files(ca, str(directory), "localhost", "127.0.0.1")
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert, "key": key}}]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    plain = proxy.connect

    def wrap(sock: socket.socket) -> ssl.SSLSocket:
        return context.wrap_socket(sock, server_hostname="localhost")

    def connect(timeout: float = 5.0, source: str | None = None) -> ssl.SSLSocket:
        return wrap(plain(timeout, source))
    proxy.connect, proxy.wrap = connect, wrap


def handshake_in_memory(sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                        outgoing: ssl.MemoryBIO) -> None:
    """Drive `tls` (an SSLObject on memory BIOs, `context.wrap_bio`) through its handshake over
    `sock`: what it writes is sent, what comes is fed to it.  Its records after the handshake are
    the caller's to send, all at once if it likes (one segment: one read takes them all).
    `incoming` and `outgoing` are the BIOs it was made with."""
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)

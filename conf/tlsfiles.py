"""Checks on certificate, key and CA files, done before anything starts.

A listener's TLS context is built in the master (or in each worker), long after the
operator ran `configtest`; a missing file, a cert/key pair that do not belong
together, or a key that wants a passphrase must fail here instead, with a line
number.  Each check returns None when fine, else the message.
"""

from __future__ import annotations

import os
import ssl
import stat

from . import openssl
from .fields import Section, path_problem
from .model import BackendTLS, TLSSettings
from .yamlnodes import Scalar, Seq

BACKEND_TLS_KEYS = ("verify", "ca", "server_name")


def unreadable(path: str) -> str | None:
    """Why `path` cannot be read, or None.  Only a regular file will do: opening a FIFO waits
    for a writer (configtest, or the master in a reload, would hang there for good), and
    OpenSSL reads a device until it ends."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return f"'{path}' is not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read '{path}': {exc.strerror or exc}"


def cert_key_problem(cert: str, key: str) -> str | None:
    """Load the pair the way a server context will; None when they load and match."""
    asked_for_passphrase = []

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal and hang a daemon.
        asked_for_passphrase.append(True)
        return b""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        if asked_for_passphrase:
            return f"private key '{key}' is encrypted; use a key without a passphrase"
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"certificate and key do not match: '{cert}' and '{key}'"
        return f"cannot load certificate '{cert}' with key '{key}': {_reason(exc)}"
    except OSError as exc:
        return f"cannot load certificate '{cert}' with key '{key}': {exc.strerror or exc}"
    return None


def ca_problem(path: str) -> str | None:
    """None when `path` holds at least one usable CA certificate (PEM)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        return f"cannot load CA certificates from '{path}': {_reason(exc)}"
    if not context.cert_store_stats()["x509"]:
        return f"no CA certificates found in '{path}'"
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    return getattr(exc, "strerror", None) or str(exc)


def backend_tls(sec: Section) -> BackendTLS | None:
    """SSLProxyEngine settings from the `tls:` mapping beside a backend URL (a route's, a
    member's, a discover section's), or None when there is none."""
    tls = sec.mapping("tls", sec.name("tls"), BACKEND_TLS_KEYS)
    if tls is None:
        return None
    ca = tls.path("ca", None)
    if ca is not None:
        problem = unreadable(ca) or ca_problem(ca)
        if problem:
            tls.error("ca", f"{tls.name('ca')}: {problem}")
    verify = tls.boolean("verify", True)
    return BackendTLS(verify=True if verify is None else verify, ca=ca, server_name=tls.string("server_name"))


def tls_settings(sec: Section) -> TLSSettings:
    """The `tls:` section: `ticket_key_rotation` (seconds, 0 = never), `session_ticket_key`
    (nginx's ssl_session_ticket_key: a file or a list of files of 48 or 80 random bytes, the
    first encrypting; then nothing rotates on its own), `ciphersuites` (TLS 1.3, OpenSSL's
    syntax, in the server's order) and `session_timeout` (seconds a session resumes)."""
    d = TLSSettings()
    rotation = sec.number("ticket_key_rotation", d.ticket_key_rotation, positive=False)
    session_timeout = sec.number("session_timeout", d.session_timeout)
    if session_timeout is not None and not 1 <= session_timeout <= 604800:
        # RFC 8446 §4.6.1: a ticket's lifetime is at most seven days
        sec.error("session_timeout", "tls.session_timeout must be 1 to 604800 seconds (seven days)")
    files, keys = [], []
    node = sec.raw("session_ticket_key")
    items = node.items if isinstance(node, Seq) else [node] if node is not None else []
    for item in items:
        if not isinstance(item, Scalar) or not isinstance(item.value, str) or not item.value.strip():
            sec.errors.add(item.line, "tls.session_ticket_key must be a file path or a list of file paths")
            continue
        if path_problem(item.value):
            sec.errors.add(item.line, f"tls.session_ticket_key {path_problem(item.value)}")
            continue
        path = os.path.normpath(os.path.join(sec.errors.base_dir, os.path.expanduser(item.value)))
        problem, raw = _ticket_key_file(path)
        if problem:
            sec.errors.add(item.line, f"tls.session_ticket_key: {problem}")
        elif raw[:openssl.KEY_NAME] in (key[:openssl.KEY_NAME] for key in keys):
            sec.errors.add(item.line, f"tls.session_ticket_key: '{path}' has the same key name as another file")
        else:
            files.append(path)
            keys.append(raw)
    if keys and openssl.available():
        sec.error("session_ticket_key", f"tls.session_ticket_key cannot be used here: {openssl.available()}")
    if len(keys) > 8:
        sec.error("session_ticket_key", "tls.session_ticket_key: at most 8 key files")
    suites = sec.string("ciphersuites", d.ciphersuites)
    if "ciphersuites" in sec and suites is not None:
        problem = openssl.available() or _suites_problem(suites)
        if problem:
            sec.error("ciphersuites", f"tls.ciphersuites: {problem}")
    return TLSSettings(d.ticket_key_rotation if rotation is None else rotation, tuple(files), tuple(keys),
                       suites or d.ciphersuites, d.session_timeout if session_timeout is None else session_timeout)


def _suites_problem(suites: str) -> str | None:
    try:
        openssl.set_tls13_ciphersuites(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), suites)
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def _ticket_key_file(path: str) -> tuple[str | None, bytes]:
    problem = unreadable(path)
    if problem:
        return problem, b""
    try:
        with open(path, "rb") as f:
            raw = f.read(openssl.KEY_SIZES[-1] + 1)
    except OSError as exc:
        return f"cannot read '{path}': {exc.strerror or exc}", b""
    if len(raw) not in openssl.KEY_SIZES:
        return (f"'{path}' must hold 48 or 80 bytes (e.g. `openssl rand 80 > {os.path.basename(path)}`), "
                f"not {len(raw)}{'+' if len(raw) > openssl.KEY_SIZES[-1] else ''}"), b""
    return None, raw

"""Checks on certificate, key and CA files, done before anything starts.

A listener's TLS context is built in the master (or in each worker), long after the
operator ran `configtest`; a missing file, a cert/key pair that do not belong
together, or a key that wants a passphrase must fail here instead, with a line
number.  Each check returns None when fine, else the message.
"""

from __future__ import annotations

import ssl

from .fields import Section
from .model import BackendTLS

BACKEND_TLS_KEYS = ("verify", "ca", "server_name")


def unreadable(path: str) -> str | None:
    """Why `path` cannot be read, or None."""
    try:
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

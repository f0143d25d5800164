"""The few OpenSSL calls that Python's `ssl` module does not offer, reached with ctypes.

Why: a TLS session should resume on whichever worker, generation or master a client
reaches next, so every one of them must decrypt the tickets every other one issued (for
TLS 1.3 and TLS 1.2 alike, tickets are how resumption works without a shared cache).
OpenSSL makes a random ticket key per SSL_CTX; CPython has no API to set it, nor a
ticket-key callback (`SSLContext.num_tickets` and `SSLSocket.session_reused` are all it
offers).  What was weighed (issue #20):

  - `SSL_CTX_set_tlsext_ticket_keys` (one key, built into OpenSSL): cheapest, but then
    a rotated-out key is rejected at once, and the spec wants the previous key accepted
    for one more period;
  - a shared server-side session cache (`SSL_CTX_sess_set_new_cb`/`get_cb`): a callback
    per handshake as well, a store to size and lock across processes, and it still
    would not serve TLS 1.3 clients, which resume with tickets;
  - `SSL_CTX_set_tlsext_ticket_key_evp_cb` (what nginx, HAProxy and Envoy do): OpenSSL
    asks us for the key to encrypt a new ticket with and for the key a presented ticket
    names, so any number of keys can be current or still accepted.  Chosen.  Measured
    here: the callback, written in Python, adds 6-13 µs to a handshake of 200-300 µs
    (ECDSA P-256, in-memory handshakes), about 3 %; callgrind counts about 78,000
    instructions for its two calls per resumed TLS 1.3 connection (ctypes takes the GIL
    back and converts six arguments, then makes four foreign calls).  So the same callback
    is also written in C (`conf/_tickets.c`, built at install when a compiler is there),
    reading the keys straight from the shared table; the Python one below stays the
    reference, and serves where nothing was compiled.

The SSL_CTX* of an `ssl.SSLContext` is the first field after the object header in
CPython's `PySSLContext` (3.10-3.13).  Reading it is checked, not trusted: the pointer
must give back the context's own options and minimum version through OpenSSL before
anything is set on it, and the libssl used is the one `_ssl` itself is linked against
(dlsym through `_ssl`'s handle).  When any of that fails, `available()` says why and
callers keep OpenSSL's own behaviour (a random key per context).

Also here: the TLS 1.3 cipher suites, which `SSLContext.set_ciphers` does not reach.  The
default puts TLS_AES_128_GCM_SHA256 first, in the order of Mozilla's "intermediate"
configuration, BoringSSL and Go (OpenSSL's own puts AES-256-GCM-SHA384 first): its key
schedule runs on SHA-256, and a resumed TLS 1.3 handshake measured 345-359 µs of server
CPU with AES-256-GCM-SHA384 against 270-281 µs with it (in-memory handshakes, ECDSA P-256).
And the session-id context (so a session issued by one listener cannot be resumed
on another, e.g. one that requires client certificates: CPython gives every context the
same "Python" id) and the server-side session cache mode (nginx's default `ssl_session_cache
none`: with tickets the cache only costs a store per handshake and a periodic sweep).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import ssl

from conf.model import TLS13_CIPHERSUITES as TLS13_CIPHERSUITES  # the default order

KEY_NAME = 16                     # bytes of a ticket key's name (what a ticket carries in clear)
KEY_SIZES = (48, 80)              # nginx's key files: name + HMAC + AES-128, or name + HMAC + AES-256

_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_CTRL_GET_MIN_PROTO_VERSION = 130
SESS_CACHE_SERVER_NO_STORE = 0x0002 | 0x0080 | 0x0200   # SERVER | NO_AUTO_CLEAR | NO_INTERNAL_STORE
_OSSL_PARAM_UTF8_STRING = 4
_OSSL_PARAM_OCTET_STRING = 5
_UNMODIFIED = ctypes.c_size_t(-1).value
_IV_LENGTH = 16
_TLS1_3_VERSION = 0x0304

_c_void_p, _c_int, _c_long = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
TicketCallback = ctypes.CFUNCTYPE(_c_int, _c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_int)


class _Param(ctypes.Structure):
    """OSSL_PARAM: how an EVP_MAC_CTX is given its digest and key."""
    _fields_ = [("key", ctypes.c_char_p), ("data_type", ctypes.c_uint), ("data", _c_void_p),
                ("data_size", ctypes.c_size_t), ("return_size", ctypes.c_size_t)]


def _load():
    """(library handle, None) or (None, why not)."""
    try:
        import _ssl
        lib = ctypes.CDLL(_ssl.__file__)     # its handle resolves through the libssl it links
        lib.SSL_CTX_ctrl.argtypes = [_c_void_p, _c_int, _c_long, _c_void_p]
        lib.SSL_CTX_ctrl.restype = _c_long
        lib.SSL_CTX_get_options.argtypes = [_c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_set_session_id_context.argtypes = [_c_void_p, ctypes.c_char_p, ctypes.c_uint]
        lib.SSL_CTX_set_tlsext_ticket_key_evp_cb.argtypes = [_c_void_p, TicketCallback]
        for name in ("EVP_aes_128_cbc", "EVP_aes_256_cbc"):
            getattr(lib, name).restype = _c_void_p
        lib.EVP_CIPHER_fetch.argtypes = [_c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.EVP_CIPHER_fetch.restype = _c_void_p
        for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
            getattr(lib, name).argtypes = [_c_void_p] * 5
        lib.EVP_MAC_CTX_set_params.argtypes = [_c_void_p, _c_void_p]
        lib.SSL_version.argtypes = [_c_void_p]
        lib.SSL_CTX_set_ciphersuites.argtypes = [_c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_set_timeout.argtypes = [_c_void_p, _c_long]
        lib.SSL_CTX_set_timeout.restype = _c_long
        lib.RAND_bytes.argtypes = [_c_void_p, _c_int]
    except (ImportError, OSError, AttributeError) as exc:
        return None, f"OpenSSL's ticket-key callback cannot be reached: {exc}"
    return lib, None


_lib, _why_not = _load()
try:
    from conf import _tickets  # the ticket callback in C (conf/_tickets.c), when it was built
except ImportError:
    _tickets = None


def available() -> str | None:
    """None when ticket keys can be set; else why not."""
    return _why_not


def ssl_ctx(context: ssl.SSLContext) -> int:
    """The SSL_CTX* behind `context`, checked against what the context says of itself."""
    if _lib is None:
        raise OSError(_why_not)
    pointer = _c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise OSError("no SSL_CTX found in the SSLContext object")
    options = _lib.SSL_CTX_get_options(pointer)
    minimum = _lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_GET_MIN_PROTO_VERSION, 0, None)
    if options != int(context.options) or minimum != max(int(context.minimum_version), 0):
        raise OSError("the SSLContext object is not laid out as expected")
    return pointer


def isolate(context: ssl.SSLContext, identity: bytes) -> None:
    """Session-id context from `identity` (a listener's address and files), and no
    server-side session store: sessions resume through tickets."""
    pointer = ssl_ctx(context)
    sid = hashlib.sha256(identity).digest()       # SSL_MAX_SID_CTX_LENGTH is 32
    if _lib.SSL_CTX_set_session_id_context(pointer, sid, len(sid)) != 1:
        raise OSError("SSL_CTX_set_session_id_context failed")
    _lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_SESS_CACHE_MODE, SESS_CACHE_SERVER_NO_STORE, None)


def set_session_timeout(context: ssl.SSLContext, seconds: float) -> None:
    """How long a session resumes: the lifetime of its tickets, told to the client as their
    hint too.  OpenSSL's default is 7200 s; nginx (ssl_session_timeout), Apache
    (SSLSessionCacheTimeout) and HAProxy (tune.ssl.lifetime) all use 300 s, so that a session,
    and the verdict on a client certificate it carries, does not outlive them by two hours."""
    _lib.SSL_CTX_set_timeout(ssl_ctx(context), max(1, int(seconds)))


def set_tls13_ciphersuites(context: ssl.SSLContext, suites: str) -> None:
    """The TLS 1.3 suites `context` offers, in the server's order of preference."""
    if _lib.SSL_CTX_set_ciphersuites(ssl_ctx(context), suites.encode()) != 1:
        raise ValueError(f"OpenSSL accepts none of these TLS 1.3 cipher suites: '{suites}'")


class TicketKey:
    """One key as nginx's `ssl_session_ticket_key` files hold it: 16 bytes of name, then
    the HMAC-SHA256 secret and the AES-CBC key (16 each in a 48-byte key, 32 in an 80)."""

    __slots__ = ("raw", "name", "aes", "cipher", "params", "_keep")

    def __init__(self, raw: bytes):
        if len(raw) not in KEY_SIZES:
            raise ValueError(f"a ticket key is 48 or 80 bytes, not {len(raw)}")
        half = (len(raw) - KEY_NAME) // 2
        self.raw = raw
        self.name = raw[:KEY_NAME]
        hmac = ctypes.create_string_buffer(raw[KEY_NAME:KEY_NAME + half], half)
        self.aes = raw[KEY_NAME + half:]
        self.cipher = ticket_ciphers()[half == 32] if _lib else None
        digest = ctypes.create_string_buffer(b"SHA256")
        params = (_Param * 3)()
        params[0] = _Param(b"key", _OSSL_PARAM_OCTET_STRING, ctypes.addressof(hmac), half, _UNMODIFIED)
        params[1] = _Param(b"digest", _OSSL_PARAM_UTF8_STRING, ctypes.addressof(digest), 6, _UNMODIFIED)
        self._keep = (hmac, digest, params)       # the buffers OpenSSL reads at every use
        self.params = ctypes.addressof(params)


def install_ticket_keys(context: ssl.SSLContext, source) -> None:
    """Let `source` decide the ticket keys of `context`.  `source.current()` returns
    (version, [TicketKey, ...]): the first encrypts new tickets, every one decrypts; it is
    asked at every ticket, so it must answer from memory (a version check, a list).

    A shared key table (shm.ticketkeys.TicketKeyRing) is read by the callback in C
    (`conf._tickets`, built at install when a compiler is there); else by the one below."""
    pointer = ssl_ctx(context)
    if callback_language(source) == "C":
        _tickets.install(pointer, source.address("seq"), source.address("count"), source.address("sizes"),
                         source.address("material"), source.key_bytes, source.slots, _functions())
        return
    callback = TicketCallback(_ticket_callback(source))
    if _lib.SSL_CTX_set_tlsext_ticket_key_evp_cb(pointer, callback) != 1:
        raise OSError("SSL_CTX_set_tlsext_ticket_key_evp_cb failed")
    context._mpm_ticket_callback = callback      # it lives as long as the context


def callback_language(source) -> str:
    """"C" when the ticket callback for `source` is conf._tickets, else "Python".
    MPM_TICKETS_IN_PYTHON=1 keeps the Python one (the reference; the tests run both)."""
    if _tickets is None or os.environ.get("MPM_TICKETS_IN_PYTHON") or not hasattr(source, "address"):
        return "Python"
    return "C"


def _functions() -> tuple:
    """The OpenSSL functions conf._tickets calls, as addresses in the libssl `_ssl` uses."""
    lib = _lib
    addresses = [ctypes.cast(getattr(lib, name), _c_void_p).value for name in (
        "RAND_bytes", "EVP_EncryptInit_ex", "EVP_DecryptInit_ex", "EVP_MAC_CTX_set_params", "SSL_version",
        "SSL_CTX_set_tlsext_ticket_key_evp_cb")]
    return (*addresses, *ticket_ciphers())


_ciphers: tuple = ()


def ticket_ciphers() -> tuple:
    """(AES-128-CBC, AES-256-CBC) for the ticket callbacks, fetched from OpenSSL's provider once.
    `EVP_aes_256_cbc()` names a legacy cipher, which `EVP_EncryptInit_ex` looks up among the
    providers again at every ticket (a name lookup under a lock); nginx's tickets pay that too.
    Fetched once: 2,518,143 -> 2,508,110 instructions per resumed TLS connection (bench.instructions).
    The legacy ones where a fetch fails (no provider has the cipher: then neither would work)."""
    global _ciphers
    if not _ciphers:
        fetched = tuple(_lib.EVP_CIPHER_fetch(None, name, None) for name in (b"AES-128-CBC", b"AES-256-CBC"))
        _ciphers = fetched if all(fetched) else (_lib.EVP_aes_128_cbc(), _lib.EVP_aes_256_cbc())
    return _ciphers


def _ticket_callback(source):
    """The function OpenSSL calls (with the GIL taken back) for every ticket it issues
    (enc=1) or is shown (enc=0); returns 1 (done), 2 (done, and issue a fresh ticket),
    0 (unknown key: full handshake), -1 (error).

    A fresh ticket follows every TLS 1.3 resumption, as OpenSSL does with its own key (TLS
    1.3 clients use a ticket once), and a TLS 1.2 one whose key is no longer current.  Not
    renewing after a TLS 1.3 resumption also costs a client that leaves Nagle on 40 ms:
    the new ticket is what acknowledges its Finished at once, so its request goes out."""
    lib = _lib
    encrypt_init, decrypt_init = lib.EVP_EncryptInit_ex, lib.EVP_DecryptInit_ex
    set_params, random_bytes, version_of = lib.EVP_MAC_CTX_set_params, lib.RAND_bytes, lib.SSL_version
    memmove, string_at = ctypes.memmove, ctypes.string_at
    seen = {"version": None, "keys": [], "by_name": {}}

    def keys():
        version, current = source.current()
        if version != seen["version"]:
            seen.update(version=version, keys=current, by_name={key.name: key for key in current})
        return seen["keys"], seen["by_name"]

    def callback(_ssl, name, iv, cipher_ctx, mac_ctx, enc):
        try:
            current, by_name = keys()
            if enc:
                if not current:
                    return 0                                  # no key: issue no ticket
                key = current[0]
                if random_bytes(iv, _IV_LENGTH) != 1:
                    return -1
                memmove(name, key.name, KEY_NAME)
                if encrypt_init(cipher_ctx, key.cipher, None, key.aes, iv) != 1:
                    return -1
                return 1 if set_params(mac_ctx, key.params) == 1 else -1
            key = by_name.get(string_at(name, KEY_NAME))
            if key is None:
                return 0
            if set_params(mac_ctx, key.params) != 1 or decrypt_init(cipher_ctx, key.cipher, None, key.aes, iv) != 1:
                return -1
            return 1 if key is current[0] and version_of(_ssl) != _TLS1_3_VERSION else 2
        except Exception:   # noqa: BLE001 - an exception must not unwind through OpenSSL's C frames
            return -1

    return callback

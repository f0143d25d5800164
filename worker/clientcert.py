"""Who a verified client certificate names, told to the backend (mod_ssl's SSL_CLIENT_*).

A listener with `tls.client_ca` admits only clients whose certificate that CA signed; the
backend behind it then needs to know which client it serves.  Apache says so with
`RequestHeader set X-SSL-Client-S-DN "%{SSL_CLIENT_S_DN}s"` (and -I-DN, -M-SERIAL, -VERIFY),
nginx with `proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn`, HAProxy with
`http-request set-header ... %[ssl_c_s_dn]`.  Here every request such a connection carries
gets these four lines, made once per connection (a connection has one certificate):

    X-SSL-Client-Verify: SUCCESS
    X-SSL-Client-S-DN: CN=alice,OU=staff,O=Example       (RFC 4514 / 2253, as mod_ssl's
    X-SSL-Client-I-DN: CN=Example Client CA,O=Example      and nginx's: most specific first)
    X-SSL-Client-Serial: 6415...F923                       (hex, as SSL_CLIENT_M_SERIAL)

A backend may trust them only if no client can write them itself: so once a listener has
client_ca, the X-SSL-Client-* fields a client sends are dropped on every listener, plain ones
too (a backend behind both would take a client's for ours), unless the peer is one of
`limits.trusted_proxies` (a TLS terminator in front, whose fields describe its own client;
then none of ours are added either).  Without such a listener nothing is done, as nginx and
Apache do nothing unasked.  Which is decided once per connection (`head_writer`): a look at
every request's fields cost 1,000-3,400 instructions of the ~157,000 an S1 request costs (a
test in `request_head`, or a name pattern in the head scan), and the usual request now pays
none of them (callgrind: 156,558 against 156,328-156,497 before; bench/RESULTS-2026-12-03-night2.md).

The strings are escaped as OpenSSL's XN_FLAG_RFC2253 does (nginx's $ssl_client_s_dn):
RFC 4514's specials with a backslash, and every byte outside printable ASCII (a control
character, UTF-8) as \\XX, so a header line never holds a CR, LF or non-ASCII byte whatever a
certificate says.  mod_ssl prints the same but for UTF-8, which it sends as it is
(XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB): a backend's framework may read header bytes as
Latin-1, and an escape means one thing to all of them.
"""

from __future__ import annotations

import re

from worker.dernames import der_names
from worker.framing import CLIENT_CERT_FIELD
from worker.rewrite import request_head

# Python's ssl gives OpenSSL's long names; RFC 4514 (§3) and OpenSSL's RFC 2253 output use
# the short ones.  A name missing here is printed as Python gives it: OpenSSL's long name, the
# same as its short one for every other name of RFC 5280 and the CA/B Forum's EV guidelines
# (checked against `openssl x509 -nameopt RFC2253`).  An OID OpenSSL does not know comes
# dotted, and its value is printed from the certificate's DER (`_dumped`).
_SHORT = {
    "commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "street",
    "domainComponent": "DC", "userId": "UID", "surname": "SN", "givenName": "GN",
    "jurisdictionCountryName": "jurisdictionC", "jurisdictionStateOrProvinceName": "jurisdictionST",
    "jurisdictionLocalityName": "jurisdictionL",        # EV certificates' (review 2026-12-04 #4)
}
_SPECIAL = frozenset(',+"\\<>;')
_NEEDS_ESCAPE = re.compile(r'[,+"\\<>;\x00-\x1f\x7f-\U0010ffff]|^[ #]| $')
# A client's own X-SSL-Client-* lines (X_SSL_Client_* too), in a head `request_head` wrote
# (ours go in after).  In a trailer section they are refused (worker.framing).
_CLIENT_OWN = re.compile(rb"\r\n" + CLIENT_CERT_FIELD.pattern + rb"[^\r]*", re.IGNORECASE)


def head_writer(worker, sock, tls: bool, trusted: bool):
    """How a new client connection's request heads are written for the backend: as
    `worker.rewrite.request_head` writes them when a client's X-SSL-Client-* fields stay (no
    listener of ours has client_ca, or a trusted proxy sent them), else with those fields
    replaced by its certificate's (none without one).  The exchange calls what the
    connection holds where it called the global function: no test per request."""
    if not worker.client_certs or trusted:
        return request_head
    return IdentityHead(identity_lines(sock) if tls else b"")


class IdentityHead:
    """`request_head` for a connection whose client certificate the backend is told of."""

    __slots__ = ("lines",)

    def __init__(self, lines: bytes) -> None:
        self.lines = lines          # identity_lines(): b"" for a connection without a certificate

    def __call__(self, head, target: bytes, host_line: bytes, xff_line: bytes, proto_line: bytes,
                 upgrade: bytes | None, trusted: bool = False) -> bytes:
        out = _CLIENT_OWN.sub(b"", request_head(head, target, host_line, xff_line, proto_line, upgrade, trusted))
        return out[:-2] + self.lines + b"\r\n" if self.lines else out


def identity_lines(sock) -> bytes:
    """The header lines for the certificate `sock`'s client presented and the listener
    verified (CRLF-terminated), or b"" when it presented none (a listener without client_ca)."""
    cert = sock.getpeercert()
    if not cert:
        return b""
    subject, issuer = cert.get("subject", ()), cert.get("issuer", ())
    if _has_unknown(subject) or _has_unknown(issuer):
        subject, issuer = _with_dumped_values(sock.getpeercert(binary_form=True), subject, issuer)
    return (b"X-SSL-Client-Verify: SUCCESS\r\nX-SSL-Client-S-DN: " + rfc4514(subject).encode()
            + b"\r\nX-SSL-Client-I-DN: " + rfc4514(issuer).encode()
            + b"\r\nX-SSL-Client-Serial: " + cert.get("serialNumber", "").encode("ascii", "replace") + b"\r\n")


def _has_unknown(rdns) -> bool:
    return any(name[:1].isdigit() for rdn in rdns for name, _ in rdn)


class Dumped(str):
    """A value printed as RFC 4514 §2.4 asks for an attribute type in dotted form: '#' and
    the hex of its BER (here DER) encoding, which OpenSSL's XN_FLAG_DUMP_UNKNOWN_FIELDS
    prints for an OID it has no name for (so nginx and mod_ssl do).  Not escaped again."""

    __slots__ = ()


def _with_dumped_values(der: bytes, subject, issuer) -> tuple:
    """(subject, issuer) with the values of dotted attributes `Dumped` from the certificate
    (OpenSSL has parsed it already; should our reading fail, they stay as getpeercert has them)."""
    try:
        der_issuer, der_subject = der_names(der)
    except (IndexError, ValueError):
        return subject, issuer
    return _dumped(subject, der_subject), _dumped(issuer, der_issuer)


def _dumped(rdns, der_rdns) -> tuple:
    """`rdns` (getpeercert's) with each dotted attribute's value replaced by its `Dumped`
    DER; `der_rdns` is the same name read from the certificate (`der_names`)."""
    if len(rdns) != len(der_rdns):
        return rdns
    out = []
    for rdn, der_rdn in zip(rdns, der_rdns, strict=True):
        if len(rdn) != len(der_rdn):
            return rdns
        out.append(tuple((name, Dumped("#" + der_rdn[i][1].hex().upper()) if name[:1].isdigit()
                                and name == der_rdn[i][0] else value)
                         for i, (name, value) in enumerate(rdn)))
    return tuple(out)


def rfc4514(rdns) -> str:
    """A distinguished name as ssl's getpeercert() gives it (relative names in certificate
    order, each a tuple of (attribute, value)) as an RFC 4514 string: last name first, and
    within a multi-valued one (joined by '+') its last value first, as OpenSSL prints every
    entry of the name in reverse (XN_FLAG_DN_REV; review 2026-12-04 #4)."""
    return ",".join("+".join(f"{_SHORT.get(name, name)}={escape(value)}" for name, value in reversed(rdn))
                    for rdn in reversed(rdns))


def escape(value: str) -> str:
    """An attribute value escaped as RFC 4514 §2.4 asks, and as OpenSSL's RFC 2253 flags do
    for the rest (ESC_CTRL, ESC_MSB): printable ASCII only.  Most values need nothing: one
    search says so (identity_lines for a usual certificate: 28 µs char by char, 12 µs so)."""
    if _NEEDS_ESCAPE.search(value) is None or value.__class__ is Dumped:
        return value
    out = []
    last = len(value) - 1
    for i, char in enumerate(value):
        code = ord(char)
        if char in _SPECIAL or (i == 0 and char in " #") or (i == last and char == " "):
            out.append("\\" + char)
        elif code < 0x20 or code > 0x7e:
            out.append("".join(f"\\{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    return "".join(out)

"""The issuer's and subject's names of a DER certificate, read as they are encoded.

Python's ssl gives a certificate's names decoded (`getpeercert()`), which is all
worker.clientcert needs but for one case: an attribute whose OID OpenSSL has no name for,
which RFC 4514 §2.4 (and OpenSSL's RFC 2253 output, so nginx's and mod_ssl's) prints as
'#' and its value's DER in hex.  That value is read here from `getpeercert(binary_form=True)`.
OpenSSL has parsed and verified the certificate before us: this walks it, it does not judge it.
"""

from __future__ import annotations


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, where the value starts, where it ends) of the DER element at `pos`."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _elements(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements of the constructed value der[start:end]: (tag, element start, value start, end)."""
    out = []
    while start < end:
        tag, value, stop = _tlv(der, start)
        out.append((tag, start, value, stop))
        start = stop
    return out


def _oid(encoded: bytes) -> str:
    """X.690 §8.19: base-128 subidentifiers, the first of which holds the first two arcs."""
    subidentifiers, arc = [], 0
    for byte in encoded:
        arc = arc << 7 | byte & 0x7F
        if not byte & 0x80:
            subidentifiers.append(arc)
            arc = 0
    first = min(subidentifiers[0] // 40, 2)
    return ".".join(map(str, (first, subidentifiers[0] - 40 * first, *subidentifiers[1:])))


def der_names(der: bytes) -> tuple:
    """(issuer, subject) of a DER certificate, each a list of relative names, each a list of
    (dotted OID, the value's whole DER element): RFC 5280's TBSCertificate is version
    ([0], optional), serialNumber, signature, issuer, validity, subject."""
    _, start, end = _tlv(der, 0)
    _, start, end = _tlv(der, start)
    fields = _elements(der, start, end)
    if fields and fields[0][0] == 0xA0:
        fields = fields[1:]
    names = []
    for _, _, value, stop in (fields[2], fields[4]):
        rdns = []
        for _, _, set_value, set_end in _elements(der, value, stop):
            rdn = []
            for _, _, pair, pair_end in _elements(der, set_value, set_end):
                (_, _, oid_value, oid_end), (_, value_start, _, value_end) = _elements(der, pair, pair_end)
                rdn.append((_oid(der[oid_value:oid_end]), der[value_start:value_end]))
            rdns.append(rdn)
        names.append(rdns)
    return tuple(names)

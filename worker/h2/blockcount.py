"""How many fields an HPACK header block holds, counted before it is decoded.

python-hyper's HPACK decoder spends about 3 µs a field, and h2 runs it on a whole header
block before the proxy sees one field: a 1.8 KB HEADERS frame of 1,800 indexed `x-a: b`
fields (within SETTINGS_MAX_HEADER_LIST_SIZE, 64 KiB counted 32 bytes a field) cost 6.4-8.3
ms of a worker's CPU before `limits.header_fields` answered it 431, where nginx spends 0.10
ms (review 2026-12-04-h2-bounds #3).  Counting the representations (RFC 7541 §6) walks their
integer prefixes and string lengths without decoding a name, a value or a Huffman code: a
block over the count is refused before the decoder runs.

The count allows for what a legitimate request sends beyond `limits.header_fields`: the
pseudo-header fields, and a cookie split into one field per cookie (RFC 9113 §8.2.3; Chrome
sends them so, and a site may set 180 cookies a domain), which the proxy joins into one line.
A block of fewer bytes than the count cannot exceed it, so the usual block (a few bytes once
the HPACK table holds the fields, a few hundred on a connection's first request) is not
walked at all.

Two more bounds, found by the same-day review (docs/reviews/2026-12-04-evening #1, #2): a
block longer than SETTINGS_MAX_HEADER_LIST_SIZE is refused unread (a legitimate encoder's
block is never longer than the list it decodes to, which would be refused after decoding:
h2 buffers up to 64 CONTINUATION frames, and 1 MiB of Huffman-coded value cost 0.44 s to
decode); and more than two dynamic table size updates, which RFC 7541 §4.2 never needs (1 MiB
of them, each a 0x20 byte and no field, cost 1.75-3.1 s).
"""

from __future__ import annotations

# Beyond limits.header_fields: cookie crumbs (one field per cookie) and pseudo-header fields.
CRUMBS_AND_PSEUDO = 256 + 8


def refusal(block, most_fields: int, most_bytes: int) -> str | None:
    """Why the HPACK header block is refused before decoding (None: it is not): longer than
    `most_bytes`, more than `most_fields` field representations, or more than two table size
    updates.  A block that ends inside a representation counts what it has: the decoder
    refuses it anyway."""
    size = len(block)
    if size > most_bytes:
        return f"a header block of {size} bytes, over {most_bytes}"
    if size <= most_fields:
        return None
    pos = fields = updates = 0
    try:
        while pos < size:
            first = block[pos]
            if first & 0x80:                    # indexed field (§6.1): a 7-bit index
                pos = _after_integer(block, pos, 0x7F)
            elif first & 0xE0 == 0x20:          # dynamic table size update (§6.3): no field
                pos = _after_integer(block, pos, 0x1F)
                updates += 1
                if updates > 2:
                    return "more than two table size updates in one header block"
                continue
            else:                               # literal (§6.2): with indexing (6-bit) or not (4-bit)
                prefix = 0x3F if first & 0x40 else 0x0F
                new_name = not first & prefix   # index 0: the name follows as a string
                pos = _after_integer(block, pos, prefix)
                if new_name:
                    pos = _after_string(block, pos)
                pos = _after_string(block, pos)
            fields += 1
            if fields > most_fields:
                return f"more than {most_fields} fields in one header block"
    except IndexError:
        pass
    return None


def _after_integer(block, pos: int, prefix: int) -> int:
    """Where the integer of `prefix`'s bits at `pos` ends (§5.1)."""
    if block[pos] & prefix != prefix:
        return pos + 1
    pos += 1
    while block[pos] & 0x80:
        pos += 1
    return pos + 1


def _after_string(block, pos: int) -> int:
    """Where the string literal at `pos` ends (§5.2): its 7-bit length, then its bytes."""
    length = block[pos] & 0x7F
    if length != 0x7F:
        return pos + 1 + length
    pos += 1
    shift = 0
    while True:
        byte = block[pos]
        length += (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return pos + length
        shift += 7
        if shift > 28:          # a length past 2^35: no block is that long
            raise IndexError

"""HTTP/2 header blocks are counted before they are decoded (review 2026-12-04-h2-bounds #3).

h2's HPACK decoder spent 6-8 ms of the worker's CPU on a 1.8 KB block of 1,800 indexed
fields before `limits.header_fields` answered 431.  A block of more fields than the limit
allows for (worker.h2.blockcount: header_fields, one field per cookie, the pseudo-headers)
now ends its connection unread, as h2 ends one past SETTINGS_MAX_HEADER_LIST_SIZE (GOAWAY
ENHANCE_YOUR_CALM); what a legitimate client sends is decoded as before."""

from __future__ import annotations

import pytest
from h2raw import RawClient, h2c_proxy
from hyperframe.frame import ContinuationFrame, HeadersFrame
from proxyproc import wait_log
from rawbackend import serve_simple

from worker.h2.blockcount import CRUMBS_AND_PSEUDO

ENHANCE_YOUR_CALM = 0xB
FIELDS = 100        # limits.header_fields, the default
PSEUDO = [(":method", "GET"), (":scheme", "http"), (":authority", "proxy.test")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # log level info: where connection errors are told
    with h2c_proxy(tmp_path_factory.mktemp("h2blocks"), serve_simple, log={"level": "info"}) as env:
        yield env


def test_a_block_of_more_fields_than_any_request_may_have_ends_its_connection(env):
    proxy, backend = env
    bystander = RawClient(proxy.port)
    attacker = RawClient(proxy.port)
    before = len(backend.requests)
    # 1,800 copies of one field: after the first, each is a 1-byte index into the HPACK table.
    attacker.headers(1, PSEUDO + [(":path", "/bomb")] + [("x-a", "b")] * 1800)
    attacker.wait(lambda: attacker.goaway is not None)
    assert attacker.goaway == ENHANCE_YOUR_CALM
    assert len(backend.requests) == before
    assert f"more than {FIELDS + CRUMBS_AND_PSEUDO} fields in one header block" in wait_log(proxy, "fields in one")
    bystander.get(1, "/after")          # another connection of the worker: untouched
    bystander.wait(lambda: 1 in bystander.statuses)
    assert bystander.statuses[1] == 200


def _send_block(client: RawClient, block: bytes) -> None:
    """One header block on stream 1: HEADERS and CONTINUATION frames of 16 KiB at most."""
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    for n, part in enumerate(parts):
        frame = HeadersFrame(1, part, flags=["END_STREAM"]) if n == 0 else ContinuationFrame(1, part)
        if n == len(parts) - 1:
            frame.flags.add("END_HEADERS")
        client.send(frame)


@pytest.mark.parametrize("size, why", [
    (400, "more than two table size updates in one header block"),      # walked: it is over 364 bytes
    (70 * 1024, "a header block of 71680 bytes, over 65536"),            # refused unread
])
def test_blocks_that_cost_the_decoder_without_a_field_end_their_connection(env, size, why):
    """Table size updates (0x20: to 0) are no fields, and cost the decoder all the same: 1 MiB
    of them took the worker 1.75-3.1 s (review 2026-12-04-evening #1).  RFC 7541 §4.2 needs
    two at most, and no legitimate block is longer than SETTINGS_MAX_HEADER_LIST_SIZE."""
    proxy, backend = env
    attacker = RawClient(proxy.port)
    _send_block(attacker, b"\x20" * size)
    attacker.wait(lambda: attacker.goaway is not None)
    assert attacker.goaway == ENHANCE_YOUR_CALM
    assert why in wait_log(proxy, why)


def test_a_cookie_split_into_many_fields_is_still_served(env):
    """Browsers send each cookie as a field of its own (RFC 9113 §8.2.3): 250 of them are
    within the count, and reach the backend as one Cookie line."""
    proxy, backend = env
    client = RawClient(proxy.port)
    crumbs = [("cookie", f"c{i}=v{i}") for i in range(250)]
    client.headers(1, PSEUDO + [(":path", "/crumbs"), ("user-agent", "t")] + crumbs)
    client.wait(lambda: 1 in client.statuses)
    assert client.statuses[1] == 200 and client.goaway is None
    head = backend.requests[-1]
    assert head.target == "/crumbs"
    assert head.get("cookie") == "; ".join(f"c{i}=v{i}" for i in range(250))


def test_fields_over_the_limit_but_within_the_count_get_431_on_their_stream(env):
    """150 fields: decoded, refused by limits.header_fields (431) on their stream alone, and
    the connection goes on, as before."""
    proxy, backend = env
    client = RawClient(proxy.port)
    client.headers(1, PSEUDO + [(":path", "/many")] + [(f"x-f{i}", "v") for i in range(150)])
    client.wait(lambda: 1 in client.statuses)
    assert client.statuses[1] == 431
    client.get(3, "/next")
    client.wait(lambda: 3 in client.statuses)
    assert client.statuses[3] == 200 and client.goaway is None


def test_the_count_agrees_with_the_decoder_on_every_kind_of_representation():
    """Indexed fields, literals with and without indexing, never-indexed ones, new and indexed
    names, Huffman or not, long strings (multi-byte lengths), table size updates: the count
    says "over" exactly when the decoder would find more than `most` fields."""
    import random

    from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple

    from worker.h2.blockcount import refusal

    rng = random.Random(7)
    for trial in range(60):
        encoder, decoder = Encoder(), Decoder()
        decoder.max_header_list_size = 1 << 24
        if trial % 4 == 0:
            encoder.header_table_size = 0 if trial % 8 else 256      # emits a table size update
        for _ in range(3):
            fields = [(":method", "GET"), (":path", "/" + "p" * rng.randint(0, 300))]
            for _ in range(rng.randint(0, 300)):
                name = rng.choice(["x-a", "cookie", "user-agent", "x-" + "k" * rng.randint(1, 200)])
                value = "v" * (rng.randint(0, 20_000) if rng.random() < 0.02 else rng.randint(0, 30))
                kind = rng.random()
                fields.append(NeverIndexedHeaderTuple(name, value) if kind < 0.1 else
                              HeaderTuple(name, value) if kind < 0.2 else (name, value))
            block = encoder.encode(fields, huffman=rng.random() < 0.5)
            count = len(decoder.decode(block))
            assert count == len(fields)
            for most in {0, 1, count - 1, count, count + 1}:
                if most >= 0:
                    over = refusal(block, most, 1 << 24) is not None
                    assert over == (count > most), (trial, most, count)

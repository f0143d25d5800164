"""What an HTTP/2 connection may cost us, and the budgets that end an abusive one.

HTTP/2 lets a client make the server work with frames that cost the client almost
nothing: a HEADERS frame answered by RST_STREAM at once (the rapid-reset attack,
CVE-2023-44487: the server starts a request for every pair), SETTINGS and PING frames
that each need an acknowledgement (a client that never reads makes the server queue
them), PRIORITY and empty DATA frames that carry no work at all, endless CONTINUATION
frames (2024: a header block that never ends is buffered without bound).  The bounds:

- SETTINGS_MAX_CONCURRENT_STREAMS (`limits.http2_streams`) counts *our* streams, those
  with an exchange or a tunnel, not h2's: a stream the client reset is closed for h2 at
  once, while its backend work may go on a little; one more is refused (REFUSED_STREAM).
- Resets cost tokens: a stream the client resets before its response is complete, or
  that we refuse, spends one from a bucket of RESET_BURST that refills at RESET_RATE a
  second.  Browsers reset a few streams when a page is left; an attack resets thousands.
  A stream whose HEADERS and RST_STREAM arrive in the same read never starts at all.
- Frames that carry no request spend from a second bucket (CONTROL_BURST, CONTROL_RATE):
  SETTINGS, PING, PRIORITY, GOAWAY, empty DATA without END_STREAM, unknown frame types,
  RST_STREAM on a stream that is not running (closed: h2 ignores it without an event), and
  DATA on a closed stream (h2 answers each with RST_STREAM), beyond what a client may have had
  in flight when we reset it (STREAM_WINDOW bytes, for the last RESETS_REMEMBERED streams).
- WINDOW_UPDATE frames, on any stream, spend from a third (UPDATE_BURST, UPDATE_RATE),
  which every DATA frame of UPDATE_EARNING bytes or more we send also refills (UPDATE_CREDIT: a client acknowledges what
  it reads, Go's once per 4 KiB per stream and per connection), up to UPDATE_CEILING:
  a client that downloads may update as often as it reads, one that does not may not.
  (Sozu's h2_max_window_update_stream0_per_window, HAProxy's glitches, likewise.)
- The budgets are charged before h2 parses a read (`ClientFrames.charge`, a scan of the
  9-byte frame headers), frame by frame as nginx's state machine does: an empty bucket
  drops the read unparsed, so the work a budget bounds is never done beyond it.  A turn
  reads at most READ_PER_TURN bytes of one connection; the socket keeps the rest.
- An empty bucket ends the connection: GOAWAY with ENHANCE_YOUR_CALM and the last stream
  id we processed, logged once, then the socket closes (the attacker's streams end with it).
- Header blocks: h2 refuses more than 64 CONTINUATION frames (PROTOCOL_ERROR, GOAWAY) and
  its HPACK decoder stops at SETTINGS_MAX_HEADER_LIST_SIZE (an "HPACK bomb" that expands a
  few bytes into a large list ends the same way), and a block longer than that size, of more
  fields than a request may have or of more than two table size updates is refused before
  it is decoded (worker.h2.blockcount); the HPACK table is 4 KiB.  At most
  64 x 16 KiB frames of one block are buffered before that.
- Output: while more than OUT_HIGH bytes wait for the client to read them, we stop reading
  what it sends, so acknowledgements and response heads cannot pile up.
- Request bodies: the connection's window is given back as DATA is read, a stream's once
  its exchange has taken the bytes.  A stalled upload holds its own window (STREAM_WINDOW),
  never the others' (RFC 9113 §5.2.2; nginx does so): buffered body bytes are bounded by
  `limits.http2_streams` x STREAM_WINDOW (6.4 MiB at 100 streams) per connection.
- Idle: a connection with no stream open closes after `timeouts.keepalive`, its preface
  is due within `timeouts.client_header`.
"""

from __future__ import annotations

RESET_BURST = 200          # client resets (and refused streams) a connection may spend at once
RESET_RATE = 50.0          # ... and per second after that
CONTROL_BURST = 500        # SETTINGS, PING, PRIORITY, empty DATA, unknown frames at once
CONTROL_RATE = 100.0       # ... and per second after that
UPDATE_BURST = 500         # WINDOW_UPDATE frames at once
UPDATE_RATE = 100.0        # ... and per second after that
UPDATE_CREDIT = 2          # ... and per DATA frame we send, plus one per 2 KiB of it
UPDATE_CEILING = 4096      # ... at most, however much was sent without updates
# ... for DATA of 1 KiB or more at once: a client that opened the window a byte at a time was
# answered with 1-byte frames, each of which paid for two more of its updates, and held 40 % of
# a core for ever (review 2026-12-04-h2-bounds #2).  Clients acknowledge per half window.
UPDATE_EARNING = 1024
READ_PER_TURN = 64 * 1024  # bytes of one connection parsed per loop turn (the others' turn next)
OUT_HIGH = 256 * 1024      # unsent bytes to the client past which we stop reading it
MAX_HEADER_LIST = 64 * 1024   # SETTINGS_MAX_HEADER_LIST_SIZE (nginx: 4 x 8 KiB buffers)
HPACK_TABLE = 4096         # SETTINGS_HEADER_TABLE_SIZE: the decoder's dynamic table
STREAM_WINDOW = 65535      # SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may send ahead
RESETS_REMEMBERED = 128    # streams we reset whose in-flight DATA spends no budget (frames.py)
CONNECTION_WINDOW = 1 << 20    # ... all streams together (the connection's window)
CLOSED_STREAMS_KEPT = 4096     # h2 remembers how recent streams closed (its default: 65,536)


class Budget:
    """A token bucket: `spend(now)` is False once it is empty.  Time refills it up to `burst`;
    `credit` (what we sent) may fill it beyond."""

    __slots__ = ("tokens", "burst", "rate", "stamp")

    def __init__(self, burst: int, rate: float, now: float):
        self.tokens = float(burst)
        self.burst = burst
        self.rate = rate
        self.stamp = now

    def spend(self, now: float) -> bool:
        tokens = self.tokens
        if tokens < self.burst:
            tokens += (now - self.stamp) * self.rate
            if tokens > self.burst:
                tokens = self.burst
        self.stamp = now
        self.tokens = tokens - 1.0
        return self.tokens >= 0.0

    def credit(self, tokens: float, ceiling: float) -> None:
        if self.tokens < ceiling:
            self.tokens = min(self.tokens + tokens, ceiling)

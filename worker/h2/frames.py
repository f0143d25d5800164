"""What an HTTP/2 client sends, frame event by frame event: the half of `H2Connection`
(worker.h2.connection) that reads.

`h2` turns the client's bytes into events; `HANDLERS` maps each event class to the method
that handles it, and an event not in it (an acknowledgement, say) needs nothing from us.
Requests become `H2Stream`s (started once the read's events are all handled, see the
connection); body bytes, trailers, END_STREAM and resets go to their stream.

Budgets (worker.h2.defences) are charged before h2 sees a read: `charge` walks the 9-byte
frame headers (no HPACK, no objects), and the frame that empties a budget ends the
connection with the read unparsed.  Charging from h2's events instead came after h2 had
parsed, and answered, every frame of the read: 7,282 SETTINGS ACKs for a budget of 500.
"""

from __future__ import annotations

import struct

import h2.events
import h2.settings

from worker.h2.defences import Budget
from worker.h2.fields import Malformed, read_request
from worker.h2.machine import StreamRefused
from worker.h2.stream import H2Stream

NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0xB
FOREVER = float("inf")

_HEAD = struct.Struct(">BHBBL")      # length (high byte, low 16 bits), type, flags, stream id
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
# A frame on the wrong kind of stream (DATA on stream 0, PING on stream 3) is a connection error
# (RFC 9113 §6): hyperframe refuses its header, so h2 ends the connection there with GOAWAY
# PROTOCOL_ERROR and parses nothing after it.  The scan stops there too, or what follows, never
# parsed, would spend: 8 MiB of zero bytes after one such frame read as a million empty DATA
# frames on stream 0 and got ENHANCE_YOUR_CALM, not the PROTOCOL_ERROR that was the client's fault.
ON_A_STREAM = frozenset({DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION})
ON_THE_CONNECTION = frozenset({SETTINGS, PING, GOAWAY})
_REFUSED_BY_H2 = 1 << 62            # `_scan`'s answer at such a frame: nothing after it is charged
# Frames that carry no request (and the unknown types, 10 and up): the control budget's.
CONTROL_FRAMES = {PRIORITY: "PRIORITY frames", SETTINGS: "SETTINGS frames", PING: "PING frames",
                  GOAWAY: "GOAWAY frames"}
CONTROL_FRAMES.update((kind, "unknown frames") for kind in range(10, 256))
PREFACE_SIZE = 24                    # the client's preface comes before its first frame


class ClientFrames:
    """Mixed into `H2Connection`, whose state it reads and changes."""

    __slots__ = ()

    def _request(self, event) -> None:
        stream_id = event.stream_id
        if self.goaway_at is not None or len(self.streams) >= self.max_streams:
            # After our GOAWAY, or beyond the streams we run: the client may retry it elsewhere.
            self.reset_stream(stream_id, REFUSED_STREAM)
            self._spend(self.resets, "streams refused")
            return
        self.last_stream = stream_id
        try:
            request = read_request(event.headers)
        except Malformed as exc:
            self.worker.log_error("info", f"{self.client_ip.decode()} HTTP/2 stream {stream_id}: malformed "
                                          f"request: {exc}")
            self.reset_stream(stream_id, PROTOCOL_ERROR)
            self.spend_reset()
            return
        if not self.streams:
            self.idle.discard(self)
        stream = self.streams[stream_id] = H2Stream(self, stream_id, request)
        self.deadline = FOREVER
        if event.stream_ended is not None:
            stream.request_ended = True
        self.starting.append(stream)

    def _data(self, event) -> None:
        self.data_read += event.flow_controlled_length     # the connection's window: given back in `write`
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        if not event.data and event.flow_controlled_length and event.stream_ended is None:
            self._spend(self.control, "empty DATA frames")     # all padding (`charge` sees only lengths)
        stream.data(event.data, event.flow_controlled_length)

    def _stream_ended(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.client_ended()

    def _trailers(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.trailers(event.headers)

    def _refused(self, event) -> None:
        """h2 reset a stream for a malformed request (worker.h2.machine.StreamRefused)."""
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.malformed(event.why)      # (its reset is out: h2 sends no second one)
            return
        self.worker.log_error("info", f"{self.client_ip.decode()} HTTP/2 stream {event.stream_id}: malformed "
                                      f"request: {event.why}")
        self.reset_stream(event.stream_id, PROTOCOL_ERROR)  # the same: what it had in flight is let in
        self.spend_reset()

    def _stream_reset(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:        # (spent in `charge`)
            stream.reset_by_client()

    def _window_updated(self, event) -> None:
        if event.stream_id == 0:
            self.resume_blocked()
        else:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.blocked and not self.congested:
                self.blocked.remove(stream)
                stream.blocked = False
                stream.resume()

    def _settings(self, event) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self.resume_blocked()

    def spend_reset(self) -> None:
        """A stream we reset for the client's protocol error costs what a reset of its own
        does: else resetting it is free for the client and costs us the stream's start
        ("MadeYouReset", CVE-2025-8671)."""
        self._spend(self.resets, "streams reset for protocol errors")

    def _spend(self, budget: Budget, what: str) -> bool:
        if budget.spend(self.loop.now):
            return True
        if not self.closed:
            self.worker.log_error("warning", f"{self.client_ip.decode()} HTTP/2: too many {what}: GOAWAY "
                                             "ENHANCE_YOUR_CALM, connection closed")
            self.goaway(ENHANCE_YOUR_CALM)
            self.close(self.worker.timeouts.lingering)
        return False

    # == budgets, before h2 parses ================================================================
    def charge(self, data) -> bool:
        """Spend the budgets of the frames in `data`, one read, before h2 parses it; False: one
        ran dry, and the connection is closing (the read is dropped).  A frame header cut by
        the read's end is kept for the next (`scan_head`), a frame body skipped (`scan_skip`)."""
        fresh: set[int] = set()          # streams whose HEADERS are in this read
        pos = self.scan_skip
        kept = self.scan_head
        if kept:
            head = kept + bytes(data[:9 - len(kept)])
            if len(head) < 9:
                self.scan_head = head
                return True
            self.scan_head = b""
            pos = self._scan(head, 0, fresh) - len(kept)
            if pos < 0:
                return False
        end = self._scan(data, pos, fresh)
        if end < 0:
            return False
        size = len(data)
        self.scan_skip = end - size if end > size else 0
        if end < size:
            self.scan_head = bytes(data[end:])
        return True

    def _on_closed_stream(self, stream_id: int, length: int, fresh: set) -> bool:
        """DATA on a stream that is closed (or whose request has ended), beyond what the client
        may have sent before it saw our reset.  A stream above the highest h2 has opened is not
        closed: its HEADERS may have come in the read before and not yet be whole (an upload's
        DATA was charged then, review 2026-12-04-today #2)."""
        if stream_id in fresh or stream_id > self.h2.highest_inbound_stream_id:
            return False
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.request_ended:
            return False
        left = self.in_flight.get(stream_id)
        if left is not None and left >= length:
            # Counted as 256 bytes at least, so one reset buys at most 256 frames free (a window
            # of 100-byte frames is 655: the rest fits the burst); the resets we answer are
            # bounded (`resets`: 50 a second), and so is what they let through.
            self.in_flight[stream_id] = left - max(length, 256)
            return False
        return True

    def _scan(self, data, pos: int, fresh: set) -> int:
        """Where the frames from `pos` on end (beyond `data` if the last one goes on); -1: a
        budget ran dry.  DATA with bytes on an open stream, HEADERS and CONTINUATION spend
        nothing here: flow control, the stream limit and h2's CONTINUATION bound are theirs."""
        size = len(data)
        unpack = _HEAD.unpack_from
        while pos + 9 <= size:
            high, low, kind, flags, stream_id = unpack(data, pos)
            length = high << 16 | low
            pos += 9 + length
            if (kind in ON_THE_CONNECTION) if stream_id & 0x7FFFFFFF else (kind in ON_A_STREAM):
                return _REFUSED_BY_H2
            if kind == DATA:
                if self._on_closed_stream(stream_id & 0x7FFFFFFF, length, fresh):
                    # h2 answers each with RST_STREAM and gives the window back, so flow control
                    # bounds nothing (review 2026-12-04-h2-downgrade #1: 100,000 resets in 2 s,
                    # other clients waiting 300 ms).
                    budget, what = self.control, "DATA frames on closed streams"
                elif length or flags & END_STREAM:
                    continue
                else:
                    budget, what = self.control, "empty DATA frames"
            elif kind == HEADERS:
                fresh.add(stream_id & 0x7FFFFFFF)
                continue
            elif kind == WINDOW_UPDATE:
                budget, what = self.updates, "WINDOW_UPDATE frames"
            elif kind == RST_STREAM:
                stream_id &= 0x7FFFFFFF
                stream = self.streams.get(stream_id)
                if stream_id in fresh or (stream is not None and not stream.complete):
                    budget, what = self.resets, "streams reset by the client (rapid reset)"
                else:       # closed (h2 ignores it, no event) or answered: it carries no work
                    budget, what = self.control, "RST_STREAM frames on closed streams"
            elif kind in CONTROL_FRAMES:
                budget, what = self.control, CONTROL_FRAMES[kind]
            else:
                continue
            if not self._spend(budget, what):
                return -1
        return pos


HANDLERS = {
    h2.events.RequestReceived: ClientFrames._request,
    h2.events.DataReceived: ClientFrames._data,
    h2.events.StreamEnded: ClientFrames._stream_ended,
    h2.events.TrailersReceived: ClientFrames._trailers,
    h2.events.StreamReset: ClientFrames._stream_reset,
    StreamRefused: ClientFrames._refused,
    h2.events.WindowUpdated: ClientFrames._window_updated,
    h2.events.RemoteSettingsChanged: ClientFrames._settings,
    # PING, PRIORITY, unknown frames and the client's GOAWAY (worker.h2.machine: its streams
    # finish, as nginx lets them) need nothing beyond what `charge` spent for them.
}

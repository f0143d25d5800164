"""The `h2` protocol machine as the proxy runs it: its configuration, five departures from
h2's defaults that RFC 9113 asks for, and two silences that cost CPU for nothing.

Kept apart so that what depends on h2's internals (pinned below 5 in pyproject.toml) is in
one place: a subclass hook on stream creation, on received HEADERS, PRIORITY and GOAWAY, a
settings property, the class of its HPACK decoder (a count before the decoding), and two module
attributes of hpack and hyperframe that only concern logging.
"""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
import hpack.hpack
import hyperframe.frame

from worker.h2 import defences
from worker.h2.blockcount import CRUMBS_AND_PSEUDO, refusal

CONFIG = h2.config.H2Configuration(
    client_side=False, header_encoding=None,
    # Checked by worker.h2.fields in one pass, as stream errors (h2 makes them connection errors).
    validate_inbound_headers=False, normalize_inbound_headers=False,
    # What we send is built from a validated backend head, lower-cased already.
    validate_outbound_headers=False, normalize_outbound_headers=False, split_outbound_cookies=False)


class _Silent:
    """hpack logs every field it codes at DEBUG through the stdlib's logging (which the master
    set up for itself: with `log.level: debug`, lines in our error log), about twenty calls a
    request even when nothing is written; and h2 formats every frame it receives for a trace
    line its dummy logger drops.  Neither says anything an operator needs."""

    def debug(self, *args, **kwargs) -> None:
        pass


hpack.hpack.log = _Silent()
hyperframe.frame.Frame.__repr__ = lambda self: f"<{self.__class__.__name__} stream {self.stream_id}>"


_OPEN, _IDLE, _CLOSED = h2.stream.StreamState.OPEN, h2.stream.StreamState.IDLE, h2.stream.StreamState.CLOSED
_PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR


class StreamRefused(h2.events.Event):
    """A request h2 would have ended the connection for, which RFC 9113 §8.1.1 makes a stream
    error: h2 has reset the stream (RST_STREAM PROTOCOL_ERROR); `why` is for the error log."""

    def __init__(self, stream_id: int, why: str) -> None:
        self.stream_id = stream_id
        self.why = why


class _StreamMachine(h2.stream.H2Stream):
    def _initialize_content_length(self, headers) -> None:
        """h2 checks DATA against content-length itself, as a connection error; RFC 9113
        §8.1.1 makes a mismatch a stream error, which worker.h2.stream raises."""

    def receive_headers(self, headers, end_stream, header_encoding):
        """Two malformed requests h2 takes for connection errors (PROTOCOL_ERROR for the whole
        connection, every stream on it lost: review 2026-12-04-h2-downgrade #3): trailers
        without END_STREAM, and a request naming `:status`, which h2 reads as an interim
        response (if 1xx) that a server never receives.  Both refuse their stream alone."""
        machine = self.state_machine
        if machine.headers_received:
            why = "trailers without END_STREAM" if not end_stream and machine.state is _OPEN else None
        else:
            why = "a :status field in a request" if h2.stream.is_informational_response(headers) else None
        if why is None:
            return super().receive_headers(headers, end_stream, header_encoding)
        raise self.refused(why)

    def refused(self, why: str) -> h2.exceptions.StreamClosedError:
        """Close the stream by our reset, and what to raise so that h2 sends RST_STREAM
        PROTOCOL_ERROR and passes `StreamRefused` on: its own path for a frame on a stream
        it has reset (`H2Connection._receive_frame`), which ends nothing else.  The header
        block has been decoded by then, so HPACK's state stays the client's."""
        machine = self.state_machine
        if machine.state is _IDLE:
            machine.process_input(h2.stream.StreamInputs.RECV_HEADERS)     # opened, to be reset at once
        machine.process_input(h2.stream.StreamInputs.SEND_RST_STREAM)
        error = h2.exceptions.StreamClosedError(self.stream_id)
        error.error_code = _PROTOCOL_ERROR
        error._events = [StreamRefused(self.stream_id, why)]
        return error


class _LocalSettings(h2.settings.Settings):
    """What we advertise.  h2 also enforces SETTINGS_MAX_CONCURRENT_STREAMS itself, and one
    stream too many is a connection error there: every stream under way would be lost.
    RFC 9113 §5.1.2 allows a stream error, and nginx refuses that stream alone, so the limit
    is left to worker.h2.frames (REFUSED_STREAM) and h2's own check never fires."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2 ** 31 - 1


def local_settings(initial_values: dict) -> h2.settings.Settings:
    return _LocalSettings(client=False, initial_values=initial_values)


class _Machine(h2.connection.H2Connection):
    MAX_CLOSED_STREAMS = defences.CLOSED_STREAMS_KEPT

    def _receive_goaway_frame(self, frame):
        """The client's GOAWAY says it opens no more streams; those it has may finish (RFC
        9113 §6.8), and nginx goes on serving them.  h2 would close its state machine and
        drop what it has framed: only the event is kept (the connection counts it as a
        control frame)."""
        event = h2.events.ConnectionTerminated()
        event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _receive_priority_frame(self, frame):
        """A stream that depends on itself is a stream error (RFC 7540 §5.3.1), which h2 makes
        a connection error.  As nginx does, the stream is reset, whether it is open (its work
        stops), idle or closed (RST_STREAM all the same; h2 keeps nothing for it)."""
        if frame.depends_on != frame.stream_id:
            return super()._receive_priority_frame(frame)
        why = "a stream that depends on itself"
        stream = self.streams.get(frame.stream_id)
        if stream is not None and stream.state_machine.state is not _CLOSED:
            raise stream.refused(why)
        self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_PRIORITY)
        reset = hyperframe.frame.RstStreamFrame(frame.stream_id)
        reset.error_code = _PROTOCOL_ERROR
        return [reset], [StreamRefused(frame.stream_id, why)]

    def credit_connection(self, size: int) -> None:
        """DATA read: the connection's window opens at once (a WINDOW_UPDATE once half of it
        is read), whatever its stream does with the bytes; a stream's own window is what holds
        a stalled upload back (RFC 9113 §5.2.2), as nginx does.  h2's `acknowledge_received_data`
        opens both windows together."""
        increment = self._inbound_flow_control_window_manager.process_bytes(size)
        if increment:
            frame = hyperframe.frame.WindowUpdateFrame(0)
            frame.window_increment = increment
            self._prepare_for_sending([frame])

    def credit_stream(self, stream_id: int, size: int) -> None:
        """A stream's body bytes handed on: its window opens (once half of it is consumed)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.open:
            self._prepare_for_sending(stream.acknowledge_received_data(size))

    def _begin_new_stream(self, stream_id, allowed_ids):
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _StreamMachine      # (h2 < 5: the one place its streams are made)
        return stream


class _CountingDecoder(hpack.Decoder):
    """Refuses, before decoding it, a header block longer than SETTINGS_MAX_HEADER_LIST_SIZE,
    of more fields than a request may have or of more than two table size updates
    (worker.h2.blockcount): h2 ends the connection as for a list over that size (GOAWAY
    ENHANCE_YOUR_CALM)."""

    most_fields = 0

    def decode(self, data, raw=False):
        why = refusal(data, self.most_fields, defences.MAX_HEADER_LIST)
        if why is not None:
            raise hpack.OversizedHeaderListError(why)
        return super().decode(data, raw)


def new_machine(header_fields: int) -> h2.connection.H2Connection:
    """`header_fields`: limits.header_fields, of which the count of a header block follows."""
    machine = _Machine(CONFIG)
    decoder = machine.decoder
    decoder.__class__ = _CountingDecoder      # (made in h2's __init__, before any block)
    decoder.most_fields = header_fields + CRUMBS_AND_PSEUDO
    return machine


def release(machine: h2.connection.H2Connection) -> None:
    """A closed connection's machine, freed by reference counting: h2 keeps its frame handlers
    as bound methods in a dict of its own (`_frame_dispatch_table`), a cycle that only the
    cyclic GC breaks, late (a long-lived worker's older generations are collected seldom),
    and it holds the connection's HPACK tables, windows and closed-stream records until then.
    No frame is received after the close, so the table is not needed any more."""
    machine._frame_dispatch_table = None


def goaway_frame(last_stream: int, error: int) -> bytes:
    """A GOAWAY written by hand (RFC 9113 §6.8: length 8, type 7, no flags, stream 0, last
    stream id, error code): h2's `close_connection` would also end its state machine, and the
    streams under way could send nothing more."""
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + struct.pack(">II", last_stream, error)

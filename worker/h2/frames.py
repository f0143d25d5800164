"""What an HTTP/2 client sends, frame event by frame event: the half of `H2Connection`
(worker.h2.connection) that reads.

`h2` turns the client's bytes into events; `HANDLERS` maps each event class to the method
that handles it, and an event not in it (an acknowledgement, say) needs nothing from us.
Requests become `H2Stream`s (started once the read's events are all handled, see the
connection); body bytes, trailers, END_STREAM and resets go to their stream; frames that
carry no request spend from the connection's control budget (worker.h2.defences), and an
empty budget ends the connection.
"""

from __future__ import annotations

import h2.events
import h2.settings

from worker.h2.defences import Budget
from worker.h2.fields import Malformed, read_request
from worker.h2.stream import H2Stream

NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0xB
FOREVER = float("inf")


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
        if not event.data and event.stream_ended is None:
            self._spend(self.control, "empty DATA frames")
        stream.data(event.data, event.flow_controlled_length)

    def _stream_ended(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.client_ended()

    def _trailers(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.trailers(event.headers)

    def _stream_reset(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            if not stream.complete:
                self._spend(self.resets, "streams reset by the client (rapid reset)")
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
        self._spend(self.control, "SETTINGS frames")
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self.resume_blocked()

    def _control_frame(self, event) -> None:
        self._spend(self.control, f"{event.__class__.__name__} frames")

    def spend_reset(self) -> None:
        """A stream we reset for the client's protocol error costs what a reset of its own
        does: else resetting it is free for the client and costs us the stream's start
        ("MadeYouReset", CVE-2025-8671)."""
        self._spend(self.resets, "streams reset for protocol errors")

    def _spend(self, budget: Budget, what: str) -> None:
        if not budget.spend(self.loop.now) and not self.closed:
            self.worker.log_error("warning", f"{self.client_ip.decode()} HTTP/2: too many {what}: GOAWAY "
                                             "ENHANCE_YOUR_CALM, connection closed")
            self.goaway(ENHANCE_YOUR_CALM)
            self.close(self.worker.timeouts.lingering)


HANDLERS = {
    h2.events.RequestReceived: ClientFrames._request,
    h2.events.DataReceived: ClientFrames._data,
    h2.events.StreamEnded: ClientFrames._stream_ended,
    h2.events.TrailersReceived: ClientFrames._trailers,
    h2.events.StreamReset: ClientFrames._stream_reset,
    h2.events.WindowUpdated: ClientFrames._window_updated,
    h2.events.RemoteSettingsChanged: ClientFrames._settings,
    h2.events.PingReceived: ClientFrames._control_frame,
    h2.events.PriorityUpdated: ClientFrames._control_frame,
    h2.events.UnknownFrameReceived: ClientFrames._control_frame,
    # The client's GOAWAY (worker.h2.machine): its streams finish, as nginx lets them.
    h2.events.ConnectionTerminated: ClientFrames._control_frame,
}

"""The response half of an HTTP/2 stream (worker.h2.stream): the backend's head as HTTP/2
fields, our own answers, 1xx heads, the end of the response (END_STREAM, or the backend's
trailers), and the RFC 8441 switch.  A mixin of `H2Stream`, whose state it reads and sets:
apart so that stream.py stays one screenful of request and ending logic."""

from __future__ import annotations

import h2.exceptions

from worker.h2.fields import answer_fields, response_fields, trailer_fields
from worker.h2.tunnel import switch
from worker.rewrite import error_page

StreamGone = (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError)


class StreamResponse:
    __slots__ = ()

    def send_response(self, ex, resp, reverse, body: bytes, ended: bool) -> None:
        """The backend's final head (worker.response) as HTTP/2 fields, with the body bytes
        read with it; then the exchange goes on as for HTTP/1.1."""
        if self.request.protocol is not None and resp.status < 300:
            ex.backend_failed(502, "the backend answered an extended CONNECT without switching protocols")
            return
        fields = response_fields(resp, reverse, ex.cookie or b"")
        if not self.fits(fields):
            # The backend did nothing wrong: no failover, no failure on its member (review
            # 2026-12-04-fixes #1), our own small 502 instead.
            ex.worker.log_error("error", f"route {ex.route.name} backend {ex.origin.name}: the response head is "
                                         "over the client's SETTINGS_MAX_HEADER_LIST_SIZE (502)")
            ex.answer(502, "The response head is larger than this client takes.")
            return
        final = ended and not getattr(ex.resp_framing, "trailers", None)     # else the trailers end it
        if not self.send_fields(fields, final and not body):
            return
        ex.response_started()
        ex.head_sent = len(resp.raw)
        ex.sent += ex.head_sent + len(body)
        if body:
            self.send(body, final)
        if self.finished:
            return
        if ended:
            ex.response_read()
        else:
            ex.relaying()

    def fits(self, fields: list) -> bool:
        """Whether a header block is within the SETTINGS_MAX_HEADER_LIST_SIZE the client
        announced (RFC 9113 §6.5.2, 32 bytes a field more than its name and value).  The
        setting is advisory, but a client may take a larger block for a connection error, and
        a strict one (python-h2) did, taking every other stream on the connection with it
        (review 2026-12-04-backends #5).  nginx does not look at it; HAProxy neither."""
        limit = self.conn.h2.remote_settings.max_header_list_size
        return limit is None or sum(len(name) + len(value) + 32 for name, value in fields) <= limit

    def send_interim(self, resp) -> bool:
        """A 1xx head (100 Continue, 103 Early Hints) as an informational HEADERS frame; one
        larger than the client takes is left out (an interim answer is advice)."""
        fields = response_fields(resp, None)
        return self.send_fields(fields, False) if self.fits(fields) else True

    def answer(self, ex, status: int, message: str, extra: bytes = b"") -> bool:
        """Our own answer (worker.exchange.Exchange.answer): True when it is all framed.
        `extra` is HTTP/1.1 header lines (Retry-After), sent as fields."""
        page = error_page(status, message)
        fields = answer_fields(status, len(page), extra)
        if self.request.method == b"HEAD":
            page = b""              # a response to HEAD has no content (RFC 9110 §9.3.2)
        ex.head_sent = 64
        ex.sent += ex.head_sent + len(page)
        if not self.send_fields(fields, not page):
            return False
        if page:
            self.send(page, True)
        return self.out is None and not self.finished

    def send_fields(self, fields: list, end: bool) -> bool:
        try:
            self.conn.h2.send_headers(self.id, fields, end_stream=end)
        except StreamGone:
            self.reset_by_client()
            return False
        except h2.exceptions.ProtocolError as exc:
            self._refused_by_h2(exc)
            return False
        if end:
            self.complete = True
        self.conn.schedule_write()
        return True

    def _end_response(self, ex) -> None:
        """END_STREAM once the body is out: on the backend's trailers if it sent any."""
        trailers = getattr(ex.resp_framing, "trailers", None)
        fields = trailer_fields(trailers) if trailers else None
        if fields and self.fits(fields):
            self.send_fields(fields, True)
        else:                       # (trailers larger than the client takes are left out)
            self.send(b"", True)

    def switch_protocols(self, ex, resp, rest: bytes) -> None:
        """RFC 8441: the backend's 101 becomes `:status 200` and a tunnel (worker.h2.tunnel)."""
        switch(self, ex, resp, rest)

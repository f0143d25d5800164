"""What the streams of an HTTP/2 connection frame for the client: the half of `H2Connection`
(worker.h2.connection) that writes DATA as the windows allow, holds the streams that wait
(`blocked`, oldest first) and lets them go on when a window opens or the socket drains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.h2 import defences

if TYPE_CHECKING:
    from worker.h2.stream import H2Stream

WRITE_HIGH = 256 * 1024      # framed bytes that are written at once rather than at the iteration's end
# Response bytes one connection frames in one loop turn before its streams' backends wait for the
# next turn (level-triggered: epoll reports them again).  Unbounded, one connection of 95 fast
# downloads framed ~24 MiB a turn, and the worker's other clients waited 0.14-0.72 s a request
# (review 2026-12-04-h2-bounds #1; nginx's own: 16-59 ms).  What the client sends is bounded the
# same way (defences.READ_PER_TURN).
FRAMED_PER_TURN = 512 * 1024


class StreamOutput:
    """Mixed into `H2Connection`, whose state it reads and changes."""

    __slots__ = ()

    def send_data(self, stream_id: int, data, end: bool) -> int:
        """Frame as much of `data` as the windows allow (`end`: END_STREAM on the last frame if
        all of it fits); how many bytes were framed."""
        machine = self.h2
        size = len(data)
        window = machine.local_flow_control_window(stream_id)
        if window < size:
            # A client's smaller SETTINGS_INITIAL_WINDOW_SIZE can leave a window below zero:
            # nothing goes until WINDOW_UPDATEs make it positive (RFC 9113 §6.9.2).
            size, end = max(window, 0), False
        step = machine.max_outbound_frame_size
        if size >= defences.UPDATE_EARNING:   # what the client may acknowledge: WINDOW_UPDATEs it may send
            self.updates.credit(defences.UPDATE_CREDIT * -(-size // step) + (size >> 11), defences.UPDATE_CEILING)
        if size <= step:
            if size or end:
                machine.send_data(stream_id, data if size == len(data) else data[:size], end_stream=end)
        else:
            for pos in range(0, size, step):
                last = pos + step >= size
                machine.send_data(stream_id, data[pos:pos + step if not last else size], end_stream=end and last)
        self.framed += size
        if self.turn_at == self.loop.now:
            self.turn_framed += size
        else:
            self.turn_at, self.turn_framed = self.loop.now, size
        if self.framed >= WRITE_HIGH:
            self.write()
        else:
            self.schedule_write()
        return size

    def turn_spent(self) -> bool:
        """This connection has framed its share of the loop turn (FRAMED_PER_TURN)."""
        return self.turn_framed >= FRAMED_PER_TURN and self.turn_at == self.loop.now

    def block(self, stream: H2Stream) -> None:
        if not stream.blocked:
            stream.blocked = True
            self.blocked.append(stream)

    def resume_blocked(self) -> None:
        """Windows opened or the socket drained: let the waiting streams frame, oldest first,
        until the socket is full or the connection's window is spent: the others could not
        frame a byte, and wait first in line.  One write at the end (send_data writes on its
        own past WRITE_HIGH).  A 1-byte WINDOW_UPDATE on stream 0 resumed all 100 waiting
        streams, with a send after each: 0.4-0.5 ms a frame (review 2026-12-04-h2-bounds #2)."""
        if self.congested or not self.blocked:
            return
        waiting, self.blocked = self.blocked, []
        machine = self.h2
        untried = []
        for stream in waiting:
            if untried or self.congested or machine.outbound_flow_control_window <= 0:
                untried.append(stream)       # still marked blocked
                continue
            stream.blocked = False
            if not stream.finished:
                stream.resume()
        if untried:
            self.blocked[:0] = [stream for stream in untried if not stream.finished]
        self.write()

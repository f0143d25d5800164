"""A worker's way out: a graceful stop (stop accepting, close idle keep-alive connections, hand
plain tunnels and connections to the successor, finish what is under way, exit when nothing is
left or at graceful_timeout) and the immediate one at the end of its loop.

Bound into `worker.process.Worker` as its methods, where the rest of the code calls them; kept
here so that module holds the worker's parts and counts, and this one how it ends.
"""

from __future__ import annotations

from worker.lane import leave_all


def graceful_stop(worker) -> None:
    if worker.stopping:
        return
    worker.stopping = True
    leave_all(worker.clients)        # the lane's connections (worker.lane) go back to this Python
    worker.access_sink.flush()       # what is logged so far goes out now, not at the exit
    worker.acceptor.close()
    # HTTP/2: GOAWAY; the streams under way finish, the connection stays here until they
    # have (a stream cannot move to another process, nor can the TLS session under it).
    for h2 in list(worker.h2_connections):
        h2.goaway()
    if not worker.sender.start():
        worker._close_idle()         # the whole server stops: nobody will serve them
    if worker._exit_when_done():
        return
    worker.log_error("info", f"graceful stop: {worker.connections} connections ({worker.tunnels} tunnels) and "
                             f"{len(worker.lingering)} lingering left, {worker.config.mpm.graceful_timeout:g}s to go")
    worker._publish()
    worker.loop.call_later(worker.config.mpm.graceful_timeout, worker._graceful_timeout)


def close_idle(worker) -> None:
    """Plain keep-alive connections between requests that no successor takes.  One that
    has not sent its first request yet is not idle (it gets client_header); a TLS one
    stays until its next response (`Connection: close`) or its keep-alive deadline, so
    no request it is sending right now meets a closed connection."""
    for client in list(worker.clients):
        if client.idle and not client.ep.tls:
            client.close()


def handover_finished(worker, successor_found: bool) -> None:
    if not successor_found:
        worker._close_idle()
    worker._publish()
    worker._exit_when_done()


def handover_received(worker) -> None:      # an item from a predecessor is in: a stop may end now
    worker._exit_when_done()


def exit_when_done(worker) -> bool:
    """A stopping worker ends once it holds no connection, no socket lingers (a client
    still sending when we closed: worker.linger, bounded by its own times and by
    graceful_timeout), no hand-over record waits to be sent, and none is on its way to us.
    True when the loop is told to end."""
    if not worker.stopping or worker.connections or worker.lingering or worker.sender.outgoing \
            or worker.sender.unanswered or worker.receiver.receiving:
        return False      # (outgoing: the rest of a handed-over item's bytes; unanswered: sent, not yet taken)
    worker.loop.running = False
    return True


def graceful_timeout(worker) -> None:
    worker.log_error("info", f"graceful timeout: closing {worker.connections} connections and "
                             f"{len(worker.lingering)} lingering")
    worker.loop.running = False


def shutdown(worker) -> None:
    """The immediate stop, once the loop has ended: everything still open is closed."""
    worker.sender.close()
    worker.receiver.close()
    for client in list(worker.clients):
        client.close()
    for handshake in list(worker.handshakes):
        handshake.close()
    for h2 in list(worker.h2_connections):
        h2.close()
    for tunnel in list(worker.tunnel_set):
        tunnel.close("worker stopping")
    for lingering in list(worker.lingering):
        lingering.close()
    worker.pool.close_all()
    worker.row.publish(state="exiting", connections=0, tunnels=0, requests=worker.requests,
                       bytes_in=worker.bytes_in, bytes_out=worker.bytes_out, tls_failures=worker.tls_failures,
                       moved=worker.moved, tls_full=worker.tls_full, tls_resumed=worker.tls_resumed)
    worker.access_sink.close()
    worker.error_sink.close()

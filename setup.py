"""The compiled parts, all optional (why in each file's header): the TLS session-ticket callback
(conf/_tickets.c; where it cannot be built, conf.openssl's Python callback does the same work),
the check that sees what TLS read-ahead holds, with the close_notify sent before a TLS close
(conf/_readahead.c; where it cannot be built, listeners do not read ahead and no close_notify is
sent), and the relay of plain tunnels (tunnel/_relay.c; where it cannot be built, or with
MPM_NATIVE_RELAY=0, tunnel/tunnel.py relays them, as it relays TLS tunnels), and the HTTP/1.1
head codec (worker/_heads*.c: the scan for the fields the proxy acts on, the usual heads read
whole, the head toward the backend put together; where it cannot be built, or with
MPM_NATIVE_HEADS=0, worker.headscan, worker.http1 and worker.rewrite do it all in Python), and
the keep-alive lane (worker/_lane.c: the usual exchange of a plain keep-alive connection; where it
cannot be built, or with MPM_NATIVE_LANE=0, worker.exchange serves every exchange), and the accept
of a new connection (worker/_accept.c; where it cannot be built, or with MPM_NATIVE_ACCEPT=0,
worker.acceptor accepts through CPython's socket)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conf._tickets", ["conf/_tickets.c"], optional=True),
                   Extension("conf._readahead", ["conf/_readahead.c"], optional=True),
                   Extension("tunnel._relay", ["tunnel/_relay.c", "tunnel/_relay_engine.c", "tunnel/_relay_turn.c"],
                             depends=["tunnel/relay.h"], include_dirs=["tunnel"], optional=True),
                   Extension("worker._heads", ["worker/_heads.c", "worker/_heads_read.c", "worker/_heads_write.c"],
                             depends=["worker/heads.h"], include_dirs=["worker"], optional=True),
                   Extension("worker._accept", ["worker/_accept.c"], optional=True),
                   Extension("worker._lane", ["worker/_lane.c", "worker/_lane_engine.c", "worker/_lane_io.c", "worker/_lane_log.c",
                                                     "worker/_lane_handshake.c", "worker/_lane_count.c"],
                             depends=["worker/lane.h"], include_dirs=["worker"], optional=True)])

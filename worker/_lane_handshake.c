/* A new TLS connection's handshake, run by its lane (worker.newcomer says which connections, and
   why: the rounds of a handshake through the Python loop were about 270 bytecodes of the 1,990
   such a connection cost).  The rounds are conf/_readahead.c's `handshake`, without a Python
   call per round: SSL_do_handshake on the SSLSocket's own SSL*, which runs its SNI callback as
   CPython's call would; what a round waits for is the client's epoll interest (the connection
   enters epoll only when a round has to wait, as worker.tls.ServerHandshake's did).  Python
   hears of the end only: `lane_handshaken(resumed, buffered)` once it is done, and
   `lane_handshake_failed(answer, errno)` with what a failure left to say why.

   The first round runs after the accept batch (`start`, from `loop.turn_end`), the accept batch's
   together, not at each accept: run at each accept, its OpenSSL and the acceptor's Python took
   turns in the caches per connection, and one saturated worker spent 5 % more CPU per connection
   (4 rounds: 0.93-0.96x with the rounds together).  The later rounds run at their events: run
   after the turn's other events as well, they measured no different (0.95-1.02x, 11 rounds).
   The first request of a connection waits for the end of a turn, for the same reason as the
   first round (worker.newcomer's `kick`). */

#include "lane.h"

#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_ERROR_SYSCALL 5
#define SSL_ERROR_ZERO_RETURN 6

/* Done: the lane waits for the first request (IDLE), unless Python took the connection (HTTP/2,
   a stop).  Python hears whether that request came with the handshake's last flight and waits
   in the SSL object, unseen by epoll: it has it read at the end of the loop turn. */
static int handshaken(Lane *self) {
    self->state = IDLE;
    PyObject *result = PyObject_CallMethodObjArgs(self->owner, s_lane_handshaken,
                                                  lane_tls.session_reused(self->ssl) ? Py_True : Py_False,
                                                  lane_client_buffered(self) ? Py_True : Py_False, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    if (self->state == IDLE)
        lane_update_interest(self);
    return 0;
}

/* A failure: -2, the peer's close_notify (read already: a second call would not see it, review
   2026-12-05-accept #1); -1, what OpenSSL's error queue holds, left for the SSL object's
   do_handshake() to raise as CPython would (worker.tls's `failed_round`); a system call's
   failure (a reset), which OpenSSL does not queue, as its errno. */
static int failed(Lane *self, int ret, int error, int saved) {
    int answer = -1;
    if (error == SSL_ERROR_ZERO_RETURN)
        answer = -2;
    if (error == SSL_ERROR_SYSCALL && ret == -1 && saved != 0)
        lane_tls.clear_errors();
    else
        saved = 0;
    PyObject *result = PyObject_CallMethod(self->owner, "lane_handshake_failed", "ii", answer, saved);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* One round: 0 (done, waiting, or failed and closed by Python), -1 (a Python error). */
int lane_handshake(Lane *self) {
    errno = 0;
    int ret = lane_tls.do_handshake(self->ssl);
    if (ret == 1)
        return handshaken(self);
    int saved = errno;
    int error = lane_tls.get_error(self->ssl, ret);
    if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)
        return failed(self, ret, error, saved);
    self->handshake_wants = error == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
    lane_update_interest(self);
    return 0;
}

/* A lane's client: its reads and writes (a socket's, or a TLS client's through its SSL object),
   and the cork of its last response (worker/_lane_engine.c decides when). */

#include "lane.h"

#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_READING 3

/* recv()'s answer: bytes, 0 at the end, -1 with errno EAGAIN while it has to wait.  TLS: the
   Python path reads as ssl.SSLSocket does and takes every error but a wait as the end
   (worker.client: `n <= 0`), a close_notify, a FIN without one or a bad record alike; a read
   that wants to write (a KeyUpdate's answer against a full buffer) waits for the next event
   there too. */
Py_ssize_t lane_client_recv(Lane *self, char *buf, Py_ssize_t size) {
    if (self->ssl == NULL)
        return recv(self->client_fd, buf, size, 0);
    lane_tls.clear_errors();        /* SSL_get_error reads the queue: empty before the call */
    int n = lane_tls.read(self->ssl, buf, (int)size);
    if (n > 0)
        return n;
    int error = lane_tls.get_error(self->ssl, n);
    lane_tls.clear_errors();
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    return 0;
}

/* send()'s answer.  TLS: a write that has to wait (-1, EAGAIN) has taken part of the bytes
   into records already, and OpenSSL wants the same bytes again, at least as many, on the next
   call: the caller keeps them all and sends them, and what follows them, from the same first
   byte (CPython's SSL objects accept a moved buffer).  A write that wants to read first (a
   renegotiation, which OpenSSL 3 refuses to clients anyway) would wait for EPOLLOUT in a spin:
   the client is taken as gone. */
Py_ssize_t lane_client_send(Lane *self, const char *data, Py_ssize_t size) {
    if (self->ssl == NULL)
        return send(self->client_fd, data, size, MSG_NOSIGNAL);
    lane_tls.clear_errors();
    int n = lane_tls.write(self->ssl, data, size > INT_MAX ? INT_MAX : (int)size);
    if (n > 0)
        return n;
    int error = lane_tls.get_error(self->ssl, n);
    lane_tls.clear_errors();
    errno = error == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
    return -1;
}

/* A TLS client's SSL object holds bytes epoll cannot see (decrypted, or read ahead and whole):
   conf/_readahead.c's `buffered`, for the same reason. */
int lane_client_buffered(Lane *self) {
    return self->ssl != NULL && (lane_tls.pending(self->ssl) > 0
                                 || (lane_tls.has_pending(self->ssl) && lane_tls.want(self->ssl) != SSL_READING));
}

/* The last response of a connection that closes after it (`closing`), whole in hand: its head
   and body, the TLS close_notify and the FIN leave in one segment (the close sends what the cork
   holds) where they took three, each a loopback transmission charged to the worker.  S7c (one
   request per TLS connection, `Connection: close`), one worker saturated, 10 rounds: 9 us less
   kernel time per connection (the median of the rounds' differences, 0 to 18), about 2 % of its
   CPU.  Only a response in hand: a cork held while one comes in parts holds each part up to
   200 ms (a streamed body, a 103, the rest of a slow body: review 2026-12-05-lanereview #1, when
   the cork began with the request), and only once the request asked for the close: a cork held
   while the client may still send holds back the ACK its Nagle waits for (43 ms per connection
   for a Python client, measured, when corked from the handshake's last round). */
void lane_cork(int fd) {
    int on = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);    /* not TCP (a unix socket): nothing to coalesce */
}

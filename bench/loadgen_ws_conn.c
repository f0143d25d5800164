/* loadgen_ws_conn.c - one connection of the C WebSocket load generator (loadgen_ws.c says what and why).
 *
 * A connection goes CONNECTING -> (TLS_HANDSHAKE) -> UPGRADING -> OPEN, or DEAD from any state.
 * Open, it carries one message at a time: the frame goes out (what the socket does not take
 * now waits for EPOLLOUT), and every byte that comes back is compared, as it arrives, with
 * the echo expected at that offset; a connection that deviates in any way is closed and counted.
 */
#include "loadgen_ws.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>
#ifdef WITH_OPENSSL
#include <openssl/err.h>
#endif

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* -- the upgrade's key: SHA-1 and base64 (RFC 6455 section 4.2.2), so plain builds need no library -- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, w[80];
    uint64_t bits = (uint64_t)len * 8;
    size_t total = ((len + 8) / 64 + 1) * 64;   /* message, 0x80, zeros, 64-bit length */
    for (size_t off = 0; off < total; off += 64) {
        unsigned char b[64];
        for (size_t j = 0; j < 64; j++) {
            size_t k = off + j;
            b[j] = k < len ? data[k] : k == len ? 0x80
                 : k >= total - 8 ? (unsigned char)(bits >> (8 * (total - 1 - k))) : 0;
        }
        for (int j = 0; j < 16; j++)
            w[j] = (uint32_t)b[4 * j] << 24 | (uint32_t)b[4 * j + 1] << 16 | (uint32_t)b[4 * j + 2] << 8 | b[4 * j + 3];
        for (int j = 16; j < 80; j++)
            w[j] = rol(w[j - 3] ^ w[j - 8] ^ w[j - 14] ^ w[j - 16], 1);
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
        for (int j = 0; j < 80; j++) {
            uint32_t f = j < 20 ? (bb & c) | (~bb & d) : j < 40 ? bb ^ c ^ d
                       : j < 60 ? (bb & c) | (bb & d) | (c & d) : bb ^ c ^ d;
            uint32_t k = j < 20 ? 0x5A827999 : j < 40 ? 0x6ED9EBA1 : j < 60 ? 0x8F1BBCDC : 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[j];
            e = d; d = c; c = rol(bb, 30); bb = a; a = t;
        }
        h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e;
    }
    for (int i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        *out++ = abc[v >> 18 & 63];
        *out++ = abc[v >> 12 & 63];
        *out++ = i + 1 < len ? abc[v >> 6 & 63] : '=';
        *out++ = i + 2 < len ? abc[v & 63] : '=';
    }
    *out = 0;
}

/* -- frames, built once ---------------------------------------------------------------------------- */

static size_t frame_head(unsigned char *p, size_t n, int masked) {
    p[0] = 0x82;   /* FIN + binary */
    unsigned char m = masked ? 0x80 : 0;
    if (n < 126) { p[1] = m | (unsigned char)n; return 2; }
    if (n < 65536) { p[1] = m | 126; p[2] = (unsigned char)(n >> 8); p[3] = (unsigned char)n; return 4; }
    p[1] = m | 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

void build_variant(struct msg *v, size_t size, int seed) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(seed + 1);   /* xorshift: each variant differs everywhere */
    unsigned char mask[4];
    if (getrandom(mask, 4, 0) != 4)
        memcpy(mask, "\x12\x34\x56\x78", 4);
    v->payload_len = size;
    v->frame = malloc(size + 14);
    v->echo = malloc(size + 10);
    if (!v->frame || !v->echo) { fprintf(stderr, "loadgen_ws: out of memory\n"); exit(1); }
    size_t fh = frame_head(v->frame, size, 1), eh = frame_head(v->echo, size, 0);
    memcpy(v->frame + fh, mask, 4);
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        v->echo[eh + i] = (unsigned char)x;
        v->frame[fh + 4 + i] = (unsigned char)x ^ mask[i % 4];
    }
    v->frame_len = fh + 4 + size;
    v->echo_len = eh + size;
}

/* -- I/O, plain or TLS: >0 bytes, 0 closed (recv) or would block (send), -1 would block (recv), -2 error -- */

static void want(struct conn *c, uint32_t events) {
    if (c->events != events) {
        struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)c->index};
        c->events = events;
        epoll_ctl(g.epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

#ifdef WITH_OPENSSL
static const char *tls_error(void) {
    unsigned long e = ERR_get_error();
    return e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error" : strerror(errno ? errno : EPIPE);
}
#endif

static ssize_t io_send(struct conn *c, const unsigned char *p, size_t n) {
#ifdef WITH_OPENSSL
    if (c->ssl) {
        int r = SSL_write(c->ssl, p, n > (1 << 30) ? 1 << 30 : (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -2;
    }
#endif
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0)
        return r;
    return errno == EAGAIN || errno == EINTR ? 0 : -2;
}

static ssize_t io_recv(struct conn *c, void *p, size_t n) {
#ifdef WITH_OPENSSL
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, n > (1 << 30) ? 1 << 30 : (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE)
            want(c, EPOLLIN | EPOLLOUT);
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -1 : e == SSL_ERROR_ZERO_RETURN ? 0 : -2;
    }
#endif
    ssize_t r = recv(c->fd, p, n, 0);
    if (r >= 0)
        return r;
    return errno == EAGAIN || errno == EINTR ? -1 : -2;
}

static const char *io_error(struct conn *c) {
#ifdef WITH_OPENSSL
    if (c->ssl)
        return tls_error();
#endif
    (void)c;
    return strerror(errno);
}

/* -- connections ----------------------------------------------------------------------------------- */

void kill_conn(struct conn *c) {
    if (c->state == DEAD)
        return;
    if (c->state == OPEN)
        g.open--;
    if (c->state == OPEN && (c->busy || g.running)) {   /* the other side broke an open connection */
        g.dropped++;
        if (c->busy) {
            size_t head = c->msg->echo_len - c->msg->payload_len;
            size_t echoed = c->got > head ? c->got - head : 0;
            g.lost_bytes += (long long)(c->msg->payload_len - echoed);
        }
    }
    if (c->busy)
        g.busy--;
    c->busy = 0;
    c->state = DEAD;
#ifdef WITH_OPENSSL
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
#endif
    if (c->fd >= 0)
        close(c->fd);   /* close also takes it out of the epoll set */
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

/* Send what is left of c->out; 1 when all of it is gone, 0 when the socket is full, -1 when killed. */
int send_more(struct conn *c) {
    while (c->out_sent < c->out_len) {
        ssize_t n = io_send(c, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n == 0) {
            want(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        if (n < 0) {
            note("send: %s", io_error(c));
            kill_conn(c);
            return -1;
        }
        c->out_sent += (size_t)n;
    }
    want(c, EPOLLIN);
    return 1;
}

int start_connect(struct conn *c) {
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note("socket: %s", strerror(errno));
        c->state = DEAD;
        return 0;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)c->index};
    epoll_ctl(g.epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) {
        note("connect: %s", strerror(errno));
        kill_conn(c);
        return 0;
    }
    return 1;
}

static void begin_upgrade(struct conn *c) {
    unsigned char raw[16], digest[20];
    char key[32], both[80];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        memset(raw, c->index, sizeof raw);
    base64(raw, sizeof raw, key);
    snprintf(both, sizeof both, "%s%s", key, WS_GUID);
    sha1((unsigned char *)both, strlen(both), digest);
    base64(digest, sizeof digest, c->accept);
    c->buf = malloc(REQ_MAX + HEAD_MAX);
    if (!c->buf) { note("out of memory"); kill_conn(c); return; }
    int bracket = strchr(g.host, ':') != NULL;   /* an IPv6 literal */
    int n = snprintf(c->buf, REQ_MAX, "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     g.path, bracket ? "[" : "", g.host, bracket ? "]" : "", g.port, key);
    c->out = (unsigned char *)c->buf;
    c->out_len = (size_t)n;
    c->out_sent = 0;
    c->head_len = 0;
    c->state = UPGRADING;
    send_more(c);
}

/* The upgrade response: 101, the right Sec-WebSocket-Accept, and nothing after the head. */
static const char *check_head(struct conn *c, size_t end) {
    char *head = c->buf + REQ_MAX;
    head[end] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        return "upgrade refused";
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "sec-websocket-accept:", 21) == 0) {
            char *v = line + 21;
            while (*v == ' ' || *v == '\t') v++;
            size_t len = strcspn(v, " \t\r");
            if (len != strlen(c->accept) || memcmp(v, c->accept, len) != 0)
                return "bad Sec-WebSocket-Accept";
            return c->head_len > end + 4 ? "data before the first message" : NULL;
        }
    }
    return "bad Sec-WebSocket-Accept";
}

static void read_upgrade(struct conn *c) {
    char *head = c->buf + REQ_MAX;
    for (;;) {
        ssize_t n = io_recv(c, head + c->head_len, HEAD_MAX - 1 - c->head_len);
        if (n == -1)
            return;
        if (n <= 0) {
            note("upgrade: %s", n == 0 ? "closed during the upgrade" : io_error(c));
            kill_conn(c);
            return;
        }
        c->head_len += (size_t)n;
        head[c->head_len] = 0;
        char *end = strstr(head, "\r\n\r\n");
        if (end) {
            const char *why = check_head(c, (size_t)(end - head));
            if (why) {
                note("upgrade: %s", why);
                kill_conn(c);
                return;
            }
            free(c->buf);
            c->buf = NULL;
            c->state = OPEN;
            g.open++;
            return;
        }
        if (c->head_len >= HEAD_MAX - 1) {
            note("upgrade: response head too long");
            kill_conn(c);
            return;
        }
    }
}

/* Move a connection through TCP connect, TLS handshake and the HTTP upgrade. */
void advance(struct conn *c, uint32_t ev) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            note("upgrade: connect: %s", strerror(err));
            kill_conn(c);
            return;
        }
#ifdef WITH_OPENSSL
        if (g.tls) {
            c->ssl = SSL_new(g.ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            c->state = TLS_HANDSHAKE;
        }
#endif
        if (!g.tls) {
            begin_upgrade(c);
            return;
        }
    }
#ifdef WITH_OPENSSL
    if (c->state == TLS_HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
            begin_upgrade(c);
            return;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            want(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
            return;
        }
        note("upgrade: TLS handshake: %s", tls_error());
        kill_conn(c);
        return;
    }
#endif
    if (c->state == UPGRADING) {
        if (c->out_sent < c->out_len && send_more(c) < 0)
            return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
            read_upgrade(c);
    }
}

/* -- the echo loop --------------------------------------------------------------------------------- */

void start_message(struct conn *c) {
    c->msg = &g.variants[(c->index + c->seq++) % VARIANTS];
    c->out = c->msg->frame;
    c->out_len = c->msg->frame_len;
    c->out_sent = c->got = 0;
    c->busy = 1;
    g.busy++;
    c->t0 = now();
    send_more(c);
}

/* Read what has arrived, comparing it with the echo expected; 1 when the whole echo is back. */
int receive(struct conn *c) {
    for (;;) {
        size_t room = c->busy ? c->msg->echo_len - c->got : 1;
        if (room > SCRATCH)
            room = SCRATCH;
        ssize_t n = io_recv(c, g.scratch, room);
        if (n == -1)
            return 0;
        if (n <= 0) {
            if (n == 0)
                note("closed by the other side");
            else
                note("recv: %s", io_error(c));
            kill_conn(c);
            return 0;
        }
        if (!c->busy || memcmp(g.scratch, c->msg->echo + c->got, (size_t)n) != 0) {
            g.mismatches++;
            note(c->busy ? "echo differs from the message sent" : "bytes arrived with no message in flight");
            kill_conn(c);
            return 0;
        }
        c->got += (size_t)n;
        g.bytes_echoed += n;
        if (c->got == c->msg->echo_len)
            return 1;
        /* Plain: a short read drained the socket, wait for epoll. TLS: OpenSSL hands out one record
           per call and may hold more, which epoll cannot see: read on until it would block. */
        if (!g.tls && (size_t)n < room)
            return 0;
    }
}

void setup_tls(void) {
#ifdef WITH_OPENSSL
    g.ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);   /* a throw-away self-signed certificate */
    SSL_CTX_set_mode(g.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#else
    fprintf(stderr, "loadgen_ws: built without OpenSSL: wss:// is not available\n");
    exit(2);
#endif
}


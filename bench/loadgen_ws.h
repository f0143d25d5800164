/* loadgen_ws.h - what the two halves of the C WebSocket load generator share.
 *
 * loadgen_ws.c    the run: options, the URL, the JSON lines to and from the harness, the connect and
 *                 echo loops over epoll (see its top comment for what the program does and why C)
 * loadgen_ws_conn.c  one connection: TCP connect, TLS handshake, HTTP upgrade, frames out, echoes in
 */
#ifndef LOADGEN_WS_H
#define LOADGEN_WS_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#ifdef WITH_OPENSSL
#include <openssl/ssl.h>
#endif

#define VARIANTS 4
#define MAX_NOTES 5
#define NBUCKETS 4096          /* 1.01^4096 us: any round trip fits */
#define HEAD_MAX 8192          /* the upgrade response head */
#define REQ_MAX 512
#define SCRATCH (256 * 1024)

enum state { CONNECTING, TLS_HANDSHAKE, UPGRADING, OPEN, DEAD };

struct msg {                   /* one payload variant: what is sent and the exact echo expected */
    unsigned char *frame, *echo;
    size_t frame_len, echo_len, payload_len;
};

struct conn {
    int fd, index;
    enum state state;
    uint32_t events;           /* the epoll interest now registered */
    unsigned seq;
    int busy;                  /* a message is in flight */
    const struct msg *msg;
    const unsigned char *out;  /* being sent: the upgrade request or a frame */
    size_t out_len, out_sent, got;
    double t0;
    char *buf;                 /* during the upgrade only: request (REQ_MAX) then response head */
    size_t head_len;
    char accept[32];
#ifdef WITH_OPENSSL
    SSL *ssl;
#endif
};

struct gen {                   /* the one generator of this process */
    char host[300], path[256];
    int port, tls, running, epfd, nconns;
    int open, busy;            /* connections open, and of them with a message in flight */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct msg variants[VARIANTS];
    struct conn *conns;
    long long completed, bytes_echoed, mismatches, dropped, lost_bytes;
    long long hist[NBUCKETS];
    char notes[MAX_NOTES][160];
    int nnotes;
    unsigned char scratch[SCRATCH];
#ifdef WITH_OPENSSL
    SSL_CTX *ctx;
#endif
};
extern struct gen g;

/* loadgen_ws.c */
double now(void);
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* loadgen_ws_conn.c */
void setup_tls(void);
void build_variant(struct msg *v, size_t size, int seed);
int start_connect(struct conn *c);
void advance(struct conn *c, uint32_t ev);
void kill_conn(struct conn *c);
void start_message(struct conn *c);
int send_more(struct conn *c);
int receive(struct conn *c);

#endif

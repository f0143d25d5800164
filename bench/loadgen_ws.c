/* loadgen_ws.c - the benchmark's WebSocket load generator, in C.
 *
 * What it does: opens --conns WebSockets (ws:// or wss://) to a loopback address, keeps one
 * message in flight on each (send a masked binary frame, wait for the whole echo, send the
 * next), compares every echoed byte with the frame an echo server must send back, rotates
 * VARIANTS payloads per message (so a proxy that mixed connections up or replayed stale bytes
 * is caught), and counts round trips in the 1%-wide log histogram of bench/stats.py.
 *
 * The protocol is bench/loadgen_ws.py's, so the harness drives either one the same way
 * (one JSON object per line):
 *     -> {"event": "ready", "connected": N, "failed": K, "connect_s": S, "notes": [...]}
 *     <- go      run for --duration seconds (or --count messages), then report
 *     <- check   one message on every open connection, then report
 *     -> {"event": "result", "messages": ..., "hist": {"bucket": count, ...}, ...}
 *     <- exit    (or EOF) close everything and exit
 * Same options too: --url --conns --size --duration --count --connect-timeout --standalone;
 * --features prints {"tls": true|false} and exits.
 *
 * Why C: on a two-core machine the generator, the backend and the proxy share the cores, so
 * every microsecond the generator spends per message is taken from what is measured. The
 * Python generator spent ~12 us of CPU per 64-byte message (4-5 us of it in Python itself);
 * this one spends ~8 us, nearly all of it the kernel's loopback TCP in send/recv, which no
 * language saves. Measured in S3 (--quick, same machine, same minute): direct 80.7k msg/s with
 * Python, 86.3k with C, and the proxies up from 0.40-0.54x to 0.61-0.67x of it, because they
 * too get the CPU the generator gave back; S4 direct 1.26 -> 2.46 GB/s. One epoll loop over
 * non-blocking sockets, frames built and masked once up front, one memcmp per read, one send
 * and one recv per 64-byte message, no allocation per message.
 *
 * This file is the run (options, URL, JSON lines, the connect and echo loops); one connection's
 * states, I/O and checks are in loadgen_ws_conn.c. Build (bench/wsgen.py does it, from bench/setup
 * or on demand), with OpenSSL, or without it for ws:// only:
 *     gcc -O2 -Wall -Wextra -DWITH_OPENSSL -o loadgen_ws loadgen_ws.c loadgen_ws_conn.c -lssl -lcrypto -lm
 *     gcc -O2 -Wall -Wextra -o loadgen_ws loadgen_ws.c loadgen_ws_conn.c -lm
 */
#include "loadgen_ws.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_IN_FLIGHT 64   /* handshakes in progress at once, so no listen backlog overflows */

struct gen g;

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void note(const char *fmt, ...) {
    if (g.nnotes >= MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.notes[g.nnotes++], sizeof g.notes[0], fmt, ap);
    va_end(ap);
}

/* Open --conns WebSockets, at most CONNECT_IN_FLIGHT in progress; sets *opened and *failed. */
static double open_all(int count, double timeout, int *opened, int *failed) {
    double started = now(), deadline = started + timeout;
    int next = 0, pending = 0;
    struct epoll_event evs[256];
    *failed = 0;
    for (;;) {
        while (next < count && pending < CONNECT_IN_FLIGHT) {
            if (start_connect(&g.conns[next++]))
                pending++;
            else
                ++*failed;
        }
        double t = now();
        if (!pending || t >= deadline)
            break;
        int n = epoll_wait(g.epfd, evs, 256, (int)ceil(fmin(0.2, deadline - t) * 1000));
        for (int i = 0; i < n; i++) {
            struct conn *c = &g.conns[evs[i].data.u32];
            if (c->state >= OPEN)
                continue;
            advance(c, evs[i].events);
            if (c->state == OPEN)
                pending--;
            else if (c->state == DEAD) {
                pending--;
                ++*failed;
            }
        }
    }
    *opened = 0;
    for (int i = 0; i < next; i++) {
        struct conn *c = &g.conns[i];
        if (c->state == OPEN)
            ++*opened;
        else if (c->state != DEAD) {
            note("connect/upgrade timed out");
            kill_conn(c);
            ++*failed;
        }
    }
    *failed += count - next;
    return now() - started;
}

static void finish_message(struct conn *c) {
    double us = (now() - c->t0) * 1e6;
    int b = us > 1.0 ? (int)(log(us) / log(1.01)) : 0;
    g.hist[b < NBUCKETS ? b : NBUCKETS - 1]++;
    g.completed++;
    c->busy = 0;
    g.busy--;
}

/* Echo for `duration` seconds or `limit` messages (check: one message per connection). When time
   is up no message starts, and those in flight are waited for, so one cut short is never "lost". */
static double run(double duration, long long limit, int check, double timeout) {
    g.completed = g.bytes_echoed = g.mismatches = g.dropped = g.lost_bytes = 0;
    memset(g.hist, 0, sizeof g.hist);
    g.running = 1;
    double started = now(), stop_at = started + (check ? 0.0 : duration), give_up = stop_at + timeout;
    if (!limit)
        limit = 1LL << 62;
    for (int i = 0; i < g.nconns; i++)
        if (g.conns[i].state == OPEN && !g.conns[i].busy)
            start_message(&g.conns[i]);
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        int more = t < stop_at && g.completed < limit;
        if (!g.open || (!more && !g.busy))
            break;
        if (t >= give_up) {
            note("%d echoes still missing after %.0f s", g.busy, timeout);
            break;
        }
        int n = epoll_wait(g.epfd, evs, 256, (int)ceil(((more ? stop_at : give_up) - t) * 1000));
        for (int i = 0; i < n; i++) {
            struct conn *c = &g.conns[evs[i].data.u32];
            uint32_t ev = evs[i].events;
            if (c->state != OPEN)
                continue;
            if ((ev & EPOLLOUT) && c->busy && c->out_sent < c->out_len && send_more(c) < 0)
                continue;
            if (((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) || g.tls) && receive(c)) {
                finish_message(c);
                if (more && g.completed < limit)
                    start_message(c);
            }
        }
    }
    g.running = 0;
    return now() - started;
}

/* -- the harness's side: options, JSON lines ------------------------------------------------------- */

static void json_notes(void) {
    fputs("\"notes\": [", stdout);
    for (int i = 0; i < g.nnotes; i++) {
        fputs(i ? ", \"" : "\"", stdout);
        for (const char *p = g.notes[i]; *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p >= 0x20)
                putchar(*p);
        putchar('"');
    }
    putchar(']');
}

static void emit_result(const char *mode, double elapsed, size_t size) {
    printf("{\"event\": \"result\", \"generator\": \"c\", \"mode\": \"%s\", \"elapsed\": %.6f, \"messages\": %lld, "
           "\"bytes_echoed\": %lld, \"payload_bytes\": %lld, \"open_at_end\": %d, \"dropped\": %lld, "
           "\"lost_bytes\": %lld, \"mismatches\": %lld, \"still_busy\": %d, \"hist\": {",
           mode, elapsed, g.completed, g.bytes_echoed, g.completed * (long long)size, g.open, g.dropped,
           g.lost_bytes, g.mismatches, g.busy);
    const char *sep = "";
    for (int b = 0; b < NBUCKETS; b++)
        if (g.hist[b]) {
            printf("%s\"%d\": %lld", sep, b, g.hist[b]);
            sep = ", ";
        }
    fputs("}, ", stdout);
    json_notes();
    puts("}");
    fflush(stdout);
}

/* ws://HOST:PORT/PATH or wss://...; the address must be loopback (this generator is for this machine). */
static void parse_url(const char *url) {
    const char *p;
    if (strncmp(url, "wss://", 6) == 0) { g.tls = 1; p = url + 6; }
    else if (strncmp(url, "ws://", 5) == 0) p = url + 5;
    else { fprintf(stderr, "loadgen_ws: --url must be ws:// or wss://\n"); exit(2); }
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    char hp[300];
    snprintf(hp, sizeof hp, "%.*s", (int)hostport, p);
    snprintf(g.path, sizeof g.path, "%s", slash ? slash : "/");
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    g.port = g.tls ? 443 : 80;
    if (colon) {
        g.port = atoi(colon + (hp[0] == '[' ? 2 : 1));
        *colon = 0;
    }
    snprintf(g.host, sizeof g.host, "%s", hp[0] == '[' ? hp + 1 : hp);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", g.port);
    if (getaddrinfo(g.host, port, &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve '%s'\n", g.host);
        exit(1);
    }
    memcpy(&g.addr, ai->ai_addr, ai->ai_addrlen);
    g.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    int loop = g.addr.ss_family == AF_INET
        ? (ntohl(((struct sockaddr_in *)&g.addr)->sin_addr.s_addr) >> 24) == 127
        : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&g.addr)->sin6_addr);
    if (!loop) {
        fprintf(stderr, "%s is not a loopback address: this load generator is for 127.0.0.1/::1 only\n", g.host);
        exit(1);
    }
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", 1, 0, 'u'}, {"conns", 1, 0, 'c'}, {"size", 1, 0, 's'}, {"duration", 1, 0, 'd'},
        {"count", 1, 0, 'n'}, {"connect-timeout", 1, 0, 't'}, {"standalone", 0, 0, 'S'},
        {"features", 0, 0, 'F'}, {0, 0, 0, 0}};
    const char *url = NULL;
    int conns = 64, standalone = 0, opt;
    long long count = 0;
    size_t size = 64;
    double duration = 5.0, connect_timeout = 30.0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'c': conns = atoi(optarg); break;
        case 's': size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': duration = atof(optarg); break;
        case 'n': count = atoll(optarg); break;
        case 't': connect_timeout = atof(optarg); break;
        case 'S': standalone = 1; break;
        case 'F':
#ifdef WITH_OPENSSL
            printf("{\"tls\": true, \"openssl\": \"%s\"}\n", OpenSSL_version(OPENSSL_VERSION));
#else
            puts("{\"tls\": false}");
#endif
            return 0;
        default: return 2;
        }
    }
    if (!url || conns < 0) {
        fprintf(stderr, "usage: loadgen_ws --url ws://HOST:PORT/ws [--conns N] [--size B] [--duration S] "
                        "[--count N] [--connect-timeout S] [--standalone] | --features\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    parse_url(url);
    if (g.tls)
        setup_tls();
    for (int i = 0; i < VARIANTS; i++)
        build_variant(&g.variants[i], size, i);
    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    g.nconns = conns;
    g.conns = calloc((size_t)conns + 1, sizeof *g.conns);
    for (int i = 0; i < conns; i++) {
        g.conns[i].index = i;
        g.conns[i].fd = -1;
        g.conns[i].state = DEAD;
    }
    int opened, failed;
    double took = open_all(conns, connect_timeout, &opened, &failed);
    printf("{\"event\": \"ready\", \"generator\": \"c\", \"connected\": %d, \"failed\": %d, \"connect_s\": %.6f, ",
           opened, failed, took);
    json_notes();
    puts("}");
    fflush(stdout);
    char line[64];
    while (standalone || fgets(line, sizeof line, stdin)) {
        const char *cmd = standalone ? "go" : line;
        int check = strncmp(cmd, "check", 5) == 0;
        if (!check && strncmp(cmd, "go", 2) != 0)
            break;
        double elapsed = run(duration, count, check, 10.0);
        emit_result(check ? "check" : "go", elapsed, size);
        if (standalone)
            break;
    }
    for (int i = 0; i < conns; i++) {
        g.running = 0;
        g.conns[i].busy = 0;
        kill_conn(&g.conns[i]);
    }
    return 0;
}

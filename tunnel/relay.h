/* What the relay of plain tunnels keeps (tunnel/_relay.c says why it exists): a Link per tunnel,
a Side per socket of it, and the Relay that owns them. */
#ifndef MPM_RELAY_H
#define MPM_RELAY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define PIPE_SIZE (256 * 1024)
#define MAX_EVENTS 256
#define READS_PER_EVENT 4   /* copied reads of one event at most (256 KiB, tunnel.py's one read) */

typedef struct {
    int fd;
    int eof;            /* EOF read from this side (as a source) */
    int events;         /* epoll interest now; -1: not registered */
    int bulk;           /* its last read (as a source) filled what it read into: splice first */
    char *out;          /* bytes for this side (as a sink) it has not taken */
    Py_ssize_t out_len, out_off;
} Side;

typedef struct {
    PyObject *key;      /* the owner (tunnel.tunnel.Tunnel); NULL: a free slot */
    Side side[2];       /* 0 the client, 1 the backend */
    long long bytes[2]; /* read from side 0 (to the backend), from side 1 (to the client) */
    double last;        /* monotonic time of the last traffic */
    const char *ended;  /* why it ended, once it has (the turn closes its tunnel, remove frees it) */
    int error;          /* the errno that goes with it, or 0 */
    unsigned born;      /* the relay's `waits` when it was added: the events of that wait are not its */
} Link;                 /* 128 bytes: what a tunnel costs here, beside its Python objects */

typedef struct {
    PyObject_HEAD
    int epfd;           /* the worker loop's epoll (not ours to close) */
    Link *links;
    int cap;
    int *free_slots;    /* a stack of the free slots below `cap` */
    int nfree;
    int pipe_r, pipe_w, pipe_size;
    int splicing;
    int pumping;        /* relaying a turn's event: the ends it records are reported */
    double now;
    int *ended_slots;   /* the slots that ended in a turn, reported before Python runs next */
    unsigned waits;     /* epoll_waits so far (wrapping): which batch an event came in */
    int nended;
    char buf[BUF_SIZE];
} Relay;

/* The engine (tunnel/_relay_engine.c), used by the Python API (tunnel/_relay.c). */
double relay_monotonic(void);
void relay_end_link(Relay *self, int slot, const char *why, int err);
void relay_update_interest(Relay *self, int slot);
int relay_keep(Side *sink, const char *data, Py_ssize_t len);
void relay_discard_pipe(Relay *self);
void relay_on_event(Relay *self, int slot, int s, uint32_t mask);
PyObject *relay_take_ended(Relay *self);

/* A side's registration carries this tag in its epoll data's `fd`: negative, so the worker
   loop's own registrations (a descriptor, never negative) and the relay's tell apart in one
   epoll.  The bits below the sign are slot * 2 + side. */
#define RELAY_TAG(slot, s) ((int)(0x80000000u | ((uint32_t)(slot) << 1) | (uint32_t)(s)))

/* The loop turn in C (tunnel/_relay_turn.c), a method of the Relay. */
PyObject *Relay_turn(Relay *self, PyObject *const *args, Py_ssize_t nargs);

#endif

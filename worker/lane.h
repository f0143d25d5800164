/* What worker/_lane.c (the Lane type, what Python sees) and _lane_engine.c (the events of one
lane) share. */

#ifndef MPM_LANE_H
#define MPM_LANE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#define LANE_BUFFER (64 * 1024)        /* the read buffer, which bounds every read size */
#define CLOSE_LINE "Connection: close\r\n"
#define CLOSE_LINE_SIZE (sizeof(CLOSE_LINE) - 1)

enum { IDLE, WAITING, RELAYING, FLUSHING, GONE, HANDSHAKE };     /* HANDSHAKE: a new TLS connection's, first */
/* Why `lane_back` is called (worker/lane.py's BACK_* mirror them). */
enum { BACK_CLIENT_BYTES, BACK_CLIENT_GONE, BACK_BACKEND_IDLE, BACK_RESPONSE, BACK_ABORTED, BACK_SEND, BACK_CUT };

typedef struct {
    PyObject_HEAD
    int epfd, client_fd, backend_fd;    /* backend_fd -1: a new connection's, none attached yet */
    int state;
    int client_mask, backend_mask;      /* the interest each fd has in the loop's epoll now; -1: not in it */
    int handshake_wants;                /* HANDSHAKE: what its last round waits for (EPOLLIN, EPOLLOUT) */
    int client_eof;                     /* the client shut its side during an exchange */
    int stopping;                       /* the worker stops: the next response head is Python's */
    int head_request;                   /* the request is HEAD: no body follows the response head */
    int backend_overran;                /* the backend sent bytes past the body: not to be reused */
    int closing;                        /* the request said `Connection: close`: so does the response head,
                                           and the connection ends after it (Python closes it) */
    Py_ssize_t head_read, first_read;   /* the Python path's read sizes (worker.client, worker.response) */
    long long remaining;                /* body bytes the backend still owes */
    long long sent, head_sent;          /* what reached the client in this exchange: all of it, and the head */
    int status;
    char *out;                          /* what the client did not take yet (malloc'd) */
    Py_ssize_t out_size, out_at;
    PyObject *early;                    /* bytes the client sent during an exchange (bytes or NULL) */
    double last;                        /* monotonic time of the last progress */
    double started;                     /* monotonic time the request came in */
    PyObject *request;                  /* its head, kept for its access-log line (or NULL) */
    time_t request_wall;                /* the wall-clock second it came in */
    PyObject *log_client, *log_route;   /* what Python puts in the line (worker/_lane_log.c) */
    Py_ssize_t count_base, count_cell;  /* its route's cells in the metrics row (worker/_lane_count.c); -1: none */
    long count_row;                     /* the row they were checked against (LaneCounts.row) */
    long long received;                 /* the request head's bytes */
    PyObject *owner;                    /* worker.lane.LaneOwner (kept after GONE: `abandon` goes there) */
    void *ssl;                          /* a TLS client's SSL* (its ssl.SSLSocket's), or NULL */
} Lane;

/* The OpenSSL functions a TLS client's reads and writes go through (install_tls), resolved in
   the libssl CPython's _ssl uses, as conf/_readahead.c's are. */
typedef struct {
    int (*read)(void *ssl, void *buf, int num);
    int (*write)(void *ssl, const void *buf, int num);
    int (*get_error)(const void *ssl, int ret);
    int (*pending)(const void *ssl);
    int (*has_pending)(const void *ssl);
    int (*want)(const void *ssl);
    void (*clear_errors)(void);
    int (*do_handshake)(void *ssl);
    int (*session_reused)(const void *ssl);
} LaneTls;

extern LaneTls lane_tls;                /* .read NULL: not installed, no TLS client enters */

/* The worker's row of the metrics table (shm/metrics.py), where the lane counts its exchanges
   (worker/_lane_count.c, `install_counts`). */
#define LANE_MAX_BOUNDS 32
typedef struct {
    long long *counts;                  /* NULL: not installed; Python counts every exchange */
    double *seconds;
    Py_ssize_t counts_size, seconds_size;
    double bounds[LANE_MAX_BOUNDS];     /* the duration histogram's upper bounds, ascending */
    Py_ssize_t nbounds, buckets, received, sent, classes;
    long row;                           /* installs so far: a lane's cells count only in the row they were checked in */
    Py_buffer counts_view, seconds_view;
} LaneCounts;

extern LaneCounts lane_counts;

extern PyObject *read_response;         /* worker._heads.response (set_response_reader) */
extern PyObject *s_status, *s_content_length, *s_keep_alive, *s_chunked, *s_plain, *s_lane_request, *s_abandon;
extern PyObject *s_lane_handshaken;

double lane_now(void);
void lane_detach(Lane *self);
Py_ssize_t lane_client_recv(Lane *self, char *buf, Py_ssize_t size);         /* worker/_lane_io.c */
Py_ssize_t lane_client_send(Lane *self, const char *data, Py_ssize_t size);
int lane_client_buffered(Lane *self);
int lane_handshake(Lane *self);                                              /* worker/_lane_handshake.c */
void lane_update_interest(Lane *self);
void lane_cork(int fd);
void lane_log_request(Lane *self, PyObject *raw, time_t second);
int lane_count(Lane *self);                                                  /* worker/_lane_count.c */
PyObject *lane_install_counts(PyObject *module, PyObject *args);
PyObject *Lane_get_count_at(Lane *self, void *closure);
int Lane_set_count_at(Lane *self, PyObject *value, void *closure);
PyObject *lane_log_line(Lane *self);
PyObject *Lane_on_client(Lane *self, PyObject *arg);
PyObject *Lane_on_backend(Lane *self, PyObject *arg);

#endif

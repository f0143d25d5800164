/* The keep-alive lane: the usual HTTP/1.1 exchange of a client connection, moved in C.

Why: a small keep-alive request cost 108,700 instructions in the Python path (2,030 bytecodes in
some 40 functions, none above 9 % of the whole: bench/RESULTS-2026-12-04-late.md), nginx 17,000.
No cut left in Python was worth more than 1-3 %.  Here the events of a request and its response
cost a recv and a send each in C, and the Python runs twice per request: once to judge, route and
rewrite the head (`lane_request`: worker.http1, worker.routing and worker.rewrite stay the
reference and the only code that does that), once to count and log it (`lane_done`; the
access-log line itself is written here, _lane_log.c, and its /metrics cells counted, _lane_count.c).
Measured:
47,135 instructions per request, 30.9 µs of proxy CPU under wrk against 48.2 (nginx 24.4;
bench/RESULTS-2026-12-05.md).

What the lane carries (worker/lane.py decides when a connection enters it): a client connection
between requests, and the pooled backend connection its last exchange used, pinned to it; or a
new one, before its first request, which gets an idle connection to that request's backend when
it comes (`attach`).  A head that comes whole in one read, with nothing after it, goes to
`lane_request`; the bytes it answers go to the backend.  A response whose head is final, strictly shaped, `plain` (nothing to take out
of it), persistent and framed by Content-Length (or bodiless) goes to the client as it came (with
`Connection: close` before its last CRLF when the request asked for the close, as worker.response
writes it; Python then closes the connection), in the same sends the Python path makes; the rest
of its body follows read by read, the client's back-pressure pausing the backend.  Anything else goes back to Python (`lane_back`) at the
boundary where it shows, with the bytes read so far, and from there worker.exchange serves it as
if it had read them itself: a head in pieces, pipelined heads, a response of any other shape, a
backend that closed or failed before its response.  After the response head has left, a failure
can only end the client connection (worker.exchange does the same: `answer` closes once the
response has begun).

A TLS client connection is read and written through its SSL object (the SSL* of its
ssl.SSLSocket, `install_tls` giving OpenSSL's functions): each recv becomes an SSL_read, each
send an SSL_write (_lane_io.c, `lane_client_recv` and `lane_client_send`), and a head is the lane's
only when the SSL object holds nothing after it.  HTTPS keep-alive requests cost 0.63-0.68x
the Python path's CPU, 1.06-1.26x nginx's, in two runs (bench/RESULTS-2026-12-05-tls.md).

The lane never closes a descriptor: Python owns both sockets.  Interest is EPOLLIN on both sides
while the lane keeps to its usual path (no epoll_ctl per request, as in the Python path), and is
put back to that before Python gets the connection again. */

#include "lane.h"
#include <structmember.h>

PyObject *read_response;
PyObject *s_status, *s_content_length, *s_keep_alive, *s_chunked, *s_plain, *s_lane_request, *s_abandon;
PyObject *s_lane_handshaken;

/* == Python API ============================================================================== */

static PyObject *Lane_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    int epfd, client_fd, backend_fd;
    Py_ssize_t head_read, first_read;
    unsigned long long ssl = 0;
    int handshake = 0;
    PyObject *owner;
    if (!PyArg_ParseTuple(args, "iiiOnn|Kp", &epfd, &client_fd, &backend_fd, &owner, &head_read, &first_read, &ssl,
                          &handshake))
        return NULL;
    if (head_read <= 0 || head_read > LANE_BUFFER || first_read <= 0 || first_read > LANE_BUFFER) {
        PyErr_SetString(PyExc_ValueError, "Lane: read sizes out of range");
        return NULL;
    }
    if (ssl && lane_tls.read == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Lane: a TLS client before install_tls");
        return NULL;
    }
    if (handshake && (!ssl || backend_fd >= 0)) {
        PyErr_SetString(PyExc_ValueError, "Lane: a handshake is a new TLS connection's");
        return NULL;
    }
    if (read_response == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Lane: set_response_reader first");
        return NULL;
    }
    Lane *self = (Lane *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->epfd = epfd;
    self->client_fd = client_fd;
    self->backend_fd = backend_fd;
    self->client_mask = handshake ? -1 : EPOLLIN;           /* worker.lane enters only so; a handshake
                                                               enters epoll when a round waits */
    self->backend_mask = backend_fd < 0 ? -1 : EPOLLIN;     /* -1: a new connection's, until `attach` */
    self->head_read = head_read;
    self->first_read = first_read;
    self->state = handshake ? HANDSHAKE : IDLE;
    self->last = lane_now();
    self->owner = Py_NewRef(owner);
    self->ssl = (void *)(uintptr_t)ssl;
    self->count_base = self->count_cell = -1;
    return (PyObject *)self;
}

static void Lane_dealloc(Lane *self) {
    free(self->out);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->early);
    Py_XDECREF(self->request);
    Py_XDECREF(self->log_client);
    Py_XDECREF(self->log_route);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Python takes the connection back (a close, a stop, a deadline): what the lane held for the
   client, the client's early bytes and its EOF go with the answer, (out, early, eof). */
static PyObject *Lane_detach(Lane *self, PyObject *unused) {
    PyObject *out = PyBytes_FromStringAndSize(self->out ? self->out + self->out_at : "", self->out_size - self->out_at);
    if (out == NULL)
        return NULL;
    PyObject *early = self->early != NULL ? self->early : Py_NewRef(Py_None);
    self->early = NULL;
    lane_detach(self);
    return Py_BuildValue("(NNi)", out, early, self->client_eof);
}

/* A new connection's lane gets its backend connection at its first request (`lane_request`
   takes an idle one for the request's route), not at entry: a client that sends nothing pins
   none.  Python has it in the loop's epoll with EPOLLIN, as a pooled connection waits. */
static PyObject *Lane_attach(Lane *self, PyObject *arg) {
    int fd = (int)PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || self->backend_fd >= 0 || self->state != IDLE) {
        PyErr_SetString(PyExc_ValueError, "Lane.attach: only to a new connection's lane before its first request");
        return NULL;
    }
    self->backend_fd = fd;
    self->backend_mask = EPOLLIN;
    Py_RETURN_NONE;
}

static PyObject *Lane_abandon(Lane *self, PyObject *unused) {
    return PyObject_CallMethodNoArgs(self->owner, s_abandon);
}

/* A new TLS connection's first handshake round, after its accept batch (worker/_lane_handshake.c). */
static PyObject *Lane_start(Lane *self, PyObject *unused) {
    if (self->state != HANDSHAKE)
        Py_RETURN_NONE;
    Py_INCREF(self);
    int result = lane_handshake(self);
    Py_DECREF(self);
    if (result < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Lane_stop(Lane *self, PyObject *unused) {
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *Lane_get_state(Lane *self, void *closure) {
    return PyLong_FromLong(self->state);
}

static PyObject *Lane_get_last(Lane *self, void *closure) {
    return PyFloat_FromDouble(self->last);
}

static PyObject *Lane_get_holding(Lane *self, void *closure) {
    return PyBool_FromLong(self->out != NULL);
}

static PyObject *Lane_get_counts(Lane *self, void *closure) {
    return Py_BuildValue("(iLL)", self->status, self->sent, self->head_sent);
}

static PyMethodDef Lane_methods[] = {
    {"on_client", (PyCFunction)Lane_on_client, METH_O, "The client's epoll event."},
    {"on_backend", (PyCFunction)Lane_on_backend, METH_O, "The backend's epoll event."},
    {"attach", (PyCFunction)Lane_attach, METH_O, "A new connection's backend connection, at its first request."},
    {"detach", (PyCFunction)Lane_detach, METH_NOARGS, "Python takes the connection back: (out, early, eof)."},
    {"abandon", (PyCFunction)Lane_abandon, METH_NOARGS, "worker.faults: the owner's abandon()."},
    {"start", (PyCFunction)Lane_start, METH_NOARGS, "A new TLS connection's first handshake round."},
    {"stop", (PyCFunction)Lane_stop, METH_NOARGS, "The worker stops: the next response head goes to Python."},
    {NULL}
};

/* worker.newcomer: a new connection's one object becomes a ClientConnection and a LaneOwner on the
   way, and the lane calls that owner from then on. */
static int Lane_set_owner(Lane *self, PyObject *owner, void *closure) {
    if (owner == NULL || owner == Py_None) {
        PyErr_SetString(PyExc_TypeError, "a lane always has an owner");
        return -1;
    }
    Py_SETREF(self->owner, Py_NewRef(owner));
    return 0;
}

static PyObject *Lane_get_owner(Lane *self, void *closure) {
    return Py_NewRef(self->owner);
}

static PyGetSetDef Lane_getset[] = {
    {"owner", (getter)Lane_get_owner, (setter)Lane_set_owner, "What the C calls (lane_request, lane_done, lane_back).",
     NULL},
    {"state", (getter)Lane_get_state, NULL, "IDLE, WAITING, RELAYING, FLUSHING, GONE or HANDSHAKE (0-5).", NULL},
    {"last", (getter)Lane_get_last, NULL, "Monotonic time of the last progress.", NULL},
    {"counts", (getter)Lane_get_counts, NULL, "(status, bytes the client took, head bytes) of the exchange.", NULL},
    {"holding", (getter)Lane_get_holding, NULL, "Whether it holds bytes the client has not taken yet.", NULL},
    {"count_at", (getter)Lane_get_count_at, (setter)Lane_set_count_at,
     "(base, cell) of its route in the metrics row, where its exchanges are counted (worker/_lane_count.c).", NULL},
    {NULL}
};

static PyMemberDef Lane_members[] = {
    {"log_client", T_OBJECT, offsetof(Lane, log_client), 0, "`%h - - ` of its access-log lines (bytes), or None."},
    {"log_route", T_OBJECT, offsetof(Lane, log_route), 0, "`\"route\" \"backend\" ` of the next lines, or None."},
    {"closing", T_INT, offsetof(Lane, closing), 0, "1: the request in hand asked for Connection: close."},
    {"client_mask", T_INT, offsetof(Lane, client_mask), READONLY, "The client's interest in epoll; -1: not in it."},
    {NULL}
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "worker._lane.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A keep-alive client connection and its pinned backend connection (see worker/_lane.c).",
    .tp_methods = Lane_methods,
    .tp_getset = Lane_getset,
    .tp_members = Lane_members,
    .tp_new = Lane_new,
};

static PyObject *set_response_reader(PyObject *module, PyObject *reader) {
    Py_XSETREF(read_response, Py_NewRef(reader));
    Py_RETURN_NONE;
}

LaneTls lane_tls;

static PyObject *install_tls(PyObject *module, PyObject *args) {
    unsigned long long f[9];
    if (!PyArg_ParseTuple(args, "KKKKKKKKK", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8]))
        return NULL;
    for (int i = 0; i < 9; i++)
        if (!f[i]) {
            PyErr_SetString(PyExc_ValueError, "install_tls: a null OpenSSL function");
            return NULL;
        }
    lane_tls.write = (int (*)(void *, const void *, int))(uintptr_t)f[1];
    lane_tls.get_error = (int (*)(const void *, int))(uintptr_t)f[2];
    lane_tls.pending = (int (*)(const void *))(uintptr_t)f[3];
    lane_tls.has_pending = (int (*)(const void *))(uintptr_t)f[4];
    lane_tls.want = (int (*)(const void *))(uintptr_t)f[5];
    lane_tls.clear_errors = (void (*)(void))(uintptr_t)f[6];
    lane_tls.do_handshake = (int (*)(void *))(uintptr_t)f[7];
    lane_tls.session_reused = (int (*)(const void *))(uintptr_t)f[8];
    lane_tls.read = (int (*)(void *, void *, int))(uintptr_t)f[0];      /* last: it says "installed" */
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_response_reader", set_response_reader, METH_O, "worker._heads.response, which judges response heads."},
    {"install_tls", install_tls, METH_VARARGS,
     "install_tls(SSL_read, SSL_write, SSL_get_error, SSL_pending, SSL_has_pending, SSL_want, ERR_clear_error, "
     "SSL_do_handshake, SSL_session_reused)."},
    {"install_counts", lane_install_counts, METH_VARARGS,
     "install_counts(counts, seconds, bounds, buckets, classes, received, sent): the worker's metrics row."},
    {NULL}
};

static struct PyModuleDef lane_module = {PyModuleDef_HEAD_INIT, "worker._lane", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__lane(void) {
    if (PyType_Ready(&LaneType) < 0)
        return NULL;
    s_status = PyUnicode_InternFromString("status");
    s_content_length = PyUnicode_InternFromString("content_length");
    s_keep_alive = PyUnicode_InternFromString("keep_alive");
    s_chunked = PyUnicode_InternFromString("chunked");
    s_plain = PyUnicode_InternFromString("plain");
    s_lane_request = PyUnicode_InternFromString("lane_request");
    s_abandon = PyUnicode_InternFromString("abandon");
    s_lane_handshaken = PyUnicode_InternFromString("lane_handshaken");
    if (!s_status || !s_content_length || !s_keep_alive || !s_chunked || !s_plain || !s_lane_request || !s_abandon
        || !s_lane_handshaken)
        return NULL;
    PyObject *module = PyModule_Create(&lane_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

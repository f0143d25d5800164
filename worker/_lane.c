/* The keep-alive lane: the usual HTTP/1.1 exchange of a plain client connection, moved in C.

Why: a small keep-alive request cost 108,700 instructions in the Python path (2,030 bytecodes in
some 40 functions, none above 9 % of the whole: bench/RESULTS-2026-12-04-late.md), nginx 17,000.
No cut left in Python was worth more than 1-3 %.  Here the events of a request and its response
cost a recv and a send each in C, and the Python runs twice per request: once to judge, route and
rewrite the head (`lane_request`: worker.http1, worker.routing and worker.rewrite stay the
reference and the only code that does that), once to count and log it (`lane_done`).

What the lane carries (worker/lane.py decides when a connection enters it): a client connection
between requests, and the pooled backend connection its last exchange used, pinned to it.  A head
that comes whole in one read, with nothing after it, goes to `lane_request`; the bytes it answers
go to the backend.  A response whose head is final, strictly shaped, `plain` (nothing to take out
of it), persistent and framed by Content-Length (or bodiless) goes to the client as it came, in
the same sends the Python path makes; the rest of its body follows read by read, the client's
back-pressure pausing the backend.  Anything else goes back to Python (`lane_back`) at the
boundary where it shows, with the bytes read so far, and from there worker.exchange serves it as
if it had read them itself: a head in pieces, pipelined heads, a response of any other shape, a
backend that closed or failed before its response.  After the response head has left, a failure
can only end the client connection (worker.exchange does the same: `answer` closes once the
response has begun).

The lane never closes a descriptor: Python owns both sockets.  Interest is EPOLLIN on both sides
while the lane keeps to its usual path (no epoll_ctl per request, as in the Python path), and is
put back to that before Python gets the connection again. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

enum { IDLE, WAITING, RELAYING, FLUSHING, GONE };
/* Why `lane_back` is called (worker/lane.py's BACK_* mirror them). */
enum { BACK_CLIENT_BYTES, BACK_CLIENT_GONE, BACK_BACKEND_IDLE, BACK_RESPONSE, BACK_ABORTED, BACK_SEND };

#define BUFFER_SIZE (64 * 1024)
static char buffer[BUFFER_SIZE];        /* every read lands here: one worker, one loop, one lane at a time */
static PyObject *read_response;         /* worker._heads.response (set_response_reader) */
static PyObject *s_status, *s_content_length, *s_keep_alive, *s_chunked, *s_plain;
static PyObject *s_lane_request, *s_abandon;

typedef struct {
    PyObject_HEAD
    int epfd, client_fd, backend_fd;
    int state;
    int client_mask, backend_mask;      /* the interest each fd has in the loop's epoll now */
    int client_eof;                     /* the client shut its side during an exchange */
    int head_request;                   /* the request is HEAD: no body follows the response head */
    Py_ssize_t head_read, first_read;   /* the Python path's read sizes (worker.client, worker.response) */
    long long remaining;                /* body bytes the backend still owes */
    long long sent, head_sent;          /* to the client in this exchange: all of it, and the head */
    int status;
    char *out;                          /* what the client did not take yet (malloc'd) */
    Py_ssize_t out_size, out_at;
    PyObject *early;                    /* bytes the client sent during an exchange (bytes or NULL) */
    double last;                        /* monotonic time of the last progress */
    PyObject *owner;                    /* worker.lane.LaneOwner, until detached */
} Lane;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void set_mask(Lane *self, int fd, int *current, int wanted) {
    if (*current == wanted)
        return;
    struct epoll_event event = {.events = (uint32_t)wanted, .data.fd = fd};
    if (epoll_ctl(self->epfd, EPOLL_CTL_MOD, fd, &event) == 0)
        *current = wanted;
}

/* Back to the state Python handed over: both sides EPOLLIN, nothing held. */
static void detach(Lane *self) {
    self->sent -= self->out_size - self->out_at;        /* what never left did not reach the client */
    set_mask(self, self->client_fd, &self->client_mask, EPOLLIN);
    set_mask(self, self->backend_fd, &self->backend_mask, EPOLLIN);
    self->state = GONE;
    free(self->out);
    self->out = NULL;
    self->out_size = self->out_at = 0;
}

/* Give the connection back to Python (`lane_back`): `data` is what was read and not acted on;
   the client's early bytes and its EOF go with it. */
static int give_back(Lane *self, int why, const char *data, Py_ssize_t size, int error) {
    PyObject *owner = self->owner, *early = self->early;
    int eof = self->client_eof;
    self->owner = self->early = NULL;
    detach(self);
    PyObject *result = PyObject_CallMethod(owner, "lane_back", "iy#Oii", why, data != NULL ? data : "",
                                           data != NULL ? size : 0, early != NULL ? early : Py_None, eof, error);
    Py_XDECREF(early);
    Py_DECREF(owner);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static int aborted(Lane *self) {
    return give_back(self, BACK_ABORTED, NULL, 0, 0);
}

/* The response is all out: Python counts and logs it; the lane waits for the next request. */
static int done(Lane *self) {
    self->state = IDLE;
    set_mask(self, self->client_fd, &self->client_mask, EPOLLIN);
    set_mask(self, self->backend_fd, &self->backend_mask, EPOLLIN);
    PyObject *result = PyObject_CallMethod(self->owner, "lane_done", "iLL", self->status, self->sent, self->head_sent);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    if (self->state != IDLE)        /* Python took the connection back (a stop) */
        return 0;
    if (self->early != NULL)        /* pipelined: worker.client serves them */
        return give_back(self, BACK_CLIENT_BYTES, NULL, 0, 0);
    if (self->client_eof)
        return give_back(self, BACK_CLIENT_GONE, NULL, 0, 0);
    return 0;
}

/* Send to the client what it takes; keep the rest and pause the backend.  -1: the client is gone. */
static int to_client(Lane *self, const char *data, Py_ssize_t size) {
    Py_ssize_t sent = send(self->client_fd, data, size, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        sent = 0;
    }
    self->sent += sent;
    if (sent < size) {
        self->out = malloc(size - sent);
        if (self->out == NULL)
            return -1;
        memcpy(self->out, data + sent, size - sent);
        self->out_size = size - sent;
        self->out_at = 0;
        set_mask(self, self->backend_fd, &self->backend_mask, 0);
        set_mask(self, self->client_fd, &self->client_mask, (self->client_eof ? 0 : EPOLLIN) | EPOLLOUT);
    }
    return 0;
}

/* == the request ============================================================================ */

static int read_request(Lane *self) {
    Py_ssize_t n = recv(self->client_fd, buffer, self->head_read, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return give_back(self, BACK_CLIENT_GONE, NULL, 0, 0);
    /* One whole head, nothing after it (and no empty lines before it): anything else is
       worker.client's to take apart. */
    const char *end = n >= 4 ? memmem(buffer, n, "\r\n\r\n", 4) : NULL;
    if (end == NULL || end + 4 != buffer + n || buffer[0] == '\r')
        return give_back(self, BACK_CLIENT_BYTES, buffer, n, 0);
    PyObject *raw = PyBytes_FromStringAndSize(buffer, n);
    if (raw == NULL)
        return -1;
    self->head_request = n > 5 && memcmp(buffer, "HEAD ", 5) == 0;
    PyObject *out = PyObject_CallMethodOneArg(self->owner, s_lane_request, raw);
    Py_DECREF(raw);
    if (out == NULL)
        return -1;
    if (out == Py_None || self->state != IDLE) {     /* Python serves it (and has the connection back) */
        Py_DECREF(out);
        return 0;
    }
    self->state = WAITING;
    self->sent = self->head_sent = 0;
    self->status = 0;
    self->last = now();
    Py_ssize_t size = PyBytes_GET_SIZE(out);
    Py_ssize_t sent = send(self->backend_fd, PyBytes_AS_STRING(out), size, MSG_NOSIGNAL);
    int error = sent < 0 ? errno : 0;
    if (sent == size) {
        Py_DECREF(out);
        return 0;
    }
    /* A pooled connection that took the head in part, or failed: worker.exchange sends the rest,
       or the whole head again on a fresh connection. */
    if (sent < 0)
        sent = 0;
    int result = give_back(self, BACK_SEND, PyBytes_AS_STRING(out) + sent, size - sent, error);
    Py_DECREF(out);
    return result;
}

/* Bytes from the client while an exchange runs: pipelined, or its FIN.  Read so that the
   level-triggered event stops; served after the exchange (by Python). */
static int read_early(Lane *self) {
    Py_ssize_t n = recv(self->client_fd, buffer, self->head_read, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0 || self->early != NULL) {     /* a FIN (or more than one read ahead): read no more */
        if (n <= 0)
            self->client_eof = 1;
        else {
            PyObject *more = PyBytes_FromStringAndSize(buffer, n);
            if (more == NULL)
                return -1;
            PyBytes_ConcatAndDel(&self->early, more);
            if (self->early == NULL)
                return -1;
        }
        set_mask(self, self->client_fd, &self->client_mask, self->out != NULL ? EPOLLOUT : 0);
        return 0;
    }
    self->early = PyBytes_FromStringAndSize(buffer, n);
    return self->early == NULL ? -1 : 0;
}

/* == the response =========================================================================== */

static long long long_attr(PyObject *obj, PyObject *name, int *ok) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        *ok = -1;
        return -1;
    }
    long long result = value == Py_None ? -1 : PyLong_AsLongLong(value);
    Py_DECREF(value);
    return result;
}

/* The body length of a response the lane relays as it came, or -1 when the head is not one
   (-2: a Python error). */
static long long usual_body(Lane *self, const char *data, Py_ssize_t head_size) {
    PyObject *raw = PyBytes_FromStringAndSize(data, head_size);
    if (raw == NULL)
        return -2;
    PyObject *answer = PyObject_CallOneArg(read_response, raw);
    Py_DECREF(raw);
    if (answer == NULL)
        return -2;
    if (answer == Py_None || PyTuple_GET_ITEM(answer, 1) != Py_True) {   /* unusual, or llhttp's to judge */
        Py_DECREF(answer);
        return -1;
    }
    PyObject *head = PyTuple_GET_ITEM(answer, 0);
    int ok = 0;
    long long status = long_attr(head, s_status, &ok);
    long long length = long_attr(head, s_content_length, &ok);
    long long keep = long_attr(head, s_keep_alive, &ok), chunked = long_attr(head, s_chunked, &ok);
    long long plain = long_attr(head, s_plain, &ok);
    Py_DECREF(answer);
    if (ok < 0)
        return -2;
    if (!keep || chunked || !plain)
        return -1;
    self->status = (int)status;
    if (self->head_request || status == 204 || status == 304)
        return 0;
    return length;          /* -1 without Content-Length: the body ends at the close */
}

static int read_response_head(Lane *self, int mask) {
    Py_ssize_t n = recv(self->backend_fd, buffer, self->first_read, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return give_back(self, BACK_RESPONSE, NULL, 0, n < 0 ? errno : 0);
    const char *end = memmem(buffer, n, "\r\n\r\n", 4);
    if (end == NULL || self->client_eof || self->early != NULL)   /* Python decides those (Connection: close) */
        return give_back(self, BACK_RESPONSE, buffer, n, 0);
    Py_ssize_t head_size = end + 4 - buffer;
    long long body = usual_body(self, buffer, head_size);
    if (body == -2)
        return -1;
    Py_ssize_t after = n - head_size;
    /* Bytes past the body, or a body that ends where a full read did (what waits behind it?):
       worker.response judges the connection's reuse. */
    if (body < 0 || after > body || (after == body && n == self->first_read))
        return give_back(self, BACK_RESPONSE, buffer, n, 0);
    self->head_sent = head_size;
    self->remaining = body - after;
    self->state = self->remaining ? RELAYING : FLUSHING;
    self->last = now();
    if (to_client(self, buffer, n) < 0)
        return aborted(self);
    if (self->remaining || self->out != NULL)
        return 0;
    return done(self);
}

static int relay_body(Lane *self) {
    Py_ssize_t want = self->remaining < BUFFER_SIZE ? (Py_ssize_t)self->remaining : BUFFER_SIZE;
    Py_ssize_t n = recv(self->backend_fd, buffer, want, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)                 /* the backend ended before its body did: the client's response is cut */
        return aborted(self);
    self->remaining -= n;
    self->last = now();
    if (!self->remaining)
        self->state = FLUSHING;
    if (to_client(self, buffer, n) < 0)
        return aborted(self);
    if (self->state == FLUSHING && self->out == NULL)
        return done(self);
    return 0;
}

static int flush_client(Lane *self) {
    Py_ssize_t size = self->out_size - self->out_at;
    Py_ssize_t sent = send(self->client_fd, self->out + self->out_at, size, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return aborted(self);
    }
    self->sent += sent;
    self->out_at += sent;
    self->last = now();
    if (sent < size)
        return 0;
    free(self->out);
    self->out = NULL;
    set_mask(self, self->client_fd, &self->client_mask, self->client_eof ? 0 : EPOLLIN);
    if (self->state == FLUSHING)
        return done(self);
    set_mask(self, self->backend_fd, &self->backend_mask, EPOLLIN);
    return 0;
}

/* == events ================================================================================= */

static PyObject *Lane_on_client(Lane *self, PyObject *arg) {
    int mask = (int)PyLong_AsLong(arg), result = 0;
    Py_INCREF(self);            /* what Python does in a callback may drop the loop's reference */
    if (self->state != GONE && mask & EPOLLOUT && self->out != NULL)
        result = flush_client(self);
    if (result == 0 && self->state != GONE && mask & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (self->state == IDLE)
            result = read_request(self);
        else if (mask & (EPOLLHUP | EPOLLERR))
            result = aborted(self);
        else if (self->client_mask & EPOLLIN)
            result = read_early(self);
    }
    Py_DECREF(self);
    if (result < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Lane_on_backend(Lane *self, PyObject *arg) {
    int mask = (int)PyLong_AsLong(arg), result = 0;
    Py_INCREF(self);
    if (self->state == IDLE)         /* readable while idle: it closed (or misbehaves) */
        result = give_back(self, BACK_BACKEND_IDLE, NULL, 0, 0);
    else if (self->state == WAITING)
        result = read_response_head(self, mask);
    else if (self->state == RELAYING && self->backend_mask & EPOLLIN)
        result = relay_body(self);
    else if (self->state != GONE && mask & (EPOLLHUP | EPOLLERR))
        result = aborted(self);
    Py_DECREF(self);
    if (result < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* == Python API ============================================================================== */

static PyObject *Lane_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    int epfd, client_fd, backend_fd;
    Py_ssize_t head_read, first_read;
    PyObject *owner;
    if (!PyArg_ParseTuple(args, "iiiOnn", &epfd, &client_fd, &backend_fd, &owner, &head_read, &first_read))
        return NULL;
    if (head_read <= 0 || head_read > BUFFER_SIZE || first_read <= 0 || first_read > BUFFER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "Lane: read sizes out of range");
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
    self->client_mask = self->backend_mask = EPOLLIN;      /* worker.lane enters only so */
    self->head_read = head_read;
    self->first_read = first_read;
    self->state = IDLE;
    self->last = now();
    self->owner = Py_NewRef(owner);
    return (PyObject *)self;
}

static void Lane_dealloc(Lane *self) {
    free(self->out);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->early);
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
    Py_CLEAR(self->owner);
    detach(self);
    return Py_BuildValue("(NNi)", out, early, self->client_eof);
}

static PyObject *Lane_abandon(Lane *self, PyObject *unused) {
    if (self->owner == NULL)
        Py_RETURN_NONE;
    return PyObject_CallMethodNoArgs(self->owner, s_abandon);
}

static PyObject *Lane_get_state(Lane *self, void *closure) {
    return PyLong_FromLong(self->state);
}

static PyObject *Lane_get_last(Lane *self, void *closure) {
    return PyFloat_FromDouble(self->last);
}

static PyObject *Lane_get_counts(Lane *self, void *closure) {
    return Py_BuildValue("(iLL)", self->status, self->sent - (long long)(self->out_size - self->out_at),
                         self->head_sent);
}

static PyMethodDef Lane_methods[] = {
    {"on_client", (PyCFunction)Lane_on_client, METH_O, "The client's epoll event."},
    {"on_backend", (PyCFunction)Lane_on_backend, METH_O, "The backend's epoll event."},
    {"detach", (PyCFunction)Lane_detach, METH_NOARGS, "Python takes the connection back: (out, early, eof)."},
    {"abandon", (PyCFunction)Lane_abandon, METH_NOARGS, "worker.faults: the owner's abandon()."},
    {NULL}
};

static PyGetSetDef Lane_getset[] = {
    {"state", (getter)Lane_get_state, NULL, "IDLE, WAITING, RELAYING, FLUSHING or GONE (0-4).", NULL},
    {"last", (getter)Lane_get_last, NULL, "Monotonic time of the last progress.", NULL},
    {"counts", (getter)Lane_get_counts, NULL, "(status, bytes the client took, head bytes) of the exchange.", NULL},
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
    .tp_new = Lane_new,
};

static PyObject *set_response_reader(PyObject *module, PyObject *reader) {
    Py_XSETREF(read_response, Py_NewRef(reader));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_response_reader", set_response_reader, METH_O, "worker._heads.response, which judges response heads."},
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
    if (!s_status || !s_content_length || !s_keep_alive || !s_chunked || !s_plain || !s_lane_request || !s_abandon)
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

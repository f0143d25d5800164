/* The events of one lane (worker/_lane.c says what the lane is, and why). */

#include "lane.h"

/* Every read lands here: one worker, one loop, one lane at a time (and room behind the largest
   read for the line a closing response head gains). */
static char buffer[LANE_BUFFER + CLOSE_LINE_SIZE];

double lane_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Interest is derived from the state (`update_interest`), never tracked apart.  -1: out of epoll
   (a backend that hung up while nothing read it: a hang-up is reported whatever the interest). */
static void set_mask(Lane *self, int fd, int *current, int wanted) {
    if (fd < 0 || *current == wanted || (*current < 0 && wanted == 0))     /* fd -1: no backend yet */
        return;
    struct epoll_event event = {.events = (uint32_t)wanted, .data.fd = fd};
    if (epoll_ctl(self->epfd, *current < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) == 0)
        *current = wanted;
}

/* Between requests both sides are read (EPOLLIN, as Python hands them over: no epoll_ctl per
   request).  During one, the client is read until its first early bytes or its FIN (read
   ahead no further: worker.client bounds its read-ahead too), the backend while the client
   holds nothing back, and the client is written while it holds something back.  A new TLS
   connection's client is in epoll once it has to wait (its handshake's, then its first request's). */
void lane_update_interest(Lane *self) {
    if (self->state == HANDSHAKE) {         /* what its round waits for (worker/_lane_handshake.c) */
        set_mask(self, self->client_fd, &self->client_mask, self->handshake_wants);
        return;
    }
    int busy = self->state != IDLE;
    int client = (!busy || (!self->client_eof && self->early == NULL) ? EPOLLIN : 0) | (self->out ? EPOLLOUT : 0);
    int backend = !busy || self->state == WAITING || (self->state == RELAYING && self->out == NULL) ? EPOLLIN : 0;
    set_mask(self, self->client_fd, &self->client_mask, client);
    set_mask(self, self->backend_fd, &self->backend_mask, backend);
}

/* Back to the state Python handed over: both sides EPOLLIN, nothing held (a client its
   handshake never made wait stays out of epoll: `client_mask` says so). */
void lane_detach(Lane *self) {
    self->state = GONE;
    free(self->out);
    self->out = NULL;
    self->out_size = self->out_at = 0;
    Py_CLEAR(self->request);
    if (self->client_mask >= 0)
        set_mask(self, self->client_fd, &self->client_mask, EPOLLIN);
    set_mask(self, self->backend_fd, &self->backend_mask, EPOLLIN);
}

/* Give the connection back to Python (`lane_back`): `data` is what was read and not acted on;
   the client's early bytes and its EOF go with it. */
static int give_back(Lane *self, int why, const char *data, Py_ssize_t size, int error) {
    PyObject *early = self->early;
    int eof = self->client_eof;
    self->early = NULL;
    lane_detach(self);
    PyObject *result = PyObject_CallMethod(self->owner, "lane_back", "iy#Oii", why, data != NULL ? data : "",
                                           data != NULL ? size : 0, early != NULL ? early : Py_None, eof, error);
    Py_XDECREF(early);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static int aborted(Lane *self) {
    return give_back(self, BACK_ABORTED, NULL, 0, 0);
}

/* The response is all out: counted (here, when its route's cells are known: worker/_lane_count.c),
   and logged by Python; the lane waits for the next request. */
static int done(Lane *self) {
    self->state = IDLE;
    int backend_gone = self->backend_mask < 0 || self->backend_overran;
    lane_update_interest(self);
    PyObject *line = lane_log_line(self);
    Py_CLEAR(self->request);
    if (line == NULL)
        return -1;
    int counted = lane_count(self);
    PyObject *result = PyObject_CallMethod(self->owner, "lane_done", "iLLNii", self->status, self->sent,
                                           self->head_sent, line, !backend_gone, counted);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    if (self->state != IDLE)        /* Python took the connection back (a stop, a close) */
        return 0;
    if (backend_gone)               /* it hung up after its whole response, or sent more: closed by Python */
        return give_back(self, BACK_BACKEND_IDLE, NULL, 0, 0);
    if (self->early != NULL)        /* pipelined: worker.client serves them */
        return give_back(self, BACK_CLIENT_BYTES, NULL, 0, 0);
    if (self->client_eof)
        return give_back(self, BACK_CLIENT_GONE, NULL, 0, 0);
    return 0;
}

/* Send to the client what it takes; keep the rest (behind what is kept already) and pause the
   backend.  -1: the client is gone. */
static int to_client(Lane *self, const char *data, Py_ssize_t size) {
    Py_ssize_t sent = 0;
    if (self->out == NULL) {
        sent = lane_client_send(self, data, size);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            sent = 0;
        }
        self->sent += sent;
    }
    if (sent < size) {
        Py_ssize_t kept = self->out != NULL ? self->out_size - self->out_at : 0;
        char *out = malloc(kept + size - sent);
        if (out == NULL)
            return -1;
        if (kept)
            memcpy(out, self->out + self->out_at, kept);
        memcpy(out + kept, data + sent, size - sent);
        free(self->out);
        self->out = out;
        self->out_size = kept + size - sent;
        self->out_at = 0;
        lane_update_interest(self);
    }
    return 0;
}

/* == the request ============================================================================ */

static int read_request(Lane *self) {
    Py_ssize_t n = lane_client_recv(self, buffer, self->head_read);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return give_back(self, BACK_CLIENT_GONE, NULL, 0, 0);
    /* One whole head, nothing after it (and no empty lines before it; TLS: nothing more held
       in the SSL object either): anything else is worker.client's to take apart. */
    const char *end = n >= 4 ? memmem(buffer, n, "\r\n\r\n", 4) : NULL;
    if (end == NULL || end + 4 != buffer + n || buffer[0] == '\r' || lane_client_buffered(self))
        return give_back(self, BACK_CLIENT_BYTES, buffer, n, 0);
    /* When it came: its line's %t and %D count the Python's judging and routing too, as the
       Python path's and the metrics' do (review 2026-12-05-lanelog #1). */
    double arrived = lane_now();
    struct timespec wall = {0};
    if (self->log_client != NULL)       /* the wall clock only for a line the C writes */
        clock_gettime(CLOCK_REALTIME, &wall);
    PyObject *raw = PyBytes_FromStringAndSize(buffer, n);
    if (raw == NULL)
        return -1;
    self->head_request = n > 5 && memcmp(buffer, "HEAD ", 5) == 0;
    PyObject *out = PyObject_CallMethodOneArg(self->owner, s_lane_request, raw);
    if (out == NULL || out == Py_None || self->state != IDLE) {     /* Python serves it (and has the connection back) */
        Py_DECREF(raw);
        Py_XDECREF(out);
        return out == NULL ? -1 : 0;
    }
    if (!PyBytes_Check(out) || self->backend_fd < 0) {     /* bytes come once a backend is attached */
        Py_DECREF(raw);
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, self->backend_fd < 0 ? "lane_request: bytes, but no backend attached"
                                                              : "lane_request: bytes or None expected");
        return -1;
    }
    self->state = WAITING;
    self->backend_overran = 0;
    self->sent = self->head_sent = 0;
    self->status = 0;
    self->started = self->last = arrived;
    self->received = n;
    lane_log_request(self, raw, wall.tv_sec);
    Py_DECREF(raw);
    Py_ssize_t size = PyBytes_GET_SIZE(out);
    Py_ssize_t sent = send(self->backend_fd, PyBytes_AS_STRING(out), size, MSG_NOSIGNAL);
    int error = sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? errno : 0;
    if (sent == size) {
        Py_DECREF(out);
        return 0;
    }
    /* A pooled connection that took the head in part (or none of it yet), or failed:
       worker.exchange sends the rest, or the whole head again on a fresh connection. */
    if (sent < 0)
        sent = 0;
    int result = give_back(self, BACK_SEND, PyBytes_AS_STRING(out) + sent, size - sent, error);
    Py_DECREF(out);
    return result;
}

/* Bytes from the client while an exchange runs: pipelined, or its FIN.  One read's worth is
   kept and served after the exchange (by Python); then the client is not read until then. */
static int read_early(Lane *self) {
    Py_ssize_t n = lane_client_recv(self, buffer, self->head_read);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        self->client_eof = 1;
    else if ((self->early = PyBytes_FromStringAndSize(buffer, n)) == NULL)
        return -1;
    lane_update_interest(self);
    return 0;
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

static int read_response_head(Lane *self) {
    Py_ssize_t n = recv(self->backend_fd, buffer, self->first_read, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        return give_back(self, BACK_RESPONSE, NULL, 0, n < 0 ? errno : 0);
    const char *end = memmem(buffer, n, "\r\n\r\n", 4);
    /* Python decides those: Connection: close, or a successor for the connection (a stop). */
    if (end == NULL || self->client_eof || self->early != NULL || self->stopping)
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
    self->remaining = body - after;
    if (self->closing && !self->remaining)
        lane_cork(self->client_fd);
    if (self->closing) {        /* worker.response's head for a plain response: the line before the last CRLF */
        memmove(buffer + head_size - 2 + CLOSE_LINE_SIZE, buffer + head_size - 2, n - head_size + 2);
        memcpy(buffer + head_size - 2, CLOSE_LINE, CLOSE_LINE_SIZE);
        head_size += CLOSE_LINE_SIZE;
        n += CLOSE_LINE_SIZE;
    }
    self->head_sent = head_size;
    self->state = self->remaining ? RELAYING : FLUSHING;
    self->last = lane_now();
    if (to_client(self, buffer, n) < 0)
        return aborted(self);
    if (self->remaining || self->out != NULL)
        return 0;
    return done(self);
}

/* The body's last read asks for one byte more, as worker.bodies does: a backend that sent
   bytes past its body (an answer nobody asked for) is not reused, or those bytes would answer
   the client's next request (review 2026-12-05-lanehostile #1). */
static int relay_body(Lane *self) {
    Py_ssize_t want = self->remaining < LANE_BUFFER ? (Py_ssize_t)self->remaining + 1 : LANE_BUFFER;
    Py_ssize_t n = recv(self->backend_fd, buffer, want, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)                 /* the backend ended before its body did: the client's response is cut */
        return give_back(self, BACK_CUT, NULL, 0, n < 0 ? errno : 0);
    if (n > self->remaining) {
        self->backend_overran = 1;
        n = (Py_ssize_t)self->remaining;
    }
    self->remaining -= n;
    self->last = lane_now();
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
    Py_ssize_t sent = lane_client_send(self, self->out + self->out_at, size);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return aborted(self);
    }
    self->sent += sent;
    self->out_at += sent;
    self->last = lane_now();
    if (sent < size)
        return 0;
    free(self->out);
    self->out = NULL;
    if (self->state == FLUSHING)
        return done(self);
    lane_update_interest(self);
    return 0;
}

/* == events ================================================================================= */

PyObject *Lane_on_client(Lane *self, PyObject *arg) {
    int mask = (int)PyLong_AsLong(arg), result = 0;
    Py_INCREF(self);            /* what Python does in a callback may drop the loop's reference */
    if (self->state == HANDSHAKE) {
        result = lane_handshake(self);
        Py_DECREF(self);
        if (result < 0)
            return NULL;
        Py_RETURN_NONE;
    }
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

PyObject *Lane_on_backend(Lane *self, PyObject *arg) {
    int mask = (int)PyLong_AsLong(arg), result = 0;
    Py_INCREF(self);
    if (self->state == IDLE)         /* readable while idle: it closed (or misbehaves) */
        result = give_back(self, BACK_BACKEND_IDLE, NULL, 0, 0);
    else if (self->state == WAITING)
        result = read_response_head(self);
    else if (self->state == RELAYING && self->backend_mask & EPOLLIN)
        result = relay_body(self);
    else if ((self->state == RELAYING || self->state == FLUSHING) && mask & (EPOLLHUP | EPOLLERR)
             && self->backend_mask == 0) {
        /* Not read while the client is slower, or nothing left to read: out of epoll until the
           client drains (then what the socket holds of the body comes before its error, as in
           worker.exchange); after a whole response, the connection is closed once it is out. */
        if (epoll_ctl(self->epfd, EPOLL_CTL_DEL, self->backend_fd, NULL) == 0)
            self->backend_mask = -1;
    }
    Py_DECREF(self);
    if (result < 0)
        return NULL;
    Py_RETURN_NONE;
}

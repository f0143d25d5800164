/* The C floor (bench/floor_c.py): a TLS connection owned by C from accept to close, with
Python asked twice per request, as issue #20's rewrite would ask it: `request(head)` answers
the head for the backend, `done(status, sent, resumed)` counts the exchange.

One thread, one epoll, level-triggered: accept4, SSL_new on the SSL_CTX of a Python
SSLContext (the product's own, its ticket callbacks and read-ahead included), the handshake's
rounds on epoll events, one request head read whole, sent on a pooled backend connection, the
response read whole by its Content-Length and written back, then close_notify and close.

Not a product: a backend connect blocks (loopback, the bench's own backend), anything
unexpected closes the connection, and writes are assumed to go out whole (loopback, small
responses).  It measures what a connection costs when it never becomes Python objects. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BUF 16384

enum { HANDSHAKE, HEAD, BACKEND };

typedef struct conn {
    int fd, bfd, state, in_epoll;
    SSL *ssl;
    size_t len;
    char buf[BUF];
} conn;

static conn *owner[MAX_FD];
static int pool[1024], pooled;
static int ep, backend_port;
static SSL_CTX *ctx;
static PyObject *request_cb, *done_cb, *opened_cb;

static void close_conn(conn *c, int notify)
{
    if (c->bfd >= 0) {
        owner[c->bfd] = NULL;
        close(c->bfd);
    }
    if (notify)
        SSL_shutdown(c->ssl);           /* close_notify; the peer's is not waited for */
    SSL_free(c->ssl);
    owner[c->fd] = NULL;
    close(c->fd);
    free(c);
}

static int backend(void)
{
    if (pooled)
        return pool[--pooled];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(backend_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int forward(conn *c)
{
    PyObject *raw = PyBytes_FromStringAndSize(c->buf, (Py_ssize_t)c->len);
    PyObject *out = raw ? PyObject_CallOneArg(request_cb, raw) : NULL;
    Py_XDECREF(raw);
    if (out == NULL || !PyBytes_Check(out)) {
        Py_XDECREF(out);
        PyErr_Print();
        return -1;
    }
    c->bfd = backend();
    int ok = c->bfd >= 0 && send(c->bfd, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out), 0) == PyBytes_GET_SIZE(out);
    Py_DECREF(out);
    if (!ok)
        return -1;
    owner[c->bfd] = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->bfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->bfd, &ev);
    c->state = BACKEND;
    c->len = 0;
    return 0;
}

static void wait_client(conn *c)
{
    if (!c->in_epoll) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        c->in_epoll = 1;
    }
}

static void on_client(conn *c)
{
    if (c->state == HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
                wait_client(c);
            else
                close_conn(c, 0);
            return;
        }
        c->state = HEAD;
    }
    if (c->state != HEAD)
        return;
    int n = SSL_read(c->ssl, c->buf + c->len, (int)(BUF - c->len));
    if (n <= 0) {
        if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
            wait_client(c);
        else
            close_conn(c, 0);
        return;
    }
    c->len += (size_t)n;
    if (c->len >= 4 && memcmp(c->buf + c->len - 4, "\r\n\r\n", 4) == 0) {
        if (c->in_epoll) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            c->in_epoll = 0;
        }
        if (forward(c) < 0)
            close_conn(c, 1);
    } else if (c->len == BUF) {
        close_conn(c, 1);
    }
}

static void on_backend(conn *c)
{
    ssize_t n = recv(c->bfd, c->buf + c->len, BUF - c->len, 0);
    if (n <= 0) {
        close_conn(c, 1);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len < BUF ? c->len : BUF - 1] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL)
        return;
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    size_t length = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    size_t whole = (size_t)(end + 4 - c->buf) + length;
    if (c->len < whole)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->bfd, NULL);
    owner[c->bfd] = NULL;
    if (pooled < 1024)
        pool[pooled++] = c->bfd;
    else
        close(c->bfd);
    c->bfd = -1;
    /* Its head says the connection closes, as the product's does for a request that asked it. */
    static const char closing[] = "Connection: close\r\n";
    char out[BUF + sizeof closing];
    size_t line = (size_t)(strstr(c->buf, "\r\n") + 2 - c->buf);
    memcpy(out, c->buf, line);
    memcpy(out + line, closing, sizeof closing - 1);
    memcpy(out + line + sizeof closing - 1, c->buf + line, whole - line);
    int sent = SSL_write(c->ssl, out, (int)(whole + sizeof closing - 1));
    PyObject *r = PyObject_CallFunction(done_cb, "iii", atoi(c->buf + 9), sent, SSL_session_reused(c->ssl));
    if (r == NULL)
        PyErr_Print();
    Py_XDECREF(r);
    close_conn(c, 1);
}

static void accept_all(int lfd)
{
    for (int i = 0; i < 32; i++) {
        struct sockaddr_in from;
        socklen_t size = sizeof from;
        int fd = accept4(lfd, (struct sockaddr *)&from, &size, SOCK_NONBLOCK);
        if (fd < 0)
            return;
        if (fd >= MAX_FD) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (opened_cb != Py_None) {
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
            PyObject *r = PyObject_CallFunction(opened_cb, "y", ip);
            if (r == NULL)
                PyErr_Print();
            Py_XDECREF(r);
        }
        conn *c = malloc(sizeof *c);
        c->fd = fd;
        c->bfd = -1;
        c->state = HANDSHAKE;
        c->in_epoll = 0;
        c->len = 0;
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        owner[fd] = c;
        on_client(c);
    }
}

static PyObject *serve(PyObject *module, PyObject *args)
{
    int lfd;
    unsigned long long ctx_pointer;
    if (!PyArg_ParseTuple(args, "iKiOOO", &lfd, &ctx_pointer, &backend_port, &request_cb, &done_cb, &opened_cb))
        return NULL;
    ctx = (SSL_CTX *)(uintptr_t)ctx_pointer;
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, 1000);
        if (n < 0 && errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                accept_all(lfd);
                continue;
            }
            conn *c = owner[fd];
            if (c == NULL)
                continue;
            if (fd == c->fd)
                on_client(c);
            else
                on_backend(c);
        }
    }
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS, "serve(listen_fd, ssl_ctx, backend_port, request, done, opened): forever."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_floor_c", NULL, -1, methods};

PyMODINIT_FUNC PyInit__floor_c(void)
{
    return PyModule_Create(&module);
}

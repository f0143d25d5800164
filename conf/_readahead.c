/* Three things CPython's ssl module does not offer on its SSL objects: whether one holds bytes
epoll cannot see, read-ahead included (`buffered`), a close_notify that does not wait for the
peer's (`close_notify`, below), and a handshake round that answers what it waits for instead of
raising it (`handshake`, below).

Why: without read-ahead OpenSSL reads a TLS record in two read() calls, its 5-byte header and
then its body, and a resumed TLS 1.3 connection took 9 reads where nginx, which turns
read-ahead on, takes 4 (strace of one worker under wrk, one request per connection).  With
read-ahead one read() takes whatever the kernel holds, possibly several records; but then the
records after the first wait in OpenSSL's buffer undecrypted, where `SSLSocket.pending()`
(SSL_pending: decrypted bytes only) does not count them either, and a reader that trusted it
would wait on epoll for bytes already read.  CPython offers no SSL_has_pending, so here it is,
for conf.readahead, which turns read-ahead on only once this module answers correctly.

`buffered(sock)` is true when a read now would return bytes without waiting for the network:
decrypted bytes are there (SSL_pending), or undecrypted ones are (SSL_has_pending) and the last
operation on the object did not stop for want of more (SSL_want is not SSL_READING).  That last
test is what keeps a reader from spinning on a partial record: SSL_has_pending says 1 for a
record whose end has not arrived yet, a read then wants more, and from then on this says 0
until the object makes progress again.

The SSL* of an `_ssl._SSLSocket` is the field after its weak reference to the socket (CPython
3.10-3.13's PySSLSocket); conf.readahead checks the offset on a live object against OpenSSL
(SSL_get_SSL_CTX gives back the context's own SSL_CTX*) before anything relies on it.  The
OpenSSL functions come as addresses resolved through the libssl `_ssl` links, as in _tickets.c. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>

#define SSL_READING 3
#define SSL_ERROR_WANT_READ 2
#define SSL_ERROR_WANT_WRITE 3
#define SSL_ERROR_SYSCALL 5
#define SSL_ERROR_ZERO_RETURN 6
#define EPOLLIN_MASK 1              /* select.EPOLLIN, EPOLLOUT: what worker.loop waits for */
#define EPOLLOUT_MASK 4

static struct {
    int (*pending)(const void *);
    int (*has_pending)(const void *);
    int (*want)(const void *);
    PyTypeObject *type;         /* _ssl._SSLSocket */
    Py_ssize_t offset;          /* of its SSL* */
    /* close_notify's (install_shutdown) */
    int (*shutdown)(void *);
    int (*init_finished)(const void *);
    void (*clear_errors)(void);
    /* handshake's (install_handshake) */
    int (*do_handshake)(void *);
    int (*get_error)(const void *, int);
} ossl;

static PyObject *sslobj_name;   /* "_sslobj": an ssl.SSLSocket's SSL object */

static void *ssl_of(PyObject *obj)
{
    return *(void **)((char *)obj + ossl.offset);
}

/* The _ssl._SSLSocket of `sock` (an ssl.SSLSocket, or that object itself), a new reference;
   None once the socket is closed; NULL with an exception set. */
static PyObject *sslobj_of(PyObject *sock)
{
    if (ossl.type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "conf._readahead.install was not called");
        return NULL;
    }
    if (Py_TYPE(sock) == ossl.type) {
        Py_INCREF(sock);
        return sock;
    }
    return PyObject_GetAttr(sock, sslobj_name);
}

static PyObject *buffered(PyObject *module, PyObject *sock)
{
    PyObject *sslobj = sslobj_of(sock);
    int result = 0;
    if (sslobj == NULL)
        return NULL;
    if (Py_TYPE(sslobj) == ossl.type) {
        void *ssl = ssl_of(sslobj);
        if (ssl != NULL)
            result = ossl.pending(ssl) > 0 || (ossl.has_pending(ssl) && ossl.want(ssl) != SSL_READING);
    }
    Py_DECREF(sslobj);
    return PyBool_FromLong(result);
}

/* RFC 8446 §6.1: each party MUST send a close_notify alert before closing its write side.
   CPython's only way, SSLObject.shutdown(), calls SSL_shutdown twice: the first call writes
   our alert, the second reads for the peer's, which costs a system call on a socket about to
   close, and would eat the data of a half-closed tunnel's other direction.  This is the first
   call alone: the alert is written, and the SSL object still reads what the peer sends.
   Nothing is sent before the handshake has finished; a write that fails (the peer is gone,
   the buffer is full) is let go, and so is the error OpenSSL queued for it. */
static PyObject *close_notify(PyObject *module, PyObject *sock)
{
    PyObject *sslobj;
    if (ossl.shutdown == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "conf._readahead.install_shutdown was not called");
        return NULL;
    }
    sslobj = sslobj_of(sock);
    if (sslobj == NULL)
        return NULL;
    if (Py_TYPE(sslobj) == ossl.type) {
        void *ssl = ssl_of(sslobj);
        if (ssl != NULL && ossl.init_finished(ssl)) {
            ossl.shutdown(ssl);
            ossl.clear_errors();
        }
    }
    Py_DECREF(sslobj);
    Py_RETURN_NONE;
}

/* One round of a non-blocking server handshake, as `sslobj.do_handshake()` runs it but without
   the exception CPython raises when the round has to wait, which is every connection's first
   round: SSLWantReadError, its message and its traceback cost about 3.5 µs (timeit, 3.11),
   more than this whole call.  0: done; EPOLLIN or EPOLLOUT: what to wait for; -1: it failed,
   and OpenSSL's error queue is left as it is, so that `sslobj.do_handshake()` called next
   raises the error CPython would have raised (worker.tls.ServerHandshake does that, for its
   log line); -2: the peer sent its close_notify, which a second call would not see again
   (it would want to read: review 2026-12-05-accept #1); a system call's failure (a reset),
   which OpenSSL does not queue, raises OSError here, as CPython would.  The SNI callback runs
   inside, as it would under CPython's call. */
static PyObject *handshake(PyObject *module, PyObject *sslobj)
{
    void *ssl;
    int ret, err, saved;
    if (ossl.do_handshake == NULL || ossl.type == NULL || Py_TYPE(sslobj) != ossl.type) {
        PyErr_SetString(PyExc_TypeError, "handshake: an _ssl._SSLSocket, after install_handshake");
        return NULL;
    }
    ssl = ssl_of(sslobj);
    if (ssl == NULL)
        return PyLong_FromLong(-1);
    errno = 0;
    ret = ossl.do_handshake(ssl);
    if (ret == 1)
        return PyLong_FromLong(0);
    saved = errno;
    err = ossl.get_error(ssl, ret);
    if (err == SSL_ERROR_WANT_READ)
        return PyLong_FromLong(EPOLLIN_MASK);
    if (err == SSL_ERROR_WANT_WRITE)
        return PyLong_FromLong(EPOLLOUT_MASK);
    if (err == SSL_ERROR_ZERO_RETURN)       /* its close_notify: read already, not to be read again */
        return PyLong_FromLong(-2);
    if (err == SSL_ERROR_SYSCALL && ret == -1 && saved != 0) {    /* a reset: OpenSSL queued nothing */
        ossl.clear_errors();
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(-1);
}

static PyObject *ssl_pointer(PyObject *module, PyObject *sslobj)
{
    if (ossl.type == NULL || Py_TYPE(sslobj) != ossl.type) {
        PyErr_SetString(PyExc_TypeError, "an _ssl._SSLSocket is expected (after install)");
        return NULL;
    }
    return PyLong_FromVoidPtr(ssl_of(sslobj));
}

static PyObject *install(PyObject *module, PyObject *args)
{
    unsigned long long pending, has_pending, want;
    PyObject *type;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "KKKO!n", &pending, &has_pending, &want, &PyType_Type, &type, &offset))
        return NULL;
    if (!pending || !has_pending || !want || offset < (Py_ssize_t)sizeof(PyObject)
            || offset + (Py_ssize_t)sizeof(void *) > ((PyTypeObject *)type)->tp_basicsize) {
        PyErr_SetString(PyExc_ValueError, "a null OpenSSL function, or an offset outside the object");
        return NULL;
    }
    ossl.pending = (int (*)(const void *))(uintptr_t)pending;
    ossl.has_pending = (int (*)(const void *))(uintptr_t)has_pending;
    ossl.want = (int (*)(const void *))(uintptr_t)want;
    Py_INCREF(type);
    Py_XSETREF(ossl.type, (PyTypeObject *)type);
    ossl.offset = offset;
    Py_RETURN_NONE;
}

static PyObject *install_shutdown(PyObject *module, PyObject *args)
{
    unsigned long long shutdown, init_finished, clear_errors;
    if (!PyArg_ParseTuple(args, "KKK", &shutdown, &init_finished, &clear_errors))
        return NULL;
    if (!shutdown || !init_finished || !clear_errors) {
        PyErr_SetString(PyExc_ValueError, "a null OpenSSL function");
        return NULL;
    }
    ossl.shutdown = (int (*)(void *))(uintptr_t)shutdown;
    ossl.init_finished = (int (*)(const void *))(uintptr_t)init_finished;
    ossl.clear_errors = (void (*)(void))(uintptr_t)clear_errors;
    Py_RETURN_NONE;
}

static PyObject *install_handshake(PyObject *module, PyObject *args)
{
    unsigned long long do_handshake, get_error;
    if (!PyArg_ParseTuple(args, "KK", &do_handshake, &get_error))
        return NULL;
    if (!do_handshake || !get_error) {
        PyErr_SetString(PyExc_ValueError, "a null OpenSSL function");
        return NULL;
    }
    ossl.do_handshake = (int (*)(void *))(uintptr_t)do_handshake;
    ossl.get_error = (int (*)(const void *, int))(uintptr_t)get_error;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", install, METH_VARARGS,
     "install(SSL_pending, SSL_has_pending, SSL_want, _ssl._SSLSocket, offset of its SSL*)."},
    {"buffered", buffered, METH_O,
     "buffered(sock): a read would return bytes now (an ssl.SSLSocket or its _sslobj)."},
    {"ssl_pointer", ssl_pointer, METH_O, "ssl_pointer(sslobj): the SSL* (to check the offset)."},
    {"install_shutdown", install_shutdown, METH_VARARGS,
     "install_shutdown(SSL_shutdown, SSL_is_init_finished, ERR_clear_error)."},
    {"install_handshake", install_handshake, METH_VARARGS, "install_handshake(SSL_do_handshake, SSL_get_error)."},
    {"handshake", handshake, METH_O,
     "handshake(sslobj): one handshake round; 0 done, EPOLLIN/EPOLLOUT to wait for, -1 failed."},
    {"close_notify", close_notify, METH_O,
     "close_notify(sock): write our close_notify now, without reading for the peer's."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "conf._readahead", .m_size = -1,
                                    .m_methods = methods};

PyMODINIT_FUNC PyInit__readahead(void)
{
    sslobj_name = PyUnicode_InternFromString("_sslobj");
    if (sslobj_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}

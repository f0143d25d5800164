/* One accept of a worker's listening socket, in C: `accept(listener, tcp)`.

Why: CPython's `socket._accept()` hands back a blocking descriptor and a (host, port) tuple,
and raises BlockingIOError when the queue is empty, which ends every batch of accepts; the
acceptor then made the descriptor non-blocking (an ioctl), turned Nagle off through a socket
method, and encoded the host.  For a client that opens a TLS connection per request (issue
#20) that was about 5 µs of the worker's time per connection, of the ~450 nginx spends on all
of it.  Here it is one accept4() with SOCK_NONBLOCK, one setsockopt, and the client's address
as bytes, ready for the client table and the log; an empty queue answers None.

The descriptor comes back non-blocking, so worker.acceptor makes its socket object with the
type `SOCK_STREAM | SOCK_NONBLOCK`: CPython then records a timeout of 0 without asking the
kernel again.  worker.acceptor's `_accept_in_python` is the reference, used where this module
was not built or with MPM_NATIVE_ACCEPT=0 (which also drives TLS handshakes through CPython's
`do_handshake()`, worker.tls). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/* The client's address as CPython's accept() gives its host (inet_ntop's text; b"" for a Unix
   socket's unnamed peer), as bytes. */
static PyObject *host_of(const struct sockaddr_storage *addr)
{
    char text[INET6_ADDRSTRLEN];
    const void *where;
    if (addr->ss_family == AF_INET)
        where = &((const struct sockaddr_in *)addr)->sin_addr;
    else if (addr->ss_family == AF_INET6)
        where = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    else
        return PyBytes_FromStringAndSize("", 0);
    if (inet_ntop(addr->ss_family, where, text, sizeof text) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyBytes_FromString(text);
}

static PyObject *accept_one(PyObject *module, PyObject *args)
{
    int listener, tcp, fd, on = 1;
    struct sockaddr_storage addr;
    socklen_t size = sizeof addr;
    PyObject *sock, *host, *result;
    addr.ss_family = AF_UNSPEC;
    if (!PyArg_ParseTuple(args, "Op", &sock, &tcp))
        return NULL;
    listener = PyObject_AsFileDescriptor(sock);
    if (listener < 0)
        return NULL;
    fd = accept4(listener, (struct sockaddr *)&addr, &size, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            Py_RETURN_NONE;                 /* level-triggered: an EINTR'd accept comes back */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (tcp)          /* best effort, as for any socket option on a connection the peer may have reset */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    host = host_of(&addr);
    result = host == NULL ? NULL : Py_BuildValue("(iN)", fd, host);
    if (result == NULL)
        close(fd);
    return result;
}

/* == the SSLSocket of an accepted descriptor, made in C ========================================
worker.tls's `accepted_socket` makes an accepted connection's ssl.SSLSocket without a plain socket
first, with the attributes `wrap_socket` gives it (checked once per process against `wrap_socket`
itself, through this function when it is installed).  In Python that was about 80 bytecodes of
each new TLS connection (`accepted_socket`, socket.socket.__init__); here it is the same steps:
the object, `_socket.socket.__init__` on the descriptor, the two slots socket.socket's __init__
sets, the attributes of `template` (what every server-side SSLSocket of `accepted_socket` holds)
with `_context`, and the SSL object from `context._wrap_socket`. */
static struct {
    PyTypeObject *sslsocket;    /* ssl.SSLSocket */
    PyTypeObject *socket;       /* _socket.socket: its tp_init takes the descriptor */
    PyObject *template;         /* dict: the attributes every one gets */
    PyObject *io_refs, *closed, *context, *sslobj, *wrap, *close, *kwnames, *zero, *empty;
} made;

static PyObject *install_tls(PyObject *module, PyObject *args)
{
    PyObject *sslsocket, *sock, *template;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyType_Type, &sslsocket, &PyType_Type, &sock, &PyDict_Type, &template))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)sslsocket, (PyTypeObject *)sock)) {
        PyErr_SetString(PyExc_TypeError, "the SSLSocket type is not a socket type");
        return NULL;
    }
    if (made.empty == NULL) {
        made.io_refs = PyUnicode_InternFromString("_io_refs");
        made.closed = PyUnicode_InternFromString("_closed");
        made.context = PyUnicode_InternFromString("_context");
        made.sslobj = PyUnicode_InternFromString("_sslobj");
        made.wrap = PyUnicode_InternFromString("_wrap_socket");
        made.close = PyUnicode_InternFromString("close");
        made.kwnames = Py_BuildValue("(ss)", "owner", "session");
        made.zero = PyLong_FromLong(0);
        made.empty = PyTuple_New(0);
        if (made.empty == NULL)
            return NULL;
    }
    Py_INCREF(sslsocket);
    Py_INCREF(sock);
    Py_INCREF(template);
    Py_XSETREF(made.sslsocket, (PyTypeObject *)sslsocket);
    Py_XSETREF(made.socket, (PyTypeObject *)sock);
    Py_XSETREF(made.template, template);
    Py_RETURN_NONE;
}

/* Its attributes and SSL object; -1 with an exception set (the caller closes it). */
static int fill_tls(PyObject *tls, PyObject *context)
{
    PyObject *dict = PyObject_GenericGetDict(tls, NULL);
    if (dict == NULL)
        return -1;
    int failed = PyDict_Update(dict, made.template) < 0 || PyDict_SetItem(dict, made.context, context) < 0;
    if (!failed) {
        /* context._wrap_socket(tls, True, None, owner=tls, session=None) */
        PyObject *call[] = {context, tls, Py_True, Py_None, tls, Py_None};
        PyObject *sslobj = PyObject_VectorcallMethod(made.wrap, call, 4, made.kwnames);
        failed = sslobj == NULL || PyDict_SetItem(dict, made.sslobj, sslobj) < 0;
        Py_XDECREF(sslobj);
    }
    Py_DECREF(dict);
    return failed ? -1 : 0;
}

static PyObject *tls_socket(PyObject *module, PyObject *args)
{
    int fd, family, kind, proto;
    PyObject *context;
    if (!PyArg_ParseTuple(args, "iiiiO", &fd, &family, &kind, &proto, &context))
        return NULL;
    if (made.sslsocket == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install_tls() first");
        return NULL;
    }
    PyObject *tls = made.sslsocket->tp_new(made.sslsocket, made.empty, NULL);
    PyObject *init = tls == NULL ? NULL : Py_BuildValue("(iiii)", family, kind, proto, fd);
    if (init == NULL || made.socket->tp_init(tls, init, NULL) < 0) {     /* a timeout of 0: SOCK_NONBLOCK */
        Py_XDECREF(init);
        Py_XDECREF(tls);
        close(fd);
        return NULL;
    }
    Py_DECREF(init);
    if (PyObject_SetAttr(tls, made.io_refs, made.zero) < 0 || PyObject_SetAttr(tls, made.closed, Py_False) < 0
            || fill_tls(tls, context) < 0) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyObject *closed = PyObject_CallMethodNoArgs(tls, made.close);     /* as accepted_socket: it owns the fd */
        Py_XDECREF(closed);
        PyErr_Clear();
        PyErr_Restore(type, value, traceback);
        Py_DECREF(tls);
        return NULL;
    }
    return tls;
}

static PyMethodDef methods[] = {
    {"install_tls", install_tls, METH_VARARGS,
     "install_tls(ssl.SSLSocket, _socket.socket, template dict): what tls_socket makes, and the attributes it gives."},
    {"tls_socket", tls_socket, METH_VARARGS,
     "tls_socket(fd, family, kind, proto, context): the server-side ssl.SSLSocket of an accepted descriptor "
     "(closed on failure), its handshake not begun."},
    {"accept", accept_one, METH_VARARGS,
     "accept(listening socket, tcp): (fd, host bytes) of a new non-blocking connection (Nagle off if tcp), "
     "or None when none waits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "worker._accept", .m_size = -1,
                                    .m_methods = methods};

PyMODINIT_FUNC PyInit__accept(void)
{
    return PyModule_Create(&module);
}

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

static PyMethodDef methods[] = {
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

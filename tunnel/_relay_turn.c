/* One turn of the worker's event loop, in C: worker/loop.py's run() calls Relay.turn() once the
process has a relay (its own loop turn stays the reference, and runs where this module is not
built or MPM_NATIVE_RELAY=0).

Why: the relay used to have an epoll of its own, which the loop's epoll watched as one
descriptor.  Every readiness of a tunnel's socket then woke two epolls (the kernel calls the
nested one's wake-up, and polls its ready sockets again when the outer one asks), and every turn
took two epoll_wait calls and a Python dispatch of the relay's descriptor before a byte moved.
Now the tunnels' sockets sit in the loop's own epoll, tagged (relay.h's RELAY_TAG), and this turn
relays their events where it finds them, the rest going to Python as run() would send them.

A turn, in run()'s order: epoll_wait for at most `timeout` seconds, the GIL released; loop.now
from the monotonic clock (the relay's traffic times use the same reading); each event relayed
(a tunnel's side) or handed to handlers[fd](mask), an exception going to loop.contain(exc,
handler, fd) as in Python; then each tunnel that ended is closed, tunnel.close(reason), with the
same containment.  The answer is the number of events (run() flushes idle log sinks on 0). */

#include <limits.h>
#include <math.h>

#include "relay.h"

/* The exception raised by `callable` goes to loop.contain(exc, callable, fd), which ends what
   the callable served (worker.faults).  -1 when it must propagate: not an Exception (SystemExit,
   KeyboardInterrupt), or contain itself raised (its default re-raises: no worker set it). */
static int contain(PyObject *loop, PyObject *callable, PyObject *fd) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL)
        PyException_SetTraceback(value, traceback);
    PyObject *handler = PyObject_GetAttrString(loop, "contain");
    PyObject *done = handler ? PyObject_CallFunctionObjArgs(handler, value, callable, fd, NULL) : NULL;
    Py_XDECREF(handler);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

/* handlers[fd](mask) for an event that is not the relay's; -1 when an exception must end the loop. */
static int dispatch(PyObject *loop, PyObject *handlers, int fd, uint32_t events) {
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL)
        return -1;
    PyObject *handler = PyDict_GetItemWithError(handlers, key);
    if (handler == NULL) {      /* removed by an earlier event of this turn, or never ours */
        Py_DECREF(key);
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(handler);         /* the call may take it out of the dict */
    PyObject *mask = PyLong_FromUnsignedLong(events);
    PyObject *done = mask ? PyObject_CallOneArg(handler, mask) : NULL;
    Py_XDECREF(mask);
    int status = 0;
    if (done != NULL)
        Py_DECREF(done);
    else
        status = contain(loop, handler, key);
    Py_DECREF(handler);
    Py_DECREF(key);
    return status;
}

/* tunnel.close(reason) for each tunnel that ended in this turn's relaying. */
static int close_ended(Relay *self, PyObject *loop) {
    PyObject *ended = relay_take_ended(self);
    if (ended == NULL)
        return -1;
    int status = 0;
    for (Py_ssize_t i = 0; status == 0 && i < PyList_GET_SIZE(ended); i++) {
        PyObject *item = PyList_GET_ITEM(ended, i);
        PyObject *close = PyObject_GetAttrString(PyTuple_GET_ITEM(item, 0), "close");
        PyObject *done = close ? PyObject_CallOneArg(close, PyTuple_GET_ITEM(item, 1)) : NULL;
        if (done != NULL)
            Py_DECREF(done);
        else
            status = close ? contain(loop, close, Py_None) : -1;
        Py_XDECREF(close);
    }
    Py_DECREF(ended);
    return status;
}

/* turn(loop, handlers, timeout) -> number of events */
PyObject *Relay_turn(Relay *self, PyObject *const *args, Py_ssize_t nargs) {
    static PyObject *now_name;
    if (nargs != 3 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "turn(loop, handlers: dict, timeout)");
        return NULL;
    }
    PyObject *loop = args[0], *handlers = args[1];
    double timeout = PyFloat_AsDouble(args[2]);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (now_name == NULL && (now_name = PyUnicode_InternFromString("now")) == NULL)
        return NULL;
    int ms = timeout <= 0.0 ? 0 : timeout >= INT_MAX / 1000 ? INT_MAX : (int)ceil(timeout * 1000.0);
    struct epoll_event events[MAX_EVENTS];
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = epoll_wait(self->epfd, events, MAX_EVENTS, ms);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)       /* a signal handler raised: as epoll.poll() would */
            return NULL;
        n = 0;
    }
    self->now = relay_monotonic();
    PyObject *now = PyFloat_FromDouble(self->now);
    if (now == NULL || PyObject_SetAttr(loop, now_name, now) < 0) {
        Py_XDECREF(now);
        return NULL;
    }
    Py_DECREF(now);
    for (int i = 0; i < n; i++) {
        int tag = events[i].data.fd;
        if (tag >= 0) {
            if (dispatch(loop, handlers, tag, events[i].events) < 0)
                return NULL;
            continue;
        }
        int slot = (tag & 0x7fffffff) >> 1;
        if (slot < self->cap) {
            self->pumping = 1;      /* its ends are recorded, for close_ended below */
            relay_on_event(self, slot, tag & 1, events[i].events);
            self->pumping = 0;
        }
    }
    if (self->nended && close_ended(self, loop) < 0)
        return NULL;
    return PyLong_FromLong(n);
}

/* The worker's event loop turn, in C: worker/loop.py's run() calls Relay.turn() once the process
has a relay (its own turn stays the reference, and runs where this module is not built or
MPM_NATIVE_RELAY=0).

Why: the relay used to have an epoll of its own, which the loop's epoll watched as one
descriptor.  Every readiness of a tunnel's socket then woke two epolls (the kernel calls the
nested one's wake-up, and polls its ready sockets again when the outer one asks), and every turn
took two epoll_wait calls and a Python dispatch of the relay's descriptor before a byte moved.
Now the tunnels' sockets sit in the loop's own epoll, tagged (relay.h's RELAY_TAG), and this turn
relays their events where it finds them, the rest going to Python as run() would send them.

A turn, in run()'s order: epoll_wait for at most `timeout` seconds; loop.now from the monotonic
clock (the relay's traffic times use the same reading); each event relayed (a tunnel's side) or
handed to handlers[fd](mask), an exception going to loop.contain(exc, handler, fd) as in Python;
each tunnel that ended is closed, tunnel.close(reason), with the same containment, before any
Python runs next (a handler, a hand-over among them, must not find it open), or at the end.  A wait
that brought only tunnels' events is followed by the next (Relay_turn says when), so a worker
that only relays spends no Python per wake-up: nginx's loop costs 1,899 instructions per 64-byte
echo under callgrind (bench.instructions), and Python's part of a turn alone was 1,400. */

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

/* epoll_wait, the GIL released only where another thread could take it: a worker runs none, and
   releasing it and taking it back cost about 700 instructions a wait. */
static int wait_events(Relay *self, struct epoll_event *events, int ms) {
    if (PyThreadState_Next(PyInterpreterState_ThreadHead(PyInterpreterState_Get())) == NULL)
        return epoll_wait(self->epfd, events, MAX_EVENTS, ms);
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = epoll_wait(self->epfd, events, MAX_EVENTS, ms);
    Py_END_ALLOW_THREADS
    return n;
}

static int milliseconds(double seconds) {
    return seconds <= 0.0 ? 0 : seconds >= INT_MAX / 1000 ? INT_MAX : (int)ceil(seconds * 1000.0);
}

/* loop.now = the relay's clock reading, once per reading that Python may see. */
static int set_now(Relay *self, PyObject *loop, double *shown) {
    static PyObject *now_name;
    if (*shown == self->now)
        return 0;
    if (now_name == NULL && (now_name = PyUnicode_InternFromString("now")) == NULL)
        return -1;
    PyObject *now = PyFloat_FromDouble(self->now);
    int status = now ? PyObject_SetAttr(loop, now_name, now) : -1;
    Py_XDECREF(now);
    *shown = self->now;
    return status;
}

/* turn(loop, handlers, timeout) -> the number of events of its last wait.  While a wait brings only
   tunnels' events (no handler runs, no tunnel ends), nothing Python's turn looks at can have
   changed but the time: the turn waits again, until `timeout` is up, without returning.  Python's
   turn (timers, the sweep, log sinks, `soon`, held writes) runs after a wait that brought it an
   event or a tunnel's end, after one that brought nothing, after a signal, and when `timeout` is
   up; a timeout of 0 (Python has work waiting) waits once. */
PyObject *Relay_turn(Relay *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "turn(loop, handlers: dict, timeout)");
        return NULL;
    }
    PyObject *loop = args[0], *handlers = args[1];
    double timeout = PyFloat_AsDouble(args[2]), shown = -1.0;
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    double until = relay_monotonic() + timeout;
    struct epoll_event events[MAX_EVENTS];
    int ms = milliseconds(timeout), n;
    for (;;) {
        n = wait_events(self, events, ms);
        if (n < 0) {
            if (errno != EINTR)
                return PyErr_SetFromErrno(PyExc_OSError);
            if (PyErr_CheckSignals() < 0)       /* a signal handler raised: as epoll.poll() would */
                return NULL;
            n = 0;
        }
        self->now = relay_monotonic();
        self->waits++;
        int python = n == 0;
        for (int i = 0; i < n; i++) {
            int tag = events[i].data.fd;
            if (tag >= 0) {     /* Python's: it sees the tunnels that ended so far closed already */
                python = 1;
                if (set_now(self, loop, &shown) < 0 || (self->nended && close_ended(self, loop) < 0)
                    || dispatch(loop, handlers, tag, events[i].events) < 0)
                    return NULL;
                continue;
            }
            /* A slot that a handler above freed and gave a new tunnel: this event was its last
               tunnel's, now gone (the Python turn finds a handler by fd, and never mixes them). */
            int slot = (tag & 0x7fffffff) >> 1;
            if (slot < self->cap && self->links[slot].born != self->waits) {
                self->pumping = 1;      /* its ends are recorded, for close_ended below */
                relay_on_event(self, slot, tag & 1, events[i].events);
                self->pumping = 0;
            }
        }
        if (self->nended) {
            python = 1;
            if (set_now(self, loop, &shown) < 0 || close_ended(self, loop) < 0)
                return NULL;
        }
        if (python || ms == 0 || (ms = milliseconds(until - self->now)) == 0)
            break;
    }
    if (set_now(self, loop, &shown) < 0)
        return NULL;
    return PyLong_FromLong(n);
}

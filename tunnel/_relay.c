/* Plain tunnels relayed in C, their sockets in the worker loop's epoll (tunnel/_relay_turn.c).

Why: a 64-byte WebSocket message through a Python tunnel costs about 7.5 us of user time (the
loop's dispatch, the handler, two os.splice calls, counters), against nginx's 2.9; the kernel's
part is the same for every peer.  Here a message costs one epoll event, a recv and a send in C.

The rules are those of tunnel/tunnel.py, which stays the reference (TLS tunnels, and where this
module is not built or MPM_NATIVE_RELAY=0): each direction reads its source only while its sink
holds nothing back; a part the sink did not take is kept (malloc'd) and the sink watched for
writability; EOF from a source becomes shutdown(SHUT_WR) of its sink once that sink's leftover is
gone; both EOFs end the tunnel ("closed"); an error ends it ("reset", "recv failed: ...", "send
failed: ...").  A source that hangs up while its direction is paused leaves epoll until the
leftover drains (a hang-up is reported whatever the interest: it would spin).  A read that filled
the buffer moves one pipe's worth more through the process's pipe with splice(2), and while reads
keep coming full the direction splices first: bulk transfers stay out of user space, as the
Python path's every read does, and small messages cost a recv and a send.  One event moves at most
a pipe's worth (or four reads): epoll reports the rest again, so no tunnel holds the loop.

Python learns of ends from the turn, which closes the tunnels that ended, and of traffic from
last_active() when a deadline comes due (the idle timeout is swept, not pushed per message).

This file is what Python sees of the relay (the Relay type); the engine that relays the events
is tunnel/_relay_engine.c, the loop turn that hands them to it tunnel/_relay_turn.c, the
structures they use tunnel/relay.h. */

#include "relay.h"

/* == Python API ================================================================================ */

/* Relay(epfd): `epfd` is the worker loop's epoll, which the relay's sides join (tagged, see
   relay.h) and whose turns are turn()'s. */
static PyObject *Relay_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    int epfd;
    if (!PyArg_ParseTuple(args, "i", &epfd))
        return NULL;
    Relay *self = (Relay *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->epfd = epfd;
    self->pipe_r = self->pipe_w = -1;
    self->splicing = getenv("MPM_SPLICE") == NULL || strcmp(getenv("MPM_SPLICE"), "0") != 0;
    return (PyObject *)self;
}

static void Relay_dealloc(Relay *self) {
    for (int i = 0; i < self->cap; i++) {
        Link *link = &self->links[i];
        Py_CLEAR(link->key);
        free(link->side[0].out);
        free(link->side[1].out);
    }
    free(self->links);
    free(self->free_slots);
    relay_discard_pipe(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(key, client_fd, backend_fd, client_eof, backend_eof, to_client, to_backend[, last]) -> slot;
   `last`: the monotonic time of the tunnel's last traffic, now if not given (a tunnel handed
   over from another process, or back from a hand-over that failed, keeps its idle clock). */
static PyObject *Relay_add(Relay *self, PyObject *args) {
    PyObject *key;
    int fd0, fd1, eof0, eof1;
    Py_buffer out0, out1;
    double last = -1.0;
    if (!PyArg_ParseTuple(args, "Oiippy*y*|d", &key, &fd0, &fd1, &eof0, &eof1, &out0, &out1, &last))
        return NULL;
    if (self->nfree == 0) {
        int cap = self->cap ? self->cap * 2 : 64;
        Link *links = realloc(self->links, sizeof(Link) * cap);
        int *free_slots = links ? realloc(self->free_slots, sizeof(int) * cap) : NULL;
        int *ended_slots = free_slots ? realloc(self->ended_slots, sizeof(int) * cap) : NULL;
        if (links != NULL)
            self->links = links;
        if (free_slots != NULL)
            self->free_slots = free_slots;
        if (ended_slots == NULL) {
            PyBuffer_Release(&out0);
            PyBuffer_Release(&out1);
            return PyErr_NoMemory();
        }
        self->ended_slots = ended_slots;
        memset(links + self->cap, 0, sizeof(Link) * (cap - self->cap));
        for (int i = cap - 1; i >= self->cap; i--)
            free_slots[self->nfree++] = i;
        self->cap = cap;
    }
    int slot = self->free_slots[--self->nfree];
    Link *link = &self->links[slot];
    memset(link, 0, sizeof *link);
    link->side[0] = (Side){.fd = fd0, .eof = eof0, .events = -1};
    link->side[1] = (Side){.fd = fd1, .eof = eof1, .events = -1};
    int failed = (out0.len && relay_keep(&link->side[0], out0.buf, out0.len) < 0)
              || (out1.len && relay_keep(&link->side[1], out1.buf, out1.len) < 0);
    PyBuffer_Release(&out0);
    PyBuffer_Release(&out1);
    if (failed) {
        free(link->side[0].out);
        free(link->side[1].out);
        memset(link, 0, sizeof *link);
        return PyErr_NoMemory();
    }
    Py_INCREF(key);
    link->key = key;
    link->born = self->waits;   /* (a Python handler adds it mid-batch: that batch's events name its slot's last tunnel) */
    link->last = last >= 0 ? last : relay_monotonic();
    relay_update_interest(self, slot);
    if (link->ended) {          /* epoll refused a descriptor: nothing to relay */
        errno = link->error;
        PyErr_SetFromErrno(PyExc_OSError);
        free(link->side[0].out);
        free(link->side[1].out);
        Py_CLEAR(link->key);
        memset(link, 0, sizeof *link);
        self->free_slots[self->nfree++] = slot;
        return NULL;
    }
    return PyLong_FromLong(slot);
}

/* [(key, reason), ...] of the slots that ended since the last call.  Makes Python objects: no
   Link pointer may be held by the caller. */
PyObject *relay_take_ended(Relay *self) {
    int count = self->nended;
    self->nended = 0;
    PyObject *ended = PyList_New(0);
    for (int i = 0; ended != NULL && i < count; i++) {
        int slot = self->ended_slots[i];
        if (slot >= self->cap || self->links[slot].key == NULL || self->links[slot].ended == NULL)
            continue;       /* removed meanwhile, by Python run for the list below */
        Link copy = self->links[slot];      /* (what Python below may move or free) */
        PyObject *key = copy.key;
        Py_INCREF(key);
        PyObject *why = copy.error ? PyUnicode_FromFormat("%s: %s", copy.ended, strerror(copy.error))
                                   : PyUnicode_FromString(copy.ended);
        PyObject *item = why ? PyTuple_Pack(2, key, why) : NULL;
        Py_XDECREF(why);
        Py_DECREF(key);
        if (item == NULL || PyList_Append(ended, item) < 0)
            Py_CLEAR(ended);
        Py_XDECREF(item);
    }
    return ended;
}

static Link *get_link(Relay *self, PyObject *arg) {
    long slot = PyLong_AsLong(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= self->cap || self->links[slot].key == NULL) {
        PyErr_SetString(PyExc_KeyError, "no such relay slot");
        return NULL;
    }
    return &self->links[slot];
}

static PyObject *Relay_last_active(Relay *self, PyObject *arg) {
    Link *link = get_link(self, arg);
    return link == NULL ? NULL : PyFloat_FromDouble(link->last);
}

static PyObject *Relay_counts(Relay *self, PyObject *arg) {
    Link *link = get_link(self, arg);
    return link == NULL ? NULL : Py_BuildValue("(LL)", link->bytes[0], link->bytes[1]);
}

/* remove(slot) -> (to_client, to_backend, client_eof, backend_eof, bytes_in, bytes_out): the
   descriptors leave the epoll (the caller closes them, or hands them on). */
static PyObject *Relay_remove(Relay *self, PyObject *arg) {
    Link *link = get_link(self, arg);
    if (link == NULL)
        return NULL;
    for (int s = 0; s < 2; s++) {
        if (link->side[s].events >= 0 && !link->ended)
            epoll_ctl(self->epfd, EPOLL_CTL_DEL, link->side[s].fd, NULL);
    }
    /* The slot is freed before any Python object is made: an allocation may run a collection,
       whose __del__ could add a tunnel and move the array under a Link pointer. */
    Link gone = *link;
    memset(link, 0, sizeof *link);
    self->free_slots[self->nfree++] = (int)(link - self->links);
    PyObject *out[2];
    for (int s = 0; s < 2; s++) {
        Side *side = &gone.side[s];
        out[s] = side->out ? PyBytes_FromStringAndSize(side->out + side->out_off, side->out_len - side->out_off)
                           : PyBytes_FromStringAndSize("", 0);
        free(side->out);
    }
    PyObject *state = (out[0] && out[1]) ? Py_BuildValue("(OOiiLL)", out[0], out[1], gone.side[0].eof,
                                                          gone.side[1].eof, gone.bytes[0], gone.bytes[1])
                                         : NULL;
    Py_XDECREF(out[0]);
    Py_XDECREF(out[1]);
    Py_DECREF(gone.key);
    return state;
}

static PyMethodDef Relay_methods[] = {
    {"add", (PyCFunction)Relay_add, METH_VARARGS, "add(key, client_fd, backend_fd, client_eof, backend_eof, "
                                                  "to_client, to_backend, last) -> slot"},
    {"turn", (PyCFunction)(void (*)(void))Relay_turn, METH_FASTCALL,
     "turn(loop, handlers, timeout) -> events: one turn of worker.loop's run (tunnel/_relay_turn.c)."},
    {"last_active", (PyCFunction)Relay_last_active, METH_O, "Monotonic time of the slot's last traffic."},
    {"counts", (PyCFunction)Relay_counts, METH_O, "(bytes from the client, bytes from the backend)."},
    {"remove", (PyCFunction)Relay_remove, METH_O, "Free the slot; its state (see the module)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tunnel._relay.Relay",
    .tp_basicsize = sizeof(Relay),
    .tp_dealloc = (destructor)Relay_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Plain tunnels relayed in C (see tunnel/_relay.c).",
    .tp_methods = Relay_methods,
    .tp_new = Relay_new,
};

static struct PyModuleDef relay_module = {PyModuleDef_HEAD_INIT, "tunnel._relay", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__relay(void) {
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&relay_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(module, "Relay", (PyObject *)&RelayType) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

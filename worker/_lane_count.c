/* An exchange the lane carried whole, counted here, in the worker's row of the metrics table
(shm/metrics.py), as worker.metrics's `exchange` counts one: its cell of the route's status class
x duration matrix, the bytes received and sent, and its duration in the route's sum.

Why: `exchange` was 98 of the 639 bytecodes a keep-alive request runs in Python, and 98 of the
1,717 a new TLS connection of S7c's does: the largest single piece left that needs nothing of
Python but the route's cells.  Python installs the row once per worker (`install_counts`,
worker.metrics's `install`), and tells each lane its route's cells when the route changes
(`Lane.count_at`); `lane_done` is told whether the exchange was counted here, and every later
path (a stop's, a close's) leaves it so.  A lane's response never is our own answer (a 4xx or
5xx of ours: worker.metrics's `_own_answer`), and never an aborted one (`lane_back`'s): Python
counts those, as it counts everything the lane gives back.  With MPM_NATIVE_LANE_COUNT=0 nothing
is installed and Python counts it all (tests/test_lane_count.py holds the two to the same cells). */

#include "lane.h"

LaneCounts lane_counts;

static int view_of(PyObject *obj, Py_buffer *view, const char *format, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, format) != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "install_counts: %s must be 8-byte '%s' items", what, format);
        return -1;
    }
    return 0;
}

/* install_counts(counts, seconds, bounds, buckets, classes, received, sent): the row's integer
   and float cells (memoryviews of 'q' and 'd'), the duration bounds, and where in a route's block
   its matrix (classes x buckets, from the block's start), received and sent are. */
PyObject *lane_install_counts(PyObject *module, PyObject *args) {
    PyObject *counts, *seconds, *bounds;
    Py_ssize_t buckets, classes, received, sent;
    if (!PyArg_ParseTuple(args, "OOO!nnnn", &counts, &seconds, &PyTuple_Type, &bounds, &buckets, &classes,
                          &received, &sent))
        return NULL;
    Py_ssize_t nbounds = PyTuple_GET_SIZE(bounds);
    if (nbounds > LANE_MAX_BOUNDS || buckets != nbounds + 1 || classes < 1 || received < classes * buckets
        || sent < classes * buckets) {
        PyErr_SetString(PyExc_ValueError, "install_counts: a layout it cannot count in");
        return NULL;
    }
    double values[LANE_MAX_BOUNDS];
    for (Py_ssize_t i = 0; i < nbounds; i++) {
        values[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (values[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer c, s;
    if (view_of(counts, &c, "q", "counts") < 0)
        return NULL;
    if (view_of(seconds, &s, "d", "seconds") < 0) {
        PyBuffer_Release(&c);
        return NULL;
    }
    if (lane_counts.counts != NULL) {
        PyBuffer_Release(&lane_counts.counts_view);
        PyBuffer_Release(&lane_counts.seconds_view);
    }
    memcpy(lane_counts.bounds, values, sizeof(double) * nbounds);
    lane_counts.nbounds = nbounds;
    lane_counts.buckets = buckets;
    lane_counts.classes = classes;
    lane_counts.received = received;
    lane_counts.sent = sent;
    lane_counts.counts_view = c;
    lane_counts.seconds_view = s;
    lane_counts.counts_size = c.len / 8;
    lane_counts.seconds_size = s.len / 8;
    lane_counts.seconds = s.buf;
    lane_counts.row++;
    lane_counts.counts = c.buf;         /* last: it says "installed" */
    Py_RETURN_NONE;
}

/* The exchange just done, counted if its route's cells are known: 1, else 0 (Python counts it). */
int lane_count(Lane *self) {
    if (lane_counts.counts == NULL || self->count_base < 0 || self->count_row != lane_counts.row)
        return 0;
    double elapsed = lane_now() - self->started;
    Py_ssize_t bucket = 0;
    while (bucket < lane_counts.nbounds && lane_counts.bounds[bucket] < elapsed)    /* bisect_left's cell */
        bucket++;
    Py_ssize_t klass = self->status < 600 ? self->status / 100 : 0;
    if (klass >= lane_counts.classes)       /* (never with shm.metrics's six: kept inside the matrix) */
        klass = 0;
    long long *cells = lane_counts.counts + self->count_base;
    cells[klass * lane_counts.buckets + bucket] += 1;
    cells[lane_counts.received] += self->received;
    cells[lane_counts.sent] += self->sent;
    lane_counts.seconds[self->count_cell] += elapsed;
    return 1;
}

PyObject *Lane_get_count_at(Lane *self, void *closure) {
    if (self->count_base < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(nn)", self->count_base, self->count_cell);
}

/* (base, cell): where the route's block starts in the row, and its duration sum's cell
   (worker.metrics's `cells`); None, or no row installed: not counted here. */
int Lane_set_count_at(Lane *self, PyObject *value, void *closure) {
    Py_ssize_t base, cell;
    if (value == NULL || value == Py_None) {
        self->count_base = self->count_cell = -1;
        return 0;
    }
    if (!PyTuple_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "Lane.count_at: (base, cell) or None");
        return -1;
    }
    if (!PyArg_ParseTuple(value, "nn;Lane.count_at: (base, cell)", &base, &cell))
        return -1;
    if (lane_counts.counts == NULL) {    /* nothing installed (MPM_NATIVE_LANE_COUNT=0): Python counts */
        self->count_base = self->count_cell = -1;
        return 0;
    }
    Py_ssize_t last = lane_counts.classes * lane_counts.buckets;
    if (lane_counts.received > last)
        last = lane_counts.received;
    if (lane_counts.sent > last)
        last = lane_counts.sent;
    /* (compared without adding to `base`, which may be anything: review 2026-12-06-count #1) */
    if (base < 0 || base >= lane_counts.counts_size || last >= lane_counts.counts_size - base
        || cell < 0 || cell >= lane_counts.seconds_size) {
        PyErr_SetString(PyExc_ValueError, "Lane.count_at: outside the row");
        return -1;
    }
    self->count_base = base;
    self->count_cell = cell;
    self->count_row = lane_counts.row;
    return 0;
}

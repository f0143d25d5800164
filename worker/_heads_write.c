/* The head sent to the backend, put together in C (worker.rewrite's `request_head`, for a head
whose Connection names no field: the Python keeps that rarer work).

Why: joining it in Python, with the loop that finds the field lines to leave out, cost about
1.5 us of a small request; here it is one allocation and a few copies.  worker.rewrite's
`_kept_lines` stays the reference (where this module is not built, or MPM_NATIVE_HEADS=0), and
tests/test_head_codec.py holds the two to the same bytes. */

#include "heads.h"

#define MAX_CUTS 64

typedef struct {
    Py_ssize_t start, end;
} Cut;

/* The spans of the fields in `drop`, in order (as `_kept_lines` sorts them); -1 when there are
   more than MAX_CUTS (the caller then joins in Python) or with an exception. */
static int cuts_of(PyObject *spans, PyObject *drop, Cut *cuts) {
    Py_ssize_t position = 0;
    PyObject *name, *found;
    int count = 0;
    while (PyDict_Next(spans, &position, &name, &found)) {
        /* A scan's keys are bytes, whose look-up in `drop` runs no Python code that could change
           `spans` under us (review 2026-12-04-night-heads #4): anything else is joined in Python. */
        if (!PyBytes_CheckExact(name) || !PyList_CheckExact(found))
            return -1;
        int dropped = PySet_Contains(drop, name);
        if (dropped < 0)
            return -1;
        if (!dropped)
            continue;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(found); i++) {
            PyObject *span = PyList_GET_ITEM(found, i);
            if (count == MAX_CUTS || !PyTuple_Check(span) || PyTuple_GET_SIZE(span) != 3)
                return -1;
            Cut cut = {PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0)), PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 1))};
            if (PyErr_Occurred())
                return -1;
            if (cut.end < cut.start)
                return -1;
            int at = count++;
            while (at > 0 && cuts[at - 1].start > cut.start) {       /* few: insertion keeps them sorted */
                cuts[at] = cuts[at - 1];
                at--;
            }
            cuts[at] = cut;
        }
    }
    return count;
}

/* The total size of a tuple of bytes objects, or -1 (TypeError). */
static Py_ssize_t size_of(PyObject *pieces) {
    if (!PyTuple_Check(pieces))
        goto wrong;
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pieces); i++) {
        PyObject *piece = PyTuple_GET_ITEM(pieces, i);
        if (!PyBytes_Check(piece))
            goto wrong;
        size += PyBytes_GET_SIZE(piece);
    }
    return size;
wrong:
    PyErr_SetString(PyExc_TypeError, "a tuple of bytes expected");
    return -1;
}

static char *put_all(char *out, PyObject *pieces) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pieces); i++) {
        PyObject *piece = PyTuple_GET_ITEM(pieces, i);
        memcpy(out, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece));
        out += PyBytes_GET_SIZE(piece);
    }
    return out;
}

/* joined_head(before, raw, line_end, spans, drop, framing_line, after) -> bytes, or None when
   the head has more lines to drop than it takes (the caller joins in Python):
   b"".join(before) + the head's field lines but those of the fields in `drop`, then
   `framing_line` (CRLF-led, or None), each line CRLF-ended + b"".join(after). */
PyObject *joined_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyBytes_Check(args[1]) || !PyDict_Check(args[3]) || !PyAnySet_Check(args[4])
            || (args[5] != Py_None && !PyBytes_Check(args[5]))) {
        PyErr_SetString(PyExc_TypeError, "joined_head(before, raw, line_end, spans, drop, framing_line, after)");
        return NULL;
    }
    PyObject *before = args[0], *raw = args[1], *after = args[6], *framing = args[5];
    Py_ssize_t line_end = PyLong_AsSsize_t(args[2]), size = PyBytes_GET_SIZE(raw);
    if (line_end == -1 && PyErr_Occurred())
        return NULL;
    /* Spans and a line end from a scan of this head, and a CRLF-led framing line, or the Python
       joins it: nothing here may read or write outside the head (review 2026-12-04-night-heads #1). */
    if (line_end < 0 || line_end > size - 4 || (framing != Py_None && (PyBytes_GET_SIZE(framing) < 2
            || memcmp(PyBytes_AS_STRING(framing), "\r\n", 2) != 0)))
        return Py_NewRef(Py_None);
    Cut cuts[MAX_CUTS];
    int count = cuts_of(args[3], args[4], cuts);
    if (count < 0)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_ssize_t head_size = size_of(before), tail_size = size_of(after);
    if (head_size < 0 || tail_size < 0)
        return NULL;
    /* The kept lines, CRLF-led as they are in raw: from the request line's end to the last
       line's end, less the cuts. */
    const char *data = PyBytes_AS_STRING(raw);
    Py_ssize_t kept = 0, position = line_end;
    for (int i = 0; i < count; i++) {
        if (cuts[i].start < position || cuts[i].end > size - 4)
            return Py_NewRef(Py_None);           /* overlapping: not spans of one scan */
        kept += cuts[i].start - position;
        position = cuts[i].end;
    }
    kept += size - 4 - position;
    Py_ssize_t framing_size = framing == Py_None ? 0 : PyBytes_GET_SIZE(framing);
    kept += framing_size;
    /* kept[2:] + CRLF: the same size, when there is a line at all */
    PyObject *result = PyBytes_FromStringAndSize(NULL, head_size + kept + tail_size);
    if (result == NULL)
        return NULL;
    char *out = put_all(PyBytes_AS_STRING(result), before);
    Py_ssize_t skip = kept ? 2 : 0;       /* the first line's CRLF: lines are CRLF-ended here */
    position = line_end;
    for (int i = 0; i <= count; i++) {
        Py_ssize_t start = position, end = i < count ? cuts[i].start : size - 4;
        Py_ssize_t dropped = end - start < skip ? end - start : skip;
        memcpy(out, data + start + dropped, end - start - dropped);
        out += end - start - dropped;
        skip -= dropped;
        if (i < count)
            position = cuts[i].end;
    }
    if (framing_size) {
        memcpy(out, PyBytes_AS_STRING(framing) + skip, framing_size - skip);
        out += framing_size - skip;
    }
    if (kept) {
        memcpy(out, "\r\n", 2);
        out += 2;
    }
    put_all(out, after);
    return result;
}

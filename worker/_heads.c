/* The scan of an HTTP/1.1 head for the fields the proxy acts on, in C.

Why: worker.http1 finds them with one regular expression over the lower-cased head
(`_FIELDS_RE`); for a two-line request that scan, with the loop that files its matches, cost
about 1.6 us of a request's 6 (timeit), and re's alternation of two dozen names tries each
name at each newline.  Here one pass finds each newline with memchr and compares the names
that start with the letter after it.

The rules are the regular expression's, which stays the reference (worker.http1's
`_scan_in_python`, used where this module is not built or with MPM_NATIVE_HEADS=0;
tests/test_head_codec.py holds the two to the same answers on random heads):

    \n(name|name|...):[ \t]*([^\r]*)     searched in the lower-cased head, left to right

A match is filed under its name as (the newline's offset - 1, the value's end, the value's
start): raw[start:end] is b"\r\nName: value".  The value runs to the next CR (or the end); the
search goes on from there, so a match never begins inside the one before it.  The names are
the caller's (`scan`'s first argument, set once): all literal, lower-case, none a prefix of
another followed by ':'. */

#include "heads.h"
#include "structmember.h"      /* T_OBJECT_EX */

static PyObject *names[MAX_NAMES];      /* the bytes objects the caller gave: the dict's keys */
static Py_ssize_t name_count;
/* The names the fast paths read (heads.h), and where each name's `Seen` is (-1: not watched). */
static const char *const watched_names[WATCHED] = {"host", "content-length", "transfer-encoding", "connection",
                                                   "upgrade"};
static signed char watched[MAX_NAMES];
int fast_paths;
PyObject *version_11, *version_10;
/* For each byte that can start a name, the indices of the names starting with it, -1 ended. */
static signed char by_first[256][MAX_NAMES + 1];

static PyObject *set_names(PyObject *module, PyObject *tuple) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) > MAX_NAMES) {
        PyErr_SetString(PyExc_ValueError, "names: a tuple of at most 64 bytes objects");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        PyObject *name = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(name) || PyBytes_GET_SIZE(name) == 0) {
            PyErr_SetString(PyExc_ValueError, "names: non-empty bytes only");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < name_count; i++)
        Py_CLEAR(names[i]);
    name_count = PyTuple_GET_SIZE(tuple);
    int filled[256] = {0};
    for (int c = 0; c < 256; c++)
        by_first[c][0] = -1;
    for (Py_ssize_t i = 0; i < name_count; i++) {
        names[i] = Py_NewRef(PyTuple_GET_ITEM(tuple, i));
        unsigned char first = (unsigned char)PyBytes_AS_STRING(names[i])[0];
        by_first[first][filled[first]++] = (signed char)i;
        by_first[first][filled[first]] = -1;
    }
    /* The fast paths read what the scan saw of the watched names: each must be scanned for,
       once, spelled exactly (review 2026-12-04-night-heads #3). */
    int times[WATCHED] = {0};
    for (int i = 0; i < name_count; i++) {
        watched[i] = -1;
        for (int place = 0; place < WATCHED; place++)
            if ((size_t)PyBytes_GET_SIZE(names[i]) == strlen(watched_names[place])
                    && memcmp(PyBytes_AS_STRING(names[i]), watched_names[place], strlen(watched_names[place])) == 0) {
                watched[i] = (signed char)place;
                times[place]++;
            }
    }
    fast_paths = 1;
    for (int place = 0; place < WATCHED; place++)
        fast_paths &= times[place] == 1;
    Py_RETURN_NONE;
}

/* The index of the name that follows the newline at `at` and ends in ':', or -1. */
static int name_at(const char *lower, Py_ssize_t size, Py_ssize_t at) {
    const signed char *candidates = by_first[(unsigned char)lower[at]];
    for (int k = 0; candidates[k] >= 0; k++) {
        PyObject *name = names[candidates[k]];
        Py_ssize_t length = PyBytes_GET_SIZE(name);
        if (at + length < size && lower[at + length] == ':'
                && memcmp(lower + at, PyBytes_AS_STRING(name), length) == 0)
            return candidates[k];
    }
    return -1;
}

static int file_span(PyObject *spans, PyObject *name, Py_ssize_t start, Py_ssize_t end, Py_ssize_t value) {
    PyObject *span = PyTuple_New(3);
    if (span == NULL)
        return -1;
    Py_ssize_t parts[3] = {start, end, value};
    for (int i = 0; i < 3; i++) {
        PyObject *number = PyLong_FromSsize_t(parts[i]);
        if (number == NULL) {
            Py_DECREF(span);
            return -1;
        }
        PyTuple_SET_ITEM(span, i, number);
    }
    PyObject *found = PyDict_GetItemWithError(spans, name);       /* borrowed */
    int failed;
    if (found != NULL) {
        failed = PyList_Append(found, span);
    } else if (PyErr_Occurred()) {
        failed = -1;
    } else {
        PyObject *list = PyList_New(1);
        failed = list == NULL ? -1 : 0;
        if (list != NULL) {
            PyList_SET_ITEM(list, 0, Py_NewRef(span));
            failed = PyDict_SetItem(spans, name, list);
            Py_DECREF(list);
        }
    }
    Py_DECREF(span);
    return failed;
}

/* Lower-case raw into a new bytes object and file the spans of the names (see the top) into a
   new dict; `seen`, when given, says what was found of each name.  0, or -1 with an exception. */
int scan_into(PyObject *raw, PyObject **lower_out, PyObject **spans_out, Seen *seen) {
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    const char *source = PyBytes_AS_STRING(raw);
    PyObject *lower_object = PyBytes_FromStringAndSize(NULL, size);
    PyObject *spans = PyDict_New();
    if (lower_object == NULL || spans == NULL)
        goto failed;
    char *lower = PyBytes_AS_STRING(lower_object);
    for (Py_ssize_t i = 0; i < size; i++) {
        char c = source[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    Py_ssize_t at = 0;
    for (;;) {
        const char *newline = memchr(lower + at, '\n', size - at);
        if (newline == NULL)
            break;
        Py_ssize_t line = newline - lower;
        int index = line + 1 < size ? name_at(lower, size, line + 1) : -1;
        if (index < 0) {
            at = line + 1;
            continue;
        }
        Py_ssize_t value = line + 2 + PyBytes_GET_SIZE(names[index]);
        while (value < size && (lower[value] == ' ' || lower[value] == '\t'))
            value++;
        const char *cr = memchr(lower + value, '\r', size - value);
        Py_ssize_t end = cr == NULL ? size : cr - lower;
        if (file_span(spans, names[index], line - 1, end, value) < 0)
            goto failed;
        if (seen != NULL && watched[index] >= 0) {
            Seen *name = &seen[watched[index]];
            Py_ssize_t span[3] = {line - 1, end, value};
            if (name->count++ == 0)
                memcpy(name->first, span, sizeof span);
            memcpy(name->last, span, sizeof span);
        }
        at = end;
    }
    *lower_out = lower_object;
    *spans_out = spans;
    return 0;
failed:
    Py_XDECREF(lower_object);
    Py_XDECREF(spans);
    return -1;
}

/* scan(raw) -> (lower, spans): raw lower-cased as bytes.lower() does (A-Z only), and
   {name: [(start, end, value start), ...]} for the names present (see the top). */
static PyObject *scan(PyObject *module, PyObject *raw) {
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "scan: bytes expected");
        return NULL;
    }
    PyObject *lower, *spans;
    if (scan_into(raw, &lower, &spans, NULL) < 0)
        return NULL;
    PyObject *answer = PyTuple_Pack(2, lower, spans);
    Py_DECREF(lower);
    Py_DECREF(spans);
    return answer;
}

/* == The classes of the usual heads (worker/_heads_read.c makes them) ============================= */

HeadType request_type, response_type;
PyObject *hop_by_hop;

/* Reads `type`'s slots named in `names` into `read` (its own reference to the type), or -1.  The
   class must be made as `object` makes instances: tp_alloc is all `head_of` calls, so a class
   with a __new__ or __init__ of its own, or a C base that needs its tp_new (an Exception), would
   answer objects its own code never made (review 2026-12-04-late-heads #2: a crash). */
static int read_type(PyObject *type, PyObject *names, int count, HeadType *read) {
    if (!PyType_Check(type) || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) != count) {
        PyErr_Format(PyExc_TypeError, "set_head_types: a class and a tuple of %d of its slots' names", count);
        return -1;
    }
    PyTypeObject *cls = (PyTypeObject *)type;
    if (cls->tp_new != PyBaseObject_Type.tp_new || cls->tp_init != PyBaseObject_Type.tp_init
            || cls->tp_alloc != PyType_GenericAlloc || cls->tp_itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "set_head_types: %R must be made as object makes instances", type);
        return -1;
    }
    *read = (HeadType){.count = count};
    for (int i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *descr = PyObject_GetAttr(type, name);
        if (descr == NULL)
            return -1;
        /* An object slot that raises while unset, of this class or a base: at an offset of its instances. */
        int slot = Py_TYPE(descr) == &PyMemberDescr_Type
                   && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX
                   && PyType_IsSubtype((PyTypeObject *)type, ((PyDescrObject *)descr)->d_type);
        if (slot)
            read->offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        for (int j = 0; slot && j < i; j++)
            slot = read->offsets[j] != read->offsets[i];     /* twice: one slot left unset, one reference lost */
        if (!slot) {
            PyErr_Format(PyExc_TypeError, "set_head_types: %R is not a slot of %R, or is named twice", name, type);
            return -1;
        }
    }
    read->type = (PyTypeObject *)Py_NewRef(type);
    return 0;
}

/* set_head_types(RequestHead, its REQUEST_SLOTS names, ResponseHead, its RESPONSE_SLOTS names,
   hop-by-hop names) */
PyObject *set_head_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "set_head_types(request class, names, response class, names, hop-by-hop)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[4]); i++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(args[4], i))) {
            PyErr_SetString(PyExc_TypeError, "set_head_types: hop-by-hop names are bytes");
            return NULL;
        }
    /* Both read before either is set: a refused call changes nothing (review 2026-12-04-late-heads #3). */
    HeadType request_read, response_read = {0};
    if (read_type(args[0], args[1], REQUEST_SLOTS, &request_read) < 0)
        return NULL;
    if (read_type(args[2], args[3], RESPONSE_SLOTS, &response_read) < 0) {
        Py_DECREF(request_read.type);
        Py_XDECREF(response_read.type);
        return NULL;
    }
    HeadType old_request = request_type, old_response = response_type;
    request_type = request_read;
    response_type = response_read;
    Py_XSETREF(hop_by_hop, Py_NewRef(args[4]));
    Py_XDECREF(old_request.type);
    Py_XDECREF(old_response.type);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_names", set_names, METH_O, "The field names `scan` looks for (a tuple of lower-case bytes)."},
    {"scan", scan, METH_O, "(lower-cased head, {name: [(start, end, value start), ...]})"},
    {"set_head_types", (PyCFunction)(void (*)(void))set_head_types, METH_FASTCALL,
     "The classes `request` and `response` answer, and the order of the slots they fill"},
    {"request", (PyCFunction)(void (*)(void))request, METH_FASTCALL, "A usual request head (a RequestHead), or None"},
    {"response", response, METH_O, "A usual response head as (ResponseHead, shaped), or None"},
    {"joined_head", (PyCFunction)(void (*)(void))joined_head, METH_FASTCALL,
     "The head sent to the backend: before, the kept field lines, after (or None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "worker._heads", NULL, -1, methods};

PyMODINIT_FUNC PyInit__heads(void) {
    for (int c = 0; c < 256; c++)       /* no names until set_names: a scan finds none (review #2) */
        by_first[c][0] = -1;
    version_11 = PyUnicode_InternFromString("1.1");
    version_10 = PyUnicode_InternFromString("1.0");
    if (version_11 == NULL || version_10 == NULL)
        return NULL;
    return PyModule_Create(&module);
}

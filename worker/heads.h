/* What worker/_heads.c (the scan and the module), _heads_read.c (the usual heads read whole) and
_heads_write.c (the head sent to the backend, put together) share. */

#ifndef MPM_HEADS_H
#define MPM_HEADS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_NAMES 64

/* The names the fast paths read: what the scan saw of each is kept in a `Seen` of its own,
   at these places. */
enum { HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, UPGRADE, WATCHED };

/* What the scan saw of one name: how many lines, and the first and last as (start, end, value). */
typedef struct {
    int count;
    Py_ssize_t first[3], last[3];
} Seen;

/* The classes `request` and `response` answer, and where each of the slots they fill is
   (worker/_heads.c's set_head_types; worker/_heads_read.c's head_of). */
#define REQUEST_SLOTS 14
#define RESPONSE_SLOTS 13
#define MAX_SLOTS 16

typedef struct {
    PyTypeObject *type;              /* NULL until set_head_types: `request` and `response` raise */
    int count;
    Py_ssize_t offsets[MAX_SLOTS];
} HeadType;

extern HeadType request_type, response_type;
extern PyObject *hop_by_hop;                   /* a tuple of lower-case names: a response with none is `plain` */
extern int fast_paths;                         /* all the watched names are among those scanned for */
extern PyObject *version_11, *version_10;      /* "1.1" and "1.0", as worker.http1 names versions */

int scan_into(PyObject *raw, PyObject **lower_out, PyObject **spans_out, Seen *seen);
PyObject *request(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *response(PyObject *module, PyObject *raw);
PyObject *set_head_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *joined_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif

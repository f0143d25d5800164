/* The usual HTTP/1.1 heads read whole, in C: worker/_heads.c's `request` and `response`. */

#include "heads.h"

/* == The usual heads, read whole ===============================================================

`request` and `response` read a head as worker.http1's `request_head_from` and
`response_head_from` do, for the heads most traffic is made of, and answer None for any other:
the caller then reads it with that Python, which stays the reference for every head (and the
only reader where this module is not built).  What makes a head unusual here: anything the
Python would refuse or correct, Transfer-Encoding on a request, a Content-Length spelled other
than ": N" on a request, more than one Host, Content-Length or Connection line, a Connection
other than "keep-alive" or "close", Upgrade, an interim (1xx) status, a target not in
origin-form.  llhttp's verdict is still the caller's to get (before or after: both answer alike).
tests/test_head_codec.py holds both readers to the same heads. */

static PyObject *slice(const char *data, Py_ssize_t start, Py_ssize_t end) {
    return PyBytes_FromStringAndSize(data + start, end - start);
}

/* == The heads as objects =======================================================================

`request` and `response` answer worker.http1's RequestHead and ResponseHead themselves, their
slots filled where the classes' member descriptors say: a tuple made here and unpacked into a
fresh object by the Python cost about 1,600 instructions a head.  `set_head_types` names the
classes and the order of the slots (worker/_heads.c; worker.headscan's REQUEST_SLOTS and
RESPONSE_SLOTS, which name every slot of each class: checked there). */

/* A head of `kind` holding `count` new references, which it takes (also when it fails: NULL,
   when one of them is NULL, whose maker set the exception). */
static PyObject *head_of(const HeadType *kind, int count, PyObject **items) {
    /* A copy, with a reference to its class: tp_alloc may run a collection, whose finalizers may
       call set_head_types; the object is then still filled as its own class says (review
       2026-12-04-late-heads #1).  That collection runs before the object is tracked, and every
       part is made before it, so nothing else sees it half filled. */
    HeadType own = *kind;
    int failed = own.type == NULL || own.count != count;
    for (int i = 0; i < count; i++)
        failed |= items[i] == NULL;
    PyObject *head = NULL;
    if (!failed) {
        Py_INCREF(own.type);
        head = own.type->tp_alloc(own.type, 0);
    }
    if (head == NULL) {
        for (int i = 0; i < count; i++)
            Py_XDECREF(items[i]);
        if (!failed)
            Py_DECREF(own.type);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "the head classes are not set (set_head_types)");
        return NULL;
    }
    for (int i = 0; i < count; i++)
        *(PyObject **)((char *)head + own.offsets[i]) = items[i];
    Py_DECREF(own.type);          /* (the object holds its own: tp_alloc took it for a heap type) */
    return head;
}

/* A response's `plain`: HTTP/1.1 and no hop-by-hop field (worker.http1's response_head_from). */
static int plain(int http11, PyObject *spans) {
    if (!http11 || hop_by_hop == NULL)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(hop_by_hop); i++)
        if (PyDict_GetItemWithError(spans, PyTuple_GET_ITEM(hop_by_hop, i)) != NULL || PyErr_Occurred())
            return PyErr_Occurred() ? -1 : 0;
    return 1;
}

/* The end of a value without its trailing spaces and tabs (Python's rstrip(b" \t")). */
static Py_ssize_t trimmed_end(const char *data, Py_ssize_t start, Py_ssize_t end) {
    while (end > start && (data[end - 1] == ' ' || data[end - 1] == '\t'))
        end--;
    return end;
}

/* A Content-Length value as int() reads it: digits, then spaces or tabs only; -1 otherwise
   (or past 18 digits: the Python reads what llhttp let through beyond that). */
static long long content_length(const char *data, Py_ssize_t start, Py_ssize_t end, Py_ssize_t *digits_end) {
    long long value = 0;
    Py_ssize_t i = start;
    while (i < end && data[i] >= '0' && data[i] <= '9' && i - start < 18)
        value = value * 10 + (data[i++] - '0');
    if (i == start || (i < end && data[i] >= '0' && data[i] <= '9'))
        return -1;
    *digits_end = i;
    if (trimmed_end(data, i, end) != i)
        return -1;
    return value;
}

/* A lone Connection line's persistence: 1 keep-alive, 0 close, -1 anything else (the Python's). */
static int connection_verdict(const char *lower, const Seen *line) {
    Py_ssize_t start = line->first[2], end = trimmed_end(lower, start, line->first[1]);
    if (end - start == 10 && memcmp(lower + start, "keep-alive", 10) == 0)
        return 1;
    if (end - start == 5 && memcmp(lower + start, "close", 5) == 0)
        return 0;
    return -1;
}

/* The number of CRLFs in data[start:end], as bytes.count(b"\r\n", start, end) counts them. */
static Py_ssize_t crlf_count(const char *data, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t count = 0;
    for (;;) {
        const char *cr = memchr(data + start, '\r', end - start);
        if (cr == NULL || cr + 1 >= data + end)
            return count;
        start = cr - data + 1;
        if (data[start] == '\n') {
            count++;
            start++;
        }
    }
}

/* Scan and, with what it saw, the parts both fast paths share: (lower, spans, connection value
   or None, persistence), or 0 when the head is not a usual one (-1: an exception). */
typedef struct {
    PyObject *lower, *spans, *connection;
    int keep_alive;
} Common;

static int read_common(PyObject *raw, int http11, Seen *seen, Common *out) {
    const char *data = PyBytes_AS_STRING(raw);
    memset(seen, 0, sizeof(Seen) * WATCHED);
    if (scan_into(raw, &out->lower, &out->spans, seen) < 0)
        return -1;
    out->connection = Py_NewRef(Py_None);
    out->keep_alive = http11;
    const Seen *connection = &seen[CONNECTION];
    int usual = seen[UPGRADE].count == 0 && connection->count <= 1 && seen[CONTENT_LENGTH].count <= 1;
    if (usual && connection->count == 1) {
        out->keep_alive = connection_verdict(PyBytes_AS_STRING(out->lower), connection);
        usual = out->keep_alive >= 0;
        Py_SETREF(out->connection, slice(data, connection->first[2],
                                         trimmed_end(data, connection->first[2], connection->first[1])));
        if (out->connection == NULL)
            usual = -1;
    }
    if (usual <= 0) {
        Py_CLEAR(out->lower);
        Py_CLEAR(out->spans);
        Py_CLEAR(out->connection);
    }
    return usual;
}

static PyObject *usual_request(PyObject *raw, Py_ssize_t line_end, Py_ssize_t space1, Py_ssize_t space2,
                               int http11, Seen *seen) {
    const char *data = PyBytes_AS_STRING(raw);
    const Seen *host = &seen[HOST], *length = &seen[CONTENT_LENGTH];
    Common common;
    int usual = read_common(raw, http11, seen, &common);
    if (usual <= 0)
        return usual < 0 ? NULL : Py_NewRef(Py_None);
    long long body = -1;
    Py_ssize_t digits_end = 0;
    if (length->count == 1) {
        /* The spelling the backend gets as it is (worker.http1's framing_line): ": N", no zeros first. */
        Py_ssize_t start = length->first[0], value = length->first[2];
        body = content_length(data, value, length->first[1], &digits_end);
        usual = body >= 0 && value == start + 18 && data[start + 16] == ':' && data[start + 17] == ' '
                && digits_end == length->first[1] && (digits_end - value == 1 || data[value] != '0');
    }
    usual = usual && seen[TRANSFER_ENCODING].count == 0 && host->count <= 1 && (host->count == 1 || !http11);
    if (!usual) {
        Py_DECREF(common.lower);
        Py_DECREF(common.spans);
        Py_DECREF(common.connection);
        Py_RETURN_NONE;
    }
    Py_ssize_t host_end = host->count ? trimmed_end(data, host->first[2], host->first[1]) : 0;
    PyObject *parts[REQUEST_SLOTS] = {
        Py_NewRef(raw), PyLong_FromSsize_t(line_end), slice(data, 0, space1), slice(data, space1 + 1, space2),
        Py_NewRef(http11 ? version_11 : version_10), common.lower, common.spans,
        slice(data, host->count ? host->first[2] : 0, host_end),
        body >= 0 ? PyLong_FromLongLong(body) : Py_NewRef(Py_None), common.connection,
        Py_NewRef(common.keep_alive ? Py_True : Py_False), Py_NewRef(Py_False), Py_NewRef(Py_None), Py_NewRef(Py_None)};
    return head_of(&request_type, REQUEST_SLOTS, parts);
}

/* request(raw, request line limit, header fields limit, header field limit): a usual request
   head as a RequestHead (its Host not yet checked: worker.http1's parse_request does), or None
   (see above).  Within the limits: check_request_line's and check_fields's. */
PyObject *request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "request(raw: bytes, line limit, fields limit, field limit)");
        return NULL;
    }
    Py_ssize_t limits[3];
    for (int i = 0; i < 3; i++)
        if ((limits[i] = PyLong_AsSsize_t(args[i + 1])) == -1 && PyErr_Occurred())
            return NULL;
    PyObject *raw = args[0];
    const char *data = PyBytes_AS_STRING(raw);
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    const char *crlf = memmem(data, size, "\r\n", 2);
    if (crlf == NULL || crlf == data || !fast_paths)
        Py_RETURN_NONE;
    Py_ssize_t line_end = crlf - data;
    const char *first = memchr(data, ' ', line_end);
    const char *second = first == NULL ? NULL : memchr(first + 1, ' ', line_end - (first + 1 - data));
    if (line_end > limits[0] || first == NULL || first == data || second == NULL || second == first + 1
            || line_end - (second + 1 - data) != 8 || first[1] != '/'
            || memcmp(second + 1, "HTTP/1.", 7) != 0 || (second[8] != '1' && second[8] != '0'))
        Py_RETURN_NONE;       /* also a third space: the version would not be 8 bytes */
    if (crlf_count(data, line_end, size) - 2 > limits[1] || size - line_end > limits[2])
        Py_RETURN_NONE;
    Seen seen[WATCHED];
    return usual_request(raw, line_end, first - data, second - data, second[8] == '1', seen);
}

/* The status code of "HTTP/1.x DDD", or -1. */
static int status_of(const char *data, Py_ssize_t line_end) {
    if (line_end < 12 || memcmp(data, "HTTP/1.", 7) != 0 || (data[7] != '1' && data[7] != '0') || data[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9')
            return -1;
        status = status * 10 + (data[i] - '0');
    }
    return line_end == 12 || data[12] == ' ' ? status : -1;
}

/* A byte of a token (RFC 9110 §5.6.2), of a field value or reason phrase here (HTAB, SP, VCHAR:
   no obs-text, which llhttp reads by its own rules). */
static int token_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int text_byte(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c < 0x7f);
}

/* Whether a response head is of the strictest shape: a reason of text bytes, then lines of a
   token, a colon and text bytes, each ended by CRLF, and the empty line.  Of a head of this
   shape, with one Content-Length of digits at most and no Transfer-Encoding, llhttp has nothing
   to refuse (tests/test_head_codec.py feeds it every such head the tests make), so its verdict
   is not asked for (worker.http1's parse_response): creating a parser and feeding it were about
   2,900 of a small request's instructions.  Any other head is llhttp's to judge, as before. */
static int strictly_shaped(const char *data, Py_ssize_t line_end, Py_ssize_t size) {
    for (Py_ssize_t i = 13; i < line_end; i++)
        if (!text_byte((unsigned char)data[i]))
            return 0;
    /* Bounded by `size` itself, not by the NUL after a bytes object's data (review 2026-12-04-night-heads #5). */
    Py_ssize_t at = line_end + 2;
    while (at < size - 2) {
        Py_ssize_t name = at;
        while (at < size && token_byte((unsigned char)data[at]))
            at++;
        if (at == name || at == size || data[at] != ':')
            return 0;
        for (at++; at < size && text_byte((unsigned char)data[at]); at++)
            ;
        if (at + 1 >= size || data[at] != '\r' || data[at + 1] != '\n')
            return 0;
        at += 2;
    }
    return at == size - 2 && data[at] == '\r' && data[at + 1] == '\n';
}

/* response(raw): a usual final response head as (ResponseHead, shaped), or None (see above);
   `shaped`: llhttp need not judge it (`strictly_shaped`). */
PyObject *response(PyObject *module, PyObject *raw) {
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "response: bytes expected");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(raw);
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    const char *crlf = memmem(data, size, "\r\n", 2);
    int status = crlf == NULL ? -1 : status_of(data, crlf - data);
    if (status < 200 || !fast_paths)
        Py_RETURN_NONE;
    Py_ssize_t line_end = crlf - data, reason = line_end == 12 ? 12 : 13;
    for (Py_ssize_t i = reason; i < line_end; i++)       /* worker.headfixes.CONTROL: corrected there */
        if (((unsigned char)data[i] < 0x20 && data[i] != '\t') || data[i] == 0x7f)
            Py_RETURN_NONE;
    Seen seen[WATCHED];
    Common common;
    int usual = read_common(raw, data[7] == '1', seen, &common);
    if (usual <= 0)
        return usual < 0 ? NULL : Py_NewRef(Py_None);
    const Seen *length = &seen[CONTENT_LENGTH], *coding = &seen[TRANSFER_ENCODING];
    long long body = -1;
    Py_ssize_t digits_end;
    if (length->count == 1 && (body = content_length(data, length->first[2], length->first[1], &digits_end)) < 0)
        usual = 0;
    if (status == 204 && (length->count || coding->count))
        usual = 0;
    int chunked = 0;
    if (coding->count) {
        /* The last coding of the last line (RFC 9112 §6.3), as worker.http1's _scan reads it. */
        const char *lower = PyBytes_AS_STRING(common.lower);
        Py_ssize_t start = coding->last[2], end = coding->last[1];
        for (Py_ssize_t i = end; i > start; i--)
            if (lower[i - 1] == ',') {
                start = i;
                break;
            }
        while (start < end && (lower[start] == ' ' || lower[start] == '\t'))
            start++;
        end = trimmed_end(lower, start, end);
        chunked = end - start == 7 && memcmp(lower + start, "chunked", 7) == 0;
    }
    if (!usual) {
        Py_DECREF(common.lower);
        Py_DECREF(common.spans);
        Py_DECREF(common.connection);
        Py_RETURN_NONE;
    }
    int is_plain = plain(data[7] == '1', common.spans);
    PyObject *parts[RESPONSE_SLOTS] = {
        Py_NewRef(raw), PyLong_FromSsize_t(line_end), PyLong_FromLong(status),
        Py_NewRef(data[7] == '1' ? version_11 : version_10), slice(data, reason, line_end), common.lower,
        common.spans, body >= 0 ? PyLong_FromLongLong(body) : Py_NewRef(Py_None),
        Py_NewRef(chunked ? Py_True : Py_False), common.connection, Py_NewRef(common.keep_alive ? Py_True : Py_False),
        Py_NewRef(Py_None), is_plain < 0 ? NULL : Py_NewRef(is_plain ? Py_True : Py_False)};
    PyObject *head = head_of(&response_type, RESPONSE_SLOTS, parts);
    if (head == NULL)
        return NULL;
    PyObject *shaped = coding->count == 0 && strictly_shaped(data, line_end, size) ? Py_True : Py_False;
    PyObject *answer = PyTuple_Pack(2, head, shaped);
    Py_DECREF(head);
    return answer;
}


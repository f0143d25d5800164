/* The session-ticket key callback of conf.openssl, in C.

Why: OpenSSL calls it twice per resumed TLS 1.3 connection (the ticket shown, the fresh one
issued).  Written in Python (through ctypes) it took the GIL back, converted six arguments and
made four foreign calls each time: about 78,000 of the 2.7 million instructions a resumed
connection costs a worker (callgrind).  Here it reads the keys straight from the shared table
(shm.ticketkeys) and touches no Python object, so it needs no GIL.

What it does is exactly what conf.openssl._ticket_callback does; that one stays the reference
and runs wherever this module was not built.  No OpenSSL header is used: the functions come as
addresses from conf.openssl, resolved through the libssl that Python's own _ssl module links,
so both always talk to the same library.

The table is the master's memfd mapping, inherited by every worker; the master is its only
writer and brackets each write with the sequence number (odd while writing).  A reader copies
the keys when the number changed and is even, and keeps the copy it had when the number moved
under it (as TicketKeyRing.current does). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NAME_BYTES 16
#define IV_BYTES 16
#define MAX_SLOTS 8
#define MAX_KEY 80
#define TLS1_3_VERSION 0x0304
#define PARAM_UTF8_STRING 4
#define PARAM_OCTET_STRING 5

typedef struct {             /* OSSL_PARAM, whose layout is part of OpenSSL 3's ABI */
    const char *key;
    unsigned int data_type;
    void *data;
    size_t data_size;
    size_t return_size;
} Param;

typedef int (*ticket_cb)(void *, unsigned char *, unsigned char *, void *, void *, int);

static struct {
    int (*rand_bytes)(unsigned char *, int);
    int (*encrypt_init)(void *, const void *, void *, const unsigned char *, const unsigned char *);
    int (*decrypt_init)(void *, const void *, void *, const unsigned char *, const unsigned char *);
    int (*mac_set_params)(void *, const Param *);
    int (*ssl_version)(const void *);
    int (*set_callback)(void *, ticket_cb);
    const void *aes128, *aes256;
} ossl;

static struct {               /* where the shared table's columns are */
    volatile int64_t *seq, *count, *sizes;
    const volatile unsigned char *material;
    long key_bytes, slots;
} table;

static struct {               /* this process's copy of the keys */
    int64_t seq;
    int count;
    int sizes[MAX_SLOTS];
    unsigned char keys[MAX_SLOTS][MAX_KEY];
} seen = {.seq = -1};

static char digest_name[] = "SHA256";

static void refresh(void)
{
    int64_t seq = __atomic_load_n(table.seq, __ATOMIC_ACQUIRE);
    if (seq == seen.seq || (seq & 1))
        return;
    int64_t count = *table.count;
    if (count < 0)
        count = 0;
    if (count > table.slots)
        count = table.slots;
    int sizes[MAX_SLOTS];
    unsigned char keys[MAX_SLOTS][MAX_KEY];
    for (int i = 0; i < count; i++) {
        int64_t size = table.sizes[i];
        sizes[i] = (size == 48 || size == 80) ? (int)size : 0;
        memcpy(keys[i], (const void *)(table.material + i * table.key_bytes), (size_t)sizes[i]);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(table.seq, __ATOMIC_ACQUIRE) != seq)
        return;                                   /* rewritten while we read: keep what we had */
    seen.count = (int)count;
    memcpy(seen.sizes, sizes, sizeof sizes);
    memcpy(seen.keys, keys, sizeof keys);
    seen.seq = seq;
}

/* The HMAC secret and the AES key of key i, and its cipher: nginx's file format, 16 bytes of
   name, then the two halves of the rest. */
static int set_key(int i, unsigned char *iv, void *cipher_ctx, void *mac_ctx, int enc)
{
    int half = (seen.sizes[i] - NAME_BYTES) / 2;
    unsigned char *hmac = seen.keys[i] + NAME_BYTES, *aes = hmac + half;
    const void *cipher = half == 32 ? ossl.aes256 : ossl.aes128;
    Param params[3] = {
        {"key", PARAM_OCTET_STRING, hmac, (size_t)half, SIZE_MAX},
        {"digest", PARAM_UTF8_STRING, digest_name, 6, SIZE_MAX},
        {NULL, 0, NULL, 0, 0},
    };
    if (ossl.mac_set_params(mac_ctx, params) != 1)
        return -1;
    if (enc)
        return ossl.encrypt_init(cipher_ctx, cipher, NULL, aes, iv) == 1 ? 1 : -1;
    return ossl.decrypt_init(cipher_ctx, cipher, NULL, aes, iv) == 1 ? 1 : -1;
}

/* 1: done; 2: done, and issue a fresh ticket; 0: no ticket / unknown key; -1: error. */
static int callback(void *ssl, unsigned char *name, unsigned char *iv, void *cipher_ctx, void *mac_ctx, int enc)
{
    refresh();
    if (enc) {
        if (seen.count == 0 || seen.sizes[0] == 0)
            return 0;
        if (ossl.rand_bytes(iv, IV_BYTES) != 1)
            return -1;
        memcpy(name, seen.keys[0], NAME_BYTES);
        return set_key(0, iv, cipher_ctx, mac_ctx, 1);
    }
    for (int i = 0; i < seen.count; i++) {
        if (seen.sizes[i] && memcmp(name, seen.keys[i], NAME_BYTES) == 0) {
            if (set_key(i, iv, cipher_ctx, mac_ctx, 0) != 1)
                return -1;
            return i == 0 && ossl.ssl_version(ssl) != TLS1_3_VERSION ? 1 : 2;
        }
    }
    return 0;
}

static PyObject *install(PyObject *Py_UNUSED(self), PyObject *args)
{
    unsigned long long ctx, seq, count, sizes, material;
    long key_bytes, slots;
    PyObject *functions;
    if (!PyArg_ParseTuple(args, "KKKKKllO!", &ctx, &seq, &count, &sizes, &material, &key_bytes, &slots,
                          &PyTuple_Type, &functions))
        return NULL;
    if (key_bytes != MAX_KEY || slots < 1 || slots > MAX_SLOTS || PyTuple_GET_SIZE(functions) != 8) {
        PyErr_SetString(PyExc_ValueError, "unexpected ticket-key table or function list");
        return NULL;
    }
    void *f[8];
    for (int i = 0; i < 8; i++) {
        f[i] = PyLong_AsVoidPtr(PyTuple_GET_ITEM(functions, i));
        if (f[i] == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a null OpenSSL function");
            return NULL;
        }
    }
    ossl.rand_bytes = (int (*)(unsigned char *, int))f[0];
    ossl.encrypt_init = (int (*)(void *, const void *, void *, const unsigned char *, const unsigned char *))f[1];
    ossl.decrypt_init = (int (*)(void *, const void *, void *, const unsigned char *, const unsigned char *))f[2];
    ossl.mac_set_params = (int (*)(void *, const Param *))f[3];
    ossl.ssl_version = (int (*)(const void *))f[4];
    ossl.set_callback = (int (*)(void *, ticket_cb))f[5];
    ossl.aes128 = f[6];
    ossl.aes256 = f[7];
    if (table.seq != (volatile int64_t *)(uintptr_t)seq) {
        table.seq = (volatile int64_t *)(uintptr_t)seq;
        seen.seq = -1;
    }
    table.count = (volatile int64_t *)(uintptr_t)count;
    table.sizes = (volatile int64_t *)(uintptr_t)sizes;
    table.material = (const volatile unsigned char *)(uintptr_t)material;
    table.key_bytes = key_bytes;
    table.slots = slots;
    if (ossl.set_callback((void *)(uintptr_t)ctx, callback) != 1) {
        PyErr_SetString(PyExc_OSError, "SSL_CTX_set_tlsext_ticket_key_evp_cb failed");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", install, METH_VARARGS,
     "install(ssl_ctx, seq, count, sizes, material, key_bytes, slots, functions): the C ticket callback on "
     "ssl_ctx, reading the keys of the shared table whose columns are at those addresses."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "conf._tickets", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__tickets(void)
{
    return PyModule_Create(&module);
}

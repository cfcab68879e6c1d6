/* capture._fastloop: the common records of capture.pcapfast.read_classic, in C.
 *
 * Optional accelerator: read_classic works the same without it, and the tests check that the
 * flow file -- and every flow's internal state -- is the same either way
 * (tests/capture/test_capture_fastloop.py).
 *
 * Loop(...).run(buf, off, blen, n) folds consecutive records of a classic pcap buffer that are
 * TCP / UDP packets with a plain IP header (IPv4 without options or fragmentation, IPv6 without
 * extension headers), doing what capture.table.FlowTable does for them:
 *
 *   - a flow it starts (not on a DNS or overlay port: DNS answers are parsed in Python,
 *     overlays decapsulated there) lives in C ("native flows" below): counting, the TCP flags,
 *     the client / server decision and the TLS ClientHello probe with its SNI are done on plain
 *     integers, and its FlowState / Half objects are made only when Python needs the flow;
 *   - a flow the Python objects hold (capture.table.FlowState and Half, whose __slots__ it reads and
 *     writes directly) gets the plain hit (h.packets += 1; h.bytes += iplen; fl.last = t) and
 *     FlowTable.tcp_known's flags and probe, unless its segment may be a ClientHello.
 *
 * It returns (off, n) at the first record that is anything else -- or whose fixed-size prefix
 * or whole record is not in the buffer -- and the Python loop handles that record, then calls
 * run again. The decisions (when a flow ends, who is the client, when the TLS probe stops) take
 * their constants from capture.table through the ``model`` argument; field offsets and checks
 * mirror the structs of pcapfast._layout byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define MAX_PORTS 16

/* The slots of capture.table.FlowState (all of them: a new flow sets every one). */
enum {
    F_A, F_A_ADDR, F_A_PORT, F_B, F_B_ADDR, F_B_PORT, F_CLIENT_IS_A, F_CLOSED, F_DIRECTION,
    F_DNS, F_FIRST, F_LAST, F_OUTER, F_PROBE_LEFT, F_PROTO, F_RESETS, F_SLOW, F_SNI, F_SYN,
    F_SYN_SEQ, F_SYNACK, F_TLS, F_TLS_BUF, F_TLS_LEFT, F_TLS_NEXT, F_TUNNEL, F_COUNT
};
static const char *const flow_slots[F_COUNT] = {
    "a", "a_addr", "a_port", "b", "b_addr", "b_port", "client_is_a", "closed", "direction",
    "dns", "first", "last", "outer", "probe_left", "proto", "resets", "slow", "sni", "syn",
    "syn_seq", "synack", "tls", "tls_buf", "tls_left", "tls_next", "tunnel",
};
/* The slots of capture.table.Half. */
enum { H_BYTES, H_FLOW, H_IS_A, H_PACKETS, H_COUNT };
static const char *const half_slots[H_COUNT] = {"bytes", "flow", "is_a", "packets"};

typedef struct {
    PyObject_HEAD
    int swapped;         /* file is little-endian */
    int64_t mult;        /* 1 (ns) or 1000 (us) */
    int64_t idle;
    Py_ssize_t fsize;    /* fixed-size prefix: record header + link + 34 */
    Py_ssize_t link;
    Py_ssize_t eoff;
    char v4[4];
    Py_ssize_t v4len;
    char v6[4];
    Py_ssize_t v6len;    /* -1: no IPv6 fast path */
    PyObject *tcp;       /* dict: key -> Half */
    PyObject *udp;       /* dict */
    PyTypeObject *flow_type;
    PyTypeObject *half_type;
    Py_ssize_t foff[F_COUNT];
    Py_ssize_t hoff[H_COUNT];
    PyObject *dir_handshake, *dir_first, *dir_ports; /* the ``direction`` values */
    long probe_packets, probe_segments, preamble_max, max_client_hello;
    long well_known, ephemeral;
    int dns_ports[MAX_PORTS], ndns;
    int tunnel_ports[MAX_PORTS], ntunnel;
    /* The native flows (see "Native flows" below). */
    struct NFlow *flows;
    Py_ssize_t nflows, fcap, nlive; /* flows in the array, its room, how many are native */
    uint32_t *index;
    size_t icap, iused;
    uint64_t seed;
} Loop;

#define SLOT(o, offset) (*(PyObject **)((char *)(o) + (offset)))
#define FLOW(fl, i) SLOT(fl, self->foff[i])
#define HALF(h, i) SLOT(h, self->hoff[i])

/* Store v (a new reference, stolen) in slot ``offset`` of o. */
static inline void
put(PyObject *o, Py_ssize_t offset, PyObject *v)
{
    PyObject *old = SLOT(o, offset);
    SLOT(o, offset) = v;
    Py_XDECREF(old);
}

/* A bool slot: 1 / 0, or -1 when it is not a bool (or unset): the Python code decides then. */
static inline int
truth(PyObject *v)
{
    return v == Py_True ? 1 : v == Py_False ? 0 : -1;
}

/* An exact int slot that fits a long long; 0 when it does not (the Python code decides then). */
static inline int
as_i64(PyObject *v, long long *out)
{
    if (v == NULL || !PyLong_CheckExact(v)) {
        return 0;
    }
    int overflow = 0;
    long long r = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (r == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = r;
    return 1;
}

/* o + k for a Python int o: exact, like o += k in Python. New reference. */
static inline PyObject *
add_int(PyObject *o, long long k)
{
    long long v, r;
    if (o == NULL) {
        PyErr_SetString(PyExc_AttributeError, "unset counter");
        return NULL;
    }
    if (as_i64(o, &v) && !__builtin_add_overflow(v, k, &r)) {
        return PyLong_FromLongLong(r);
    }
    PyObject *kk = PyLong_FromLongLong(k);
    if (kk == NULL) {
        return NULL;
    }
    PyObject *sum = PyNumber_Add(o, kk);
    Py_DECREF(kk);
    return sum;
}

static inline uint32_t
rd32(const unsigned char *p, int swapped)
{
    if (swapped) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
               | ((uint32_t)p[3] << 24);
    }
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8)
           | (uint32_t)p[3];
}

static inline int
in_ports(const int *ports, int count, int port)
{
    for (int i = 0; i < count; i++) {
        if (ports[i] == port) {
            return 1;
        }
    }
    return 0;
}

/* capture.tls.looks_like_client_hello: probe_client_hello says "not a hello" exactly when
 * this is false, so a segment that fails it needs no Python. */
static inline int
looks_like_client_hello(const unsigned char *p, Py_ssize_t len)
{
    return len >= 6 && p[0] == 0x16 && p[1] == 3 && p[2] <= 4 && p[5] == 1;
}

/* capture.tls.proxy_header_length: the length of a whole PROXY protocol header (version 1:
 * "PROXY " ... CRLF within 107 bytes; version 2: the 12-byte signature, version 2, then
 * 16 + the length in bytes 14-15) at the start of p, 0 when there is none. */
static inline Py_ssize_t
proxy_header_length(const unsigned char *p, Py_ssize_t len)
{
    static const unsigned char v2[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55,
                                         0x49, 0x54, 0x0A};
    if (len >= 6 && memcmp(p, "PROXY ", 6) == 0) {
        Py_ssize_t stop = len < 107 ? len : 107;
        for (Py_ssize_t i = 6; i + 1 < stop; i++) {
            if (p[i] == '\r' && p[i + 1] == '\n') {
                return i + 2;
            }
        }
        return 0;
    }
    if (len >= 16 && memcmp(p, v2, 12) == 0 && (p[12] >> 4) == 2) {
        Py_ssize_t total = 16 + ((p[14] << 8) | p[15]);
        return total <= len ? total : 0;
    }
    return 0;
}

/* h.packets += 1; h.bytes += iplen; fl.last = t. 0, or -1 with an exception set. */
static inline int
count(Loop *self, PyObject *h, PyObject *fl, Py_ssize_t iplen, int64_t t)
{
    PyObject *nv = add_int(HALF(h, H_PACKETS), 1);
    if (nv == NULL) {
        return -1;
    }
    put(h, self->hoff[H_PACKETS], nv);
    nv = add_int(HALF(h, H_BYTES), iplen);
    if (nv == NULL) {
        return -1;
    }
    put(h, self->hoff[H_BYTES], nv);
    nv = PyLong_FromLongLong(t);
    if (nv == NULL) {
        return -1;
    }
    put(fl, self->foff[F_LAST], nv);
    return 0;
}

static PyObject *
new_half(Loop *self, PyObject *fl, int is_a, uint64_t packets, uint64_t bytes)
{
    PyObject *h = self->half_type->tp_alloc(self->half_type, 0);
    if (h == NULL) {
        return NULL;
    }
    HALF(h, H_PACKETS) = PyLong_FromUnsignedLongLong(packets);
    HALF(h, H_BYTES) = PyLong_FromUnsignedLongLong(bytes);
    HALF(h, H_FLOW) = Py_NewRef(fl);
    HALF(h, H_IS_A) = Py_NewRef(is_a ? Py_True : Py_False);
    if (HALF(h, H_PACKETS) == NULL || HALF(h, H_BYTES) == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

/* ---- Native flows ---------------------------------------------------------------------------
 *
 * A flow this loop starts lives here, in C, not as Python objects: per packet, one probe of an
 * open-addressing index and a few integer updates, no allocation. Its Python FlowState and Half
 * objects are made ("materialized", with exactly the state the Python code would have given
 * them) and entered in the table's dicts when Python code needs the flow: a record of it the
 * loop leaves to Python (a ClientHello split over segments, a new record for the 5-tuple, time
 * going backwards), a record the loop did not parse (FlowTable.add asks through
 * ``table.native``: take(proto, key)), and at the end of the capture (flush()). From then on
 * the flow is Python's and the loop uses the object path above for it. */

typedef struct NFlow {
    int64_t first, last, resets, syn_seq; /* syn_seq: of the last SYN, -1: none */
    uint64_t packets[2], bytes[2]; /* [0]: sent by A, [1]: by B */
    PyObject *sni;                 /* str, or NULL for None */
    unsigned char key[36];         /* A's key: a_addr + b_addr + a_port + b_port */
    uint8_t alen, proto, client_is_a, syn, synack, closed, tls, direction, live;
    int16_t probe_left, tls_left;
} NFlow;

enum { DIR_FIRST = 0, DIR_PORTS = 1, DIR_HANDSHAKE = 2 };

static inline uint64_t
mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

static inline uint64_t
key_hash(const Loop *self, const unsigned char *k, Py_ssize_t len)
{
    uint64_t h = self->seed ^ (uint64_t)len;
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, k + i, 8);
        h = mix64(h ^ w);
    }
    uint64_t w = 0;
    memcpy(&w, k + i, (size_t)(len - i));
    return mix64(h ^ w);
}

/* ``out`` = the reverse of key ``k`` (dst + src + dport + sport). */
static inline void
reverse_key(unsigned char *out, const unsigned char *k, Py_ssize_t alen)
{
    memcpy(out, k + alen, (size_t)alen);
    memcpy(out + alen, k, (size_t)alen);
    out[2 * alen] = k[2 * alen + 2];
    out[2 * alen + 1] = k[2 * alen + 3];
    out[2 * alen + 2] = k[2 * alen];
    out[2 * alen + 3] = k[2 * alen + 1];
}

/* The live native flow and end (1: A, 0: B) of a packet with key ``k`` of protocol ``proto``;
 * -1 when none. The index holds 2 * flow + (is B) + 1 per entry, 0 for an empty slot; the
 * entries of materialized flows stay (skipped) until the next rehash. */
static Py_ssize_t
native_find(const Loop *self, int proto, const unsigned char *k, Py_ssize_t alen, int *is_a)
{
    if (self->icap == 0) {
        return -1;
    }
    Py_ssize_t klen = 2 * alen + 4;
    size_t mask = self->icap - 1;
    size_t i = (size_t)key_hash(self, k, klen) & mask;
    unsigned char rk[36];
    int have_rk = 0;
    for (;;) {
        uint32_t e = self->index[i];
        if (e == 0) {
            return -1;
        }
        const NFlow *f = &self->flows[(e - 1) >> 1];
        if (f->live && f->proto == proto && f->alen == alen) {
            if (!((e - 1) & 1)) {
                if (memcmp(f->key, k, (size_t)klen) == 0) {
                    *is_a = 1;
                    return (Py_ssize_t)((e - 1) >> 1);
                }
            } else {
                if (!have_rk) {
                    reverse_key(rk, k, alen);
                    have_rk = 1;
                }
                if (memcmp(f->key, rk, (size_t)klen) == 0) {
                    *is_a = 0;
                    return (Py_ssize_t)((e - 1) >> 1);
                }
            }
        }
        i = (i + 1) & mask;
    }
}

static void
index_put(Loop *self, const unsigned char *k, Py_ssize_t klen, uint32_t entry)
{
    size_t mask = self->icap - 1;
    size_t i = (size_t)key_hash(self, k, klen) & mask;
    while (self->index[i] != 0) {
        i = (i + 1) & mask;
    }
    self->index[i] = entry;
    self->iused++;
}

static void
index_add_flow(Loop *self, Py_ssize_t fi)
{
    const NFlow *f = &self->flows[fi];
    Py_ssize_t klen = 2 * f->alen + 4;
    index_put(self, f->key, klen, (uint32_t)(2 * fi + 1));
    unsigned char rk[36];
    reverse_key(rk, f->key, f->alen);
    if (memcmp(rk, f->key, (size_t)klen) != 0) {  /* the same 5-tuple both ways: one entry */
        index_put(self, rk, klen, (uint32_t)(2 * fi + 2));
    }
}

/* Room for one more flow (two index entries): grow the arrays, rehashing the live flows.
 * -1 with MemoryError. */
static int
native_reserve(Loop *self)
{
    if (self->nflows >= self->fcap) {
        Py_ssize_t cap = self->fcap ? self->fcap * 2 : 1024;
        if (cap > (Py_ssize_t)(UINT32_MAX / 4)) {
            PyErr_NoMemory();
            return -1;
        }
        NFlow *flows = PyMem_Realloc(self->flows, (size_t)cap * sizeof(NFlow));
        if (flows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->flows = flows;
        self->fcap = cap;
    }
    if ((self->iused + 2) * 2 > self->icap) {
        /* Rehash, and drop the flows Python took over: no flow index is held across
         * native_new, so the live flows can move to the front. */
        size_t cap = 4096;
        while (cap < ((size_t)self->nlive + 1) * 8) {
            cap *= 2;
        }
        uint32_t *index = PyMem_Calloc(cap, sizeof(uint32_t));
        if (index == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyMem_Free(self->index);
        self->index = index;
        self->icap = cap;
        self->iused = 0;
        Py_ssize_t kept = 0;
        for (Py_ssize_t i = 0; i < self->nflows; i++) {
            if (self->flows[i].live) {
                if (kept != i) {
                    self->flows[kept] = self->flows[i];
                }
                index_add_flow(self, kept++);
            }
        }
        self->nflows = kept;
    }
    return 0;
}

/* FlowTable._new for a plain TCP / UDP packet not on a DNS or overlay port: a native flow
 * whose A end sent the packet (which the caller then folds). Its index, or -1 with an
 * exception. */
static Py_ssize_t
native_new(Loop *self, int proto, const unsigned char *k, Py_ssize_t alen, int sport, int dport,
           int64_t t)
{
    if (native_reserve(self) < 0) {
        return -1;
    }
    Py_ssize_t fi = self->nflows++;
    self->nlive++;
    NFlow *f = &self->flows[fi];
    memset(f, 0, sizeof(*f));
    memcpy(f->key, k, (size_t)(2 * alen + 4));
    f->alen = (uint8_t)alen;
    f->proto = (uint8_t)proto;
    f->first = f->last = t;
    f->syn_seq = -1;
    f->live = 1;
    f->client_is_a = 1;
    f->direction = DIR_FIRST;
    if (proto == 6) {
        /* Until a SYN or SYN-ACK says otherwise, the lower port is the server's. */
        f->direction = DIR_PORTS;
        f->client_is_a = !(sport < dport);
        f->probe_left = (int16_t)self->probe_packets;
        f->tls_left = (int16_t)self->probe_segments;
    } else if (sport < self->well_known && self->well_known <= self->ephemeral
               && self->ephemeral <= dport) {
        /* A first packet from a well-known port to an ephemeral one is a reply. */
        f->client_is_a = 0;
        f->direction = DIR_PORTS;
    }
    index_add_flow(self, fi);
    return fi;
}

/* Drop a FlowState that could not be finished: break its cycle with the halves first. */
static void
abandon(Loop *self, PyObject *fl)
{
    for (int i = F_A; i <= F_B; i += F_B - F_A) {
        PyObject *h = FLOW(fl, i);
        if (h != NULL) {
            Py_CLEAR(HALF(h, H_FLOW));
        }
    }
    Py_DECREF(fl);
}

/* table[key] = half, where key must not be in the table yet. 0, or -1 with an error. */
static int
enter(PyObject *table, const unsigned char *key, Py_ssize_t klen, PyObject *half)
{
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, klen);
    if (k == NULL) {
        return -1;
    }
    PyObject *had = PyDict_SetDefault(table, k, half);  /* borrowed */
    Py_DECREF(k);
    if (had == NULL) {
        return -1;
    }
    if (had != half) {
        /* A native flow's key is never Python's too: FlowTable.add asks ``native`` first. */
        PyErr_SetString(PyExc_RuntimeError,
                        "capture._fastloop: a native flow's key is already in the table");
        return -1;
    }
    return 0;
}

/* The Python objects of native flow ``fi``, entered in the table's dict; the flow stops being
 * native. Returns the half of end ``is_a`` (borrowed: the dict holds it), NULL on error. */
static PyObject *
materialize(Loop *self, Py_ssize_t fi, int is_a)
{
    /* A copy: allocating may run a collection, and with it any Python code. */
    NFlow c = self->flows[fi];
    PyObject *table = c.proto == 6 ? self->tcp : self->udp;
    Py_ssize_t alen = c.alen, klen = 2 * alen + 4;
    const unsigned char *k = c.key;
    PyObject *fl = self->flow_type->tp_alloc(self->flow_type, 0);
    if (fl == NULL) {
        return NULL;
    }
    PyObject *direction = c.direction == DIR_HANDSHAKE ? self->dir_handshake
                          : c.direction == DIR_PORTS ? self->dir_ports : self->dir_first;
    FLOW(fl, F_SNI) = Py_NewRef(c.sni != NULL ? c.sni : Py_None);  /* first: c.sni is borrowed */
    FLOW(fl, F_PROTO) = PyLong_FromLong(c.proto);
    FLOW(fl, F_A_ADDR) = PyBytes_FromStringAndSize((const char *)k, alen);
    FLOW(fl, F_B_ADDR) = PyBytes_FromStringAndSize((const char *)k + alen, alen);
    FLOW(fl, F_A_PORT) = PyLong_FromLong((k[2 * alen] << 8) | k[2 * alen + 1]);
    FLOW(fl, F_B_PORT) = PyLong_FromLong((k[2 * alen + 2] << 8) | k[2 * alen + 3]);
    FLOW(fl, F_FIRST) = PyLong_FromLongLong(c.first);
    FLOW(fl, F_LAST) = PyLong_FromLongLong(c.last);
    FLOW(fl, F_CLIENT_IS_A) = Py_NewRef(c.client_is_a ? Py_True : Py_False);
    FLOW(fl, F_DIRECTION) = Py_NewRef(direction);
    FLOW(fl, F_SYN) = Py_NewRef(c.syn ? Py_True : Py_False);
    FLOW(fl, F_SYN_SEQ) = PyLong_FromLongLong(c.syn_seq);
    FLOW(fl, F_SYNACK) = Py_NewRef(c.synack ? Py_True : Py_False);
    FLOW(fl, F_RESETS) = PyLong_FromLongLong(c.resets);
    FLOW(fl, F_CLOSED) = Py_NewRef(c.closed ? Py_True : Py_False);
    FLOW(fl, F_TLS) = Py_NewRef(c.tls ? Py_True : Py_False);
    FLOW(fl, F_TLS_LEFT) = PyLong_FromLong(c.tls_left);
    FLOW(fl, F_PROBE_LEFT) = PyLong_FromLong(c.probe_left);
    FLOW(fl, F_TLS_BUF) = Py_NewRef(Py_None);
    FLOW(fl, F_TLS_NEXT) = PyLong_FromLong(0);
    FLOW(fl, F_OUTER) = Py_NewRef(Py_None);
    FLOW(fl, F_DNS) = Py_NewRef(Py_False);
    FLOW(fl, F_TUNNEL) = Py_NewRef(Py_False);
    /* slow == (probe_left > 0 or dns or tunnel) after every folded packet; no DNS or overlay
     * flow is native. */
    FLOW(fl, F_SLOW) = Py_NewRef(c.probe_left > 0 ? Py_True : Py_False);
    FLOW(fl, F_A) = new_half(self, fl, 1, c.packets[0], c.bytes[0]);
    FLOW(fl, F_B) = new_half(self, fl, 0, c.packets[1], c.bytes[1]);
    for (int i = 0; i < F_COUNT; i++) {
        if (FLOW(fl, i) == NULL) {
            abandon(self, fl);  /* partly built: the unset slots stay NULL */
            return NULL;
        }
    }
    PyObject *a = FLOW(fl, F_A), *b = FLOW(fl, F_B);
    unsigned char rk[36];
    reverse_key(rk, k, alen);
    int r = enter(table, k, klen, a);
    if (r == 0 && memcmp(rk, k, (size_t)klen) != 0 && enter(table, rk, klen, b) < 0) {
        /* Undo the first entry, keeping the error of the second. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *key = PyBytes_FromStringAndSize((const char *)k, klen);
        if (key == NULL || PyDict_DelItem(table, key) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(key);
        PyErr_Restore(type, value, tb);
        r = -1;
    }
    if (r < 0) {
        abandon(self, fl);
        return NULL;
    }
    Py_DECREF(fl);  /* the halves hold the flow; the dict holds the halves */
    NFlow *f = &self->flows[fi];
    f->live = 0;
    self->nlive--;
    Py_CLEAR(f->sni);
    return is_a ? a : b;
}

/* capture.tls._is_ip_literal: the last label of name[:len] (host characters) is all digits,
 * or 0x / 0X and hex digits -- an IPv4 address, which RFC 6066 does not allow as an SNI. */
static int
ends_in_a_number(const unsigned char *name, Py_ssize_t len)
{
    Py_ssize_t start = len;
    while (start > 0 && name[start - 1] != '.') {
        start--;
    }
    const unsigned char *last = name + start;
    Py_ssize_t n = len - start;
    int digits = n > 0;
    for (Py_ssize_t i = 0; i < n && digits; i++) {
        digits = last[i] >= '0' && last[i] <= '9';
    }
    if (digits) {
        return 1;
    }
    if (n < 2 || last[0] != '0' || (last[1] != 'x' && last[1] != 'X')) {
        return 0;
    }
    for (Py_ssize_t i = 2; i < n; i++) {
        unsigned char c = last[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* capture.tls._server_name: the host_name entry of a server_name extension body; NULL for
 * None (no error set), or NULL with an error. */
static PyObject *
server_name(const unsigned char *ext, Py_ssize_t n, int *error)
{
    *error = 0;
    if (n < 2) {
        return NULL;
    }
    Py_ssize_t end = 2 + ((ext[0] << 8) | ext[1]);
    if (end > n) {
        end = n;
    }
    Py_ssize_t off = 2;
    while (off + 3 <= end) {
        int ntype = ext[off];
        Py_ssize_t nlen = (ext[off + 1] << 8) | ext[off + 2];
        Py_ssize_t start = off + 3;
        if (ntype == 0) {
            /* ext[start:start + nlen], clipped to the extension */
            Py_ssize_t got = start + nlen <= n ? nlen : (start < n ? n - start : 0);
            if (got != nlen || nlen == 0) {
                return NULL;
            }
            Py_ssize_t len = nlen;
            for (Py_ssize_t i = 0; i < nlen; i++) {
                unsigned char c = ext[start + i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                      || c == '.' || c == '-' || c == '_' || c == '*')) {
                    return NULL;
                }
            }
            while (len > 0 && ext[start + len - 1] == '.') {
                len--;  /* rstrip(".") */
            }
            if (len == 0 || ends_in_a_number(ext + start, len)) {
                return NULL;
            }
            PyObject *s = PyUnicode_New(len, 127);
            if (s == NULL) {
                *error = 1;
                return NULL;
            }
            Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
            for (Py_ssize_t i = 0; i < len; i++) {
                unsigned char c = ext[start + i];
                out[i] = (Py_UCS1)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);  /* lower() */
            }
            return s;
        }
        off = start + nlen;
    }
    return NULL;
}

/* capture.tls.probe_client_hello. Returns 0 (not a hello) or 1 (a hello); *need_more as
 * there; *sni a new str or NULL (None). -1 with an error. */
static int
probe_client_hello(const unsigned char *d, Py_ssize_t len, int *need_more, PyObject **sni)
{
    *need_more = 0;
    *sni = NULL;
    if (!looks_like_client_hello(d, len)) {
        return 0;
    }
    Py_ssize_t declared = 5 + ((d[3] << 8) | d[4]);
    Py_ssize_t record_end = declared < len ? declared : len;
    int complete = len >= declared;
    Py_ssize_t off = 5 + 4 + 2 + 32;
    *need_more = !complete;  /* "more": a hello, no SNI yet */
    if (off + 1 > record_end) {
        return 1;
    }
    off += 1 + d[off];  /* session id */
    if (off + 2 > record_end) {
        return 1;
    }
    off += 2 + ((d[off] << 8) | d[off + 1]);  /* cipher suites */
    if (off + 1 > record_end) {
        return 1;
    }
    off += 1 + d[off];  /* compression methods */
    if (off + 2 > record_end) {
        return 1;
    }
    Py_ssize_t ext_end = off + 2 + ((d[off] << 8) | d[off + 1]);
    off += 2;
    while (off + 4 <= record_end && off < ext_end) {
        int etype = (d[off] << 8) | d[off + 1];
        Py_ssize_t elen = (d[off + 2] << 8) | d[off + 3];
        Py_ssize_t body = off + 4;
        if (etype == 0) {
            if (body + elen > record_end) {
                return 1;
            }
            int error;
            *need_more = 0;
            *sni = server_name(d + body, elen, &error);
            return error ? -1 : 1;
        }
        off = body + elen;
    }
    if (complete || off >= ext_end) {
        *need_more = 0;
    }
    return 1;
}

enum { DONE = 0, PYTHON = 1, ERROR = -1 };

/* Materialize flow fi and leave the record to Python. */
static inline int
to_python(Loop *self, Py_ssize_t fi)
{
    return materialize(self, fi, 1) == NULL ? ERROR : PYTHON;
}

/* FlowTable.add / tcp_known for a TCP packet from end ``is_a`` of native flow ``fi``. */
static int
native_tcp(Loop *self, Py_ssize_t fi, int is_a, const unsigned char *l4,
           const unsigned char *l4end, Py_ssize_t iplen, int flags, int64_t t)
{
    NFlow *f = &self->flows[fi];
    int64_t gap;
    if (__builtin_sub_overflow(t, f->last, &gap) || gap < 0 || gap > self->idle) {
        return to_python(self, fi);  /* a new record starts, or time went backwards */
    }
    int end = is_a ? 0 : 1;
    if (f->probe_left <= 0 && !(flags & (TCP_SYN | TCP_RST | TCP_FIN))) {
        f->packets[end] += 1;  /* the plain hit */
        f->bytes[end] += (uint64_t)iplen;
        f->last = t;
        return DONE;
    }
    if (f->closed && (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
        return to_python(self, fi);  /* a new SYN on a closed 5-tuple: a new record */
    }
    int client_after = f->client_is_a;
    if (flags & TCP_SYN) {
        client_after = (flags & TCP_ACK) ? !is_a : is_a;
    }
    const unsigned char *payload = NULL;
    Py_ssize_t paylen = 0, hellolen = 0;  /* hellolen: the payload after a PROXY header */
    int hello = 0, need_more = 0;
    PyObject *sni = NULL;
    if (f->probe_left > 0) {
        int doff = (l4[12] >> 4) * 4;
        payload = l4 + (doff > 20 ? doff : 20);
        paylen = l4end - payload;
        if (paylen > 0 && is_a == client_after && f->tls_left > 0) {
            Py_ssize_t skip = proxy_header_length(payload, paylen);
            hellolen = paylen - skip;
            hello = probe_client_hello(payload + skip, hellolen, &need_more, &sni);
            if (hello < 0) {
                return ERROR;
            }
            if (hello && need_more && hellolen < self->max_client_hello) {
                Py_XDECREF(sni);
                return to_python(self, fi);  /* the rest of the ClientHello is to come */
            }
            f = &self->flows[fi];
        }
    }
    if (flags & TCP_SYN) {
        if (flags & TCP_ACK) {
            f->synack = 1;
        } else {
            f->syn = 1;
            f->syn_seq = rd32(l4 + 4, 0);
        }
        f->client_is_a = (uint8_t)client_after;
        f->direction = DIR_HANDSHAKE;
    }
    if (flags & TCP_RST) {
        f->resets += 1;
        f->closed = 1;
    } else if (flags & TCP_FIN) {
        f->closed = 1;
    }
    f->packets[end] += 1;
    f->bytes[end] += (uint64_t)iplen;
    f->last = t;
    if (f->probe_left > 0) {
        f->probe_left -= 1;
        if (paylen > 0) {
            if (is_a == client_after) {
                /* FlowTable._tls, with nothing buffered (a native flow never has). */
                if (f->tls_left > 0) {
                    f->tls_left -= 1;
                    if (!hello) {
                        if (f->tls_left <= 0 || hellolen > self->preamble_max) {
                            f->probe_left = 0;
                        }
                    } else {
                        f->tls = 1;
                        if (sni != NULL) {
                            Py_XSETREF(f->sni, sni);
                            sni = NULL;
                        }
                        f->probe_left = 0;  /* done: nothing more to learn from its payload */
                    }
                }
            } else if (paylen > self->preamble_max) {
                f->probe_left = 0;  /* the server is sending data: the conversation is on */
            }
        }
    }
    Py_XDECREF(sni);
    return DONE;
}

/* A UDP packet from end ``is_a`` of native flow ``fi``. */
static inline int
native_udp(Loop *self, Py_ssize_t fi, int is_a, Py_ssize_t iplen, int64_t t)
{
    NFlow *f = &self->flows[fi];
    int64_t gap;
    if (__builtin_sub_overflow(t, f->last, &gap) || gap < 0 || gap > self->idle) {
        return to_python(self, fi);
    }
    f->packets[is_a ? 0 : 1] += 1;
    f->bytes[is_a ? 0 : 1] += (uint64_t)iplen;
    f->last = t;
    return DONE;
}

/* FlowTable._tcp_flags. 0, or -1 with an error. */
static int
tcp_flags(Loop *self, PyObject *fl, int is_a, int flags, uint32_t seq)
{
    if (flags & TCP_SYN) {
        if (flags & TCP_ACK) {
            put(fl, self->foff[F_SYNACK], Py_NewRef(Py_True));
            put(fl, self->foff[F_CLIENT_IS_A], Py_NewRef(is_a ? Py_False : Py_True));
        } else {
            PyObject *v = PyLong_FromUnsignedLong(seq);
            if (v == NULL) {
                return -1;
            }
            put(fl, self->foff[F_SYN_SEQ], v);
            put(fl, self->foff[F_SYN], Py_NewRef(Py_True));
            put(fl, self->foff[F_CLIENT_IS_A], Py_NewRef(is_a ? Py_True : Py_False));
        }
        put(fl, self->foff[F_DIRECTION], Py_NewRef(self->dir_handshake));
    }
    if (flags & TCP_RST) {
        /* resets is an int below 2**62 here (checked by the caller) */
        long long resets = 0;
        as_i64(FLOW(fl, F_RESETS), &resets);
        PyObject *v = PyLong_FromLongLong(resets + 1);
        if (v == NULL) {
            return -1;
        }
        put(fl, self->foff[F_RESETS], v);
        put(fl, self->foff[F_CLOSED], Py_NewRef(Py_True));
    } else if (flags & TCP_FIN) {
        put(fl, self->foff[F_CLOSED], Py_NewRef(Py_True));
    }
    return 0;
}

/* FlowTable.tcp_known for half h of a known (or just created) TCP flow: DONE when folded,
 * PYTHON when the Python code must fold it (nothing changed yet), ERROR with an exception. */
static int
tcp_known(Loop *self, PyObject *h, const unsigned char *l4, const unsigned char *l4end,
          Py_ssize_t iplen, int flags, int64_t t)
{
    PyObject *fl = HALF(h, H_FLOW);
    if (fl == NULL || Py_TYPE(fl) != self->flow_type) {
        return PYTHON;
    }
    int slow = truth(FLOW(fl, F_SLOW));
    long long last;
    int64_t gap;
    if (slow < 0 || !as_i64(FLOW(fl, F_LAST), &last) || __builtin_sub_overflow(t, last, &gap)
        || gap < 0 || gap > self->idle) {
        return PYTHON;  /* a new record starts, or time went backwards: FlowTable.add */
    }
    if (!slow && !(flags & (TCP_SYN | TCP_RST | TCP_FIN))) {
        return count(self, h, fl, iplen, t) < 0 ? ERROR : DONE;  /* the plain hit */
    }
    int is_a = truth(HALF(h, H_IS_A));
    int dns = truth(FLOW(fl, F_DNS));
    int closed = truth(FLOW(fl, F_CLOSED));
    int client_is_a = truth(FLOW(fl, F_CLIENT_IS_A));
    int tunnel = truth(FLOW(fl, F_TUNNEL));
    long long probe_left, tls_left, resets;
    if (is_a < 0 || dns != 0 || closed < 0 || client_is_a < 0 || tunnel < 0
        || !as_i64(FLOW(fl, F_PROBE_LEFT), &probe_left) || !as_i64(FLOW(fl, F_TLS_LEFT), &tls_left)
        || !as_i64(FLOW(fl, F_RESETS), &resets) || resets >= (1LL << 62)) {
        return PYTHON;
    }
    if (closed && (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
        return PYTHON;  /* a new SYN on a closed 5-tuple: a new record */
    }
    /* Decide before changing anything whether the segment needs capture.tls. */
    const unsigned char *payload = NULL;
    Py_ssize_t paylen = 0, hellolen = 0;  /* hellolen: the payload after a PROXY header */
    int client_after = client_is_a;
    if (flags & TCP_SYN) {
        client_after = (flags & TCP_ACK) ? !is_a : is_a;
    }
    if (probe_left > 0) {
        int doff = (l4[12] >> 4) * 4;
        payload = l4 + (doff > 20 ? doff : 20);
        paylen = l4end - payload;
        if (paylen > 0 && is_a == client_after) {
            if (FLOW(fl, F_TLS_BUF) != Py_None) {
                return PYTHON;  /* a ClientHello split over segments: being reassembled */
            }
            Py_ssize_t skip = proxy_header_length(payload, paylen);
            hellolen = paylen - skip;
            if (tls_left > 0 && looks_like_client_hello(payload + skip, hellolen)) {
                return PYTHON;
            }
        }
    }
    if ((flags & (TCP_SYN | TCP_RST | TCP_FIN))
        && tcp_flags(self, fl, is_a, flags, rd32(l4 + 4, 0)) < 0) {
        return ERROR;
    }
    if (count(self, h, fl, iplen, t) < 0) {
        return ERROR;
    }
    if (probe_left > 0) {
        probe_left -= 1;
        if (paylen > 0) {
            if (is_a == client_after) {
                /* FlowTable._tls on a segment that is not a ClientHello (tls_buf is None). */
                if (tls_left > 0) {
                    tls_left -= 1;
                    PyObject *v = PyLong_FromLongLong(tls_left);
                    if (v == NULL) {
                        return ERROR;
                    }
                    put(fl, self->foff[F_TLS_LEFT], v);
                    if (tls_left <= 0 || hellolen > self->preamble_max) {
                        probe_left = 0;
                    }
                }
            } else if (paylen > self->preamble_max) {
                probe_left = 0;  /* the server is sending data: the conversation is on */
            }
        }
        PyObject *v = PyLong_FromLongLong(probe_left);
        if (v == NULL) {
            return ERROR;
        }
        put(fl, self->foff[F_PROBE_LEFT], v);
        if (probe_left <= 0) {
            put(fl, self->foff[F_TLS_BUF], Py_NewRef(Py_None));
        }
        put(fl, self->foff[F_SLOW], Py_NewRef(probe_left > 0 || tunnel ? Py_True : Py_False));
    }
    return DONE;
}

/* A UDP packet of half h: DONE (plain hit), PYTHON or ERROR. */
static int
udp_known(Loop *self, PyObject *h, Py_ssize_t iplen, int64_t t)
{
    PyObject *fl = HALF(h, H_FLOW);
    long long last;
    int64_t gap;
    if (fl == NULL || Py_TYPE(fl) != self->flow_type || FLOW(fl, F_SLOW) != Py_False
        || !as_i64(FLOW(fl, F_LAST), &last) || __builtin_sub_overflow(t, last, &gap) || gap < 0
        || gap > self->idle) {
        return PYTHON;
    }
    return count(self, h, fl, iplen, t) < 0 ? ERROR : DONE;
}

static int
ready(Loop *self)
{
    if (self->tcp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is not initialized");
        return 0;
    }
    return 1;
}

static Py_ssize_t fold_records(Loop *self, const unsigned char *base, Py_ssize_t off,
                               Py_ssize_t blen, Py_ssize_t *n);

static PyObject *
Loop_run(Loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(self)) {
        return NULL;
    }
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "run(buf, off, blen, n) takes 4 arguments");
        return NULL;
    }
    if (!PyByteArray_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "buf must be a bytearray");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    Py_ssize_t blen = PyLong_AsSsize_t(args[2]);
    Py_ssize_t n = PyLong_AsSsize_t(args[3]);
    if ((off == -1 || blen == -1 || n == -1) && PyErr_Occurred()) {
        return NULL;
    }
    /* Hold the buffer: Python code run meanwhile (a collection) cannot resize it under us. */
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (off < 0 || blen < 0 || blen > view.len) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
    } else {
        off = fold_records(self, (const unsigned char *)view.buf, off, blen, &n);
        if (off >= 0) {
            result = Py_BuildValue("(nn)", off, n);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

/* The loop of run: fold records from ``off`` on; the offset of the first one left to Python
 * (n counts the folded ones), or -1 with an error. */
static Py_ssize_t
fold_records(Loop *self, const unsigned char *base, Py_ssize_t off, Py_ssize_t blen,
             Py_ssize_t *np)
{
    Py_ssize_t n = *np;
    const int swapped = self->swapped;
    const Py_ssize_t link = self->link, eoff = self->eoff;
    const Py_ssize_t mincap = link + 34, mincap6 = link + 54;
    const Py_ssize_t last_fast = blen - self->fsize;

    while (off <= last_fast) {
        const unsigned char *p = base + off;
        uint32_t sec = rd32(p, swapped), frac = rd32(p + 4, swapped);
        uint32_t caplen = rd32(p + 8, swapped);
        Py_ssize_t nxt = off + 16 + (Py_ssize_t)caplen;
        if (nxt > blen) {
            break;
        }
        int64_t t = (int64_t)sec * 1000000000LL + (int64_t)frac * self->mult;
        const unsigned char *ip = p + 16 + link;
        const unsigned char *key;
        Py_ssize_t alen, iplen, hlen;
        int proto, flags;
        if (memcmp(p + 16 + eoff, self->v4, (size_t)self->v4len) == 0 && ip[0] == 0x45
            && caplen >= (uint32_t)mincap && !(((ip[6] & 0x3F) << 8) | ip[7])) {
            iplen = (ip[2] << 8) | ip[3];
            proto = ip[9];
            hlen = 20;
            key = ip + 12;
            alen = 4;
            flags = ip[33];
        } else if (self->v6len >= 0
                   && memcmp(p + 16 + eoff, self->v6, (size_t)self->v6len) == 0
                   && caplen >= (uint32_t)mincap6) {
            Py_ssize_t plen = (ip[4] << 8) | ip[5];
            if ((ip[0] & 0xF0) != 0x60 || plen == 0) {
                break;
            }
            iplen = plen + 40;
            proto = ip[6];
            hlen = 40;
            key = ip + 8;
            alen = 16;
            flags = ip[53];
        } else {
            break;
        }
        if (!((proto == 6 && iplen >= hlen + 20) || (proto == 17 && iplen >= hlen + 8))) {
            break;
        }
        const unsigned char *l4 = ip + hlen;
        const unsigned char *l4end = ip + (iplen < (Py_ssize_t)caplen - link
                                           ? iplen : (Py_ssize_t)caplen - link);
        int r, is_a;
        Py_ssize_t fi = native_find(self, proto, key, alen, &is_a);
        if (fi < 0) {
            /* Not native: a flow the Python objects hold, or a new one. */
            PyObject *k = PyBytes_FromStringAndSize((const char *)key, 2 * alen + 4);
            if (k == NULL) {
                return -1;
            }
            PyObject *h = PyDict_GetItemWithError(proto == 6 ? self->tcp : self->udp, k);
            Py_DECREF(k);
            if (h != NULL) {
                if (Py_TYPE(h) != self->half_type) {
                    break;
                }
                Py_INCREF(h);
                r = proto == 6 ? tcp_known(self, h, l4, l4end, iplen, flags, t)
                               : udp_known(self, h, iplen, t);
                Py_DECREF(h);
            } else {
                if (PyErr_Occurred()) {
                    return -1;
                }
                int sport = (key[2 * alen] << 8) | key[2 * alen + 1];
                int dport = (key[2 * alen + 2] << 8) | key[2 * alen + 3];
                if (in_ports(self->dns_ports, self->ndns, sport)
                    || in_ports(self->dns_ports, self->ndns, dport)
                    || (proto == 17 && (in_ports(self->tunnel_ports, self->ntunnel, sport)
                                        || in_ports(self->tunnel_ports, self->ntunnel, dport)))) {
                    break;  /* DNS answers and overlays: FlowTable.add_ip / add_frame */
                }
                fi = native_new(self, proto, key, alen, sport, dport, t);
                if (fi < 0) {
                    return -1;
                }
                is_a = 1;
            }
        }
        if (fi >= 0) {
            r = proto == 6 ? native_tcp(self, fi, is_a, l4, l4end, iplen, flags, t)
                           : native_udp(self, fi, is_a, iplen, t);
        }
        if (r == ERROR) {
            return -1;
        }
        if (r == PYTHON) {
            break;
        }
        off = nxt;
        n++;
    }
    *np = n;
    return off;
}

static PyObject *
Loop_take(Loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(self)) {
        return NULL;
    }
    if (nargs != 2 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take(proto: int, key: bytes)");
        return NULL;
    }
    long proto = PyLong_AsLong(args[0]);
    if (proto == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t klen = PyBytes_GET_SIZE(args[1]);
    if ((proto != 6 && proto != 17) || (klen != 12 && klen != 36)) {
        Py_RETURN_NONE;
    }
    int is_a;
    Py_ssize_t fi = native_find(self, (int)proto, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                (klen - 4) / 2, &is_a);
    if (fi < 0) {
        Py_RETURN_NONE;
    }
    PyObject *h = materialize(self, fi, is_a);
    return h == NULL ? NULL : Py_NewRef(h);
}

static PyObject *
Loop_flush(Loop *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) {
        return NULL;
    }
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 0; i < self->nflows; i++) {
        if (self->flows[i].live) {
            if (materialize(self, i, 1) == NULL) {
                return NULL;
            }
            done++;
        }
    }
    self->nflows = 0;  /* all Python's now: start afresh */
    self->nlive = 0;
    self->iused = 0;
    if (self->index != NULL) {
        memset(self->index, 0, self->icap * sizeof(uint32_t));
    }
    return PyLong_FromSsize_t(done);
}

static int
copy_proto(PyObject *o, char *dst, Py_ssize_t *len, int optional)
{
    if (o == Py_None && optional) {
        *len = -1;
        return 0;
    }
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) > 4) {
        PyErr_SetString(PyExc_TypeError, "protocol field: bytes of at most 4");
        return -1;
    }
    *len = PyBytes_GET_SIZE(o);
    memcpy(dst, PyBytes_AS_STRING(o), (size_t)*len);
    return 0;
}

/* The offset of a writable object slot ``name`` of ``type``; -1 with TypeError if none. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    Py_ssize_t r = -1;
    if (d == NULL) {
        PyErr_Clear();
    } else {
        if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) {
                r = m->offset;
            }
        }
        Py_DECREF(d);
    }
    if (r < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable __slots__ member", type->tp_name,
                     name);
    }
    return r;
}

/* The type's own __slots__ must be exactly ``names``: a new flow sets every slot. */
static int
check_slots(PyTypeObject *type, const char *const *names, int count, Py_ssize_t *offsets)
{
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_base != &PyBaseObject_Type
        || type->tp_dictoffset != 0) {
        PyErr_Format(PyExc_TypeError, "%s: a plain class with __slots__ expected", type->tp_name);
        return -1;
    }
    PyObject *slots = PyObject_GetAttrString((PyObject *)type, "__slots__");
    if (slots == NULL) {
        return -1;
    }
    PyObject *seq = PySequence_Fast(slots, "__slots__ must be a sequence");
    Py_DECREF(slots);
    if (seq == NULL) {
        return -1;
    }
    int ok = PySequence_Fast_GET_SIZE(seq) == count;
    Py_DECREF(seq);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s has slots capture._fastloop does not know",
                     type->tp_name);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        offsets[i] = slot_offset(type, names[i]);
        if (offsets[i] < 0) {
            return -1;
        }
    }
    return 0;
}

static int
read_ports(PyObject *model, const char *name, int *ports, int *count)
{
    PyObject *v = PyDict_GetItemString(model, name);  /* borrowed */
    PyObject *seq = v == NULL ? NULL : PySequence_Fast(v, "ports: a sequence of ints");
    if (seq == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_KeyError, "model has no %s", name);
        }
        return -1;
    }
    Py_ssize_t size = PySequence_Fast_GET_SIZE(seq);
    if (size > MAX_PORTS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "more than %d %s", MAX_PORTS, name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        long port = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (port == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        ports[i] = (int)port;
    }
    *count = (int)size;
    Py_DECREF(seq);
    return 0;
}

static int
read_long(PyObject *model, const char *name, long *out)
{
    PyObject *v = PyDict_GetItemString(model, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model has no %s", name);
        return -1;
    }
    *out = PyLong_AsLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
read_object(PyObject *model, const char *name, PyObject **out)
{
    PyObject *v = PyDict_GetItemString(model, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model has no %s", name);
        return -1;
    }
    Py_XSETREF(*out, Py_NewRef(v));
    return 0;
}

static int
Loop_init(Loop *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"little", "nano", "link", "eoff", "v4_proto", "v6_proto", "idle",
                             "tcp", "udp", "model", NULL};
    int little, nano;
    Py_ssize_t link, eoff;
    PyObject *v4, *v6, *tcp, *udp, *model;
    long long idle;
    if (self->tcp != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ppnnOOLO!O!O!", kwlist, &little, &nano, &link,
                                     &eoff, &v4, &v6, &idle, &PyDict_Type, &tcp, &PyDict_Type,
                                     &udp, &PyDict_Type, &model)) {
        return -1;
    }
    if (link < 0 || link > 64 || eoff < 0 || eoff > link) {
        PyErr_SetString(PyExc_ValueError, "bad link layout");
        return -1;
    }
    if (copy_proto(v4, self->v4, &self->v4len, 0) < 0
        || copy_proto(v6, self->v6, &self->v6len, 1) < 0) {
        return -1;
    }
    if (eoff + self->v4len > link || eoff + self->v6len > link) {
        PyErr_SetString(PyExc_ValueError, "protocol field outside the link header");
        return -1;
    }
    PyObject *flow_type = PyDict_GetItemString(model, "flow");
    PyObject *half_type = PyDict_GetItemString(model, "half");
    if (flow_type == NULL || half_type == NULL || !PyType_Check(flow_type)
        || !PyType_Check(half_type)) {
        PyErr_SetString(PyExc_TypeError, "model: flow and half must be classes");
        return -1;
    }
    if (check_slots((PyTypeObject *)flow_type, flow_slots, F_COUNT, self->foff) < 0
        || check_slots((PyTypeObject *)half_type, half_slots, H_COUNT, self->hoff) < 0
        || read_long(model, "probe_packets", &self->probe_packets) < 0
        || read_long(model, "probe_segments", &self->probe_segments) < 0
        || read_long(model, "preamble_max", &self->preamble_max) < 0
        || read_long(model, "max_client_hello", &self->max_client_hello) < 0
        || read_long(model, "well_known", &self->well_known) < 0
        || read_long(model, "ephemeral", &self->ephemeral) < 0
        || read_ports(model, "dns_ports", self->dns_ports, &self->ndns) < 0
        || read_ports(model, "tunnel_ports", self->tunnel_ports, &self->ntunnel) < 0
        || read_object(model, "dir_handshake", &self->dir_handshake) < 0
        || read_object(model, "dir_first", &self->dir_first) < 0
        || read_object(model, "dir_ports", &self->dir_ports) < 0) {
        return -1;
    }
    if (self->probe_packets < 0 || self->probe_packets > 32767 || self->probe_segments < 0
        || self->probe_segments > 32767) {
        PyErr_SetString(PyExc_ValueError, "model: probe counts out of range");
        return -1;
    }
    Py_XSETREF(self->flow_type, (PyTypeObject *)Py_NewRef(flow_type));
    Py_XSETREF(self->half_type, (PyTypeObject *)Py_NewRef(half_type));
    self->swapped = little;
    self->mult = nano ? 1 : 1000;
    self->idle = idle;
    self->link = link;
    self->eoff = eoff;
    self->fsize = 16 + link + 34;
    Py_XSETREF(self->tcp, Py_NewRef(tcp));
    Py_XSETREF(self->udp, Py_NewRef(udp));
    /* The index's hash is seeded per process (from Python's own randomized hash) so that a
     * crafted capture cannot aim collisions at it. */
    PyObject *salt = PyUnicode_FromString("capture._fastloop");
    Py_hash_t seed = salt == NULL ? -1 : PyObject_Hash(salt);
    Py_XDECREF(salt);
    if (seed == -1 && PyErr_Occurred()) {
        return -1;
    }
    self->seed = mix64((uint64_t)seed);
    return 0;
}

static int
Loop_traverse(Loop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tcp);
    Py_VISIT(self->udp);
    Py_VISIT(self->flow_type);
    Py_VISIT(self->half_type);
    Py_VISIT(self->dir_handshake);
    Py_VISIT(self->dir_first);
    Py_VISIT(self->dir_ports);
    return 0;
}

static int
Loop_clear(Loop *self)
{
    Py_CLEAR(self->tcp);
    Py_CLEAR(self->udp);
    Py_CLEAR(self->flow_type);
    Py_CLEAR(self->half_type);
    Py_CLEAR(self->dir_handshake);
    Py_CLEAR(self->dir_first);
    Py_CLEAR(self->dir_ports);
    return 0;
}

static void
Loop_dealloc(Loop *self)
{
    PyObject_GC_UnTrack(self);
    Loop_clear(self);
    for (Py_ssize_t i = 0; i < self->nflows; i++) {
        Py_CLEAR(self->flows[i].sni);
    }
    PyMem_Free(self->flows);
    PyMem_Free(self->index);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- pcapng -> classic records ----------------------------------------------------------- */

static inline uint32_t
rd32e(const unsigned char *p, int little)
{
    return little ? ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
                     | ((uint32_t)p[3] << 24))
                  : rd32(p, 0);
}

static inline void
wr32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* The options of an Enhanced Packet Block in p[opt:end] are ones the Python reader accepts
 * (capture.pcapng._check_epb_options, after scapy): no process-information index (0x8001,
 * 0x8003) whose last value is not 4 bytes, no flags word (2) whose last value is neither empty
 * nor 4 bytes. Option values count only when whole, as in scapy's _read_options. */
static int
epb_options_ok(const unsigned char *p, Py_ssize_t opt, Py_ssize_t end, int little)
{
    long flags = -1, pib1 = -1, pib3 = -1;  /* length of the last whole value, -1: none */
    while (end - opt >= 4) {
        unsigned code = little ? (unsigned)(p[opt] | (p[opt + 1] << 8))
                               : (unsigned)((p[opt] << 8) | p[opt + 1]);
        long length = little ? (long)(p[opt + 2] | (p[opt + 3] << 8))
                             : (long)((p[opt + 2] << 8) | p[opt + 3]);
        Py_ssize_t value = opt + 4;
        if (code == 0) {
            break;
        }
        if (value + length <= end) {
            if (code == 2) {
                flags = length;
            } else if (code == 0x8001) {
                pib1 = length;
            } else if (code == 0x8003) {
                pib3 = length;
            }
        }
        opt = value + length + ((4 - length % 4) % 4);
    }
    int pibs_ok = (pib1 < 0 || pib1 == 4) && (pib3 < 0 || pib3 == 4);
    int flags_ok = flags <= 0 || flags == 4;  /* none, empty (scapy skips it), or a word */
    return pibs_ok && flags_ok;
}

/* links[i] / mults[i] of a list of ints: 0 with the value, -1 when it is not one (or i is out
 * of range), -2 with an error. */
static inline int
list_item(PyObject *list, uint32_t i, long long *out)
{
    if ((Py_ssize_t)i >= PyList_GET_SIZE(list)) {
        return -1;
    }
    PyObject *v = PyList_GET_ITEM(list, i);
    if (!PyLong_CheckExact(v)) {
        return -1;
    }
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (*out == -1 && PyErr_Occurred()) {
        return -2;
    }
    return overflow ? -1 : 0;
}

/* epb_run(buf, off, blen, little, links, mults, max_record, max_block, out, pos)
 *     -> (off, count, linktype, last_t, pos)
 *
 * The common case of capture.pcapng.iter_packets, in C: writes into ``out`` (a bytearray,
 * from ``pos`` on, never resized: the records stop where the next would not fit) one
 * classic pcap record (little-endian, nanosecond time stamp) per Enhanced Packet Block from
 * ``off`` on, as long as each is whole in buf[:blen], well formed (a length that is a multiple
 * of 4 and at most max_block, the same length at its end), with options the Python reader
 * accepts, on an interface i (``links`` and ``mults``: lists of ints, one per interface) with
 * links[i] the link type of the first one and mults[i] > 0 (nanoseconds per tick: a
 * resolution that divides 10**9), and with a time stamp a classic record holds. Any other
 * block ends the run: the Python reader takes it from there. */
static PyObject *
epb_run(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10 || !PyByteArray_Check(args[0]) || !PyList_Check(args[4])
        || !PyList_Check(args[5]) || !PyByteArray_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "epb_run(buf: bytearray, off, blen, little, links: "
                        "list, mults: list, max_record, max_block, out: bytearray, pos)");
        return NULL;
    }
    PyObject *links = args[4], *mults = args[5], *out = args[8];
    if (out == args[0]) {
        PyErr_SetString(PyExc_ValueError, "out must not be buf");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t blen = PyLong_AsSsize_t(args[2]);
    if (blen == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int little = PyObject_IsTrue(args[3]);
    if (little < 0) {
        return NULL;
    }
    Py_ssize_t max_record = PyLong_AsSsize_t(args[6]);
    if (max_record == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_block = PyLong_AsSsize_t(args[7]);
    if (max_block == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[9]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (max_record < 0 || max_block < 0) {
        PyErr_SetString(PyExc_ValueError, "max_record and max_block must not be negative");
        return NULL;
    }
    Py_buffer view, outview;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(out, &outview, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *result = NULL;
    if (off < 0 || blen < off || blen > view.len || pos < 0 || pos > outview.len) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
        goto done;
    }
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t count = 0;
    long long linktype = -1;
    int64_t last_t = 0;
    while (blen - off >= 32) {
        const unsigned char *p = b + off;
        uint32_t btype = rd32e(p, little), total = rd32e(p + 4, little);
        if (btype != 6 || total < 32 || total % 4 || (Py_ssize_t)total > max_block
            || (Py_ssize_t)total > blen - off || rd32e(p + total - 4, little) != total) {
            break;
        }
        uint32_t intid = rd32e(p + 8, little);
        uint64_t ticks = ((uint64_t)rd32e(p + 12, little) << 32) | rd32e(p + 16, little);
        uint32_t caplen = rd32e(p + 20, little), wirelen = rd32e(p + 24, little);
        long long link, mult;
        int r = list_item(links, intid, &link);
        if (r == 0) {
            r = list_item(mults, intid, &mult);
        }
        if (r == -2) {
            goto done;
        }
        if (r < 0 || link < 0 || mult <= 0 || (linktype >= 0 && link != linktype)) {
            break;
        }
        /* Options start after the data, padded to 4. */
        uint64_t opt = 28 + (uint64_t)caplen + ((4 - caplen % 4) % 4);
        if (opt < (uint64_t)total - 4
            && !epb_options_ok(p, (Py_ssize_t)opt, (Py_ssize_t)total - 4, little)) {
            break;
        }
        uint64_t t;
        if (__builtin_mul_overflow(ticks, (uint64_t)mult, &t)
            || t / 1000000000ULL > 0xFFFFFFFFULL || t > (uint64_t)INT64_MAX) {
            break;
        }
        Py_ssize_t len = (Py_ssize_t)caplen;
        if (len > (Py_ssize_t)total - 32) {
            len = (Py_ssize_t)total - 32;
        }
        if (len > max_record) {
            len = max_record;
        }
        if (outview.len - pos < 16 + len) {
            break;  /* out is full */
        }
        unsigned char *w = (unsigned char *)outview.buf + pos;
        pos += 16 + len;
        wr32le(w, (uint32_t)(t / 1000000000ULL));
        wr32le(w + 4, (uint32_t)(t % 1000000000ULL));
        wr32le(w + 8, (uint32_t)len);
        wr32le(w + 12, wirelen);
        memcpy(w + 16, p + 28, (size_t)len);
        linktype = link;
        last_t = (int64_t)t;
        off += total;
        count++;
    }
    result = Py_BuildValue("(nnLLn)", off, count, linktype, (long long)last_t, pos);
done:
    PyBuffer_Release(&outview);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef Loop_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Loop_run, METH_FASTCALL,
     "run(buf, off, blen, n) -> (off, n): fold the records it can from off on."},
    {"take", (PyCFunction)(void (*)(void))Loop_take, METH_FASTCALL,
     "take(proto, key) -> Half | None: the flow half of key as Python objects, if native."},
    {"flush", (PyCFunction)Loop_flush, METH_NOARGS,
     "flush() -> int: make every native flow Python objects in the table; how many."},
    {NULL, NULL, 0, NULL},
};

static Py_ssize_t
Loop_len(Loop *self)
{
    return self->nlive;  /* the flows held here (not yet the table's) */
}

static PySequenceMethods Loop_as_sequence = {
    .sq_length = (lenfunc)Loop_len,
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "capture._fastloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Loop(little, nano, link, eoff, v4_proto, v6_proto, idle, tcp, udp, model)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_traverse = (traverseproc)Loop_traverse,
    .tp_clear = (inquiry)Loop_clear,
    .tp_methods = Loop_methods,
    .tp_as_sequence = &Loop_as_sequence,
};

static PyMethodDef module_methods[] = {
    {"epb_run", (PyCFunction)(void (*)(void))epb_run, METH_FASTCALL,
     "epb_run(buf, off, blen, little, links, mults, max_record, max_block, out, pos) -> "
     "(off, count, linktype, last_t, pos): Enhanced Packet Blocks to classic records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastloop_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "capture._fastloop",
    .m_doc = "The common records of capture.pcapfast.read_classic, in C (optional).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fastloop(void)
{
    if (PyType_Ready(&LoopType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&fastloop_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Loop", (PyObject *)&LoopType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

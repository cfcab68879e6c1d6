/* capture._fastloop: the common records of capture.pcapfast.read_classic, in C.
 *
 * Optional accelerator: read_classic works the same without it, and the tests check that the
 * flow file -- and every flow's internal state -- is the same either way, and the same as
 * scapy's readers with the general decoder give (tests/capture/test_capture_fastloop.py).
 *
 * Loop(flows, ...).run(buf, off, blen, n) folds consecutive records of a classic pcap buffer
 * that are TCP / UDP packets with a plain IP header (IPv4 without options or fragmentation,
 * IPv6 without extension headers), doing what capture.table.FlowTable does for them:
 *
 *   - a flow it starts (not an overlay, nor DNS over TCP: those are Python's) lives in the
 *     table's native flow store (``flows``, a Flows: _fastflows.c): counting, the TCP flags,
 *     the client / server decision, the end of a record (idle time-out, a new connection on a
 *     closed 5-tuple), the TLS ClientHello probe with its SNI and the DNS answers of responses
 *     are done on plain integers (_fastparse.c), and it stays native through the writing of
 *     the flow file (_fastwrite.c) unless Python code needs it;
 *   - a flow the Python objects hold (capture.table.FlowState and Half, whose __slots__ it
 *     reads and writes directly) gets the plain hit (h.packets += 1; h.bytes += iplen;
 *     fl.last = t) and FlowTable.tcp_known's flags and probe, unless its segment may be a
 *     ClientHello.
 *
 * It returns (off, n) at the first record that is anything else -- or whose fixed-size prefix
 * or whole record is not in the buffer -- and the Python loop handles that record, then calls
 * run again. The decisions (when a flow ends, who is the client, when the TLS probe stops) take
 * their constants from capture.table through the ``model`` of the Flows; field offsets and
 * checks mirror the structs of pcapfast._layout byte for byte. Every read of a packet is
 * checked against its captured length.
 */
#include "_fastloop.h"

typedef struct {
    PyObject_HEAD
    Flows *flows;        /* the table's native flow store */
    int swapped;         /* file is little-endian */
    int64_t mult;        /* 1 (ns) or 1000 (us) */
    Py_ssize_t fsize;    /* fixed-size prefix: record header + link + 34 */
    Py_ssize_t link;
    Py_ssize_t eoff;
    char v4[4];
    Py_ssize_t v4len;
    char v6[4];
    Py_ssize_t v6len;    /* -1: no IPv6 fast path */
    uint32_t v4val, v4mask, v6val, v6mask;  /* the 4 bytes at eoff, masked, for IPv4 / IPv6 */
} Loop;

/* The field of ``len`` bytes ``field`` as the 4 bytes at its offset read as a uint32 are
 * compared: (load & *mask) == *val. */
static void
field_match(const char *field, Py_ssize_t len, uint32_t *val, uint32_t *mask)
{
    unsigned char v[4] = {0, 0, 0, 0}, m[4] = {0, 0, 0, 0};
    for (Py_ssize_t i = 0; i < len && i < 4; i++) {
        v[i] = (unsigned char)field[i];
        m[i] = 0xFF;
    }
    memcpy(val, v, 4);
    memcpy(mask, m, 4);
}

static inline uint32_t
load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The key_hash of the plain TCP / UDP packet the record at ``at`` would be (by its IP version
 * nibble alone), to prefetch what its lookup will touch: 1 with *h, 0 when it cannot be one or
 * is not (whole) in the buffer. The lookup itself checks everything. */
static inline int
peek_hash(const Flows *s, const unsigned char *base, Py_ssize_t at, Py_ssize_t blen,
          Py_ssize_t link, uint64_t *h)
{
    if (at < 0 || at > blen - 16 - link - 44) {
        return 0;
    }
    const unsigned char *ip = base + at + 16 + link;
    if (ip[0] == 0x45) {
        *h = key_hash(s, ip[9], ip + 12, 4);
        return 1;
    }
    if ((ip[0] & 0xF0) == 0x60) {
        *h = key_hash(s, ip[6], ip + 8, 16);
        return 1;
    }
    return 0;
}

#define FLOW(fl, i) SLOT(fl, s->foff[i])
#define HALF(h, i) SLOT(h, s->hoff[i])

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

/* ---- Flows the Python objects hold -------------------------------------------------------- */

/* h.packets += 1; h.bytes += iplen; fl.last = t. 0, or -1 with an exception set. */
static inline int
count(Flows *s, PyObject *h, PyObject *fl, Py_ssize_t iplen, int64_t t)
{
    PyObject *nv = add_int(HALF(h, H_PACKETS), 1);
    if (nv == NULL) {
        return -1;
    }
    put(h, s->hoff[H_PACKETS], nv);
    nv = add_int(HALF(h, H_BYTES), iplen);
    if (nv == NULL) {
        return -1;
    }
    put(h, s->hoff[H_BYTES], nv);
    nv = PyLong_FromLongLong(t);
    if (nv == NULL) {
        return -1;
    }
    put(fl, s->foff[F_LAST], nv);
    return 0;
}

/* FlowTable._tcp_flags. 0, or -1 with an error. */
static int
tcp_flags(Flows *s, PyObject *fl, int is_a, int flags, uint32_t seq)
{
    if (flags & TCP_SYN) {
        if (flags & TCP_ACK) {
            put(fl, s->foff[F_SYNACK], Py_NewRef(Py_True));
            put(fl, s->foff[F_CLIENT_IS_A], Py_NewRef(is_a ? Py_False : Py_True));
        } else {
            PyObject *v = PyLong_FromUnsignedLong(seq);
            if (v == NULL) {
                return -1;
            }
            put(fl, s->foff[F_SYN_SEQ], v);
            put(fl, s->foff[F_SYN], Py_NewRef(Py_True));
            put(fl, s->foff[F_CLIENT_IS_A], Py_NewRef(is_a ? Py_True : Py_False));
        }
        put(fl, s->foff[F_DIRECTION], Py_NewRef(s->dir_text[DIR_HANDSHAKE]));
    }
    if (flags & TCP_RST) {
        /* resets is an int below 2**62 here (checked by the caller) */
        long long resets = 0;
        as_i64(FLOW(fl, F_RESETS), &resets);
        PyObject *v = PyLong_FromLongLong(resets + 1);
        if (v == NULL) {
            return -1;
        }
        put(fl, s->foff[F_RESETS], v);
        put(fl, s->foff[F_CLOSED], Py_NewRef(Py_True));
    } else if (flags & TCP_FIN) {
        put(fl, s->foff[F_CLOSED], Py_NewRef(Py_True));
    }
    return 0;
}

enum { DONE = 0, PYTHON = 1, ERROR = -1 };

/* FlowTable.tcp_known for half h of a known TCP flow: DONE when folded, PYTHON when the Python
 * code must fold it (nothing changed yet), ERROR with an exception. */
static int
tcp_known(Flows *s, PyObject *h, const unsigned char *l4, const unsigned char *l4end,
          Py_ssize_t iplen, int flags, int64_t t)
{
    PyObject *fl = HALF(h, H_FLOW);
    if (fl == NULL || Py_TYPE(fl) != s->flow_type) {
        return PYTHON;
    }
    int slow = truth(FLOW(fl, F_SLOW));
    long long last;
    int64_t gap;
    if (slow < 0 || !as_i64(FLOW(fl, F_LAST), &last) || __builtin_sub_overflow(t, last, &gap)
        || gap < 0 || gap > s->idle) {
        return PYTHON;  /* a new record starts, or time went backwards: FlowTable.add */
    }
    if (!slow && !(flags & (TCP_SYN | TCP_RST | TCP_FIN))) {
        return count(s, h, fl, iplen, t) < 0 ? ERROR : DONE;  /* the plain hit */
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
        return PYTHON;  /* a new SYN on a closed 5-tuple: maybe a new record */
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
        && tcp_flags(s, fl, is_a, flags, rd32(l4 + 4, 0)) < 0) {
        return ERROR;
    }
    if (count(s, h, fl, iplen, t) < 0) {
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
                    put(fl, s->foff[F_TLS_LEFT], v);
                    if (tls_left <= 0 || hellolen > s->preamble_max) {
                        probe_left = 0;
                    }
                }
            } else if (paylen > s->preamble_max) {
                probe_left = 0;  /* the server is sending data: the conversation is on */
            }
        }
        PyObject *v = PyLong_FromLongLong(probe_left);
        if (v == NULL) {
            return ERROR;
        }
        put(fl, s->foff[F_PROBE_LEFT], v);
        if (probe_left <= 0) {
            put(fl, s->foff[F_TLS_BUF], Py_NewRef(Py_None));
        }
        put(fl, s->foff[F_SLOW], Py_NewRef(probe_left > 0 || tunnel ? Py_True : Py_False));
    }
    return DONE;
}

/* A UDP packet of half h: DONE (plain hit), PYTHON or ERROR. */
static int
udp_known(Flows *s, PyObject *h, Py_ssize_t iplen, int64_t t)
{
    PyObject *fl = HALF(h, H_FLOW);
    long long last;
    int64_t gap;
    if (fl == NULL || Py_TYPE(fl) != s->flow_type || FLOW(fl, F_SLOW) != Py_False
        || !as_i64(FLOW(fl, F_LAST), &last) || __builtin_sub_overflow(t, last, &gap) || gap < 0
        || gap > s->idle) {
        return PYTHON;
    }
    return count(s, h, fl, iplen, t) < 0 ? ERROR : DONE;
}

/* ---- Native flows ------------------------------------------------------------------------- */

/* Hand native flow fid to Python and leave the record to it. */
static inline int
to_python(Flows *s, uint32_t fid)
{
    return flows_materialize(s, fid, 1, NULL) == NULL ? ERROR : PYTHON;
}

/* The record of native flow *fid ends before a packet from end *is_a with key ``k`` (the
 * packet's own): FlowTable.add's "idle for longer than the time-out" and "a new SYN on a
 * closed 5-tuple that is not its own SYN again". Then the flow is done and a new one starts
 * with the packet (*fid, *is_a updated). 0, or -1 with an error. */
static inline int
maybe_end(Flows *s, int64_t *fid, int *is_a, int proto, const unsigned char *k,
          Py_ssize_t alen, const unsigned char *l4, int flags, int64_t t)
{
    NFlow *f = flow_at(s, (uint32_t)*fid);
    int64_t gap;
    int ends = __builtin_sub_overflow(t, f->last, &gap) || gap > s->idle;
    if (!ends && proto == 6 && f->closed && (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
        if (f->syn && rd32(l4 + 4, 0) == f->u.syn_seq && *is_a == f->client_is_a) {
            f->closed = 0;  /* the flow's own SYN again: the attempt retried */
        } else {
            ends = 1;  /* a new connection on the 5-tuple */
        }
    }
    if (!ends) {
        return 0;
    }
    flows_end(s, (uint32_t)*fid);
    *fid = flows_new(s, proto, k, alen, t);
    *is_a = 1;
    return *fid < 0 ? -1 : 0;
}

static inline void
native_count(NFlow *f, int end, Py_ssize_t iplen, int64_t t)
{
    f->packets[end] += 1;  /* (2**64 packets or bytes: not in any capture) */
    f->bytes[end] += (uint64_t)iplen;
    if (t > f->last) {
        f->last = t;
    } else if (t < f->first) {
        f->first = t;
    }
}

/* FlowTable.add for a TCP packet from end ``is_a`` of native flow ``fid``. */
static int
native_tcp(Flows *s, int64_t fid, int is_a, const unsigned char *k, Py_ssize_t alen,
           const unsigned char *l4, const unsigned char *l4end, Py_ssize_t iplen, int flags,
           int64_t t)
{
    if (maybe_end(s, &fid, &is_a, 6, k, alen, l4, flags, t) < 0) {
        return ERROR;
    }
    NFlow *f = flow_at(s, (uint32_t)fid);
    int end = is_a ? 0 : 1;
    if (f->probe_left <= 0 && !(flags & (TCP_SYN | TCP_RST | TCP_FIN))) {
        native_count(f, end, iplen, t);  /* the plain hit */
        return DONE;
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
            if (hello && need_more && hellolen < s->max_client_hello) {
                Py_XDECREF(sni);
                return to_python(s, (uint32_t)fid);  /* the rest of the ClientHello is to come */
            }
        }
    }
    if (flags & TCP_SYN) {
        if (flags & TCP_ACK) {
            f->synack = 1;
        } else {
            f->syn = 1;
            f->u.syn_seq = rd32(l4 + 4, 0);
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
    native_count(f, end, iplen, t);
    if (f->probe_left > 0) {
        f->probe_left -= 1;
        if (paylen > 0) {
            if (is_a == client_after) {
                /* FlowTable._tls, with nothing buffered (a native flow never has). */
                if (f->tls_left > 0) {
                    f->tls_left -= 1;
                    if (!hello) {
                        if (f->tls_left <= 0 || hellolen > s->preamble_max) {
                            f->probe_left = 0;
                        }
                    } else {
                        f->tls = 1;
                        if (sni != NULL) {
                            /* One str per name, however many flows carry it. */
                            PyObject *one = PyDict_SetDefault(s->snis, sni, sni);
                            if (one == NULL) {
                                Py_DECREF(sni);
                                return ERROR;
                            }
                            Py_XSETREF(f->sni, Py_NewRef(one));
                        }
                        f->probe_left = 0;  /* done: nothing more to learn from its payload */
                    }
                }
            } else if (paylen > s->preamble_max) {
                f->probe_left = 0;  /* the server is sending data: the conversation is on */
            }
        }
    }
    Py_XDECREF(sni);
    return DONE;
}

/* FlowTable.add for a UDP packet from end ``is_a`` of native flow ``fid``: counting, and the
 * answer of a DNS response (FlowTable._dns). */
static int
native_udp(Flows *s, int64_t fid, int is_a, const unsigned char *k, Py_ssize_t alen,
           const unsigned char *l4, const unsigned char *l4end, Py_ssize_t iplen, int64_t t)
{
    if (maybe_end(s, &fid, &is_a, 17, k, alen, l4, 0, t) < 0) {
        return ERROR;
    }
    NFlow *f = flow_at(s, (uint32_t)fid);
    native_count(f, is_a ? 0 : 1, iplen, t);
    const unsigned char *payload = l4 + 8;  /* (the caller checked l4end >= l4 + 8) */
    if (f->dns && l4end > payload
        && in_ports(s->dns_ports, s->ndns, (k[2 * alen] << 8) | k[2 * alen + 1])) {
        /* A response (from the server port): its answer, named by the packet's addresses. */
        if (flows_add_dns(s, k, k + alen, alen, payload, l4end - payload, t) < 0) {
            return ERROR;
        }
    }
    return DONE;
}

/* ---- The loop ------------------------------------------------------------------------------ */

static Py_ssize_t fold_records(Loop *self, const unsigned char *base, Py_ssize_t off,
                               Py_ssize_t blen, Py_ssize_t *n);

static PyObject *
Loop_run(Loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->flows == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is not initialized");
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
    if (self->flows->tcp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Flows is not initialized");
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
        flows_forget_order(self->flows);
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
    Flows *s = self->flows;
    Py_ssize_t n = *np;
    const int swapped = self->swapped;
    const Py_ssize_t link = self->link, eoff = self->eoff;
    const Py_ssize_t mincap = link + 34, mincap6 = link + 54;
    const Py_ssize_t last_fast = blen - self->fsize;
    /* Software pipelining: the flow lookup of a packet is two cache misses (its index slot,
     * then its flow), which prefetching two records ahead hides: at each record, the index
     * slot of the one after next is prefetched, and the flow of the next one (its slot
     * arrived meanwhile). h0 / h1 / h2: the hashes of this record and the next two, by offset
     * (o0 / o1 / o2, -1: none). */
    Py_ssize_t o0 = -1, o1 = -1, o2;
    uint64_t h0 = 0, h1 = 0, h2 = 0;

    while (off <= last_fast) {
        const unsigned char *p = base + off;
        uint32_t sec = rd32(p, swapped), frac = rd32(p + 4, swapped);
        uint32_t caplen = rd32(p + 8, swapped);
        Py_ssize_t nxt = off + 16 + (Py_ssize_t)caplen;
        if (nxt > blen) {
            break;
        }
        if (s->icap) {
            if (o1 != nxt) {
                o1 = peek_hash(s, base, nxt, blen, link, &h1) ? nxt : -1;
            }
            o2 = -1;
            if (nxt <= blen - 16) {
                Py_ssize_t after = nxt + 16 + (Py_ssize_t)rd32(base + nxt + 8, swapped);
                if (peek_hash(s, base, after, blen, link, &h2)) {
                    o2 = after;
                    __builtin_prefetch(&s->index[(size_t)h2 & (s->icap - 1)]);
                }
            }
            if (o1 >= 0) {
                uint32_t e = s->index[(size_t)h1 & (s->icap - 1)];
                if (e != 0) {
                    const char *f = (const char *)flow_at(s, e - 1);
                    __builtin_prefetch(f);
                    __builtin_prefetch(f + sizeof(NFlow) - 1);
                }
            }
        } else {
            o1 = o2 = -1;
        }
        int64_t t = (int64_t)sec * 1000000000LL + (int64_t)frac * self->mult;
        const unsigned char *ip = p + 16 + link;
        const unsigned char *key;
        Py_ssize_t alen, iplen, hlen;
        int proto, flags;
        uint32_t etype = load32(p + 16 + eoff);  /* (within the fixed-size prefix) */
        if ((etype & self->v4mask) == self->v4val && ip[0] == 0x45
            && caplen >= (uint32_t)mincap && !(((ip[6] & 0x3F) << 8) | ip[7])) {
            iplen = (ip[2] << 8) | ip[3];
            proto = ip[9];
            hlen = 20;
            key = ip + 12;
            alen = 4;
            flags = ip[33];
        } else if (self->v6len >= 0 && (etype & self->v6mask) == self->v6val
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
        /* The transport header and what of the segment was captured: at least up to the TCP
         * flags (or the UDP header) by mincap, at most the IP datagram. */
        const unsigned char *l4 = ip + hlen;
        const unsigned char *l4end = ip + (iplen < (Py_ssize_t)caplen - link
                                           ? iplen : (Py_ssize_t)caplen - link);
        int r, is_a;
        if (o0 != off) {
            h0 = key_hash(s, proto, key, alen);
        }
        int64_t fid = flows_find_hashed(s, proto, key, alen, h0, &is_a);
        if (fid < 0) {
            /* Not native: a flow the Python objects hold, or a new one. */
            PyObject *table = proto == 6 ? s->tcp : s->udp;
            if (PyDict_GET_SIZE(table) > 0) {
                PyObject *k = PyBytes_FromStringAndSize((const char *)key, 2 * alen + 4);
                if (k == NULL) {
                    return -1;
                }
                PyObject *h = PyDict_GetItemWithError(table, k);
                Py_DECREF(k);
                if (h == NULL && PyErr_Occurred()) {
                    return -1;
                }
                if (h != NULL) {
                    if (Py_TYPE(h) != s->half_type) {
                        break;
                    }
                    Py_INCREF(h);
                    r = proto == 6 ? tcp_known(s, h, l4, l4end, iplen, flags, t)
                                   : udp_known(s, h, iplen, t);
                    Py_DECREF(h);
                    if (r == ERROR) {
                        return -1;
                    }
                    if (r == PYTHON) {
                        break;
                    }
                    off = nxt;
                    n++;
                    o0 = o1;
                    h0 = h1;
                    o1 = o2;
                    h1 = h2;
                    continue;
                }
            }
            int sport = (key[2 * alen] << 8) | key[2 * alen + 1];
            int dport = (key[2 * alen + 2] << 8) | key[2 * alen + 3];
            if ((proto == 17 && (in_ports(s->tunnel_ports, s->ntunnel, sport)
                                 || in_ports(s->tunnel_ports, s->ntunnel, dport)))
                || (proto == 6 && (in_ports(s->dns_ports, s->ndns, sport)
                                   || in_ports(s->dns_ports, s->ndns, dport)))) {
                break;  /* overlays (decapsulated), DNS over TCP: FlowTable.add */
            }
            fid = flows_new(s, proto, key, alen, t);
            if (fid < 0) {
                return -1;
            }
            is_a = 1;
        }
        r = proto == 6 ? native_tcp(s, fid, is_a, key, alen, l4, l4end, iplen, flags, t)
                       : native_udp(s, fid, is_a, key, alen, l4, l4end, iplen, t);
        if (r == ERROR) {
            return -1;
        }
        if (r == PYTHON) {
            break;
        }
        off = nxt;
        n++;
        o0 = o1;  /* the pipeline moves on */
        h0 = h1;
        o1 = o2;
        h1 = h2;
    }
    *np = n;
    return off;
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

static int
Loop_init(Loop *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"flows", "little", "nano", "link", "eoff", "v4_proto", "v6_proto",
                             NULL};
    int little, nano;
    Py_ssize_t link, eoff;
    PyObject *flows, *v4, *v6;
    if (self->flows != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!ppnnOO", kwlist, &FlowsType, &flows,
                                     &little, &nano, &link, &eoff, &v4, &v6)) {
        return -1;
    }
    if (((Flows *)flows)->tcp == NULL) {
        PyErr_SetString(PyExc_ValueError, "Flows is not initialized");
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
    field_match(self->v4, self->v4len, &self->v4val, &self->v4mask);
    field_match(self->v6, self->v6len, &self->v6val, &self->v6mask);
    self->swapped = little;
    self->mult = nano ? 1 : 1000;
    self->link = link;
    self->eoff = eoff;
    self->fsize = 16 + link + 34;
    self->flows = (Flows *)Py_NewRef(flows);
    return 0;
}

static int
Loop_traverse(Loop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->flows);
    return 0;
}

static int
Loop_clear(Loop *self)
{
    Py_CLEAR(self->flows);
    return 0;
}

static void
Loop_dealloc(Loop *self)
{
    PyObject_GC_UnTrack(self);
    Loop_clear(self);
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
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "capture._fastloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Loop(flows, little, nano, link, eoff, v4_proto, v6_proto)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_traverse = (traverseproc)Loop_traverse,
    .tp_clear = (inquiry)Loop_clear,
    .tp_methods = Loop_methods,
};

static PyMethodDef module_methods[] = {
    {"epb_run", (PyCFunction)(void (*)(void))epb_run, METH_FASTCALL,
     "epb_run(buf, off, blen, little, links, mults, max_record, max_block, out, pos) -> "
     "(off, count, linktype, last_t, pos): Enhanced Packet Blocks to classic records."},
    {"parse_dns", (PyCFunction)(void (*)(void))fastparse_parse_dns, METH_FASTCALL,
     "parse_dns(msg, name_of) -> (name, answers, cnames) | None: the C DNS response parser "
     "(for the tests)."},
    {"seconds", (PyCFunction)fastwrite_seconds, METH_O,
     "seconds(ns) -> float: ns / 10**9 as the C writer computes it (for the tests)."},
    {"seconds_text", (PyCFunction)fastwrite_seconds_text, METH_O,
     "seconds_text(ns) -> str: repr(ns / 10**9) as the C writer writes it (for the tests)."},
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
    if (PyType_Ready(&LoopType) < 0 || PyType_Ready(&FlowsType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&fastloop_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Loop", (PyObject *)&LoopType) < 0
        || PyModule_AddObjectRef(m, "Flows", (PyObject *)&FlowsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

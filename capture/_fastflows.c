/* capture._fastloop.Flows: the native flow store of one capture.table.FlowTable.
 *
 * A flow the C loop starts lives here as a 120-byte NFlow, not as Python objects (a FlowState,
 * two Halves, their ints and address bytes, two dict entries: about 1.2 KB): per packet, one
 * probe of an open-addressing index and a few integer updates, no allocation. It stays native
 * through the writing of the flow file (_fastwrite.c) unless Python code needs it: then it is
 * "materialized" -- made the FlowState and Half objects, with exactly the state the Python code
 * would have given them -- and from then on it is Python's:
 *
 *   - take(proto, key): FlowTable.add meets a packet of a live native flow the C loop did not
 *     fold (a record it does not parse: fragments, VLAN tags, IP options ...);
 *   - the loop leaves a packet of the flow to Python (a ClientHello split over segments, which
 *     capture.table reassembles);
 *   - flush(done): everything, for the code that walks the table's flows (FlowTable.settle).
 *
 * Storage: chunks of 4096 flows that never move (a flow's address stays valid while Python
 * code runs), a free list of the slots of materialized flows, and an index of one 4-byte entry
 * per live flow (the key hash is the same both ways, so both directions find the entry), kept
 * at most half full: 120 bytes + 8 to 16 bytes of index per flow. A flow that ends (idle for
 * longer than the time-out, or a new SYN on a closed 5-tuple) leaves the index and stays as a
 * "done" flow, to be written.
 */
#include "_fastloop.h"
#include <structmember.h>

static const char *const flow_slots[F_COUNT] = {
    "a", "a_addr", "a_port", "b", "b_addr", "b_port", "client_is_a", "closed", "direction",
    "dns", "first", "last", "outer", "probe_left", "proto", "resets", "slow", "sni", "syn",
    "syn_seq", "synack", "tls", "tls_buf", "tls_left", "tls_next", "tunnel",
};
static const char *const half_slots[H_COUNT] = {"bytes", "flow", "is_a", "packets"};

#define FLOW(fl, i) SLOT(fl, s->foff[i])
#define HALF(h, i) SLOT(h, s->hoff[i])

/* ---- Index -------------------------------------------------------------------------------- */

static size_t
home_of(const Flows *s, uint32_t fid)
{
    const NFlow *f = flow_at(s, fid);
    return (size_t)key_hash(s, f->proto, f->key, f->alen) & (s->icap - 1);
}

static void
index_insert(Flows *s, uint32_t fid)
{
    size_t mask = s->icap - 1;
    size_t i = home_of(s, fid);
    while (s->index[i] != 0) {
        i = (i + 1) & mask;
    }
    s->index[i] = fid + 1;
}

/* Take flow fid out of the index: backward-shift deletion (no tombstones), so that probes stay
 * short however many flows come and go. */
static void
index_remove(Flows *s, uint32_t fid)
{
    size_t mask = s->icap - 1;
    size_t i = home_of(s, fid);
    while (s->index[i] != fid + 1) {
        i = (i + 1) & mask;  /* the flow is in the index: the probe ends */
    }
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t e = s->index[j];
        if (e == 0) {
            break;
        }
        size_t k = home_of(s, e - 1);
        /* The entry at j may move to the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->index[i] = e;
            i = j;
        }
    }
    s->index[i] = 0;
}

/* Room in the index for one more live flow (at most half full). -1 with MemoryError. */
static int
index_reserve(Flows *s)
{
    if ((size_t)(s->nlive + 1) * 2 <= s->icap) {
        return 0;
    }
    size_t cap = s->icap ? s->icap * 2 : 1024;
    while ((size_t)(s->nlive + 1) * 2 > cap) {
        cap *= 2;
    }
    uint32_t *index = PyMem_Calloc(cap, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(s->index);
    s->index = index;
    s->icap = cap;
    for (uint32_t fid = 0; fid < s->nused; fid++) {
        if (flow_at(s, fid)->state == NF_LIVE) {
            index_insert(s, fid);
        }
    }
    return 0;
}

/* ---- Flows -------------------------------------------------------------------------------- */

/* A free slot (its id), or -1 with MemoryError. */
static int64_t
slot_alloc(Flows *s)
{
    if (s->free_head != 0) {
        uint32_t fid = s->free_head - 1;
        s->free_head = flow_at(s, fid)->u.next_free;
        return fid;
    }
    if (s->nused >= MAX_FLOWS) {
        PyErr_SetString(PyExc_MemoryError, "capture._fastloop: too many flows");
        return -1;
    }
    if ((Py_ssize_t)(s->nused >> CHUNK_SHIFT) >= s->nchunks) {
        if (s->nchunks >= s->chunk_cap) {
            Py_ssize_t cap = s->chunk_cap ? s->chunk_cap * 2 : 16;
            NFlow **chunks = PyMem_Realloc(s->chunks, (size_t)cap * sizeof(NFlow *));
            if (chunks == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            s->chunks = chunks;
            s->chunk_cap = cap;
        }
        NFlow *chunk = PyMem_Malloc(CHUNK_FLOWS * sizeof(NFlow));
        if (chunk == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->chunks[s->nchunks++] = chunk;
    }
    return s->nused++;
}

static void
slot_free(Flows *s, uint32_t fid)
{
    NFlow *f = flow_at(s, fid);
    Py_CLEAR(f->sni);
    f->state = NF_FREE;
    f->u.next_free = s->free_head;
    s->free_head = fid + 1;
}

/* FlowTable._new for a plain TCP / UDP packet with key ``k`` at time t: a live native flow
 * whose A end sent the packet (which the caller then folds). Its id, or -1 with an error. */
int64_t
flows_new(Flows *s, int proto, const unsigned char *k, Py_ssize_t alen, int64_t t)
{
    if (index_reserve(s) < 0) {
        return -1;
    }
    int64_t got = slot_alloc(s);
    if (got < 0) {
        return -1;
    }
    uint32_t fid = (uint32_t)got;
    flows_forget_order(s);
    NFlow *f = flow_at(s, fid);
    memset(f, 0, sizeof(*f));
    memcpy(f->key, k, (size_t)(2 * alen + 4));
    int sport = (k[2 * alen] << 8) | k[2 * alen + 1];
    int dport = (k[2 * alen + 2] << 8) | k[2 * alen + 3];
    f->alen = (uint8_t)alen;
    f->proto = (uint8_t)proto;
    f->first = f->last = t;
    f->state = NF_LIVE;
    f->client_is_a = 1;
    f->direction = DIR_FIRST;
    if (proto == 6) {
        /* Until a SYN or SYN-ACK says otherwise, the lower port is the server's. */
        f->direction = DIR_PORTS;
        f->client_is_a = !(sport < dport);
        f->probe_left = (int16_t)s->probe_packets;
        f->tls_left = (int16_t)s->probe_segments;
    } else if (sport < s->well_known && s->well_known <= s->ephemeral
               && s->ephemeral <= dport) {
        /* A first packet from a well-known port to an ephemeral one is a reply. */
        f->client_is_a = 0;
        f->direction = DIR_PORTS;
    }
    f->dns = (uint8_t)(in_ports(s->dns_ports, s->ndns, sport)
                       || in_ports(s->dns_ports, s->ndns, dport));
    index_insert(s, fid);
    s->nlive++;
    return fid;
}

/* The live flow fid ends (idle, or a new connection on its 5-tuple): out of the index, kept
 * to be written. */
void
flows_end(Flows *s, uint32_t fid)
{
    index_remove(s, fid);
    flow_at(s, fid)->state = NF_DONE;
    s->nlive--;
    s->ndone++;
}

/* Drop a FlowState that could not be finished: break its cycle with the halves first. */
static void
abandon(Flows *s, PyObject *fl)
{
    for (int i = F_A; i <= F_B; i += F_B - F_A) {
        PyObject *h = FLOW(fl, i);
        if (h != NULL) {
            Py_CLEAR(HALF(h, H_FLOW));
        }
    }
    Py_DECREF(fl);
}

static PyObject *
new_half(Flows *s, PyObject *fl, int is_a, uint64_t packets, uint64_t bytes)
{
    PyObject *h = s->half_type->tp_alloc(s->half_type, 0);
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
        /* A live native flow's key is never Python's too: FlowTable.add asks ``native``
         * first, and the loop looks in the table before starting a flow. */
        PyErr_SetString(PyExc_RuntimeError,
                        "capture._fastloop: a native flow's key is already in the table");
        return -1;
    }
    return 0;
}

static void
reverse_key(unsigned char *out, const unsigned char *k, Py_ssize_t alen)
{
    memcpy(out, k + alen, (size_t)alen);
    memcpy(out + alen, k, (size_t)alen);
    out[2 * alen] = k[2 * alen + 2];
    out[2 * alen + 1] = k[2 * alen + 3];
    out[2 * alen + 2] = k[2 * alen];
    out[2 * alen + 3] = k[2 * alen + 1];
}

/* The Python objects of native flow fid; the flow stops being native. A live flow's halves go
 * into the table's dict and the half of end ``is_a`` is returned (borrowed: the dict holds
 * it); a done flow's FlowState is appended to the list ``done`` and None returned (borrowed).
 * NULL with an error. */
PyObject *
flows_materialize(Flows *s, uint32_t fid, int is_a, PyObject *done)
{
    /* A copy: allocating may run a collection, and with it any Python code. */
    NFlow c = *flow_at(s, fid);
    flows_forget_order(s);
    PyObject *table = c.proto == 6 ? s->tcp : s->udp;
    Py_ssize_t alen = c.alen, klen = 2 * alen + 4;
    const unsigned char *k = c.key;
    PyObject *fl = s->flow_type->tp_alloc(s->flow_type, 0);
    if (fl == NULL) {
        return NULL;
    }
    FLOW(fl, F_SNI) = Py_NewRef(c.sni != NULL ? c.sni : Py_None);
    FLOW(fl, F_PROTO) = PyLong_FromLong(c.proto);
    FLOW(fl, F_A_ADDR) = PyBytes_FromStringAndSize((const char *)k, alen);
    FLOW(fl, F_B_ADDR) = PyBytes_FromStringAndSize((const char *)k + alen, alen);
    FLOW(fl, F_A_PORT) = PyLong_FromLong((k[2 * alen] << 8) | k[2 * alen + 1]);
    FLOW(fl, F_B_PORT) = PyLong_FromLong((k[2 * alen + 2] << 8) | k[2 * alen + 3]);
    FLOW(fl, F_FIRST) = PyLong_FromLongLong(c.first);
    FLOW(fl, F_LAST) = PyLong_FromLongLong(c.last);
    FLOW(fl, F_CLIENT_IS_A) = Py_NewRef(c.client_is_a ? Py_True : Py_False);
    FLOW(fl, F_DIRECTION) = Py_NewRef(s->dir_text[c.direction]);
    FLOW(fl, F_SYN) = Py_NewRef(c.syn ? Py_True : Py_False);
    FLOW(fl, F_SYN_SEQ) = PyLong_FromLongLong(c.syn ? (long long)c.u.syn_seq : -1);
    FLOW(fl, F_SYNACK) = Py_NewRef(c.synack ? Py_True : Py_False);
    FLOW(fl, F_RESETS) = PyLong_FromUnsignedLongLong(c.resets);
    FLOW(fl, F_CLOSED) = Py_NewRef(c.closed ? Py_True : Py_False);
    FLOW(fl, F_TLS) = Py_NewRef(c.tls ? Py_True : Py_False);
    FLOW(fl, F_TLS_LEFT) = PyLong_FromLong(c.tls_left);
    FLOW(fl, F_PROBE_LEFT) = PyLong_FromLong(c.probe_left);
    FLOW(fl, F_TLS_BUF) = Py_NewRef(Py_None);
    FLOW(fl, F_TLS_NEXT) = PyLong_FromLong(0);
    FLOW(fl, F_OUTER) = Py_NewRef(Py_None);
    FLOW(fl, F_DNS) = Py_NewRef(c.dns ? Py_True : Py_False);
    FLOW(fl, F_TUNNEL) = Py_NewRef(Py_False);
    /* slow == (probe_left > 0 or dns or tunnel) after every folded packet; no overlay flow is
     * native. */
    FLOW(fl, F_SLOW) = Py_NewRef(c.probe_left > 0 || c.dns ? Py_True : Py_False);
    FLOW(fl, F_A) = new_half(s, fl, 1, c.packets[0], c.bytes[0]);
    FLOW(fl, F_B) = new_half(s, fl, 0, c.packets[1], c.bytes[1]);
    for (int i = 0; i < F_COUNT; i++) {
        if (FLOW(fl, i) == NULL) {
            abandon(s, fl);  /* partly built: the unset slots stay NULL */
            return NULL;
        }
    }
    PyObject *a = FLOW(fl, F_A), *b = FLOW(fl, F_B);
    if (c.state == NF_DONE) {
        if (PyList_Append(done, fl) < 0) {
            abandon(s, fl);
            return NULL;
        }
        Py_DECREF(fl);  /* the list holds the flow, the flow its halves */
        slot_free(s, fid);
        s->ndone--;
        return Py_None;
    }
    unsigned char rk[KEY_MAX];
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
        abandon(s, fl);
        return NULL;
    }
    Py_DECREF(fl);  /* the halves hold the flow; the dict holds the halves */
    index_remove(s, fid);
    slot_free(s, fid);
    s->nlive--;
    return is_a ? a : b;
}

/* The DNS answer of a response (``msg``, from ``src`` to ``dst``) into the table's ``dns``:
 * FlowTable._dns after its port check. 0, or -1 with an error. */
int
flows_add_dns(Flows *s, const unsigned char *src, const unsigned char *dst, Py_ssize_t alen,
              const unsigned char *msg, Py_ssize_t len, int64_t t)
{
    PyObject *name, *answers, *cnames;
    int r = dns_parse(msg, len, s->names, s->name_of, &name, &answers, &cnames);
    if (r <= 0) {
        return r;
    }
    int multicast = alen == 4 ? dst[0] >= 224 : dst[0] == 0xFF;
    PyObject *key = NULL, *client = NULL, *server = NULL, *when = NULL;
    r = 0;
    /* Nothing to name an address with (or the root zone); mDNS: there is no asking client. */
    if (PyUnicode_GET_LENGTH(name) == 0
        || (PyTuple_GET_SIZE(answers) == 0 && PyTuple_GET_SIZE(cnames) == 0) || multicast) {
        goto done;
    }
    r = -1;
    client = address_text(dst, alen, s->names, s->name_of);
    server = client == NULL ? NULL : address_text(src, alen, s->names, s->name_of);
    key = server == NULL ? NULL : PyTuple_Pack(5, client, server, name, answers, cnames);
    when = key == NULL ? NULL : PyLong_FromLongLong(t);
    if (when == NULL) {
        goto done;
    }
    PyObject *old = PyDict_GetItemWithError(s->dns, key);  /* borrowed */
    if (old == NULL && PyErr_Occurred()) {
        goto done;
    }
    int earlier = old == NULL ? 1 : PyObject_RichCompareBool(when, old, Py_LT);
    if (earlier < 0 || (earlier && PyDict_SetItem(s->dns, key, when) < 0)) {
        goto done;
    }
    r = 0;
done:
    Py_XDECREF(when);
    Py_XDECREF(key);
    Py_XDECREF(server);
    Py_XDECREF(client);
    Py_DECREF(name);
    Py_DECREF(answers);
    Py_DECREF(cnames);
    return r;
}

PyObject *
flows_address_text(Flows *s, const unsigned char *addr, Py_ssize_t alen)
{
    return address_text(addr, alen, s->names, s->name_of);
}

/* ---- Python methods ------------------------------------------------------------------------ */

static int
ready(Flows *s)
{
    if (s->tcp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Flows is not initialized");
        return 0;
    }
    return 1;
}

static PyObject *
Flows_take(Flows *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(s)) {
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
    int64_t fid = flows_find(s, (int)proto, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                             (klen - 4) / 2, &is_a);
    if (fid < 0) {
        Py_RETURN_NONE;
    }
    PyObject *h = flows_materialize(s, (uint32_t)fid, is_a, NULL);
    return h == NULL ? NULL : Py_NewRef(h);
}

static PyObject *
Flows_flush(Flows *s, PyObject *done)
{
    if (!ready(s)) {
        return NULL;
    }
    if (!PyList_Check(done)) {
        PyErr_SetString(PyExc_TypeError, "flush(done: list)");
        return NULL;
    }
    Py_ssize_t count = 0;
    for (uint32_t fid = 0; fid < s->nused; fid++) {
        if (flow_at(s, fid)->state != NF_FREE) {
            if (flows_materialize(s, fid, 1, done) == NULL) {
                return NULL;
            }
            count++;
        }
    }
    /* All Python's now: start afresh, and give the memory back. */
    for (Py_ssize_t i = 0; i < s->nchunks; i++) {
        PyMem_Free(s->chunks[i]);
    }
    PyMem_Free(s->chunks);
    PyMem_Free(s->index);
    s->chunks = NULL;
    s->nchunks = s->chunk_cap = 0;
    s->index = NULL;
    s->icap = 0;
    s->nused = s->free_head = 0;
    return PyLong_FromSsize_t(count);
}

static Py_ssize_t
Flows_len(Flows *s)
{
    return s->nlive + s->ndone;  /* the flows held here (not yet the table's) */
}

static PyObject *
Flows_live(Flows *s, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(s->nlive);
}

/* ---- Construction ------------------------------------------------------------------------- */

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

/* A str value of the model that a JSON string holds as it is (printable ASCII, no quote or
 * backslash): the C writer copies it into the lines. */
static int
read_text(PyObject *model, const char *name, PyObject **out)
{
    PyObject *v = PyDict_GetItemString(model, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model has no %s", name);
        return -1;
    }
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) {
        PyErr_Format(PyExc_TypeError, "model: %s must be an ASCII str", name);
        return -1;
    }
    const char *p = (const char *)PyUnicode_DATA(v);
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(v); i++) {
        if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\' || p[i] == 0x7F) {
            PyErr_Format(PyExc_ValueError, "model: %s needs JSON escapes", name);
            return -1;
        }
    }
    Py_XSETREF(*out, Py_NewRef(v));
    return 0;
}

static int
Flows_init(Flows *s, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tcp", "udp", "dns", "names", "name_of", "model", NULL};
    PyObject *tcp, *udp, *dns, *names, *name_of, *model;
    if (s->tcp != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Flows is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!OO!", kwlist, &PyDict_Type, &tcp,
                                     &PyDict_Type, &udp, &PyDict_Type, &dns, &PyDict_Type,
                                     &names, &name_of, &PyDict_Type, &model)) {
        return -1;
    }
    if (!PyCallable_Check(name_of)) {
        PyErr_SetString(PyExc_TypeError, "name_of must be callable");
        return -1;
    }
    PyObject *flow_type = PyDict_GetItemString(model, "flow");
    PyObject *half_type = PyDict_GetItemString(model, "half");
    if (flow_type == NULL || half_type == NULL || !PyType_Check(flow_type)
        || !PyType_Check(half_type)) {
        PyErr_SetString(PyExc_TypeError, "model: flow and half must be classes");
        return -1;
    }
    long long idle;
    PyObject *idle_obj = PyDict_GetItemString(model, "idle");
    if (idle_obj == NULL) {
        PyErr_SetString(PyExc_KeyError, "model has no idle");
        return -1;
    }
    idle = PyLong_AsLongLong(idle_obj);
    if (idle == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (check_slots((PyTypeObject *)flow_type, flow_slots, F_COUNT, s->foff) < 0
        || check_slots((PyTypeObject *)half_type, half_slots, H_COUNT, s->hoff) < 0
        || read_long(model, "probe_packets", &s->probe_packets) < 0
        || read_long(model, "probe_segments", &s->probe_segments) < 0
        || read_long(model, "preamble_max", &s->preamble_max) < 0
        || read_long(model, "max_client_hello", &s->max_client_hello) < 0
        || read_long(model, "well_known", &s->well_known) < 0
        || read_long(model, "ephemeral", &s->ephemeral) < 0
        || read_ports(model, "dns_ports", s->dns_ports, &s->ndns) < 0
        || read_ports(model, "tunnel_ports", s->tunnel_ports, &s->ntunnel) < 0
        || read_text(model, "dir_handshake", &s->dir_text[DIR_HANDSHAKE]) < 0
        || read_text(model, "dir_first", &s->dir_text[DIR_FIRST]) < 0
        || read_text(model, "dir_ports", &s->dir_text[DIR_PORTS]) < 0
        || read_text(model, "tcp_name", &s->tcp_name) < 0
        || read_text(model, "udp_name", &s->udp_name) < 0) {
        return -1;
    }
    if (s->probe_packets < 0 || s->probe_packets > 32767 || s->probe_segments < 0
        || s->probe_segments > 32767 || idle < 0) {
        PyErr_SetString(PyExc_ValueError, "model: counts out of range");
        return -1;
    }
    s->snis = PyDict_New();
    if (s->snis == NULL) {
        return -1;
    }
    s->flow_type = (PyTypeObject *)Py_NewRef(flow_type);
    s->half_type = (PyTypeObject *)Py_NewRef(half_type);
    s->idle = idle;
    s->tcp = Py_NewRef(tcp);
    s->udp = Py_NewRef(udp);
    s->dns = Py_NewRef(dns);
    s->names = Py_NewRef(names);
    s->name_of = Py_NewRef(name_of);
    /* The index's hash is seeded per process (from Python's own randomized hash) so that a
     * crafted capture cannot aim collisions at it. */
    PyObject *salt = PyUnicode_FromString("capture._fastloop");
    Py_hash_t seed = salt == NULL ? -1 : PyObject_Hash(salt);
    Py_XDECREF(salt);
    if (seed == -1 && PyErr_Occurred()) {
        return -1;
    }
    s->seed = mix64((uint64_t)seed);
    return 0;
}

static int
Flows_traverse(Flows *s, visitproc visit, void *arg)
{
    Py_VISIT(s->tcp);
    Py_VISIT(s->udp);
    Py_VISIT(s->dns);
    Py_VISIT(s->names);
    Py_VISIT(s->name_of);
    Py_VISIT(s->snis);
    Py_VISIT(s->flow_type);
    Py_VISIT(s->half_type);
    return 0;
}

static int
Flows_clear(Flows *s)
{
    Py_CLEAR(s->tcp);
    Py_CLEAR(s->udp);
    Py_CLEAR(s->dns);
    Py_CLEAR(s->names);
    Py_CLEAR(s->name_of);
    Py_CLEAR(s->snis);
    Py_CLEAR(s->flow_type);
    Py_CLEAR(s->half_type);
    return 0;
}

static void
Flows_dealloc(Flows *s)
{
    PyObject_GC_UnTrack(s);
    Flows_clear(s);
    flows_forget_order(s);
    for (uint32_t fid = 0; fid < s->nused; fid++) {
        Py_CLEAR(flow_at(s, fid)->sni);
    }
    for (Py_ssize_t i = 0; i < s->nchunks; i++) {
        PyMem_Free(s->chunks[i]);
    }
    PyMem_Free(s->chunks);
    PyMem_Free(s->index);
    PyMem_Free(s->line);
    for (int i = 0; i < 3; i++) {
        Py_CLEAR(s->dir_text[i]);
    }
    Py_CLEAR(s->tcp_name);
    Py_CLEAR(s->udp_name);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef Flows_methods[] = {
    {"take", (PyCFunction)(void (*)(void))Flows_take, METH_FASTCALL,
     "take(proto, key) -> Half | None: the live flow of key as Python objects, if native."},
    {"flush", (PyCFunction)Flows_flush, METH_O,
     "flush(done) -> int: every native flow as Python objects: the live ones into the table, "
     "the ended ones appended to the list ``done``; how many."},
    {"sort", (PyCFunction)Flows_sort, METH_NOARGS,
     "sort() -> int: put the native flows in the order of the flow file, for count() and "
     "lines(); how many. Any change to the flows forgets the order."},
    {"count", (PyCFunction)(void (*)(void))Flows_count, METH_FASTCALL,
     "count(bound, inclusive) -> int: how many of the flows not written yet have a sort key "
     "below ``bound`` (a capture.flowfile.sort_key tuple; or at most it, when inclusive; "
     "None: all)."},
    {"lines", (PyCFunction)(void (*)(void))Flows_lines, METH_FASTCALL,
     "lines(n) -> (str, int): the flow-file lines of the next flows, at most n of them and "
     "about a MiB, joined by newlines; and how many."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Flows_getset[] = {
    {"live", (getter)Flows_live, NULL, "how many native flows are live (not ended)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Flows_as_sequence = {
    .sq_length = (lenfunc)Flows_len,
};

PyTypeObject FlowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "capture._fastloop.Flows",
    .tp_basicsize = sizeof(Flows),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Flows(tcp, udp, dns, names, name_of, model): the native flows of a FlowTable",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Flows_init,
    .tp_dealloc = (destructor)Flows_dealloc,
    .tp_traverse = (traverseproc)Flows_traverse,
    .tp_clear = (inquiry)Flows_clear,
    .tp_methods = Flows_methods,
    .tp_getset = Flows_getset,
    .tp_as_sequence = &Flows_as_sequence,
};

/* capture._fastloop: the flow-file lines of native flows, in the order of the flow file.
 *
 * What capture.table.FlowTable.flow_line writes for a flow, and in the order
 * capture.flowfile.ordered_lines puts the lines -- by capture.flowfile.sort_key, ties by the
 * line's own text -- byte for byte, without making a Python object per flow:
 *
 *   - sort() sorts one 32-byte record per flow by (first_seen as the float Python computes,
 *     protocol name, client address text, client port, server text, server port), ties by
 *     the lines themselves: IPv4 texts are written here, IPv6 ones come from the table's own
 *     function, once per address;
 *   - count(bound) tells how many of the flows not yet written sort before a Python sort key
 *     (a binary search comparing real Python tuples), so that capture.flowfile merges them
 *     with the Python-held flows and the records of other sources exactly as one sort would;
 *   - lines(n) writes the next lines into one str of about a MiB.
 *
 * Times: ``first_seen`` is ``first / NS`` in Python, the correctly rounded quotient, written
 * by float.__repr__ (the shortest text that reads back as the same float). ns_seconds computes
 * the same quotient (see there why two roundings give it); seconds_text writes it: a time in
 * whole microseconds from 1e-4 s to 2**33 s is its exact decimal (that text is then also the
 * shortest one that reads back, because floats there are less than a microsecond apart, and
 * repr writes no exponent), anything else goes through PyOS_double_to_string, which is what
 * float.__repr__ calls.
 */
#include "_fastloop.h"
#include <float.h>

typedef struct SortRec {
    double first;                /* first_seen */
    uint32_t fid;                /* the flow */
    uint32_t ctext, stext;       /* IPv6: the numbers of the client's and server's texts */
    uint16_t cport, sport;
    uint8_t prank;               /* the protocol name's rank */
} SortRec;

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int
buf_reserve(Buf *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* ---- Times --------------------------------------------------------------------------------- */

#define NS_PER_S 1000000000LL

/* ns / 10**9 rounded to the nearest double: Python's int / int (correctly rounded). */
double
ns_seconds(int64_t ns)
{
    if (ns >= -(1LL << 53) && ns <= (1LL << 53)) {
        return (double)ns / 1e9;  /* both exact as doubles: one correctly rounded division */
    }
#if FLT_EVAL_METHOD == 0
    if (ns > 0) {
        /* q + r / 10**9 with q = ns // 10**9 (exact: below 2**34) and the fraction rounded
         * once (off by at most 2**-54), then the sum rounded once. That is the correctly
         * rounded quotient x: x lies in [2**23, 2**34), where doubles are 2**-k apart with
         * k in [19, 29], and its distance to a point halfway between two of them,
         * |r * 2**(k+1) - odd * 10**9| / (10**9 * 2**(k+1)), has a numerator that is a
         * non-zero multiple of 2**9 (10**9 = 2**9 * 5**9), so it is at least
         * 2**9 / (10**9 * 2**30) > 4.7e-16: far more than the fraction's error. */
        return (double)(ns / NS_PER_S) + (double)(ns % NS_PER_S) / 1e9;
    }
#endif
    PyObject *num = PyLong_FromLongLong(ns), *den = PyLong_FromLongLong(NS_PER_S);
    PyObject *q = num == NULL || den == NULL ? NULL : PyNumber_TrueDivide(num, den);
    Py_XDECREF(num);
    Py_XDECREF(den);
    double d = q == NULL ? -1.0 : PyFloat_AsDouble(q);
    Py_XDECREF(q);
    return d;  /* (an error is left set: the callers check) */
}

static size_t
put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

/* repr(ns / 10**9) into out (room for 32 bytes); its length, or -1 with an error. */
static Py_ssize_t
seconds_text(int64_t ns, char *out)
{
    if (ns >= 100000 && ns % 1000 == 0 && ns < (1LL << 33) * NS_PER_S) {
        /* At least 1e-4 s: repr writes it without an exponent. */
        size_t n = put_u64(out, (uint64_t)(ns / NS_PER_S));
        int64_t us = ns % NS_PER_S / 1000;
        out[n++] = '.';
        if (us == 0) {
            out[n++] = '0';
            return (Py_ssize_t)n;
        }
        char digits[6];
        for (int i = 5; i >= 0; i--) {
            digits[i] = (char)('0' + us % 10);
            us /= 10;
        }
        int keep = 6;
        while (digits[keep - 1] == '0') {
            keep--;
        }
        memcpy(out + n, digits, (size_t)keep);
        return (Py_ssize_t)n + keep;
    }
    double d = ns_seconds(ns);
    if (PyErr_Occurred()) {
        return -1;
    }
    char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return -1;
    }
    size_t len = strlen(text);
    if (len > 31) {
        PyMem_Free(text);
        PyErr_SetString(PyExc_ValueError, "float text too long");
        return -1;
    }
    memcpy(out, text, len);
    PyMem_Free(text);
    return (Py_ssize_t)len;
}

/* seconds(ns) -> float and seconds_text(ns) -> str: for the tests that hold them equal to
 * ns / NS and repr(ns / NS). */
PyObject *
fastwrite_seconds(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    double d = ns_seconds(ns);
    return PyErr_Occurred() ? NULL : PyFloat_FromDouble(d);
}

PyObject *
fastwrite_seconds_text(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    char text[32];
    Py_ssize_t len = seconds_text(ns, text);
    return len < 0 ? NULL : PyUnicode_DecodeASCII(text, len, NULL);
}

/* ---- Lines --------------------------------------------------------------------------------- */
/* ---- Addresses ----------------------------------------------------------------------------- */

/* The text of one end of a flow: IPv4 is written here (as socket.inet_ntop does), IPv6 comes
 * from the table's own function (once per address, in sort()): ``texts[id]``. */
typedef struct {
    const char *p;
    size_t len;
    char v4[16];
} AddrText;

static void
addr_text(const Flows *s, const SortRec *r, int server, AddrText *out)
{
    const NFlow *f = flow_at(s, r->fid);
    if (f->alen == 4) {
        const unsigned char *a = f->key + ((f->client_is_a != 0) == (server != 0) ? 4 : 0);
        size_t n = 0;
        for (int i = 0; i < 4; i++) {
            if (i) {
                out->v4[n++] = '.';
            }
            unsigned v = a[i];
            if (v >= 100) {
                out->v4[n++] = (char)('0' + v / 100);
            }
            if (v >= 10) {
                out->v4[n++] = (char)('0' + v / 10 % 10);
            }
            out->v4[n++] = (char)('0' + v % 10);
        }
        out->p = out->v4;
        out->len = n;
        return;
    }
    PyObject *text = s->texts[server ? r->stext : r->ctext];
    out->p = (const char *)PyUnicode_DATA(text);
    out->len = (size_t)PyUnicode_GET_LENGTH(text);
}

static int
compare_text(const AddrText *a, const AddrText *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->p, b->p, n);
    if (r != 0) {
        return r < 0 ? -1 : 1;
    }
    return a->len < b->len ? -1 : a->len > b->len;
}

/* ---- Lines --------------------------------------------------------------------------------- */

/* A JSON string of ASCII text, as json.encoder.encode_basestring writes it. */
static int
put_json_str(Buf *b, const char *p, size_t n)
{
    if (buf_reserve(b, n * 6 + 2) < 0) {
        return -1;
    }
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c >= 0x20) {
            *o++ = (char)c;
        } else {
            static const char hex[] = "0123456789abcdef";
            char esc = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b'
                       : c == '\f' ? 'f' : 0;
            *o++ = '\\';
            if (esc) {
                *o++ = esc;
            } else {
                memcpy(o, "u00", 3);
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
                o += 5;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

static int
put_json_unicode(Buf *b, PyObject *text)
{
    return put_json_str(b, (const char *)PyUnicode_DATA(text),
                        (size_t)PyUnicode_GET_LENGTH(text));
}

static void
put_raw(Buf *b, const char *text, size_t len)
{
    memcpy(b->p + b->len, text, len);
    b->len += len;
}

#define PUT(b, lit) put_raw(b, lit, sizeof(lit) - 1)

static void
put_num(Buf *b, uint64_t v)
{
    b->len += put_u64(b->p + b->len, v);
}

static void
put_ascii(Buf *b, PyObject *text)
{
    put_raw(b, (const char *)PyUnicode_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
}

/* Append the line of the flow of ``r`` (without a newline): what FlowTable.flow_line writes.
 * 0, or -1 with an error. */
static int
put_line(Flows *s, const SortRec *r, Buf *b)
{
    const NFlow *f = flow_at(s, r->fid);
    int c = f->client_is_a ? 0 : 1, v = 1 - c;  /* the client's end and the server's */
    PyObject *proto = f->proto == 6 ? s->tcp_name : s->udp_name;
    PyObject *dir = s->dir_text[f->direction];
    /* Room for the keys, the numbers (at most 20 digits), the times (at most 31 characters)
     * and the short values between two strings. */
    size_t room = 512 + (size_t)PyUnicode_GET_LENGTH(proto) + (size_t)PyUnicode_GET_LENGTH(dir);
    AddrText client, server;
    addr_text(s, r, 0, &client);
    addr_text(s, r, 1, &server);
    if (buf_reserve(b, room) < 0) {
        return -1;
    }
    PUT(b, "{\"bytes_to_client\":");
    put_num(b, f->bytes[v]);
    PUT(b, ",\"bytes_to_server\":");
    put_num(b, f->bytes[c]);
    PUT(b, ",\"client\":");
    if (put_json_str(b, client.p, client.len) < 0 || buf_reserve(b, room) < 0) {
        return -1;
    }
    PUT(b, ",\"client_port\":");
    put_num(b, r->cport);
    PUT(b, ",\"direction\":\"");
    put_ascii(b, dir);
    PUT(b, "\",\"first_seen\":");
    Py_ssize_t n = seconds_text(f->first, b->p + b->len);
    if (n < 0) {
        return -1;
    }
    b->len += (size_t)n;
    if (f->syn && f->synack) {
        PUT(b, ",\"handshake\":true,\"last_seen\":");
    } else {
        PUT(b, ",\"handshake\":false,\"last_seen\":");
    }
    n = seconds_text(f->last, b->p + b->len);
    if (n < 0) {
        return -1;
    }
    b->len += (size_t)n;
    PUT(b, ",\"outer\":null,\"packets_to_client\":");
    put_num(b, f->packets[v]);
    PUT(b, ",\"packets_to_server\":");
    put_num(b, f->packets[c]);
    PUT(b, ",\"proto\":\"");
    put_ascii(b, proto);
    PUT(b, "\",\"record\":\"flow\",\"resets\":");
    put_num(b, f->resets);
    PUT(b, ",\"server\":");
    if (put_json_str(b, server.p, server.len) < 0 || buf_reserve(b, room) < 0) {
        return -1;
    }
    PUT(b, ",\"server_port\":");
    put_num(b, r->sport);
    if (f->sni == NULL) {
        PUT(b, ",\"sni\":null");
    } else {
        PUT(b, ",\"sni\":");
        if (put_json_unicode(b, f->sni) < 0 || buf_reserve(b, 64) < 0) {
            return -1;
        }
    }
    if (f->tls) {
        PUT(b, ",\"tls\":true}");
    } else {
        PUT(b, ",\"tls\":false}");
    }
    return 0;
}

/* ---- Sorting ------------------------------------------------------------------------------- */

static Buf tie_a, tie_b;  /* (the GIL is held throughout a sort) */

/* The order of the flow file: by capture.flowfile.sort_key, ties by the line's text. -1, 0,
 * 1; -2 with an error (a line could not be made). */
static int
compare_recs(Flows *s, const SortRec *a, const SortRec *b)
{
    if (a->first != b->first) {
        return a->first < b->first ? -1 : 1;
    }
    if (a->prank != b->prank) {
        return a->prank < b->prank ? -1 : 1;
    }
    AddrText x, y;
    addr_text(s, a, 0, &x);
    addr_text(s, b, 0, &y);
    int r = compare_text(&x, &y);
    if (r != 0) {
        return r;
    }
    if (a->cport != b->cport) {
        return a->cport < b->cport ? -1 : 1;
    }
    addr_text(s, a, 1, &x);
    addr_text(s, b, 1, &y);
    r = compare_text(&x, &y);
    if (r != 0) {
        return r;
    }
    if (a->sport != b->sport) {
        return a->sport < b->sport ? -1 : 1;
    }
    /* The same sort key (the same connection seen twice): by the lines' own text. */
    tie_a.len = tie_b.len = 0;
    if (put_line(s, a, &tie_a) < 0 || put_line(s, b, &tie_b) < 0) {
        return -2;
    }
    AddrText la = {tie_a.p, tie_a.len, {0}}, lb = {tie_b.p, tie_b.len, {0}};
    return compare_text(&la, &lb);
}

/* The end of the ascending run that starts at ``i`` (< n). -2 with an error. */
static Py_ssize_t
run_end(Flows *s, const SortRec *a, Py_ssize_t i, Py_ssize_t n)
{
    while (i + 1 < n) {
        int r = compare_recs(s, &a[i], &a[i + 1]);
        if (r == -2) {
            return -2;
        }
        if (r > 0) {
            break;
        }
        i++;
    }
    return i + 1;
}

/* Sort a[:n] with a natural merge sort: records come nearly in order already (a flow is stored
 * when its first packet comes), so one pass usually finds one run and sorting costs n
 * comparisons. 0, or -1 with an error. */
static int
sort_recs(Flows *s, SortRec *a, Py_ssize_t n)
{
    SortRec *tmp = NULL, *src = a, *dst;
    int result = -1;
    for (;;) {
        Py_ssize_t end = run_end(s, src, 0, n);
        if (end == -2) {
            goto done;
        }
        if (end >= n) {
            break;  /* one run: sorted */
        }
        if (tmp == NULL) {
            tmp = PyMem_Malloc((size_t)n * sizeof(SortRec));
            if (tmp == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        dst = src == a ? tmp : a;
        Py_ssize_t i = 0;
        while (i < n) {  /* merge runs [i, mid) and [mid, stop) into dst */
            Py_ssize_t mid = i == 0 ? end : run_end(s, src, i, n);
            if (mid == -2) {
                goto done;
            }
            Py_ssize_t stop = mid < n ? run_end(s, src, mid, n) : n;
            if (stop == -2) {
                goto done;
            }
            Py_ssize_t p = i, q = mid, o = i;
            while (p < mid && q < stop) {
                int r = compare_recs(s, &src[q], &src[p]);
                if (r == -2) {
                    goto done;
                }
                dst[o++] = r < 0 ? src[q++] : src[p++];  /* stable: the left run first */
            }
            while (p < mid) {
                dst[o++] = src[p++];
            }
            while (q < stop) {
                dst[o++] = src[q++];
            }
            i = stop;
        }
        src = dst;
    }
    if (src != a) {
        memcpy(a, src, (size_t)n * sizeof(SortRec));
    }
    result = 0;
done:
    PyMem_Free(tmp);
    PyMem_Free(tie_a.p);
    PyMem_Free(tie_b.p);
    memset(&tie_a, 0, sizeof(tie_a));
    memset(&tie_b, 0, sizeof(tie_b));
    return result;
}

void
flows_forget_order(Flows *s)
{
    if (s->order == NULL && s->texts == NULL) {
        return;
    }
    PyMem_Free(s->order);
    s->order = NULL;
    s->norder = s->pos = 0;
    for (Py_ssize_t i = 0; i < s->ntexts; i++) {
        Py_DECREF(s->texts[i]);
    }
    PyMem_Free(s->texts);
    s->texts = NULL;
    s->ntexts = 0;
}

/* The distinct IPv6 addresses of the flows while sorting: open addressing over their bytes;
 * the n-th one's text becomes s->texts[n]. */
typedef struct {
    const unsigned char **addrs;
    Py_ssize_t n, cap;
    uint32_t *slots;  /* address + 1, 0: empty */
    size_t scap;
} AddrSet;

static uint64_t
v6_hash(const Flows *s, const unsigned char *addr)
{
    static const unsigned char zero[2] = {0, 0};
    return end_hash(s->seed, addr, 16, zero);
}

static int
addrs_grow(const Flows *s, AddrSet *set)
{
    size_t cap = set->scap ? set->scap * 2 : 256;
    uint32_t *slots = PyMem_Calloc(cap, sizeof(uint32_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < set->n; i++) {
        size_t j = (size_t)v6_hash(s, set->addrs[i]) & (cap - 1);
        while (slots[j] != 0) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = (uint32_t)i + 1;
    }
    PyMem_Free(set->slots);
    set->slots = slots;
    set->scap = cap;
    return 0;
}

/* The number of an IPv6 address (added if new; its bytes must outlive the set); -1 with an
 * error. */
static int64_t
addrs_intern(const Flows *s, AddrSet *set, const unsigned char *addr)
{
    if ((size_t)(set->n + 1) * 2 > set->scap && addrs_grow(s, set) < 0) {
        return -1;
    }
    size_t mask = set->scap - 1;
    size_t j = (size_t)v6_hash(s, addr) & mask;
    for (;;) {
        uint32_t e = set->slots[j];
        if (e == 0) {
            break;
        }
        if (memcmp(set->addrs[e - 1], addr, 16) == 0) {
            return e - 1;
        }
        j = (j + 1) & mask;
    }
    if (set->n >= set->cap) {
        Py_ssize_t cap = set->cap ? set->cap * 2 : 256;
        const unsigned char **addrs = PyMem_Realloc(set->addrs, (size_t)cap * sizeof(*addrs));
        if (addrs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        set->addrs = addrs;
        set->cap = cap;
    }
    set->addrs[set->n] = addr;
    set->slots[j] = (uint32_t)set->n + 1;
    return set->n++;
}

/* The IPv6 addresses' texts, by number, in s->texts; 0, or -1 with an error. */
static int
make_texts(Flows *s, const AddrSet *set)
{
    s->texts = PyMem_Calloc((size_t)(set->n ? set->n : 1), sizeof(PyObject *));
    if (s->texts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < set->n; i++) {
        PyObject *text = flows_address_text(s, set->addrs[i], 16);
        if (text == NULL) {
            return -1;
        }
        s->texts[s->ntexts++] = text;
        if (!PyUnicode_IS_ASCII(text)) {
            PyErr_SetString(PyExc_ValueError, "address text is not ASCII");
            return -1;
        }
    }
    return 0;
}

PyObject *
Flows_sort(Flows *s, PyObject *Py_UNUSED(ignored))
{
    if (s->tcp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Flows is not initialized");
        return NULL;
    }
    flows_forget_order(s);
    Py_ssize_t n = s->nlive + s->ndone;
    SortRec *order = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(SortRec));
    if (order == NULL) {
        return PyErr_NoMemory();
    }
    AddrSet set = {NULL, 0, 0, NULL, 0};
    int tcp_first = PyUnicode_Compare(s->tcp_name, s->udp_name) <= 0;
    Py_ssize_t k = 0;
    for (uint32_t fid = 0; fid < s->nused; fid++) {
        const NFlow *f = flow_at(s, fid);
        if (f->state == NF_FREE) {
            continue;
        }
        Py_ssize_t alen = f->alen;
        const unsigned char *pa = f->key + 2 * alen, *pb = pa + 2;
        const unsigned char *cp = f->client_is_a ? pa : pb, *sp = f->client_is_a ? pb : pa;
        SortRec *r = &order[k++];
        r->first = ns_seconds(f->first);
        if (PyErr_Occurred()) {
            goto error;
        }
        r->fid = fid;
        r->ctext = r->stext = 0;
        if (alen == 16) {
            int64_t ce = addrs_intern(s, &set, f->client_is_a ? f->key : f->key + 16);
            int64_t se = ce < 0 ? -1 : addrs_intern(s, &set, f->client_is_a ? f->key + 16
                                                                               : f->key);
            if (se < 0) {
                goto error;
            }
            r->ctext = (uint32_t)ce;
            r->stext = (uint32_t)se;
        }
        r->cport = (uint16_t)((cp[0] << 8) | cp[1]);
        r->sport = (uint16_t)((sp[0] << 8) | sp[1]);
        r->prank = (uint8_t)((f->proto == 6) == tcp_first ? 0 : 1);
    }
    if (make_texts(s, &set) < 0 || sort_recs(s, order, k) < 0) {
        goto error;
    }
    PyMem_Free(set.addrs);
    PyMem_Free(set.slots);
    s->order = order;
    s->norder = k;
    s->pos = 0;
    return PyLong_FromSsize_t(k);
error:
    PyMem_Free(set.addrs);
    PyMem_Free(set.slots);
    PyMem_Free(order);
    flows_forget_order(s);
    return NULL;
}

static int
check_order(Flows *s)
{
    if (s->order == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "capture._fastloop: sort() the flows first (or "
                        "again: they changed)");
        return 0;
    }
    return 1;
}

/* The Python sort key of r: capture.flowfile.sort_key of its record. */
static PyObject *
sort_key(Flows *s, const SortRec *r)
{
    const NFlow *f = flow_at(s, r->fid);
    AddrText c, v;
    addr_text(s, r, 0, &c);
    addr_text(s, r, 1, &v);
    return Py_BuildValue("(idOs#is#i)", 0, r->first, f->proto == 6 ? s->tcp_name : s->udp_name,
                         c.p, (Py_ssize_t)c.len, (int)r->cport, v.p, (Py_ssize_t)v.len,
                         (int)r->sport);
}

/* The sort key of the i-th flow compares ``op`` to ``bound``: 1 or 0, -1 with an error. */
static int
key_below(Flows *s, Py_ssize_t i, PyObject *bound, int op)
{
    PyObject *key = sort_key(s, &s->order[i]);
    if (key == NULL) {
        return -1;
    }
    int r = PyObject_RichCompareBool(key, bound, op);
    Py_DECREF(key);
    return r;
}

PyObject *
Flows_count(Flows *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "count(bound, inclusive)");
        return NULL;
    }
    if (!check_order(s)) {
        return NULL;
    }
    PyObject *bound = args[0];
    if (bound == Py_None) {
        return PyLong_FromSsize_t(s->norder - s->pos);
    }
    int inclusive = PyObject_IsTrue(args[1]);
    if (inclusive < 0) {
        return NULL;
    }
    /* The first flow from pos on whose key is not below (at most) the bound: galloping from
     * pos (the bounds come in order, so the answer is usually near), then a binary search.
     * Everything before lo is below, nothing from hi on is. */
    int op = inclusive ? Py_LE : Py_LT;
    Py_ssize_t lo = s->pos, hi = s->norder, step = 1;
    while (lo < hi) {
        Py_ssize_t probe = step - 1 < hi - lo ? lo + step - 1 : hi - 1;
        int below = key_below(s, probe, bound, op);
        if (below < 0) {
            return NULL;
        }
        if (!below) {
            hi = probe;
            break;
        }
        lo = probe + 1;
        step *= 2;
    }
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        int below = key_below(s, mid, bound, op);
        if (below < 0) {
            return NULL;
        }
        if (below) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return PyLong_FromSsize_t(lo - s->pos);
}

#define LINES_BYTES (1 << 20)

PyObject *
Flows_lines(Flows *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "lines(n)");
        return NULL;
    }
    Py_ssize_t want = PyLong_AsSsize_t(args[0]);
    if (want == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!check_order(s)) {
        return NULL;
    }
    if (want > s->norder - s->pos) {
        want = s->norder - s->pos;
    }
    Buf b = {s->line, 0, s->linecap};
    Py_ssize_t done = 0;
    while (done < want && b.len < LINES_BYTES) {
        if (done > 0) {
            if (buf_reserve(&b, 1) < 0) {
                break;
            }
            b.p[b.len++] = '\n';
        }
        if (put_line(s, &s->order[s->pos + done], &b) < 0) {
            break;
        }
        done++;
    }
    s->line = b.p;
    s->linecap = b.cap;
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *text = PyUnicode_New((Py_ssize_t)b.len, 127);
    if (text == NULL) {
        return NULL;
    }
    if (b.len) {
        memcpy(PyUnicode_1BYTE_DATA(text), b.p, b.len);
    }
    s->pos += done;
    PyObject *result = Py_BuildValue("(Nn)", text, done);
    if (s->pos == s->norder && s->linecap > LINES_BYTES * 2) {
        PyMem_Free(s->line);  /* (a very long line grew it) */
        s->line = NULL;
        s->linecap = 0;
    }
    return result;
}

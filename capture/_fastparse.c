/* capture._fastloop: the TLS ClientHello probe and the DNS response parser, in C.
 *
 * Each mirrors its Python original line for line -- capture.tls.probe_client_hello and
 * capture.dns.parse_response -- so that a flow the C loop folds ends up with the state the
 * Python code would have given it; tests/capture/test_capture_fastloop.py checks both against
 * the originals on generated and random messages. Every read is checked against the length
 * of the bytes given: a message is untrusted input.
 */
#include "_fastloop.h"

/* capture.tls.proxy_header_length: the length of a whole PROXY protocol header (version 1:
 * "PROXY " ... CRLF within 107 bytes; version 2: the 12-byte signature, version 2, then
 * 16 + the length in bytes 14-15) at the start of p, 0 when there is none. */
Py_ssize_t
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
 * None (no error set), or NULL with an error. Its characters are host characters only
 * (letters, digits, . - _ *), lower-cased: nothing a JSON string needs to escape. */
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
int
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

/* ---- Addresses as text ------------------------------------------------------------------- */

/* The text of a raw address, as capture.table.FlowTable.name gives it: dotted IPv4 (what
 * socket.inet_ntop writes), and for IPv6 what ``name_of`` (capture.table.address_text, the
 * ipaddress module's compressed form) returns, remembered in ``names`` (raw -> text, the
 * table's cache). New reference, NULL with an error. */
PyObject *
address_text(const unsigned char *addr, Py_ssize_t alen, PyObject *names, PyObject *name_of)
{
    if (alen == 4) {
        char text[16];
        int len = snprintf(text, sizeof(text), "%u.%u.%u.%u", addr[0], addr[1], addr[2],
                           addr[3]);
        return PyUnicode_FromStringAndSize(text, len);
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)addr, alen);
    if (raw == NULL) {
        return NULL;
    }
    PyObject *text = PyDict_GetItemWithError(names, raw);  /* borrowed */
    if (text != NULL) {
        Py_DECREF(raw);
        return Py_NewRef(text);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        return NULL;
    }
    text = PyObject_CallOneArg(name_of, raw);
    if (text != NULL && !PyUnicode_CheckExact(text)) {
        PyErr_SetString(PyExc_TypeError, "address text: str expected");
        Py_CLEAR(text);
    }
    if (text != NULL && PyDict_SetItem(names, raw, text) < 0) {
        Py_CLEAR(text);
    }
    Py_DECREF(raw);
    return text;
}

/* ---- DNS responses (capture.dns) --------------------------------------------------------- */

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1
#define DNS_MAX_JUMPS 32
#define DNS_MAX_NAME 255
#define DNS_MAX_RECORDS 256

/* Names read from one message, as text, one after the other in a growing buffer. */
typedef struct {
    char *buf;
    size_t len, cap;
} Arena;

typedef struct {
    size_t off, len;  /* in the arena */
} Name;

static int
arena_put(Arena *a, const char *text, size_t len)
{
    if (a->len + len > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->len + len) {
            cap *= 2;
        }
        char *buf = PyMem_Realloc(a->buf, cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->buf = buf;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, text, len);
    a->len += len;
    return 0;
}

/* capture.dns._byte_text: one label byte as dig writes it (BIND's dns_name_totext). */
static size_t
byte_text(unsigned char b, char *out)
{
    if (b == '"' || b == '(' || b == ')' || b == '.' || b == ';' || b == '\\') {
        out[0] = '\\';
        out[1] = (char)b;
        return 2;
    }
    if (b >= 0x21 && b <= 0x7E) {
        out[0] = (char)(b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
        return 1;
    }
    out[0] = '\\';
    out[1] = (char)('0' + b / 100);
    out[2] = (char)('0' + b / 10 % 10);
    out[3] = (char)('0' + b % 10);
    return 4;
}

/* capture.dns._name: the (possibly compressed) name at ``off`` of msg[:end], appended to the
 * arena as text (*name), and the offset after it (*after). 1, 0 for None, -1 with an error. */
static int
dns_name(const unsigned char *msg, Py_ssize_t end, Py_ssize_t off, Arena *a, Name *name,
         Py_ssize_t *after_out)
{
    Py_ssize_t length = 0, after = -1;
    int jumps = 0, labels = 0;
    name->off = a->len;
    for (;;) {
        if (off < 0 || off >= end) {
            return 0;
        }
        unsigned n = msg[off];
        if (n == 0) {
            off += 1;
            break;
        }
        if ((n & 0xC0) == 0xC0) {
            if (off + 1 >= end || jumps >= DNS_MAX_JUMPS) {
                return 0;
            }
            if (after < 0) {
                after = off + 2;
            }
            off = ((Py_ssize_t)(n & 0x3F) << 8) | msg[off + 1];
            jumps++;
            continue;
        }
        if (n & 0xC0) {
            return 0;  /* extended label types are not used in practice */
        }
        if (off + 1 + (Py_ssize_t)n > end) {
            return 0;
        }
        length += n + 1;
        if (length > DNS_MAX_NAME) {
            return 0;
        }
        char text[4 * 63 + 1];
        size_t tlen = 0;
        if (labels++ > 0) {
            text[tlen++] = '.';
        }
        for (unsigned i = 0; i < n; i++) {
            tlen += byte_text(msg[off + 1 + i], text + tlen);
        }
        if (arena_put(a, text, tlen) < 0) {
            return -1;
        }
        off += 1 + n;
    }
    name->len = a->len - name->off;
    *after_out = after >= 0 ? after : off;
    return 1;
}

static int
same_name(const Arena *a, Name x, Name y)
{
    return x.len == y.len && memcmp(a->buf + x.off, a->buf + y.off, x.len) == 0;
}

typedef struct {
    Name owner;
    PyObject *addr;  /* its text */
} DnsAddr;

typedef struct {
    Name owner, alias;
} DnsCname;

static int
compare_text(const void *x, const void *y)
{
    PyObject *a = *(PyObject *const *)x, *b = *(PyObject *const *)y;
    return strcmp((const char *)PyUnicode_DATA(a), (const char *)PyUnicode_DATA(b));
}

static PyObject *
name_str(const Arena *a, Name n)
{
    return PyUnicode_DecodeASCII(a->buf + n.off, (Py_ssize_t)n.len, NULL);
}

/* capture.dns.parse_response: 1 with *name (str), *answers (tuple of str: the A / AAAA
 * addresses of the name asked and of its CNAME chain, sorted and unique) and *cnames (tuple of
 * str: the chain), 0 for None, -1 with an error. IPv6 answers are written by ``name_of``,
 * remembered in ``names`` (see address_text). */
int
dns_parse(const unsigned char *msg, Py_ssize_t len, PyObject *names, PyObject *name_of,
          PyObject **name_out, PyObject **answers_out, PyObject **cnames_out)
{
    *name_out = *answers_out = *cnames_out = NULL;
    if (len < 12) {
        return 0;
    }
    unsigned flags = ((unsigned)msg[2] << 8) | msg[3];
    if (!(flags & 0x8000) || ((flags >> 11) & 0xF) != 0) {  /* QR = response, QUERY */
        return 0;
    }
    unsigned qdcount = ((unsigned)msg[4] << 8) | msg[5];
    unsigned ancount = ((unsigned)msg[6] << 8) | msg[7];
    if (qdcount == 0 || qdcount > DNS_MAX_RECORDS || ancount > DNS_MAX_RECORDS) {
        return 0;
    }
    Arena a = {NULL, 0, 0};
    DnsAddr addrs[DNS_MAX_RECORDS];
    DnsCname cnames[DNS_MAX_RECORDS];
    int naddrs = 0, ncnames = 0, result = -1;
    Name qname = {0, 0}, chain[DNS_MAX_JUMPS + 2];
    int nchain = 0;
    PyObject *found[DNS_MAX_RECORDS];
    int nfound = 0;
    Py_ssize_t off = 12;
    for (unsigned i = 0; i < qdcount; i++) {
        Name got;
        Py_ssize_t after;
        int r = dns_name(msg, len, off, &a, &got, &after);
        if (r <= 0) {
            result = r;
            goto done;
        }
        if (i == 0) {
            qname = got;
        }
        off = after + 4;
    }
    if (off > len) {
        result = 0;
        goto done;
    }
    for (unsigned i = 0; i < ancount; i++) {
        Name owner;
        Py_ssize_t after;
        int r = dns_name(msg, len, off, &a, &owner, &after);
        if (r < 0) {
            goto done;
        }
        if (r == 0) {
            break;  /* keep what was read before a truncated record */
        }
        off = after;
        if (off + 10 > len) {
            break;
        }
        unsigned rtype = ((unsigned)msg[off] << 8) | msg[off + 1];
        unsigned rclass = ((unsigned)msg[off + 2] << 8) | msg[off + 3];
        Py_ssize_t rdlen = ((Py_ssize_t)msg[off + 8] << 8) | msg[off + 9];
        Py_ssize_t rdata = off + 10;
        off = rdata + rdlen;
        if (off > len) {
            break;
        }
        if (rclass != DNS_CLASS_IN) {
            continue;
        }
        if ((rtype == DNS_TYPE_A && rdlen == 4) || (rtype == DNS_TYPE_AAAA && rdlen == 16)) {
            PyObject *text = address_text(msg + rdata, rdlen, names, name_of);
            if (text == NULL) {
                goto done;
            }
            if (!PyUnicode_IS_ASCII(text)) {
                Py_DECREF(text);
                PyErr_SetString(PyExc_ValueError, "address text is not ASCII");
                goto done;
            }
            addrs[naddrs].owner = owner;
            addrs[naddrs++].addr = text;
        } else if (rtype == DNS_TYPE_CNAME) {
            Name alias;
            Py_ssize_t alias_after;
            r = dns_name(msg, len, rdata, &a, &alias, &alias_after);
            if (r < 0) {
                goto done;
            }
            int known = 0;  /* cname_of.setdefault(owner, alias): the first one counts */
            for (int j = 0; j < ncnames && !known; j++) {
                known = same_name(&a, cnames[j].owner, owner);
            }
            if (r == 1 && !known) {
                cnames[ncnames].owner = owner;
                cnames[ncnames++].alias = alias;
            }
        }
    }
    /* Follow the CNAME chain from the name asked. */
    chain[nchain++] = qname;
    while (nchain <= DNS_MAX_JUMPS) {
        int j = 0;
        while (j < ncnames && !same_name(&a, cnames[j].owner, chain[nchain - 1])) {
            j++;
        }
        if (j == ncnames) {
            break;
        }
        Name target = cnames[j].alias;
        int seen = 0;
        for (int k = 0; k < nchain && !seen; k++) {
            seen = same_name(&a, chain[k], target);
        }
        if (seen) {
            break;
        }
        chain[nchain++] = target;
    }
    for (int i = 0; i < naddrs; i++) {
        for (int k = 0; k < nchain; k++) {
            if (same_name(&a, addrs[i].owner, chain[k])) {
                found[nfound++] = addrs[i].addr;
                break;
            }
        }
    }
    qsort(found, (size_t)nfound, sizeof(PyObject *), compare_text);
    int unique = 0;
    for (int i = 0; i < nfound; i++) {
        if (unique == 0 || compare_text(&found[unique - 1], &found[i]) != 0) {
            found[unique++] = found[i];
        }
    }
    *name_out = name_str(&a, qname);
    *answers_out = PyTuple_New(unique);
    *cnames_out = PyTuple_New(nchain - 1);
    if (*name_out == NULL || *answers_out == NULL || *cnames_out == NULL) {
        goto done;
    }
    for (int i = 0; i < unique; i++) {
        PyTuple_SET_ITEM(*answers_out, i, Py_NewRef(found[i]));
    }
    for (int k = 1; k < nchain; k++) {
        PyObject *s = name_str(&a, chain[k]);
        if (s == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(*cnames_out, k - 1, s);
    }
    result = 1;
done:
    for (int i = 0; i < naddrs; i++) {
        Py_DECREF(addrs[i].addr);
    }
    if (result != 1) {
        Py_CLEAR(*name_out);
        Py_CLEAR(*answers_out);
        Py_CLEAR(*cnames_out);
    }
    PyMem_Free(a.buf);
    return result;
}

/* parse_dns(msg: bytes, name_of) -> (name, answers, cnames) | None: dns_parse, for the tests
 * that hold it equal to capture.dns.parse_response. */
PyObject *
fastparse_parse_dns(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_dns(msg: bytes, name_of)");
        return NULL;
    }
    PyObject *names = PyDict_New();
    if (names == NULL) {
        return NULL;
    }
    PyObject *name, *answers, *cnames;
    int r = dns_parse((const unsigned char *)PyBytes_AS_STRING(args[0]),
                      PyBytes_GET_SIZE(args[0]), names, args[1], &name, &answers, &cnames);
    Py_DECREF(names);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyTuple_Pack(3, name, answers, cnames);
    Py_DECREF(name);
    Py_DECREF(answers);
    Py_DECREF(cnames);
    return result;
}

/* capture._fastloop: what its C files share (see _fastloop.c for the whole design).
 *
 *   _fastloop.c   the module, the packet loop (Loop) and the pcapng converter (epb_run)
 *   _fastflows.c  the native flow store (Flows): storage, index, handing flows to Python
 *   _fastparse.c  TLS ClientHello and DNS response parsers (mirrors of capture.tls, capture.dns)
 *   _fastwrite.c  the flow-file lines of native flows, in the file's order
 */
#ifndef CAPTURE_FASTLOOP_H
#define CAPTURE_FASTLOOP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define MAX_PORTS 16
#define KEY_MAX 36  /* an IPv6 flow key: two addresses and two ports */

/* The slots of capture.table.FlowState (all of them: a new flow sets every one). */
enum {
    F_A, F_A_ADDR, F_A_PORT, F_B, F_B_ADDR, F_B_PORT, F_CLIENT_IS_A, F_CLOSED, F_DIRECTION,
    F_DNS, F_FIRST, F_LAST, F_OUTER, F_PROBE_LEFT, F_PROTO, F_RESETS, F_SLOW, F_SNI, F_SYN,
    F_SYN_SEQ, F_SYNACK, F_TLS, F_TLS_BUF, F_TLS_LEFT, F_TLS_NEXT, F_TUNNEL, F_COUNT
};
/* The slots of capture.table.Half. */
enum { H_BYTES, H_FLOW, H_IS_A, H_PACKETS, H_COUNT };

enum { DIR_FIRST = 0, DIR_PORTS = 1, DIR_HANDSHAKE = 2 };
enum { NF_FREE = 0, NF_LIVE = 1, NF_DONE = 2 };  /* NFlow.state */

/* One native flow: what capture.table.FlowState holds, as plain integers (120 bytes). A is the
 * end that sent its first packet; ``key`` is A's key (a_addr + b_addr + a_port + b_port). */
typedef struct NFlow {
    int64_t first, last;
    uint64_t packets[2], bytes[2]; /* [0]: sent by A, [1]: by B */
    uint64_t resets;
    PyObject *sni;                 /* interned str, or NULL for None */
    union {
        uint32_t syn_seq;          /* the sequence number of the last SYN, when ``syn`` */
        uint32_t next_free;        /* NF_FREE: the next free slot + 1 (0: none) */
    } u;
    unsigned char key[KEY_MAX];
    uint8_t alen, proto, state, client_is_a, syn, synack, closed, tls, direction, dns;
    int16_t probe_left, tls_left;
} NFlow;

/* (The index and the writer hold a flow's number in 32 bits; the size is what the module's
 * docstrings and the tests count on.) */
_Static_assert(sizeof(NFlow) <= 120, "a native flow grew");

#define CHUNK_SHIFT 12
#define CHUNK_FLOWS (1u << CHUNK_SHIFT)
#define MAX_FLOWS 0x7FFFFFF0u

struct SortRec;

/* The native flow store of one capture.table.FlowTable (its ``native``): see _fastflows.c. */
typedef struct Flows {
    PyObject_HEAD
    NFlow **chunks;                /* CHUNK_FLOWS flows each; flow id = chunk << SHIFT | slot */
    Py_ssize_t nchunks, chunk_cap;
    uint32_t nused;                /* slots handed out so far (free ones included) */
    uint32_t free_head;            /* first free slot + 1, 0: none */
    Py_ssize_t nlive, ndone;       /* flows in the index / ended (idle, reopened) */
    uint32_t *index;               /* open addressing, flow id + 1 per entry, 0: empty */
    size_t icap;
    uint64_t seed;
    int64_t idle;
    PyObject *tcp, *udp;           /* the table's dicts: key -> Half */
    PyObject *dns;                 /* the table's DNS answers: key -> first time */
    PyObject *names;               /* the table's address text cache: raw -> str */
    PyObject *name_of;             /* raw IPv6 address -> its text (capture.table) */
    PyObject *snis;                /* SNI strings, interned: str -> str */
    PyTypeObject *flow_type, *half_type;
    Py_ssize_t foff[F_COUNT], hoff[H_COUNT];
    PyObject *dir_text[3];         /* the ``direction`` values, by DIR_* */
    PyObject *tcp_name, *udp_name; /* the ``proto`` values of TCP and UDP */
    long probe_packets, probe_segments, preamble_max, max_client_hello;
    long well_known, ephemeral;
    int dns_ports[MAX_PORTS], ndns;
    int tunnel_ports[MAX_PORTS], ntunnel;
    int running;                   /* a Loop is folding into it: no writing */
    /* Writing (_fastwrite.c): the flows sorted, and the texts of their IPv6 addresses. */
    struct SortRec *order;
    Py_ssize_t norder, pos;
    PyObject **texts;              /* IPv6 address texts (str), by number */
    Py_ssize_t ntexts;
    char *line;                    /* scratch for one line */
    size_t linecap;
} Flows;

extern PyTypeObject FlowsType;

#define SLOT(o, offset) (*(PyObject **)((char *)(o) + (offset)))

static inline NFlow *
flow_at(const Flows *s, uint32_t fid)
{
    return &s->chunks[fid >> CHUNK_SHIFT][fid & (CHUNK_FLOWS - 1)];
}

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

/* The hash of one end (address + port) of a flow key. */
static inline uint64_t
end_hash(uint64_t seed, const unsigned char *addr, Py_ssize_t alen, const unsigned char *port)
{
    uint64_t p = ((uint64_t)port[0] << 8) | port[1];
    if (alen == 4) {
        uint32_t a;
        memcpy(&a, addr, 4);
        return mix64(seed ^ ((uint64_t)a << 16) ^ p);
    }
    uint64_t w0, w1;
    memcpy(&w0, addr, 8);
    memcpy(&w1, addr + 8, 8);
    return mix64(mix64(seed ^ w0) ^ w1 ^ (p << 48));
}

/* The hash of a flow key, the same for both directions (one index entry per flow). */
static inline uint64_t
key_hash(const Flows *s, int proto, const unsigned char *k, Py_ssize_t alen)
{
    uint64_t a = end_hash(s->seed, k, alen, k + 2 * alen);
    uint64_t b = end_hash(s->seed, k + alen, alen, k + 2 * alen + 2);
    return mix64(a + b + (uint64_t)proto * 0x9E3779B97F4A7C15ULL + (uint64_t)alen);
}

/* Flow keys ``a`` and ``b`` (of ``alen``-byte addresses) are equal. */
static inline int
key_equal(const unsigned char *a, const unsigned char *b, Py_ssize_t alen)
{
    if (alen == 4) {
        uint64_t x, y;
        uint32_t u, v;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&u, a + 8, 4);
        memcpy(&v, b + 8, 4);
        return x == y && u == v;
    }
    return memcmp(a, b, KEY_MAX) == 0;
}

/* Key ``k`` is flow key ``fk`` read the other way (dst + src + dport + sport). */
static inline int
is_reverse(const unsigned char *fk, const unsigned char *k, Py_ssize_t alen)
{
    const unsigned char *fp = fk + 2 * alen, *kp = k + 2 * alen;
    if (!(fp[0] == kp[2] && fp[1] == kp[3] && fp[2] == kp[0] && fp[3] == kp[1])) {
        return 0;
    }
    if (alen == 4) {
        uint32_t a, b, c, d;
        memcpy(&a, fk, 4);
        memcpy(&b, fk + 4, 4);
        memcpy(&c, k, 4);
        memcpy(&d, k + 4, 4);
        return a == d && b == c;
    }
    return memcmp(fk, k + 16, 16) == 0 && memcmp(fk + 16, k, 16) == 0;
}

/* The live native flow of a packet with key ``k`` (``alen``-byte addresses) of ``proto``
 * whose key_hash is ``h``, and which end sent it (*is_a: 1 for A); -1 when there is none. */
static inline int64_t
flows_find_hashed(const Flows *s, int proto, const unsigned char *k, Py_ssize_t alen,
                  uint64_t h, int *is_a)
{
    if (s->nlive == 0) {
        return -1;
    }
    size_t mask = s->icap - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        uint32_t e = s->index[i];
        if (e == 0) {
            return -1;
        }
        const NFlow *f = flow_at(s, e - 1);
        if (f->proto == proto && f->alen == alen) {
            if (key_equal(f->key, k, alen)) {
                *is_a = 1;
                return e - 1;
            }
            if (is_reverse(f->key, k, alen)) {
                *is_a = 0;
                return e - 1;
            }
        }
        i = (i + 1) & mask;
    }
}

static inline int64_t
flows_find(const Flows *s, int proto, const unsigned char *k, Py_ssize_t alen, int *is_a)
{
    return flows_find_hashed(s, proto, k, alen, key_hash(s, proto, k, alen), is_a);
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

/* _fastflows.c */
int64_t flows_new(Flows *s, int proto, const unsigned char *k, Py_ssize_t alen, int64_t t);
void flows_end(Flows *s, uint32_t fid);
PyObject *flows_materialize(Flows *s, uint32_t fid, int is_a, PyObject *done);
PyObject *flows_address_text(Flows *s, const unsigned char *addr, Py_ssize_t alen);
int flows_add_dns(Flows *s, const unsigned char *src, const unsigned char *dst,
                  Py_ssize_t alen, const unsigned char *msg, Py_ssize_t len, int64_t t);

/* _fastparse.c */
static inline int
looks_like_client_hello(const unsigned char *p, Py_ssize_t len)
{
    /* capture.tls.looks_like_client_hello: probe_client_hello says "not a hello" exactly
     * when this is false, so a segment that fails it needs no parsing. */
    return len >= 6 && p[0] == 0x16 && p[1] == 3 && p[2] <= 4 && p[5] == 1;
}
Py_ssize_t proxy_header_length(const unsigned char *p, Py_ssize_t len);
int probe_client_hello(const unsigned char *d, Py_ssize_t len, int *need_more, PyObject **sni);
int dns_parse(const unsigned char *msg, Py_ssize_t len, PyObject *names, PyObject *name_of,
              PyObject **name, PyObject **answers, PyObject **cnames);
PyObject *address_text(const unsigned char *addr, Py_ssize_t alen, PyObject *names,
                       PyObject *name_of);
PyObject *fastparse_parse_dns(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _fastwrite.c */
double ns_seconds(int64_t ns);
PyObject *Flows_sort(Flows *s, PyObject *ignored);
PyObject *Flows_count(Flows *s, PyObject *const *args, Py_ssize_t nargs);
PyObject *Flows_lines(Flows *s, PyObject *const *args, Py_ssize_t nargs);
void flows_forget_order(Flows *s);
PyObject *fastwrite_seconds(PyObject *module, PyObject *arg);
PyObject *fastwrite_seconds_text(PyObject *module, PyObject *arg);

#endif

/* capture._fastloop: the "plain hit" branch of capture.pcapfast.read_classic, in C.
 *
 * Optional accelerator: read_classic works the same without it. Loop(...).run(buf, off, blen, n)
 * counts consecutive records of a classic pcap buffer that are plain hits -- a TCP / UDP packet
 * (IPv4 without options or fragmentation, or IPv6 without extension headers) of a known half
 * flow whose flow is not ``slow``, no FIN / SYN / RST, and 0 <= t - flow.last <= idle -- doing
 * exactly what the Python loop does for them (h.packets += 1; h.bytes += iplen; fl.last = t),
 * and returns (off, n) at the first record that is anything else, or whose fixed-size prefix or
 * whole record is not in the buffer: the Python loop handles that record, then calls run again.
 * Field offsets and checks mirror the structs of pcapfast._layout byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

static PyObject *s_flow, *s_slow, *s_last, *s_packets, *s_bytes;

/* Direct access to __slots__ members (object pointers at a fixed offset) of one exact type;
 * types not known here go through the generic attribute protocol. */
typedef struct {
    PyTypeObject *type; /* strong reference, NULL: not resolved */
    Py_ssize_t off[3];
} SlotCache;

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
    PyObject *tcp;       /* dict */
    PyObject *udp;       /* dict */
    SlotCache half;      /* flow, packets, bytes */
    SlotCache flow;      /* slow, last */
    int half_ok, flow_ok; /* -1: type unsuitable for direct access */
} Loop;

static Py_ssize_t
member_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *d = PyObject_GetAttr((PyObject *)type, name);
    Py_ssize_t r = -1;
    if (d == NULL) {
        PyErr_Clear();
        return -1;
    }
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) {
            r = m->offset;
        }
    }
    Py_DECREF(d);
    return r;
}

/* 1: direct slot access for this exact type; 0: generic getattr/setattr. */
static int
resolve(SlotCache *c, int *ok, PyTypeObject *type, PyObject **names, int count)
{
    if (c->type == type) {
        return *ok == 1;
    }
    Py_XSETREF(c->type, (PyTypeObject *)Py_NewRef(type));
    *ok = 1;
    for (int i = 0; i < count; i++) {
        c->off[i] = member_offset(type, names[i]);
        if (c->off[i] < 0) {
            *ok = -1;
        }
    }
    return *ok == 1;
}

#define SLOT(o, offset) (*(PyObject **)((char *)(o) + (offset)))

/* New reference to the attribute, or NULL with or without an error set. */
static inline PyObject *
get_attr(PyObject *o, int direct, Py_ssize_t offset, PyObject *name)
{
    if (direct) {
        PyObject *v = SLOT(o, offset);
        if (v == NULL) {
            PyErr_SetObject(PyExc_AttributeError, name);
            return NULL;
        }
        return Py_NewRef(v);
    }
    return PyObject_GetAttr(o, name);
}

/* Steals v. */
static inline int
set_attr(PyObject *o, int direct, Py_ssize_t offset, PyObject *name, PyObject *v)
{
    if (direct) {
        PyObject *old = SLOT(o, offset);
        SLOT(o, offset) = v;
        Py_XDECREF(old);
        return 0;
    }
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* o + k for a Python int o: exact, like o += k in Python. New reference. */
static inline PyObject *
add_int(PyObject *o, long long k)
{
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        long long r;
        if (!overflow && !(v == -1 && PyErr_Occurred()) && !__builtin_add_overflow(v, k, &r)) {
            return PyLong_FromLongLong(r);
        }
        PyErr_Clear();
    }
    PyObject *kk = PyLong_FromLongLong(k);
    if (kk == NULL) {
        return NULL;
    }
    PyObject *r = PyNumber_Add(o, kk);
    Py_DECREF(kk);
    return r;
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

static PyObject *
Loop_run(Loop *self, PyObject *const *args, Py_ssize_t nargs)
{
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
    if (off < 0 || blen < 0 || blen > PyByteArray_GET_SIZE(args[0])) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)PyByteArray_AS_STRING(args[0]);
    const int swapped = self->swapped;
    const Py_ssize_t link = self->link, eoff = self->eoff;
    const Py_ssize_t mincap = link + 34, mincap6 = link + 54;
    const Py_ssize_t last_fast = blen - self->fsize;
    PyObject *half_names[3] = {s_flow, s_packets, s_bytes};
    PyObject *flow_names[2] = {s_slow, s_last};

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
        Py_ssize_t klen, iplen;
        int proto, flags;
        if (memcmp(p + 16 + eoff, self->v4, (size_t)self->v4len) == 0 && ip[0] == 0x45
            && caplen >= (uint32_t)mincap && !(((ip[6] & 0x3F) << 8) | ip[7])) {
            iplen = (ip[2] << 8) | ip[3];
            if (ip[9] == 6) {
                if (iplen < 40) break;
            } else if (ip[9] == 17) {
                if (iplen < 28) break;
            } else {
                break;
            }
            proto = ip[9];
            key = ip + 12;
            klen = 12;
            flags = ip[33];
        } else if (self->v6len >= 0
                   && memcmp(p + 16 + eoff, self->v6, (size_t)self->v6len) == 0
                   && caplen >= (uint32_t)mincap6) {
            Py_ssize_t plen = (ip[4] << 8) | ip[5];
            if ((ip[0] & 0xF0) != 0x60 || plen == 0) {
                break;
            }
            iplen = plen + 40;
            if (ip[6] == 6) {
                if (iplen < 60) break;
            } else if (ip[6] == 17) {
                if (iplen < 48) break;
            } else {
                break;
            }
            proto = ip[6];
            key = ip + 8;
            klen = 36;
            flags = ip[53];
        } else {
            break;
        }
        if (proto == 6 && (flags & 7)) {
            break;
        }
        PyObject *k = PyBytes_FromStringAndSize((const char *)key, klen);
        if (k == NULL) {
            return NULL;
        }
        PyObject *h = PyDict_GetItemWithError(proto == 6 ? self->tcp : self->udp, k);
        Py_DECREF(k);
        if (h == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            break;
        }
        Py_INCREF(h);
        int hd = resolve(&self->half, &self->half_ok, Py_TYPE(h), half_names, 3);
        PyObject *fl = get_attr(h, hd, self->half.off[0], s_flow);
        if (fl == NULL) {
            Py_DECREF(h);
            return NULL;
        }
        int fd = resolve(&self->flow, &self->flow_ok, Py_TYPE(fl), flow_names, 2);
        PyObject *slow = get_attr(fl, fd, self->flow.off[0], s_slow);
        int is_slow = slow == NULL ? -1 : (slow == Py_False ? 0 : PyObject_IsTrue(slow));
        Py_XDECREF(slow);
        if (is_slow != 0) {
            Py_DECREF(fl);
            Py_DECREF(h);
            if (is_slow < 0) {
                return NULL;
            }
            break;
        }
        PyObject *lastobj = get_attr(fl, fd, self->flow.off[1], s_last);
        if (lastobj == NULL) {
            Py_DECREF(fl);
            Py_DECREF(h);
            return NULL;
        }
        int overflow = 0;
        long long last = PyLong_CheckExact(lastobj)
                             ? PyLong_AsLongLongAndOverflow(lastobj, &overflow) : 0;
        int exact = PyLong_CheckExact(lastobj) && !overflow;
        Py_DECREF(lastobj);
        int64_t d;
        if (!exact || __builtin_sub_overflow(t, (int64_t)last, &d) || d < 0 || d > self->idle) {
            /* Not an exact int64 (Python decides), or idle / backwards: not a plain hit. */
            PyErr_Clear();
            Py_DECREF(fl);
            Py_DECREF(h);
            break;
        }
        /* h.packets += 1; h.bytes += iplen; fl.last = t */
        PyObject *v = get_attr(h, hd, self->half.off[1], s_packets);
        PyObject *nv = v == NULL ? NULL : add_int(v, 1);
        Py_XDECREF(v);
        if (nv == NULL || set_attr(h, hd, self->half.off[1], s_packets, nv) < 0) {
            goto fail;
        }
        v = get_attr(h, hd, self->half.off[2], s_bytes);
        nv = v == NULL ? NULL : add_int(v, iplen);
        Py_XDECREF(v);
        if (nv == NULL || set_attr(h, hd, self->half.off[2], s_bytes, nv) < 0) {
            goto fail;
        }
        nv = PyLong_FromLongLong(t);
        if (nv == NULL || set_attr(fl, fd, self->flow.off[1], s_last, nv) < 0) {
            goto fail;
        }
        Py_DECREF(fl);
        Py_DECREF(h);
        off = nxt;
        n++;
        continue;
    fail:
        Py_DECREF(fl);
        Py_DECREF(h);
        return NULL;
    }
    return Py_BuildValue("(nn)", off, n);
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
    static char *kwlist[] = {"little", "nano", "link", "eoff", "v4_proto", "v6_proto", "idle",
                             "tcp", "udp", NULL};
    int little, nano;
    Py_ssize_t link, eoff;
    PyObject *v4, *v6, *tcp, *udp;
    long long idle;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ppnnOOLO!O!", kwlist, &little, &nano, &link,
                                     &eoff, &v4, &v6, &idle, &PyDict_Type, &tcp, &PyDict_Type,
                                     &udp)) {
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
    self->swapped = little;
    self->mult = nano ? 1 : 1000;
    self->idle = idle;
    self->link = link;
    self->eoff = eoff;
    self->fsize = 16 + link + 34;
    Py_XSETREF(self->tcp, Py_NewRef(tcp));
    Py_XSETREF(self->udp, Py_NewRef(udp));
    return 0;
}

static int
Loop_traverse(Loop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tcp);
    Py_VISIT(self->udp);
    Py_VISIT(self->half.type);
    Py_VISIT(self->flow.type);
    return 0;
}

static int
Loop_clear(Loop *self)
{
    Py_CLEAR(self->tcp);
    Py_CLEAR(self->udp);
    Py_CLEAR(self->half.type);
    Py_CLEAR(self->flow.type);
    return 0;
}

static void
Loop_dealloc(Loop *self)
{
    PyObject_GC_UnTrack(self);
    Loop_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Loop_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Loop_run, METH_FASTCALL,
     "run(buf, off, blen, n) -> (off, n): count the plain hits from off on."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "capture._fastloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Loop(little, nano, link, eoff, v4_proto, v6_proto, idle, tcp, udp)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_traverse = (traverseproc)Loop_traverse,
    .tp_clear = (inquiry)Loop_clear,
    .tp_methods = Loop_methods,
};

static struct PyModuleDef fastloop_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "capture._fastloop",
    .m_doc = "The plain-hit loop of capture.pcapfast.read_classic, in C (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastloop(void)
{
    if ((s_flow = PyUnicode_InternFromString("flow")) == NULL
        || (s_slow = PyUnicode_InternFromString("slow")) == NULL
        || (s_last = PyUnicode_InternFromString("last")) == NULL
        || (s_packets = PyUnicode_InternFromString("packets")) == NULL
        || (s_bytes = PyUnicode_InternFromString("bytes")) == NULL) {
        return NULL;
    }
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

/* capture._jsonlines: one pass over a run of JSON Lines that says whether a typed decoder
 * (msgspec's ``Decoder.decode_lines``) reads it exactly as orjson reads it line by line.
 *
 * Optional accelerator of capture.sources.hubble_fast: without it (or without msgspec) the
 * Hubble source reads every line with orjson. decode_lines differs from "orjson, one line at a
 * time" in ways that matter for the one-line error a bad record must give:
 *
 *   - it reads several values on one line, and a value spread over several lines, where
 *     orjson rejects the line;
 *   - it does not check the UTF-8 of the fields it skips, nor the magnitude of their numbers
 *     (orjson rejects a number that is infinite as a double: 1.8e308, 400 digits).
 *
 * scan(buf) walks the JSON tokens outside and inside strings (not validating them: the
 * decoder does that) and returns (newlines, values, suspect, non_ascii):
 *
 *   newlines   the number of '\n' in buf;
 *   values     the number of top-level values that start in buf;
 *   suspect    a line holds more than one value, a value runs over a line end, a string or
 *              value is not closed at the end of buf, nesting is deeper than MAX_DEPTH, or a
 *              number token has more than MAX_DIGITS digits or an exponent of 3 or more
 *              digits -- anything the caller must leave to the line-by-line reader;
 *   non_ascii  a byte >= 0x80 occurs (the caller then checks that buf is UTF-8).
 *
 * Being conservative is free: a suspect run is read line by line, which is exact.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_DEPTH 256
#define MAX_DIGITS 19

/* Bytes that end the plain run of a string: the quote, the escape, a line end, non-ASCII. */
static unsigned char string_stop[256];
/* Bytes outside strings that scan looks at (the rest -- ':', ',', white space -- it passes). */
static unsigned char token_start[256];

static void
init_tables(void)
{
    for (int c = 0; c < 256; c++) {
        string_stop[c] = c == '"' || c == '\\' || c == '\n' || c >= 0x80;
        token_start[c] = c == '"' || c == '-' || (c >= '0' && c <= '9') || c == '{' ||
                         c == '[' || c == '}' || c == ']' || c == '\n' || c == 't' ||
                         c == 'f' || c == 'n' || c >= 0x80;
    }
}

static PyObject *
scan(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    Py_ssize_t i = 0, newlines = 0, values = 0;
    int depth = 0, line_value = 0, suspect = 0, non_ascii = 0;

    Py_BEGIN_ALLOW_THREADS
    while (i < n) {
        unsigned char c = p[i];
        if (!token_start[c]) {
            i++;
            continue;
        }
        if (c == '"') {
            if (depth == 0) {
                suspect |= line_value;
                line_value = 1;
                values++;
            }
            i++;
            for (;;) {
                while (i < n && !string_stop[p[i]])
                    i++;
                if (i >= n) {
                    suspect = 1; /* not closed */
                    break;
                }
                c = p[i];
                if (c == '"') {
                    i++;
                    break;
                }
                if (c == '\\') {
                    i += 2;
                    continue;
                }
                if (c == '\n') {
                    suspect = 1; /* a raw line end in a string: leave it to the line reader */
                    break;
                }
                non_ascii |= c >= 0x80;
                i++;
            }
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            int digits = 0, exponent = 0;
            if (depth == 0) {
                suspect |= line_value;
                line_value = 1;
                values++;
            }
            if (c == '-')
                i++;
            while (i < n && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.')) {
                digits += p[i] != '.';
                i++;
            }
            if (i < n && (p[i] == 'e' || p[i] == 'E')) {
                i++;
                if (i < n && (p[i] == '+' || p[i] == '-'))
                    i++;
                while (i < n && p[i] >= '0' && p[i] <= '9') {
                    exponent++;
                    i++;
                }
            }
            suspect |= digits > MAX_DIGITS || exponent >= 3;
            continue;
        }
        switch (c) {
        case '{':
        case '[':
            if (depth == 0) {
                suspect |= line_value;
                line_value = 1;
                values++;
            }
            if (++depth > MAX_DEPTH)
                suspect = 1;
            break;
        case '}':
        case ']':
            if (--depth < 0) {
                suspect = 1;
                depth = 0;
            }
            break;
        case '\n':
            newlines++;
            suspect |= depth != 0;
            line_value = 0;
            break;
        case 't':
        case 'f':
        case 'n':
            if (depth == 0) {
                suspect |= line_value;
                line_value = 1;
                values++;
            }
            while (i + 1 < n && p[i + 1] >= 'a' && p[i + 1] <= 'z')
                i++;
            break;
        default:
            non_ascii |= c >= 0x80;
            break;
        }
        i++;
    }
    suspect |= depth != 0;
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return Py_BuildValue("nnOO", newlines, values, suspect ? Py_True : Py_False,
                         non_ascii ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O,
     "scan(buf) -> (newlines, values, suspect, non_ascii): see the module's source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "capture._jsonlines",
    "Checks that a run of JSON Lines reads the same typed-decoded as line by line.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__jsonlines(void)
{
    init_tables();
    return PyModule_Create(&module);
}

/*
 * globals.c -- what the globals named in a pickle become.
 *
 * Python would import and call them; pthcv looks the name up in a table of
 * known constructors (torch's tensor rebuilders, OrderedDict, numpy arrays,
 * set, complex, bytes...) and builds the value they would have built from
 * the arguments alone. Any other name becomes an inert OBJECT that records
 * the class or function and its arguments. A short list of globals that can
 * run code is refused before any of this is reached (pickle.c, do_global).
 */
#include "reader.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CALL_FAIL(p, name, fmt, ...) \
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: %s: " fmt, PK_WHERE(p), pthcv_esc(name), ##__VA_ARGS__)

/* Python 2 module names as Python 3's unpickler reads them (fix_imports:
 * _compat_pickle.IMPORT_MAPPING), sorted by the Python 2 name in strcmp
 * order (pthcv_reader_tables_check). */
static const struct {
    const char *py2, *py3;
} py2_modules[] = {
    {"BaseHTTPServer", "http.server"},
    {"CGIHTTPServer", "http.server"},
    {"ConfigParser", "configparser"},
    {"Cookie", "http.cookies"},
    {"Dialog", "tkinter.dialog"},
    {"DocXMLRPCServer", "xmlrpc.server"},
    {"FileDialog", "tkinter.filedialog"},
    {"HTMLParser", "html.parser"},
    {"Queue", "queue"},
    {"ScrolledText", "tkinter.scrolledtext"},
    {"SimpleDialog", "tkinter.simpledialog"},
    {"SimpleHTTPServer", "http.server"},
    {"SimpleXMLRPCServer", "xmlrpc.server"},
    {"SocketServer", "socketserver"},
    {"StringIO", "io"},
    {"Tix", "tkinter.tix"},
    {"Tkconstants", "tkinter.constants"},
    {"Tkdnd", "tkinter.dnd"},
    {"Tkinter", "tkinter"},
    {"UserDict", "collections"},
    {"UserList", "collections"},
    {"UserString", "collections"},
    {"__builtin__", "builtins"},
    {"_abcoll", "collections.abc"},
    {"_elementtree", "xml.etree.ElementTree"},
    {"_winreg", "winreg"},
    {"anydbm", "dbm"},
    {"cPickle", "pickle"},
    {"cStringIO", "io"},
    {"commands", "subprocess"},
    {"cookielib", "http.cookiejar"},
    {"copy_reg", "copyreg"},
    {"dbhash", "dbm.bsd"},
    {"dbm", "dbm.ndbm"},
    {"dumbdbm", "dbm.dumb"},
    {"dummy_thread", "_dummy_thread"},
    {"exceptions", "builtins"},
    {"gdbm", "dbm.gnu"},
    {"htmlentitydefs", "html.entities"},
    {"httplib", "http.client"},
    {"markupbase", "_markupbase"},
    {"repr", "reprlib"},
    {"robotparser", "urllib.robotparser"},
    {"test.test_support", "test.support"},
    {"thread", "_thread"},
    {"tkColorChooser", "tkinter.colorchooser"},
    {"tkCommonDialog", "tkinter.commondialog"},
    {"tkFileDialog", "tkinter.filedialog"},
    {"tkFont", "tkinter.font"},
    {"tkMessageBox", "tkinter.messagebox"},
    {"tkSimpleDialog", "tkinter.simpledialog"},
    {"ttk", "tkinter.ttk"},
    {"urllib2", "urllib.request"},
    {"urlparse", "urllib.parse"},
    {"whichdb", "dbm"},
    {"xmlrpclib", "xmlrpc.client"},
};

/* Python 2 names that Python 3 finds in another module than the renamed one
 * (_compat_pickle.NAME_MAPPING: the moves into modules treated here). */
static const struct {
    const char *module, *name, *py3;
} py2_moves[] = {
    {"__builtin__", "intern", "sys"},
    {"__builtin__", "reduce", "functools"},
    {"_socket", "fromfd", "socket"},
};

static int cmp_py2(const void *key, const void *entry) { return strcmp(key, *(const char *const *)entry); }

const char *pthcv_py3_module(const char *module, const char *name)
{
    for (size_t i = 0; i < sizeof py2_moves / sizeof *py2_moves; i++)
        if (!strcmp(module, py2_moves[i].module) && !strcmp(name, py2_moves[i].name)) return py2_moves[i].py3;
    const char *const *e = bsearch(module, py2_modules, sizeof py2_modules / sizeof *py2_modules, sizeof *py2_modules,
                                   cmp_py2);
    return e ? e[1] : module;
}

/* Modules whose every member can reach the OS or the interpreter. A module
 * matches itself and its submodules ("os" matches "os.path"). pydoc.locate
 * and pkgutil.resolve_name return any object by its dotted name. */
static const char *const unsafe_modules[] = {"os",
                                             "posix",
                                             "nt",
                                             "subprocess",
                                             "sys",
                                             "runpy",
                                             "socket",
                                             "shutil",
                                             "pty",
                                             "commands",
                                             "popen2",
                                             "importlib",
                                             "imp",
                                             "ctypes",
                                             "marshal",
                                             "pickle",
                                             "_pickle",
                                             "cPickle",
                                             "dill",
                                             "code",
                                             "codeop",
                                             "webbrowser",
                                             "multiprocessing",
                                             "signal",
                                             "asyncio",
                                             "_posixsubprocess",
                                             "pdb",
                                             "bdb",
                                             "timeit",
                                             "types",
                                             "platform",
                                             "ssl",
                                             "http",
                                             "urllib",
                                             "urllib2",
                                             "ftplib",
                                             "telnetlib",
                                             "smtplib",
                                             "posixpath",
                                             "ntpath",
                                             "glob",
                                             "tempfile",
                                             "io",
                                             "_io",
                                             "pathlib",
                                             "zipimport",
                                             "pydoc",
                                             "pkgutil",
                                             "shelve",
                                             "dbm",
                                             "socketserver",
                                             "xmlrpc",
                                             "_socket",
                                             "_dummy_thread",
                                             "numpy.testing",
                                             "torch.hub",
                                             "torch.serialization",
                                             "torch.jit",
                                             "torch._C",
                                             "torch.utils.cpp_extension",
                                             "torch.package",
                                             "torch._dynamo",
                                             "torch._inductor",
                                             "_thread",
                                             "threading",
                                             "gc",
                                             "inspect",
                                             NULL};

/* Builtins that evaluate code, import, reach attributes or open files. */
static const char *const unsafe_builtins[] = {
    "eval",         "exec",     "execfile", "compile",   "getattr", "setattr",    "delattr",
    "__import__",   "open",     "input",    "raw_input", "globals", "locals",     "vars",
    "breakpoint",   "help",     "file",     "reload",    "apply",   "memoryview", "classmethod",
    "staticmethod", "property", "super",    "type",      "exit",    "quit",       NULL};

/* Single functions of otherwise harmless modules: attribute fetchers and
 * callers are getattr/eval in disguise (also under their C modules' names),
 * and torch.storage._load_from_bytes runs torch.load, without weights_only,
 * on bytes inside the pickle (plain pickle.dumps of a tensor writes it). */
static const struct {
    const char *module, *name;
} unsafe_functions[] = {{"operator", "attrgetter"},
                        {"operator", "methodcaller"},
                        {"_operator", "attrgetter"},
                        {"_operator", "methodcaller"},
                        {"functools", "partial"},
                        {"functools", "reduce"},
                        {"_functools", "partial"},
                        {"_functools", "reduce"},
                        {"codecs", "open"},
                        {"torch", "load"},
                        {"torch", "compile"},
                        {"torch.storage", "_load_from_bytes"},
                        {"numpy", "load"},
                        {"numpy", "fromfile"},
                        {NULL, NULL}};

/* torch.jit._pickle's list builders and type tags are harmless; the rest of
 * torch.jit is not (torch.jit.load would read another archive). */
static int is_jit_pickle(const char *module) { return !strcmp(module, "torch.jit._pickle"); }

/* Module `mod` or a submodule of it starts `path` ("os" starts "os.path"). */
static int in_module(const char *path, const char *mod)
{
    size_t n = strlen(mod);
    return !strncmp(path, mod, n) && (path[n] == 0 || path[n] == '.');
}

/* A dotted name ("Outer.Inner") is looked up attribute by attribute from
 * protocol 4 on, so it can walk from any module to what that module
 * imported ("torch" "hub.os.system", "collections" "_sys.exit") or to a
 * method ("tarfile" "TarFile.extractall"). Only nested classes pass: every
 * part must look like a class name (a capital first letter). */
static int dotted_name_unsafe(const char *name)
{
    if (!strchr(name, '.')) return 0;
    for (const char *part = name; part; part = strchr(part, '.') ? strchr(part, '.') + 1 : NULL)
        if (!(*part >= 'A' && *part <= 'Z')) return 1;
    return 0;
}

int pthcv_global_is_unsafe(const char *module, const char *name)
{
    const char *mod = pthcv_py3_module(module, name);
    if (is_jit_pickle(mod) && !strchr(name, '.')) return 0;
    /* torch.serialization helpers that torch.save itself references */
    if (!strcmp(mod, "torch.serialization") && !strcmp(name, "_get_layout")) return 0;
    if (dotted_name_unsafe(name)) return 1;
    for (const char *const *u = unsafe_modules; *u; u++)
        if (in_module(mod, *u)) return 1;
    if (!strcmp(mod, "builtins")) {
        for (const char *const *u = unsafe_builtins; *u; u++)
            if (!strcmp(name, *u)) return 1;
    }
    for (int i = 0; unsafe_functions[i].module; i++)
        if (!strcmp(mod, unsafe_functions[i].module) && !strcmp(name, unsafe_functions[i].name)) return 1;
    return 0;
}

/* ---- storage types and dtypes ---- */

static const struct {
    const char *name;
    int dtype;
} storage_types[] = {{"FloatStorage", PTHCV_FLOAT32},
                     {"DoubleStorage", PTHCV_FLOAT64},
                     {"HalfStorage", PTHCV_FLOAT16},
                     {"BFloat16Storage", PTHCV_BFLOAT16},
                     {"CharStorage", PTHCV_INT8},
                     {"ShortStorage", PTHCV_INT16},
                     {"IntStorage", PTHCV_INT32},
                     {"LongStorage", PTHCV_INT64},
                     {"ByteStorage", PTHCV_UINT8},
                     {"BoolStorage", PTHCV_BOOL},
                     {"ComplexHalfStorage", PTHCV_COMPLEX32},
                     {"ComplexFloatStorage", PTHCV_COMPLEX64},
                     {"ComplexDoubleStorage", PTHCV_COMPLEX128},
                     {"QInt8Storage", PTHCV_QINT8},
                     {"QUInt8Storage", PTHCV_QUINT8},
                     {"QInt32Storage", PTHCV_QINT32},
                     {"QUInt4x2Storage", PTHCV_QUINT4X2},
                     {"QUInt2x4Storage", PTHCV_QUINT2X4},
                     {"UntypedStorage", -1},
                     {NULL, 0}};

int pthcv_storage_type_dtype(const char *name)
{
    const char *dot = strrchr(name, '.');
    const char *base = dot ? dot + 1 : name;
    for (int i = 0; storage_types[i].name; i++)
        if (!strcmp(base, storage_types[i].name)) return storage_types[i].dtype;
    return -2;
}

/* "torch.float32" (a pickled torch.dtype) -> dtype, also torch's aliases. */
static int torch_dtype_global(const pthcv_value *v)
{
    if (!v || v->kind != PTHCV_V_GLOBAL || strncmp(v->s, "torch.", 6)) return -1;
    const char *n = v->s + 6;
    static const struct {
        const char *alias;
        int dtype;
    } aliases[] = {{"float", PTHCV_FLOAT32},    {"double", PTHCV_FLOAT64},
                   {"half", PTHCV_FLOAT16},     {"short", PTHCV_INT16},
                   {"int", PTHCV_INT32},        {"long", PTHCV_INT64},
                   {"cfloat", PTHCV_COMPLEX64}, {"cdouble", PTHCV_COMPLEX128},
                   {"chalf", PTHCV_COMPLEX32},  {NULL, 0}};
    for (int i = 0; aliases[i].alias; i++)
        if (!strcmp(n, aliases[i].alias)) return aliases[i].dtype;
    return pthcv_dtype_from_name(n);
}

/* ---- argument helpers ---- */

static int arg_int(pthcv_pickle *p, const char *fn, pthcv_value *args, int64_t i, int64_t *out)
{
    if (i >= args->n) CALL_FAIL(p, fn, "missing argument %lld", (long long)i + 1);
    pthcv_value *v = args->items[i];
    if (v->kind != PTHCV_V_INT && v->kind != PTHCV_V_BOOL)
        CALL_FAIL(p, fn, "argument %lld must be an integer", (long long)i + 1);
    *out = v->i;
    return PTHCV_OK;
}

/* A shape or stride: a tuple/list of ints (torch.Size arrives as a tuple). */
static int arg_dims(pthcv_pickle *p, const char *fn, pthcv_value *args, int64_t i, int64_t *dims, int *ndim)
{
    if (i >= args->n) CALL_FAIL(p, fn, "missing argument %lld", (long long)i + 1);
    pthcv_value *v = args->items[i];
    if (v->kind != PTHCV_V_TUPLE && v->kind != PTHCV_V_LIST)
        CALL_FAIL(p, fn, "argument %lld must be a tuple of sizes", (long long)i + 1);
    if (v->n > PTHCV_MAX_DIMS)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: %s at byte %zu: %s: a tensor of %lld dimensions (pthcv handles up to %d)", PK_WHERE(p),
                          pthcv_esc(fn), (long long)v->n, PTHCV_MAX_DIMS);
    for (int64_t k = 0; k < v->n; k++) {
        if (v->items[k]->kind != PTHCV_V_INT)
            CALL_FAIL(p, fn, "argument %lld holds a non-integer size", (long long)i + 1);
        dims[k] = v->items[k]->i;
    }
    *ndim = (int)v->n;
    return PTHCV_OK;
}

static pthcv_value *tensor_value(pthcv_file *f, pthcv_tensor *t)
{
    pthcv_value *v = pthcv_value_new(f, PTHCV_V_TENSOR);
    if (!v) {
        pthcv_tensor_release(t);
        return NULL;
    }
    v->tensor = t; /* the tree owns this reference */
    return v;
}

static void where_of(pthcv_pickle *p, char *buf, size_t n) { snprintf(buf, n, "%s: %s at byte %zu", PK_WHERE(p)); }

/* The core of every tensor rebuilder: storage, offset, size, stride, checked
 * against the storage's extent by pthcv_tensor_over. */
static int rebuild_tensor(pthcv_pickle *p, const char *fn, pthcv_value *args, int dtype_override, pthcv_tensor **out)
{
    int64_t offset = 0, shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
    int nd = 0, nd2 = 0;
    if (args->n < 4) CALL_FAIL(p, fn, "expected at least 4 arguments, found %lld", (long long)args->n);
    pthcv_value *sv = args->items[0];
    if (sv->kind != PTHCV_V_STORAGE) CALL_FAIL(p, fn, "argument 1 is not a storage");
    int st;
    if ((st = arg_int(p, fn, args, 1, &offset)) || (st = arg_dims(p, fn, args, 2, shape, &nd)) ||
        (st = arg_dims(p, fn, args, 3, stride, &nd2)))
        return st;
    if (nd != nd2) CALL_FAIL(p, fn, "%d sizes but %d strides", nd, nd2);
    pthcv_storage *storage = sv->tensor->storage;
    int dtype = dtype_override >= 0 ? dtype_override : sv->tensor->dtype;
    /* an untyped storage in a big-endian archive learns its element size here */
    if (p->file->big_endian && storage->dtype < 0 && !storage->swap_bytes && !storage->data) {
        int esz = pthcv_dtype_size(dtype);
        storage->swap_bytes = pthcv_dtype_is_complex(dtype) ? esz / 2 : esz;
    }
    char where[1024];
    snprintf(where, sizeof where, "%s: %s at byte %zu: %s", PK_WHERE(p), pthcv_esc(fn));
    *out = pthcv_tensor_over(storage, dtype, nd, shape, stride, offset, where);
    if (!*out) return pthcv_last_status();
    int st2 = pthcv_file_charge_view(p->file, *out, where);
    if (st2) {
        pthcv_tensor_release(*out);
        *out = NULL;
        return st2;
    }
    return PTHCV_OK;
}

static int flag_requires_grad(pthcv_value *args, int64_t i, pthcv_tensor *t)
{
    if (i < args->n && args->items[i]->kind == PTHCV_V_BOOL && args->items[i]->i)
        t->flags |= PTHCV_TENSOR_REQUIRES_GRAD;
    return 0;
}

static int qscheme_of(const pthcv_value *v)
{
    if (!v || v->kind != PTHCV_V_GLOBAL) return -1;
    if (!strcmp(v->s, "torch.per_tensor_affine")) return PTHCV_QSCHEME_PER_TENSOR_AFFINE;
    if (!strcmp(v->s, "torch.per_channel_affine")) return PTHCV_QSCHEME_PER_CHANNEL_AFFINE;
    if (!strcmp(v->s, "torch.per_tensor_symmetric")) return PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC;
    if (!strcmp(v->s, "torch.per_channel_symmetric")) return PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC;
    if (!strcmp(v->s, "torch.per_channel_affine_float_qparams")) return PTHCV_QSCHEME_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
    return -1;
}

static double num_of(const pthcv_value *v) { return v->kind == PTHCV_V_FLOAT ? v->f : (double)v->i; }

/* _rebuild_qtensor(storage, offset, size, stride, qparams, requires_grad, hooks) */
static int rebuild_qtensor(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_tensor **out)
{
    int st = rebuild_tensor(p, fn, args, -1, out);
    if (st) return st;
    pthcv_tensor *t = *out;
    if (args->n < 5 || args->items[4]->kind != PTHCV_V_TUPLE || args->items[4]->n < 1) {
        pthcv_tensor_release(t);
        CALL_FAIL(p, fn, "argument 5 must be the quantizer parameters tuple");
    }
    pthcv_value *q = args->items[4];
    int scheme = qscheme_of(q->items[0]);
    if (scheme == PTHCV_QSCHEME_PER_TENSOR_AFFINE || scheme == PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC) {
        if (q->n < 3 || (q->items[1]->kind != PTHCV_V_FLOAT && q->items[1]->kind != PTHCV_V_INT) ||
            q->items[2]->kind != PTHCV_V_INT) {
            pthcv_tensor_release(t);
            CALL_FAIL(p, fn, "per-tensor quantizer parameters must be (scheme, scale, zero_point)");
        }
        t->qscale = num_of(q->items[1]);
        t->qzero_point = q->items[2]->i;
    } else if (scheme >= PTHCV_QSCHEME_PER_CHANNEL_AFFINE) {
        if (q->n < 4 || q->items[1]->kind != PTHCV_V_TENSOR || q->items[2]->kind != PTHCV_V_TENSOR ||
            q->items[3]->kind != PTHCV_V_INT) {
            pthcv_tensor_release(t);
            CALL_FAIL(p, fn, "per-channel quantizer parameters must be (scheme, scales, zero_points, axis)");
        }
        int64_t axis = q->items[3]->i;
        pthcv_tensor *sc = q->items[1]->tensor, *zp = q->items[2]->tensor;
        if (axis < 0 || axis >= (t->ndim ? t->ndim : 1) || sc->ndim != 1 || zp->ndim != 1 ||
            (t->ndim && (sc->numel != t->shape[axis] || zp->numel != t->shape[axis]))) {
            pthcv_tensor_release(t);
            CALL_FAIL(p, fn, "per-channel scales/zero points do not match axis %lld of the tensor", (long long)axis);
        }
        t->qaxis = (int32_t)axis;
        t->qscales = pthcv_tensor_retain(sc);
        t->qzero_points = pthcv_tensor_retain(zp);
    } else {
        pthcv_tensor_release(t);
        CALL_FAIL(p, fn, "unknown quantization scheme");
    }
    t->qscheme = scheme;
    flag_requires_grad(args, 5, t);
    return PTHCV_OK;
}

/* numpy dtype descr ("<f4", "f8", "|b1"...) -> dtype and byte order. */
static int numpy_dtype(const pthcv_value *dt, int *swap)
{
    if (!dt || dt->kind != PTHCV_V_OBJECT || strcmp(dt->s, "numpy.dtype") || !dt->args || dt->args->n < 1 ||
        dt->args->items[0]->kind != PTHCV_V_STR)
        return -1;
    const char *d = dt->args->items[0]->s;
    char order = '<';
    /* BUILD state (version, byteorder, ...) tells the byte order */
    if (dt->state && dt->state->kind == PTHCV_V_TUPLE && dt->state->n > 1 && dt->state->items[1]->kind == PTHCV_V_STR)
        order = dt->state->items[1]->s[0];
    if (*d == '<' || *d == '>' || *d == '|' || *d == '=') order = *d++;
    *swap = order == '>';
    static const struct {
        const char *code;
        int dtype;
    } codes[] = {{"f4", PTHCV_FLOAT32},   {"f8", PTHCV_FLOAT64},     {"f2", PTHCV_FLOAT16},
                 {"i1", PTHCV_INT8},      {"i2", PTHCV_INT16},       {"i4", PTHCV_INT32},
                 {"i8", PTHCV_INT64},     {"u1", PTHCV_UINT8},       {"u2", PTHCV_UINT16},
                 {"u4", PTHCV_UINT32},    {"u8", PTHCV_UINT64},      {"b1", PTHCV_BOOL},
                 {"c8", PTHCV_COMPLEX64}, {"c16", PTHCV_COMPLEX128}, {NULL, 0}};
    for (int i = 0; codes[i].code; i++)
        if (!strcmp(d, codes[i].code)) return codes[i].dtype;
    return -1;
}

static int component_size(int dtype)
{
    return pthcv_dtype_is_complex(dtype) ? pthcv_dtype_size(dtype) / 2 : pthcv_dtype_size(dtype);
}

/* A numeric numpy array -> a tensor owning a copy of its bytes, or NULL (no
 * error) for what stays inert: object arrays, dtypes torch has no name for. */
static int ndarray_tensor(pthcv_pickle *p, pthcv_value *shape_v, pthcv_value *dtype_v, int fortran, pthcv_value *raw,
                          pthcv_tensor **out)
{
    *out = NULL;
    int swap = 0, dtype = numpy_dtype(dtype_v, &swap);
    if (dtype < 0 || (raw->kind != PTHCV_V_BYTES && raw->kind != PTHCV_V_BYTEARRAY) ||
        (shape_v->kind != PTHCV_V_TUPLE && shape_v->kind != PTHCV_V_LIST))
        return PTHCV_OK;
    int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
    int nd = 0, st;
    pthcv_value one = {0};
    one.kind = PTHCV_V_TUPLE;
    one.n = 1;
    one.items = &shape_v;
    if ((st = arg_dims(p, "numpy.ndarray", &one, 0, shape, &nd))) return st;
    int64_t numel = 1, nbytes;
    for (int k = 0; k < nd; k++)
        if (shape[k] < 0 || !pthcv_mul_ok(numel, shape[k], &numel)) CALL_FAIL(p, "numpy.ndarray", "bad shape");
    if (!pthcv_mul_ok(numel, pthcv_dtype_size(dtype), &nbytes) || nbytes != raw->len)
        CALL_FAIL(p, "numpy.ndarray", "%lld bytes of data for %lld elements of %s", (long long)raw->len,
                  (long long)numel, pthcv_dtype_name(dtype));
    int64_t acc = 1;
    for (int k = 0; k < nd; k++) {
        int d = fortran ? k : nd - 1 - k;
        stride[d] = acc;
        acc *= shape[d] ? shape[d] : 1;
    }
    pthcv_storage *s = pthcv_storage_new_memory(dtype, nbytes);
    if (!s) return pthcv_last_status();
    memcpy(s->data, raw->s, (size_t)nbytes);
    if (swap && component_size(dtype) > 1)
        pthcv_swap_bytes(s->data, nbytes / component_size(dtype), component_size(dtype));
    char where[1024];
    where_of(p, where, sizeof where);
    *out = pthcv_tensor_over(s, dtype, nd, shape, stride, 0, where);
    pthcv_storage_release(s);
    return *out ? PTHCV_OK : pthcv_last_status();
}

/* BUILD of a numpy.ndarray: state (version, shape, dtype, is_fortran, rawdata).
 * The OBJECT becomes the tensor in place, so other references see it too. */
static int build_ndarray(pthcv_pickle *p, pthcv_value *obj, pthcv_value *state)
{
    obj->state = state;
    if (state->kind != PTHCV_V_TUPLE || state->n < 5) return PTHCV_OK;
    int fortran = state->items[3]->kind == PTHCV_V_BOOL && state->items[3]->i;
    pthcv_tensor *t;
    int st = ndarray_tensor(p, state->items[1], state->items[2], fortran, state->items[4], &t);
    if (st || !t) return st;
    obj->kind = PTHCV_V_TENSOR;
    obj->tensor = t;
    return PTHCV_OK;
}

/* numpy.core.multiarray.scalar(dtype, bytes) -> a plain number. */
static int numpy_scalar(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value **out)
{
    int swap = 0, dtype = args->n >= 2 ? numpy_dtype(args->items[0], &swap) : -1;
    pthcv_value *raw = args->n >= 2 ? args->items[1] : NULL;
    if (dtype < 0 || !raw || raw->kind != PTHCV_V_BYTES || raw->len != pthcv_dtype_size(dtype))
        return PTHCV_OK; /* leave *out NULL: caller makes an inert object */
    unsigned char b[16];
    memcpy(b, raw->s, (size_t)raw->len);
    if (swap) pthcv_swap_bytes(b, pthcv_dtype_is_complex(dtype) ? 2 : 1, component_size(dtype));
    pthcv_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    double re, im;
    pthcv_storage st0;
    memset(&st0, 0, sizeof st0);
    st0.data = b;
    st0.nbytes = raw->len;
    st0.dtype = dtype;
    st0.refcount = 1;
    tmp.dtype = dtype;
    tmp.storage = &st0;
    tmp.numel = 1;
    tmp.refcount = 1;
    if (pthcv_tensor_get(&tmp, 0, &re, &im)) return pthcv_last_status();
    int kind = dtype == PTHCV_BOOL       ? PTHCV_V_BOOL
        : pthcv_dtype_is_complex(dtype)  ? PTHCV_V_COMPLEX
        : pthcv_dtype_is_floating(dtype) ? PTHCV_V_FLOAT
                                         : PTHCV_V_INT;
    pthcv_value *v = pthcv_value_new(p->file, kind);
    if (!v) return pthcv_last_status();
    if (kind == PTHCV_V_FLOAT || kind == PTHCV_V_COMPLEX) {
        v->f = re;
        v->f_im = im;
    } else if (dtype == PTHCV_UINT64 || dtype == PTHCV_INT64) {
        uint64_t u;
        memcpy(&u, b, 8);
        v->i = (int64_t)u;
    } else v->i = (int64_t)re;
    (void)fn;
    *out = v;
    return PTHCV_OK;
}

/* Python 3 reads protocol-2 bytes as _codecs.encode(latin1_text, "latin1"):
 * turn the UTF-8 text back into one byte per code point. */
static int latin1_bytes(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value **out)
{
    if (args->n < 1 || args->items[0]->kind != PTHCV_V_STR) return PTHCV_OK;
    if (args->n >= 2 &&
        (args->items[1]->kind != PTHCV_V_STR ||
         (strcmp(args->items[1]->s, "latin1") && strcmp(args->items[1]->s, "latin-1"))))
        return PTHCV_OK;
    const unsigned char *s = (const unsigned char *)args->items[0]->s;
    int64_t n = args->items[0]->len, o = 0;
    unsigned char *buf = malloc((size_t)n + 1);
    if (!buf) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", p->file->path);
    for (int64_t i = 0; i < n; i++) {
        if (s[i] < 0x80) buf[o++] = s[i];
        else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n && s[i] <= 0xC3) {
            buf[o++] = (unsigned char)(((s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F));
            i++;
        } else {
            free(buf);
            CALL_FAIL(p, fn, "text is not Latin-1");
        }
    }
    pthcv_value *v = pthcv_value_new(p->file, PTHCV_V_BYTES);
    if (v) {
        v->s = pthcv_file_strdup(p->file, (const char *)buf, (size_t)o);
        v->len = o;
    }
    free(buf);
    if (!v || !v->s) return pthcv_last_status();
    *out = v;
    return PTHCV_OK;
}

static int copy_items(pthcv_value *dst, const pthcv_value *src)
{
    int pairs = src->kind == PTHCV_V_DICT;
    for (int64_t i = 0; i < src->n; i++) {
        int st = pairs ? pthcv_value_push(dst, src->items[2 * i], src->items[2 * i + 1])
                       : pthcv_value_push(dst, src->items[i], NULL);
        if (st) return st;
    }
    dst->depth = src->depth;
    return PTHCV_OK;
}

/* ---- the known globals ------------------------------------------------------
 * A handler builds what calling the global with args would have built and
 * returns it in *out; leaving *out NULL (status OK) means "not a form this
 * handler knows": the call then becomes an inert OBJECT like any unknown one.
 * fn is the global's "module.name" (Python 3 spelling). */
typedef int (*global_handler)(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                              pthcv_value **out);

/* -- torch's tensor rebuilders -- */

/* _rebuild_tensor_v2 / _rebuild_tensor(storage, offset, size, stride, requires_grad, ...) */
static int call_rebuild_tensor(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                               pthcv_value **out)
{
    pthcv_tensor *t;
    int st = rebuild_tensor(p, fn, args, -1, &t);
    if (st) return st;
    flag_requires_grad(args, 4, t);
    return (*out = tensor_value(p->file, t)) ? PTHCV_OK : pthcv_last_status();
}

/* _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]) */
static int call_rebuild_tensor_v3(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                  pthcv_value **out)
{
    int dtype = args->n > 6 ? torch_dtype_global(args->items[6]) : -1;
    if (dtype < 0) CALL_FAIL(p, fn, "argument 7 must be a torch dtype");
    pthcv_tensor *t;
    int st = rebuild_tensor(p, fn, args, dtype, &t);
    if (st) return st;
    flag_requires_grad(args, 4, t);
    return (*out = tensor_value(p->file, t)) ? PTHCV_OK : pthcv_last_status();
}

static int call_rebuild_qtensor(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                pthcv_value **out)
{
    pthcv_tensor *t;
    int st = rebuild_qtensor(p, fn, args, &t);
    if (st) return st;
    return (*out = tensor_value(p->file, t)) ? PTHCV_OK : pthcv_last_status();
}

/* _rebuild_parameter(data, requires_grad, hooks), _rebuild_parameter_with_state(..., state) */
static int call_rebuild_parameter(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                  pthcv_value **out)
{
    if (args->n < 1 || args->items[0]->kind != PTHCV_V_TENSOR) CALL_FAIL(p, fn, "argument 1 is not a tensor");
    pthcv_value *v = args->items[0];
    v->tensor->flags |= PTHCV_TENSOR_PARAMETER;
    flag_requires_grad(args, 1, v->tensor);
    *out = v;
    return PTHCV_OK;
}

/* _rebuild_from_type_v2(func, new_type, args, state): the tensor is what func
 * builds from args. func is itself looked up here; it nests as deep as the
 * argument tuples do, which max_depth bounds. */
static int call_rebuild_from_type(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                  pthcv_value **out)
{
    if (args->n < 3 || args->items[0]->kind != PTHCV_V_GLOBAL || args->items[2]->kind != PTHCV_V_TUPLE)
        CALL_FAIL(p, fn, "expected (function, type, arguments, state)");
    int st = pthcv_call_global(p, args->items[0], args->items[2], NULL, out);
    if (st) return st;
    if ((*out)->kind == PTHCV_V_TENSOR && args->items[1]->kind == PTHCV_V_GLOBAL &&
        !strcmp(args->items[1]->s, "torch.nn.parameter.Parameter"))
        (*out)->tensor->flags |= PTHCV_TENSOR_PARAMETER;
    if (args->n > 3 && args->items[3]->kind != PTHCV_V_NONE && !(*out)->state) (*out)->state = args->items[3];
    return PTHCV_OK;
}

static int call_rebuild_device_tensor_from_numpy(pthcv_pickle *p, const char *fn, pthcv_value *args,
                                                 pthcv_value *kwargs, pthcv_value **out)
{
    if (args->n < 1 || args->items[0]->kind != PTHCV_V_TENSOR) CALL_FAIL(p, fn, "argument 1 is not a numpy array");
    *out = args->items[0];
    return PTHCV_OK;
}

/* torch.Size(sizes): a tuple */
static int call_torch_size(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    if (args->n != 1 || (args->items[0]->kind != PTHCV_V_TUPLE && args->items[0]->kind != PTHCV_V_LIST))
        return PTHCV_OK;
    *out = pthcv_value_new(p->file, PTHCV_V_TUPLE);
    if (!*out || copy_items(*out, args->items[0])) return pthcv_last_status();
    return PTHCV_OK;
}

/* torch.jit._pickle.build_intlist(list), ..., restore_type_tag(value, type):
 * the value itself */
static int call_jit_identity(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    if (args->n >= 1) *out = args->items[0];
    return PTHCV_OK;
}

/* -- Python built-ins -- */

/* collections.OrderedDict / dict(), (mapping), ([(key, value), ...]) as
 * protocols 0 and 1 write them */
static int call_dict(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    pthcv_value *d = pthcv_value_new(p->file, PTHCV_V_DICT);
    if (!d) return pthcv_last_status();
    if (!strcmp(fn, "collections.OrderedDict")) d->flags |= PTHCV_VF_ORDERED;
    pthcv_value *l = args->n >= 1 ? args->items[0] : NULL;
    if (l && l->kind == PTHCV_V_DICT) {
        if (copy_items(d, l)) return pthcv_last_status();
    } else if (l && (l->kind == PTHCV_V_LIST || l->kind == PTHCV_V_TUPLE)) {
        for (int64_t i = 0; i < l->n; i++) {
            pthcv_value *kv = l->items[i];
            if ((kv->kind != PTHCV_V_LIST && kv->kind != PTHCV_V_TUPLE) || kv->n != 2)
                CALL_FAIL(p, fn, "item %lld is not a (key, value) pair", (long long)i);
            if (pthcv_value_push(d, kv->items[0], kv->items[1])) return pthcv_last_status();
        }
    }
    *out = d;
    return PTHCV_OK;
}

/* set(iterable), frozenset(...), list(...), tuple(...) */
static int collection(pthcv_pickle *p, int kind, pthcv_value *args, pthcv_value **out)
{
    pthcv_value *s = pthcv_value_new(p->file, kind);
    if (!s) return pthcv_last_status();
    int from = args->n >= 1 ? args->items[0]->kind : -1;
    if ((from == PTHCV_V_LIST || from == PTHCV_V_TUPLE || from == PTHCV_V_SET || from == PTHCV_V_FROZENSET) &&
        copy_items(s, args->items[0]))
        return pthcv_last_status();
    *out = s;
    return PTHCV_OK;
}
static int call_set(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return collection(p, PTHCV_V_SET, args, out);
}
static int call_frozenset(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return collection(p, PTHCV_V_FROZENSET, args, out);
}
static int call_list(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return collection(p, PTHCV_V_LIST, args, out);
}
static int call_tuple(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return collection(p, PTHCV_V_TUPLE, args, out);
}

/* complex(real, imag) */
static int call_complex(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    pthcv_value *c = pthcv_value_new(p->file, PTHCV_V_COMPLEX);
    if (!c) return pthcv_last_status();
    for (int64_t i = 0; i < 2 && i < args->n; i++) {
        pthcv_value *a = args->items[i];
        if (a->kind == PTHCV_V_FLOAT || a->kind == PTHCV_V_INT) *(i ? &c->f_im : &c->f) = num_of(a);
    }
    *out = c;
    return PTHCV_OK;
}

/* _codecs.encode(text, "latin1"): protocol 2's bytes */
static int call_codecs_encode(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                              pthcv_value **out)
{
    return latin1_bytes(p, fn, args, out);
}

/* bytes() / bytes(b"...") / bytes(text, "latin1"), and the same for bytearray */
static int byte_string(pthcv_pickle *p, const char *fn, int kind, pthcv_value *args, pthcv_value **out)
{
    pthcv_file *f = p->file;
    if (args->n == 0) {
        *out = pthcv_value_new(f, kind);
        if (*out) (*out)->s = pthcv_file_strdup(f, "", 0);
        return *out && (*out)->s ? PTHCV_OK : pthcv_last_status();
    }
    if (args->items[0]->kind == PTHCV_V_BYTES) {
        *out = pthcv_value_new(f, kind);
        if (!*out) return pthcv_last_status();
        (*out)->s = args->items[0]->s;
        (*out)->len = args->items[0]->len;
        return PTHCV_OK;
    }
    int st = latin1_bytes(p, fn, args, out);
    if (!st && *out) (*out)->kind = kind;
    return st;
}
static int call_bytes(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return byte_string(p, fn, PTHCV_V_BYTES, args, out);
}
static int call_bytearray(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return byte_string(p, fn, PTHCV_V_BYTEARRAY, args, out);
}

/* -- numpy -- */

static int call_numpy_scalar(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    return numpy_scalar(p, fn, args, out);
}

/* _frombuffer(buffer, dtype, shape, order), as protocol 5 writes arrays */
static int call_numpy_frombuffer(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                 pthcv_value **out)
{
    if (args->n != 4 || args->items[3]->kind != PTHCV_V_STR) return PTHCV_OK;
    pthcv_tensor *t;
    int st = ndarray_tensor(p, args->items[2], args->items[1], args->items[3]->s[0] == 'F', args->items[0], &t);
    if (st || !t) return st;
    return (*out = tensor_value(p->file, t)) ? PTHCV_OK : pthcv_last_status();
}

/* -- inert objects -- */

/* An inert record of calling fn with args (kwargs: NEWOBJ_EX's). */
static pthcv_value *inert_call(pthcv_pickle *p, const char *fn, int unsafe, pthcv_value *args, pthcv_value *kwargs)
{
    pthcv_value *o = pthcv_value_new(p->file, PTHCV_V_OBJECT);
    if (!o) return NULL;
    o->flags |= unsafe ? PTHCV_VF_UNSAFE : 0;
    o->args = args;
    o->kwargs = kwargs;
    o->s = fn;
    return o;
}

/* copyreg._reconstructor(cls, base, state), __newobj__(cls, *args),
 * __newobj_ex__(cls, args, kwargs): an instance of cls, the rest its arguments */
static int call_reconstructor(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                              pthcv_value **out)
{
    if (args->n < 1 || args->items[0]->kind != PTHCV_V_GLOBAL) CALL_FAIL(p, fn, "argument 1 is not a class");
    pthcv_value *cls = args->items[0], *rest = pthcv_value_new(p->file, PTHCV_V_TUPLE);
    if (!rest) return pthcv_last_status();
    for (int64_t i = 1; i < args->n; i++)
        if (pthcv_value_push(rest, args->items[i], NULL)) return pthcv_last_status();
    *out = inert_call(p, cls->s, cls->flags & PTHCV_VF_UNSAFE, rest, kwargs);
    return *out ? PTHCV_OK : pthcv_last_status();
}

/* numpy's _reconstruct(numpy.ndarray, shape, dtype): an array object BUILD
 * fills (build_ndarray) */
static int call_numpy_reconstruct(pthcv_pickle *p, const char *fn, pthcv_value *args, pthcv_value *kwargs,
                                  pthcv_value **out)
{
    const char *cls = args->n >= 1 && args->items[0]->kind == PTHCV_V_GLOBAL ? args->items[0]->s : fn;
    *out = inert_call(p, cls, 0, args, kwargs);
    return *out ? PTHCV_OK : pthcv_last_status();
}

/* Sorted by "module.name" in strcmp order (pthcv_reader_tables_check). */
static const struct known_global {
    const char *module, *name;
    global_handler handler;
} known_globals[] = {
    {"_codecs", "encode", call_codecs_encode},
    {"builtins", "bytearray", call_bytearray},
    {"builtins", "bytes", call_bytes},
    {"builtins", "complex", call_complex},
    {"builtins", "dict", call_dict},
    {"builtins", "frozenset", call_frozenset},
    {"builtins", "list", call_list},
    {"builtins", "set", call_set},
    {"builtins", "tuple", call_tuple},
    {"collections", "OrderedDict", call_dict},
    {"copyreg", "__newobj__", call_reconstructor},
    {"copyreg", "__newobj_ex__", call_reconstructor},
    {"copyreg", "_reconstructor", call_reconstructor},
    {"numpy._core.multiarray", "_reconstruct", call_numpy_reconstruct},
    {"numpy._core.multiarray", "scalar", call_numpy_scalar},
    {"numpy._core.numeric", "_frombuffer", call_numpy_frombuffer},
    {"numpy.core.multiarray", "_reconstruct", call_numpy_reconstruct},
    {"numpy.core.multiarray", "scalar", call_numpy_scalar},
    {"numpy.core.numeric", "_frombuffer", call_numpy_frombuffer},
    {"torch", "Size", call_torch_size},
    {"torch._tensor", "_rebuild_from_type", call_rebuild_from_type},
    {"torch._tensor", "_rebuild_from_type_v2", call_rebuild_from_type},
    {"torch._utils", "_rebuild_device_tensor_from_numpy", call_rebuild_device_tensor_from_numpy},
    {"torch._utils", "_rebuild_parameter", call_rebuild_parameter},
    {"torch._utils", "_rebuild_parameter_with_state", call_rebuild_parameter},
    {"torch._utils", "_rebuild_qtensor", call_rebuild_qtensor},
    {"torch._utils", "_rebuild_tensor", call_rebuild_tensor},
    {"torch._utils", "_rebuild_tensor_v2", call_rebuild_tensor},
    {"torch._utils", "_rebuild_tensor_v3", call_rebuild_tensor_v3},
    {"torch.jit._pickle", "build_boollist", call_jit_identity},
    {"torch.jit._pickle", "build_doublelist", call_jit_identity},
    {"torch.jit._pickle", "build_intlist", call_jit_identity},
    {"torch.jit._pickle", "build_tensorlist", call_jit_identity},
    {"torch.jit._pickle", "restore_type_tag", call_jit_identity},
};
enum { NKNOWN = sizeof known_globals / sizeof known_globals[0] };

/* strcmp of "module.name" against an entry, without joining the two. */
static int cmp_global(const char *full, const struct known_global *g)
{
    const unsigned char *a = (const unsigned char *)full;
    for (const unsigned char *b = (const unsigned char *)g->module; *b; a++, b++)
        if (*a != *b) return *a - *b;
    if (*a != '.') return *a - '.';
    return strcmp((const char *)a + 1, g->name);
}

static int cmp_known(const void *key, const void *entry) { return cmp_global(key, entry); }

const char *pthcv_reader_tables_check(void)
{
    static _Thread_local char msg[300];
    char full[200];
    for (int i = 1; i < NKNOWN; i++) {
        snprintf(full, sizeof full, "%s.%s", known_globals[i].module, known_globals[i].name);
        if (cmp_global(full, &known_globals[i - 1]) <= 0) {
            snprintf(msg, sizeof msg, "known_globals: %s is out of order", full);
            return msg;
        }
    }
    for (size_t i = 1; i < sizeof py2_modules / sizeof *py2_modules; i++)
        if (strcmp(py2_modules[i - 1].py2, py2_modules[i].py2) >= 0) {
            snprintf(msg, sizeof msg, "py2_modules: %s is out of order", py2_modules[i].py2);
            return msg;
        }
    return NULL;
}

int pthcv_call_global(pthcv_pickle *p, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out)
{
    const struct known_global *g = bsearch(callee->s, known_globals, NKNOWN, sizeof *known_globals, cmp_known);
    *out = NULL;
    if (g) {
        int st = g->handler(p, callee->s, args, kwargs, out);
        if (st || *out) return st;
    }
    /* everything else: an inert record of the call */
    *out = pthcv_inert_call(p, callee, args, kwargs);
    return *out ? PTHCV_OK : pthcv_last_status();
}

pthcv_value *pthcv_inert_call(pthcv_pickle *p, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs)
{
    return inert_call(p, callee->s, callee->flags & PTHCV_VF_UNSAFE, args, kwargs);
}

int pthcv_build(pthcv_pickle *p, pthcv_value *obj, pthcv_value *state)
{
    if (obj->kind == PTHCV_V_OBJECT && !strcmp(obj->s, "numpy.ndarray")) return build_ndarray(p, obj, state);
    switch (obj->kind) {
    case PTHCV_V_OBJECT:
    case PTHCV_V_DICT:
    case PTHCV_V_LIST:
    case PTHCV_V_TENSOR:
    case PTHCV_V_SET:
        /* Python merges a dict state into __dict__; repeated BUILDs are rare */
        obj->state = state;
        if (state->depth + 1 > obj->depth) obj->depth = state->depth + 1;
        if (obj->depth > p->file->opts.max_depth)
            return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: nesting depth exceeds the limit of %d", PK_WHERE(p),
                              p->file->opts.max_depth);
        return PTHCV_OK;
    default:
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: BUILD on a value that cannot take state (kind %d)",
                          PK_WHERE(p), obj->kind);
    }
}

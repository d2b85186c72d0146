/*
 * reader.h -- the parts of the reader and how they meet.
 *
 *   file.c      pthcv_open: recognises the format, owns the value tree
 *   archive.c   the containers: zip (libzip), legacy stream and plain pickle, old tar
 *   tar.c       the old tar layout's members, found as Python's tarfile finds them
 *   pickle.c    the pickle machine: opcodes -> inert values, nothing called
 *   globals.c   what known globals build (tensors, OrderedDict, numpy...) and
 *               which globals are refused as dangerous
 */
#ifndef PTHCV_READER_H
#define PTHCV_READER_H

#include "../internal.h"

/* The home slot of hash h in an open-addressing table of cap slots (a power
 * of two, at least 2): the top bits of h times 2^64/phi (Fibonacci hashing).
 * They depend on every bit of h. The low bits of a product depend only on
 * h's low bits, so keys that differ only above them (memo indices that are
 * multiples of 65536, say) would share one slot, and a file of n such keys
 * would cost n^2 probes. */
static inline int64_t reader_hash_slot(uint64_t h, int64_t cap)
{
    return (int64_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctzll((unsigned long long)cap)));
}

/* A storage table: key -> storage, for one namespace of records. */
typedef struct storage_entry {
    char *key; /* namespaced: "data/0", "constants/3", "legacy/1402" */
    pthcv_storage *storage;
    int dtype;             /* as declared where it was first referenced */
    int64_t offset, numel; /* a view of the storage (legacy views), in elements */
    pthcv_value *tensor;   /* tar format: the tensor saved under this key */
} storage_entry;

/* How a persistent id is turned into a value; set per pickle by the archive. */
typedef struct pthcv_pickle pthcv_pickle;
typedef int (*persistent_load_fn)(pthcv_pickle *p, pthcv_value *pid, pthcv_value **out);

struct pthcv_file {
    char *path;
    const char *format;
    pthcv_options opts;
    pthcv_value *root;
    pthcv_value *constants;
    pthcv_source *src;

    /* value arena: values are allocated in chunks, freed together */
    struct value_chunk *values;
    int64_t nvalues;
    /* byte arena for strings */
    struct byte_chunk *bytes;

    /* scan mode: what stopped the scan after a dangerous global was found */
    char *scan_error;

    /* globals seen, in first-seen order */
    char **globals;
    unsigned char *global_unsafe;
    int nglobals, cap_globals;

    /* storages by key */
    storage_entry *storages;
    int64_t nstorages, cap_storages;
    void *storage_hash;      /* file.c's index over storages */
    int64_t total_bytes;     /* storage bytes declared so far (max_total_bytes) */
    int64_t expanded_bytes;  /* tensor bytes beyond their storages so far (max_expanded_bytes) */
    const char *storage_dir; /* zip: "data/" or "constants/" record folder */

    /* archive specifics */
    void *zip;               /* zip_t* while open */
    uint64_t file_size;      /* bytes in the file, bounding what records may claim */
    uint64_t *local_offsets; /* zip: each entry's local header offset, or NULL */
    uint64_t nlocal;
    char *prefix;            /* zip: "archive/" */
    int big_endian;          /* zip: byteorder record says big */
    int legacy_tar;          /* tar: persistent ids are tensor keys */
    int64_t *record_entries; /* zip: entry index of each record under the prefix */
    int64_t nrecords;
};

/* One run of the machine over one pickle. */
struct pthcv_pickle {
    pthcv_file *file;
    const unsigned char *buf;
    size_t len;
    size_t pos;         /* next byte; after success, just past STOP */
    const char *record; /* "archive/data.pkl", "main pickle"... for messages */
    persistent_load_fn persistent_load;
    size_t op_offset; /* offset of the opcode being executed */
};

/* Runs one pickle from p->buf[p->pos]; *out is the value STOP returned. */
int pthcv_unpickle(pthcv_pickle *p, pthcv_value **out);
/* Nonzero when byte is an opcode of some pickle protocol (0 to 5). */
int pthcv_pickle_opcode_known(int byte);

/* ---- values (file.c) ---- */
pthcv_value *pthcv_value_new(pthcv_file *f, int kind);
char *pthcv_file_strdup(pthcv_file *f, const char *s, size_t len); /* NUL-terminated copy */
/* Appends item, or the pair item -> value when value is not NULL (n counts pairs). */
int pthcv_value_push(pthcv_value *container, pthcv_value *item, pthcv_value *value);
pthcv_value *pthcv_value_str(pthcv_file *f, const char *s);
int pthcv_file_note_global(pthcv_file *f, const char *name, int unsafe);
/* The storage table, keyed by namespaced key; add takes its own reference. */
storage_entry *pthcv_file_find_storage(pthcv_file *f, const char *key);
storage_entry *pthcv_file_add_storage(pthcv_file *f, const char *key, pthcv_storage *st, int dtype, int64_t offset,
                                      int64_t numel);
/* Forgets every storage of the table (a tar read again as pickles). */
void pthcv_file_drop_storages(pthcv_file *f);
/* Counts a new storage's bytes against max_total_bytes. */
int pthcv_file_charge(pthcv_file *f, int64_t nbytes, const char *what);
/* Counts a tensor's bytes beyond its storage against max_expanded_bytes. */
int pthcv_file_charge_view(pthcv_file *f, const pthcv_tensor *t, const char *where);
/* A STORAGE value: a 1-d tensor over an entry's extent. */
pthcv_value *pthcv_storage_value(pthcv_pickle *p, storage_entry *e);

/* ---- containers (archive.c, tar.c) ---- */
int pthcv_open_zip(pthcv_file *f);
/* The file as torch's legacy loader reads it: a tar archive (tar set)
 * first, then, as torch does when the tar fails, a stream of pickles: the
 * legacy layout when the first holds torch's magic number, else one plain
 * pickle (format "pickle"). */
int pthcv_open_legacy(pthcv_file *f, int tar);
/* Whether head (the file's first bytes) starts as Python's tarfile accepts
 * a tar archive: a first header block with valid numbers and checksum. */
int pthcv_tar_is_archive(const unsigned char *head, size_t n);
/* The bytes [*off, *off + *len) of the regular member `name` of the tar
 * archive in map, found as Python's tarfile finds it (its last occurrence,
 * long names and pax headers applied). */
int pthcv_tar_find(pthcv_file *f, const unsigned char *map, size_t size, const char *name, size_t *off, size_t *len);
/* Maps the whole file and makes it f's source (storages read from the map,
 * in place when they set in_place). */
int pthcv_open_mapped(pthcv_file *f, unsigned char **map, size_t *size);
/* A zip member's sizes against the file and max_zip_ratio; a stored member
 * used in place when it is aligned for dtype (for npz.c). */
struct zip_stat;
int pthcv_zip_check_entry(pthcv_file *f, const struct zip_stat *zs, const char *name);
void pthcv_zip_use_in_place(pthcv_file *f, pthcv_storage *st, uint64_t idx, const struct zip_stat *zs,
                            const char *record, int dtype);

/* ---- other formats pthcv writes (npz.c, safetensors.c) ---- */
/* numpy.savez archives: a zip without data.pkl (called by pthcv_open_zip). */
int pthcv_open_npz(pthcv_file *f);
/* .safetensors files, recognised by pthcv_is_safetensors. */
int pthcv_is_safetensors(const unsigned char *head, size_t n);
int pthcv_open_safetensors(pthcv_file *f);
/* OpenCV FileStorage files (.yml/.xml/.json, optionally .gz), read through
 * OpenCV in csrc/opencv/filestorage_read.cpp; recognised by their first
 * bytes. Builds without the bridge (the fuzzer) lack the reader: weak. */
int pthcv_is_filestorage(const unsigned char *head, size_t n);
int pthcv_open_filestorage(pthcv_file *f) __attribute__((weak));
/* Decimal digits at s[*pos..n) into *out, below 2^53: 1 when some were
 * read (*pos moves past them), 0 when none, -1 when too large. */
int pthcv_read_digits(const unsigned char *s, size_t n, size_t *pos, int64_t *out);
/* Fails naming the first key two string keys of dict share. */
int pthcv_check_unique_keys(pthcv_file *f, const pthcv_value *dict, const char *where);

/* ---- globals (globals.c) ---- */
/* The module Python 3's unpickler finds a Python 2 global in (__builtin__ ->
 * builtins, copy_reg -> copyreg, __builtin__.reduce -> functools, ...); the
 * module itself when it has no Python 2 name. */
const char *pthcv_py3_module(const char *module, const char *name);
/* What calling `callee` (a GLOBAL value) with `args` builds, inertly:
 * a known constructor's value, or an OBJECT recording the call. */
int pthcv_call_global(pthcv_pickle *p, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs, pthcv_value **out);
/* NULL when the tables searched with bsearch (known globals, Python 2
 * module names) are sorted, else which entry is out of order
 * (spec/c/reader_test.c). */
const char *pthcv_reader_tables_check(void);
/* The inert OBJECT recording a call of callee (a GLOBAL) with args: what
 * unknown globals build, and what a scan keeps when a handler refuses. */
pthcv_value *pthcv_inert_call(pthcv_pickle *p, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs);
/* BUILD: applies state to obj (numpy arrays become tensors here). */
int pthcv_build(pthcv_pickle *p, pthcv_value *obj, pthcv_value *state);
/* torch storage type name ("FloatStorage") -> dtype, -1 for UntypedStorage, -2 unknown */
int pthcv_storage_type_dtype(const char *name);

/* message prefix helper: "<path>: <record> at byte N" (record names come
 * from the file in zip archives: escaped) */
#define PK_WHERE(p) (p)->file->path, pthcv_esc((p)->record), (p)->op_offset

#endif

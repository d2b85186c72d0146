/*
 * file.c -- pthcv_open and the value tree it owns.
 *
 * The format is recognised by the first bytes, never the name, in the order
 * torch.load tries them: "PK\3\4" is a zip archive (torch >= 1.6 and
 * TorchScript); a first block Python's tarfile accepts, the pre-0.4 tar
 * layout; anything else is read as pickles: torch's legacy stream when the
 * first one is its magic number, else a plain pickle. Values live in chunks
 * freed together at pthcv_close.
 */
#include "reader.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { VALUE_CHUNK = 512, BYTE_CHUNK = 64 * 1024 };

struct value_chunk {
    struct value_chunk *next;
    int used;
    pthcv_value v[VALUE_CHUNK];
};

struct byte_chunk {
    struct byte_chunk *next;
    size_t used, size;
    char data[];
};

void pthcv_options_init(pthcv_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_depth = 1000;
    o->max_memo = 10 * 1000 * 1000;
    o->max_string = (int64_t)1 << 31;
    o->max_pickle = (int64_t)1 << 31;
    o->max_values = 50 * 1000 * 1000;
    o->max_total_bytes = (int64_t)1 << 40; /* 1 TiB: checkpoints are large, not that large */
    o->max_zip_entries = 1000 * 1000;
    o->max_zip_ratio = 1000; /* deflate peaks near 1032:1 on zeros */
    o->max_expanded_bytes = (int64_t)1 << 30;
}

pthcv_value *pthcv_value_new(pthcv_file *f, int kind)
{
    struct value_chunk *c = f->values;
    if (!c || c->used == VALUE_CHUNK) {
        c = calloc(1, sizeof *c);
        if (!c) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory building values", f->path);
        c->next = f->values;
        f->values = c;
    }
    pthcv_value *v = &c->v[c->used++];
    v->kind = kind;
    f->nvalues++;
    return v;
}

char *pthcv_file_strdup(pthcv_file *f, const char *s, size_t len)
{
    struct byte_chunk *c = f->bytes;
    if (!c || c->size - c->used < len + 1) {
        size_t size = len + 1 > BYTE_CHUNK / 4 ? len + 1 : BYTE_CHUNK;
        c = malloc(sizeof *c + size);
        if (!c) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory for a string of %zu bytes", f->path, len);
        c->used = 0;
        c->size = size;
        /* big strings get their own chunk behind the current one, so the
         * current chunk's free space stays in use */
        if (f->bytes && size != BYTE_CHUNK) {
            c->next = f->bytes->next;
            f->bytes->next = c;
        } else {
            c->next = f->bytes;
            f->bytes = c;
        }
    }
    char *d = c->data + c->used;
    if (len) memcpy(d, s, len);
    d[len] = 0;
    c->used += len + 1;
    return d;
}

pthcv_value *pthcv_value_str(pthcv_file *f, const char *s)
{
    pthcv_value *v = pthcv_value_new(f, PTHCV_V_STR);
    if (!v) return NULL;
    v->len = (int64_t)strlen(s);
    v->s = pthcv_file_strdup(f, s, (size_t)v->len);
    return v->s ? v : NULL;
}

int pthcv_value_push(pthcv_value *c, pthcv_value *item, pthcv_value *value)
{
    int64_t slots = value ? 2 : 1;
    int64_t used = (c->kind == PTHCV_V_DICT || (c->flags & PTHCV_VF_OBJECT_DICT)) ? 2 * c->n : c->n;
    if (used + slots > c->cap) {
        int64_t ncap = c->cap ? c->cap * 2 : 8;
        pthcv_value **ni = realloc(c->items, (size_t)ncap * sizeof *ni);
        if (!ni) return pthcv_fail(PTHCV_ERR_NOMEM, "out of memory growing a container");
        c->items = ni;
        c->cap = ncap;
    }
    c->items[used] = item;
    if (value) c->items[used + 1] = value;
    c->n++;
    return PTHCV_OK;
}

int pthcv_file_note_global(pthcv_file *f, const char *name, int unsafe)
{
    for (int i = 0; i < f->nglobals; i++)
        if (!strcmp(f->globals[i], name)) return PTHCV_OK;
    if (f->nglobals == f->cap_globals) {
        int ncap = f->cap_globals ? f->cap_globals * 2 : 16;
        char **ng = realloc(f->globals, (size_t)ncap * sizeof *ng);
        if (!ng) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
        f->globals = ng;
        unsigned char *nu = realloc(f->global_unsafe, (size_t)ncap);
        if (!nu) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
        f->global_unsafe = nu;
        f->cap_globals = ncap;
    }
    char *copy = strdup(name);
    if (!copy) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    f->globals[f->nglobals] = copy;
    f->global_unsafe[f->nglobals] = (unsigned char)(unsafe != 0);
    f->nglobals++;
    return PTHCV_OK;
}

/* ---- storage table: open addressing over indices into f->storages ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}


struct storage_hash {
    int64_t *slots;
    int64_t cap;
};

static struct storage_hash *hash_of(pthcv_file *f) { return (struct storage_hash *)f->storage_hash; }

storage_entry *pthcv_file_find_storage(pthcv_file *f, const char *key)
{
    struct storage_hash *h = hash_of(f);
    if (!h || !h->cap) return NULL;
    int64_t j = reader_hash_slot(hash_str(key), h->cap);
    while (h->slots[j] >= 0) {
        storage_entry *e = &f->storages[h->slots[j]];
        if (!strcmp(e->key, key)) return e;
        j = (j + 1) & (h->cap - 1);
    }
    return NULL;
}

static int rehash(pthcv_file *f, int64_t cap)
{
    struct storage_hash *h = hash_of(f);
    int64_t *slots = malloc((size_t)cap * sizeof *slots);
    if (!slots) return PTHCV_ERR_NOMEM;
    for (int64_t i = 0; i < cap; i++) slots[i] = -1;
    for (int64_t i = 0; i < f->nstorages; i++) {
        int64_t j = reader_hash_slot(hash_str(f->storages[i].key), cap);
        while (slots[j] >= 0) j = (j + 1) & (cap - 1);
        slots[j] = i;
    }
    free(h->slots);
    h->slots = slots;
    h->cap = cap;
    return PTHCV_OK;
}

storage_entry *pthcv_file_add_storage(pthcv_file *f, const char *key, pthcv_storage *st, int dtype, int64_t offset,
                                      int64_t numel)
{
    if (!f->storage_hash && !(f->storage_hash = calloc(1, sizeof(struct storage_hash))))
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    if (f->nstorages == f->cap_storages) {
        int64_t ncap = f->cap_storages ? f->cap_storages * 2 : 64;
        storage_entry *ns = realloc(f->storages, (size_t)ncap * sizeof *ns);
        if (!ns) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
        f->storages = ns;
        f->cap_storages = ncap;
    }
    storage_entry *e = &f->storages[f->nstorages];
    memset(e, 0, sizeof *e);
    if (!(e->key = strdup(key))) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    if (st) pthcv_storage_retain(st);
    e->storage = st;
    e->dtype = dtype;
    e->offset = offset;
    e->numel = numel;
    f->nstorages++;
    struct storage_hash *h = hash_of(f);
    if (f->nstorages * 2 > h->cap && rehash(f, h->cap ? h->cap * 2 : 128))
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    if (h->cap && f->nstorages * 2 <= h->cap) {
        /* insert the new entry (rehash already placed it when it grew) */
        int64_t idx = f->nstorages - 1, j = reader_hash_slot(hash_str(e->key), h->cap);
        while (h->slots[j] >= 0 && h->slots[j] != idx) j = (j + 1) & (h->cap - 1);
        h->slots[j] = idx;
    }
    return e;
}

void pthcv_file_drop_storages(pthcv_file *f)
{
    for (int64_t i = 0; i < f->nstorages; i++) {
        free(f->storages[i].key);
        if (f->storages[i].storage) pthcv_storage_release(f->storages[i].storage);
    }
    f->nstorages = 0;
    struct storage_hash *h = hash_of(f);
    if (h) {
        free(h->slots);
        h->slots = NULL;
        h->cap = 0;
    }
    f->total_bytes = f->expanded_bytes = 0;
}

int pthcv_file_charge(pthcv_file *f, int64_t nbytes, const char *what)
{
    if (!pthcv_add_ok(f->total_bytes, nbytes, &f->total_bytes) || f->total_bytes > f->opts.max_total_bytes)
        return pthcv_fail(PTHCV_ERR_LIMIT,
                          "%s: %s: storages add up to more than the limit of %lld bytes (max_total_bytes)", f->path,
                          pthcv_esc(what), (long long)f->opts.max_total_bytes);
    return PTHCV_OK;
}

int pthcv_file_charge_view(pthcv_file *f, const pthcv_tensor *t, const char *where)
{
    /* a view larger than its storage (stride 0) costs memory only when
     * copied; bound what the file can make a contiguous copy allocate */
    int64_t logical = pthcv_tensor_nbytes(t), over = logical - pthcv_tensor_storage_nbytes(t);
    if (over > 0 &&
        (!pthcv_add_ok(f->expanded_bytes, over, &f->expanded_bytes) || f->expanded_bytes > f->opts.max_expanded_bytes))
        return pthcv_fail(PTHCV_ERR_LIMIT,
                          "%s: a view of %lld bytes over a storage of %lld bytes: views beyond their storages exceed "
                          "the limit of %lld bytes (max_expanded_bytes)",
                          where, (long long)logical, (long long)pthcv_tensor_storage_nbytes(t),
                          (long long)f->opts.max_expanded_bytes);
    return PTHCV_OK;
}

pthcv_value *pthcv_storage_value(pthcv_pickle *p, storage_entry *e)
{
    char where[1024];
    snprintf(where, sizeof where, "%s: %s at byte %zu", PK_WHERE(p));
    int64_t shape = e->numel, stride = 1;
    pthcv_tensor *t = pthcv_tensor_over(e->storage, e->dtype >= 0 ? e->dtype : PTHCV_UINT8, 1, &shape, &stride,
                                        e->offset, where);
    if (!t) return NULL;
    pthcv_value *v = pthcv_value_new(p->file, PTHCV_V_STORAGE);
    if (!v) {
        pthcv_tensor_release(t);
        return NULL;
    }
    v->tensor = t;
    return v;
}

/* ---- open / close ---- */

static int any_unsafe(const pthcv_file *f)
{
    for (int i = 0; i < f->nglobals; i++)
        if (f->global_unsafe[i]) return 1;
    return 0;
}

int pthcv_open(const char *path, const pthcv_options *opts, pthcv_file **out)
{
    *out = NULL;
    pthcv_clear_error();
    if (!path) return pthcv_fail(PTHCV_ERR_ARG, "pthcv_open: no path given");
    pthcv_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", path);
    }
    if (opts) f->opts = *opts;
    else pthcv_options_init(&f->opts);

    unsigned char head[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        pthcv_close(f);
        return pthcv_fail(PTHCV_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    ssize_t got = fstat(fd, &sb) == 0 ? pread(fd, head, sizeof head, 0) : -1;
    close(fd);
    if (got < 0 || S_ISDIR(sb.st_mode)) {
        pthcv_close(f);
        return pthcv_fail(PTHCV_ERR_IO, "%s: cannot read: %s", path,
                          S_ISDIR(sb.st_mode) ? "is a directory" : strerror(errno));
    }
    /* torch.load's order: a zip archive by its first bytes, then whatever
     * Python's tarfile opens, then pickles (archive.c) */
    int st;
    if (got == 0) {
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: not a PyTorch file: the file is empty", path);
    } else if (got >= 4 && !memcmp(head, "PK\3\4", 4)) {
        st = pthcv_open_zip(f);
    } else if (pthcv_tar_is_archive(head, (size_t)got)) {
        st = pthcv_open_legacy(f, 1);
    } else if (pthcv_is_safetensors(head, (size_t)got)) { /* safetensors.c */
        st = pthcv_open_safetensors(f);
    } else if (pthcv_is_filestorage(head, (size_t)got)) { /* npz: a zip, see pthcv_open_zip */
        st = pthcv_open_filestorage
            ? pthcv_open_filestorage(f)
            : pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: an OpenCV FileStorage file: this build has no OpenCV", path);
    } else if (got >= 4 && !memcmp(head, "PK", 2)) {
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: damaged zip archive: no local file header at byte 0", path);
    } else if (pthcv_pickle_opcode_known(head[0])) {
        st = pthcv_open_legacy(f, 0);
    } else {
        st = pthcv_fail(PTHCV_ERR_FORMAT,
                        "%s: not a PyTorch file: starts with %02x %02x %02x %02x, neither a zip archive, a tar archive "
                        "nor a pickle",
                        path, head[0], got > 1 ? head[1] : 0, got > 2 ? head[2] : 0, got > 3 ? head[3] : 0);
    }
    /* A scan that found a dangerous global reports it even when the file
     * breaks off later: torch would have run what came before. */
    if (st && st != PTHCV_ERR_NOMEM && f->opts.scan_only && any_unsafe(f)) {
        if (!(f->scan_error = strdup(pthcv_last_error()))) st = pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", path);
        else st = PTHCV_OK, pthcv_clear_error();
    }
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pthcv_last_error());
        pthcv_close(f);
        return pthcv_fail(st, "%s", msg);
    }
    *out = f;
    return PTHCV_OK;
}

void pthcv_close(pthcv_file *f)
{
    if (!f) return;
    for (struct value_chunk *c = f->values, *next; c; c = next) {
        next = c->next;
        for (int i = 0; i < c->used; i++) {
            pthcv_value *v = &c->v[i];
            free(v->items);
            if ((v->kind == PTHCV_V_TENSOR || v->kind == PTHCV_V_STORAGE) && v->tensor) pthcv_tensor_release(v->tensor);
        }
        free(c);
    }
    for (struct byte_chunk *c = f->bytes, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (int i = 0; i < f->nglobals; i++) free(f->globals[i]);
    free(f->globals);
    free(f->global_unsafe);
    pthcv_file_drop_storages(f);
    free(f->storages);
    free(f->storage_hash);
    free(f->scan_error);
    if (f->src) pthcv_source_release(f->src);
    free(f->prefix);
    free(f->local_offsets);
    free(f->record_entries);
    free(f->path);
    free(f);
}

const char *pthcv_file_path(const pthcv_file *f) { return f->path; }
const char *pthcv_file_format(const pthcv_file *f) { return f->format; }
const pthcv_value *pthcv_file_root(const pthcv_file *f) { return f->root; }
const pthcv_value *pthcv_file_constants(const pthcv_file *f) { return f->constants; }
const char *pthcv_file_scan_error(const pthcv_file *f) { return f->scan_error; }
int pthcv_file_global_count(const pthcv_file *f) { return f->nglobals; }

const char *pthcv_file_global(const pthcv_file *f, int i, int *unsafe)
{
    if (i < 0 || i >= f->nglobals) return NULL;
    if (unsafe) *unsafe = f->global_unsafe[i];
    return f->globals[i];
}

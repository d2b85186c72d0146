/*
 * archive.c -- the containers around the pickles.
 *
 * zip (torch.save since 1.6, torch.jit.save): read through libzip. Records sit
 * under one top folder named after the file at save time, so the prefix is
 * taken from the archive, never assumed. Storages are `<prefix>data/<key>`
 * (`constants/<key>` for TorchScript constants); only their directory entry
 * is checked at open, their bytes are read on first touch.
 *
 * legacy (torch < 1.6) and tar (torch < 0.4): the file is mapped and walked:
 * pickles back to back, then raw storages, each after an int64 element count.
 */
#include "reader.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

/* ================================ zip ================================== */

/* Maps the whole file private and writable (copy-on-write: tensors may be
 * written in memory, the file never changes). */
static int map_file(pthcv_file *f, unsigned char **map, size_t *size)
{
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return pthcv_fail(PTHCV_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size <= 0) {
        close(fd);
        return pthcv_fail(PTHCV_ERR_IO, "%s: cannot stat", f->path);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return pthcv_fail(PTHCV_ERR_IO, "%s: cannot map: %s", f->path, strerror(errno));
    *map = m;
    *size = (size_t)sb.st_size;
    return PTHCV_OK;
}

static unsigned rd16(const unsigned char *b) { return (unsigned)b[0] | (unsigned)b[1] << 8; }
static uint64_t rd32(const unsigned char *b) { return (uint64_t)rd16(b) | (uint64_t)rd16(b + 2) << 16; }
static uint64_t rd64(const unsigned char *b) { return rd32(b) | rd32(b + 4) << 32; }

/* The local header offset of every entry, in central-directory order, which
 * is libzip's index order. libzip has validated the archive; this only finds
 * where each entry's bytes start so stored storages can be used in place.
 * Returns NULL when anything looks unusual: the copying path then serves. */
static uint64_t *zip_local_offsets(const unsigned char *map, size_t size, uint64_t count)
{
    if (size < 22) return NULL;
    size_t eocd = size - 22, lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    while (memcmp(map + eocd, "PK\5\6", 4)) {
        if (eocd == lowest) return NULL;
        eocd--;
    }
    uint64_t cd = rd32(map + eocd + 16), n = rd16(map + eocd + 10);
    if ((cd == 0xFFFFFFFFu || n == 0xFFFF) && eocd >= 20 && !memcmp(map + eocd - 20, "PK\6\7", 4)) {
        uint64_t z64 = rd64(map + eocd - 20 + 8);
        if (z64 > size - 56 || memcmp(map + z64, "PK\6\6", 4)) return NULL;
        n = rd64(map + z64 + 32);
        cd = rd64(map + z64 + 48);
    }
    if (n != count || count > size / 46) return NULL;
    uint64_t *lho = malloc((size_t)(count ? count : 1) * sizeof *lho);
    if (!lho) return NULL;
    uint64_t pos = cd;
    for (uint64_t i = 0; i < count; i++) {
        if (pos > size - 46 || memcmp(map + pos, "PK\1\2", 4)) {
            free(lho);
            return NULL;
        }
        const unsigned char *h = map + pos;
        uint64_t nl = rd16(h + 28), xl = rd16(h + 30), cl = rd16(h + 32), off = rd32(h + 42);
        if (pos + 46 + nl + xl + cl > size) {
            free(lho);
            return NULL;
        }
        if (off == 0xFFFFFFFFu) {
            /* ZIP64 extra: the 64-bit fields present are those whose 32-bit
             * field is all ones, in the order size, compressed size, offset */
            const unsigned char *x = h + 46 + nl, *xe = x + xl;
            int skip = (rd32(h + 24) == 0xFFFFFFFFu) + (rd32(h + 20) == 0xFFFFFFFFu);
            off = UINT64_MAX;
            while (x + 4 <= xe) {
                unsigned id = rd16(x), len = rd16(x + 2);
                if (x + 4 + len > xe) break;
                if (id == 1 && (unsigned)(8 * skip + 8) <= len) {
                    off = rd64(x + 4 + 8 * skip);
                    break;
                }
                x += 4 + len;
            }
            if (off == UINT64_MAX) {
                free(lho);
                return NULL;
            }
        }
        lho[i] = off;
        pos += 46 + nl + xl + cl;
    }
    return lho;
}


static int zip_read_storage(pthcv_source *src, const pthcv_storage *st, void *dst)
{
    zip_t *za = src->impl;
    /* Stored entries (all that torch writes) are read raw: libzip's default
     * path runs a CRC over every byte, which costs more than the copy, and
     * torch lets savers skip CRCs anyway, so a mismatch must not fail. */
    zip_stat_t zs;
    zip_flags_t how = zip_stat_index(za, (zip_uint64_t)st->record_index, 0, &zs) == 0 &&
            (zs.valid & ZIP_STAT_COMP_METHOD) && zs.comp_method == ZIP_CM_STORE
        ? ZIP_FL_COMPRESSED
        : 0;
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)st->record_index, how);
    if (!zf)
        return pthcv_fail(PTHCV_ERR_IO, "%s: record '%s': cannot open: %s", src->path, pthcv_esc(st->record),
                          zip_strerror(za));
    /* Deflated entries: reading exactly the declared bytes never reaches
     * libzip's end-of-entry CRC check. */
    int64_t done = 0;
    while (done < st->nbytes) {
        zip_int64_t n = zip_fread(zf, (char *)dst + done, (zip_uint64_t)(st->nbytes - done));
        if (n <= 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", n < 0 ? zip_file_strerror(zf) : "unexpected end of data");
            zip_fclose(zf);
            return pthcv_fail(PTHCV_ERR_IO, "%s: record '%s': truncated: read %lld of %lld bytes (%s)", src->path,
                              pthcv_esc(st->record), (long long)done, (long long)st->nbytes, msg);
        }
        done += n;
    }
    zip_fclose(zf);
    return PTHCV_OK;
}

static void zip_destroy(pthcv_source *src)
{
    if (src->impl) zip_discard(src->impl);
    if (src->map) munmap(src->map, src->map_size);
}

/* What a zip entry claims must fit in the file: its compressed bytes lie in
 * it, a stored entry is as long as its compressed form, and a deflated one
 * expands at most max_zip_ratio times (beyond that it is a zip bomb). This is
 * checked before anything is allocated for the entry. */
static int zip_check_ratio(pthcv_file *f, const zip_stat_t *zs, const char *name)
{
    if ((zs->valid & ZIP_STAT_COMP_SIZE) && zs->comp_size > f->file_size)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: record '%s' is truncated: it claims %llu compressed bytes, the file has %llu", f->path,
                          pthcv_esc(name), (unsigned long long)zs->comp_size, (unsigned long long)f->file_size);
    if ((zs->valid & ZIP_STAT_COMP_METHOD) && zs->comp_method == ZIP_CM_STORE && (zs->valid & ZIP_STAT_COMP_SIZE) &&
        zs->size != zs->comp_size)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: record '%s' is stored but claims %llu bytes in %llu: damaged zip directory", f->path,
                          pthcv_esc(name), (unsigned long long)zs->size, (unsigned long long)zs->comp_size);
    if (!(zs->valid & ZIP_STAT_COMP_METHOD) || zs->comp_method == ZIP_CM_STORE || !(zs->valid & ZIP_STAT_COMP_SIZE))
        return PTHCV_OK;
    uint64_t comp = zs->comp_size ? zs->comp_size : 1;
    if (zs->size / comp > (uint64_t)f->opts.max_zip_ratio)
        return pthcv_fail(
            PTHCV_ERR_LIMIT,
            "%s: record '%s' expands from %llu to %llu bytes, beyond the ratio limit of %lld (max_zip_ratio)", f->path,
            pthcv_esc(name), (unsigned long long)zs->comp_size, (unsigned long long)zs->size,
            (long long)f->opts.max_zip_ratio);
    return PTHCV_OK;
}

/* Reads the whole (small) record idx, such as a pickle, into malloc'd
 * memory; name is for messages. */
static int zip_read_index(pthcv_file *f, zip_int64_t idx, const char *name, unsigned char **buf, size_t *len)
{
    zip_t *za = f->zip;
    zip_stat_t zs;
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: record '%s': no size in the zip directory", f->path, pthcv_esc(name));
    if (zs.size > (zip_uint64_t)f->opts.max_pickle)
        return pthcv_fail(PTHCV_ERR_LIMIT,
                          "%s: record '%s' has %llu bytes, more than the limit of %lld for a pickle (max_pickle)",
                          f->path, pthcv_esc(name), (unsigned long long)zs.size, (long long)f->opts.max_pickle);
    int rst = zip_check_ratio(f, &zs, name);
    if (rst) return rst;
    unsigned char *b = malloc(zs.size + 1);
    if (!b) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory reading '%s'", f->path, name);
    pthcv_storage fake;
    memset(&fake, 0, sizeof fake);
    fake.record_index = idx;
    fake.nbytes = (int64_t)zs.size;
    fake.record = (char *)name;
    int st = zip_read_storage(f->src, &fake, b);
    if (st) {
        free(b);
        return st;
    }
    *buf = b;
    *len = zs.size;
    return PTHCV_OK;
}

static int zip_read_record(pthcv_file *f, const char *name, unsigned char **buf, size_t *len)
{
    zip_int64_t idx = zip_name_locate(f->zip, name, 0);
    if (idx < 0) return pthcv_fail(PTHCV_ERR_FORMAT, "%s: record '%s' is missing", f->path, pthcv_esc(name));
    return zip_read_index(f, idx, name, buf, len);
}

static int zip_has(pthcv_file *f, const char *name) { return zip_name_locate(f->zip, name, 0) >= 0; }

/* Lets a stored, suitably aligned, native-order record be used where it lies
 * in the mapped file (torch aligns every record to 64 bytes). */
static void zip_in_place(pthcv_file *f, pthcv_storage *st, zip_uint64_t idx, const zip_stat_t *zs, const char *record,
                         int dtype)
{
    pthcv_source *src = f->src;
    if (!src->map || !f->local_offsets || f->big_endian || !(zs->valid & ZIP_STAT_COMP_METHOD) ||
        zs->comp_method != ZIP_CM_STORE || idx >= f->nlocal)
        return;
    uint64_t lho = f->local_offsets[idx];
    size_t nl = strlen(record);
    if (lho > src->map_size - 30 || memcmp(src->map + lho, "PK\3\4", 4) || rd16(src->map + lho + 26) != nl ||
        lho + 30 + nl > src->map_size || memcmp(src->map + lho + 30, record, nl))
        return;
    uint64_t data = lho + 30 + rd16(src->map + lho + 26) + rd16(src->map + lho + 28);
    int align = dtype >= 0 ? pthcv_dtype_size(dtype) : 8;
    if (align > 8) align = 8;
    if (data > src->map_size || (uint64_t)st->nbytes > src->map_size - data || data % (uint64_t)align) return;
    st->file_offset = (int64_t)data;
    st->in_place = 1;
}

/* ('storage', storage_type, key, location, numel) */
static int zip_persistent_load(pthcv_pickle *p, pthcv_value *pid, pthcv_value **out)
{
    pthcv_file *f = p->file;
    if (pid->kind != PTHCV_V_TUPLE || pid->n < 5 || pid->items[0]->kind != PTHCV_V_STR ||
        strcmp(pid->items[0]->s, "storage"))
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: %s at byte %zu: persistent id is not a ('storage', type, key, location, numel) tuple",
                          PK_WHERE(p));
    pthcv_value *type = pid->items[1], *key = pid->items[2], *numel_v = pid->items[4];
    char keybuf[64];
    const char *k;
    if (key->kind == PTHCV_V_STR) k = key->s;
    else if (key->kind == PTHCV_V_INT) {
        snprintf(keybuf, sizeof keybuf, "%lld", (long long)key->i);
        k = keybuf;
    } else return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage key is not a string", PK_WHERE(p));
    if (type->kind != PTHCV_V_GLOBAL || numel_v->kind != PTHCV_V_INT || numel_v->i < 0)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage '%s': bad type or element count", PK_WHERE(p),
                          pthcv_esc(k));
    int dtype = pthcv_storage_type_dtype(type->s);
    if (dtype == -2)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: %s at byte %zu: storage '%s' has unknown type %s", PK_WHERE(p),
                          pthcv_esc(k), pthcv_esc(type->s));
    if (strlen(k) > 200 || strchr(k, '/') || strstr(k, ".."))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: bad storage key '%s'", PK_WHERE(p), pthcv_esc(k));
    char record[512];
    snprintf(record, sizeof record, "%s%s%s", f->prefix, f->storage_dir, k);
    storage_entry *e = pthcv_file_find_storage(f, record);
    if (e) {
        if (e->dtype != dtype)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage '%s' referenced as %s and as %s",
                              PK_WHERE(p), pthcv_esc(record), e->dtype >= 0 ? pthcv_dtype_name(e->dtype) : "untyped",
                              dtype >= 0 ? pthcv_dtype_name(dtype) : "untyped");
    } else {
        int64_t esz = dtype >= 0 ? pthcv_dtype_size(dtype) : 1, nbytes;
        if (!pthcv_mul_ok(numel_v->i, esz, &nbytes))
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: %s at byte %zu: storage '%s': %lld elements overflow the byte count", PK_WHERE(p),
                              pthcv_esc(record), (long long)numel_v->i);
        zip_int64_t idx = zip_name_locate(f->zip, record, 0);
        if (idx < 0)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage record '%s' is missing from the archive",
                              PK_WHERE(p), pthcv_esc(record));
        zip_stat_t zs;
        if (zip_stat_index(f->zip, (zip_uint64_t)idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: record '%s': no size in the zip directory", f->path,
                              pthcv_esc(record));
        int rst = zip_check_ratio(f, &zs, record);
        if (rst || (rst = pthcv_file_charge(f, nbytes, record))) return rst;
        if ((int64_t)zs.size < nbytes)
            return pthcv_fail(
                PTHCV_ERR_FORMAT,
                "%s: record '%s' is short: %llu bytes, but the pickle declares %lld %s elements (%lld bytes)", f->path,
                pthcv_esc(record), (unsigned long long)zs.size, (long long)numel_v->i,
                dtype >= 0 ? pthcv_dtype_name(dtype) : "byte", (long long)nbytes);
        pthcv_storage *st = pthcv_storage_new_record(f->src, dtype, nbytes, k, record);
        if (!st) return pthcv_last_status();
        st->record_index = idx;
        if (f->big_endian && dtype >= 0) {
            int esz1 = pthcv_dtype_size(dtype);
            st->swap_bytes = pthcv_dtype_is_complex(dtype) ? esz1 / 2 : esz1;
        }
        zip_in_place(f, st, (zip_uint64_t)idx, &zs, record, dtype);
        e = pthcv_file_add_storage(f, record, st, dtype, 0, numel_v->i);
        pthcv_storage_release(st);
        if (!e) return pthcv_last_status();
    }
    *out = pthcv_storage_value(p, e);
    return *out ? PTHCV_OK : pthcv_last_status();
}

/* Unpickles record idx (named record), its storages in storage_dir. */
static int zip_unpickle(pthcv_file *f, zip_int64_t idx, const char *record, const char *storage_dir, pthcv_value **out)
{
    unsigned char *buf;
    size_t len;
    int st = zip_read_index(f, idx, record, &buf, &len);
    if (st) return st;
    pthcv_pickle p;
    memset(&p, 0, sizeof p);
    p.file = f;
    p.buf = buf;
    p.len = len;
    p.record = record;
    p.persistent_load = zip_persistent_load;
    f->storage_dir = storage_dir;
    st = pthcv_unpickle(&p, out);
    free(buf);
    return st;
}

/* The records under the top folder, for pthcv_file_record_*: the zip
 * entry index of each, in directory order (directories left out). */
static int zip_list_records(pthcv_file *f)
{
    zip_int64_t n = zip_get_num_entries(f->zip, 0);
    size_t pl = strlen(f->prefix);
    f->record_entries = malloc((size_t)(n > 0 ? n : 1) * sizeof *f->record_entries);
    if (!f->record_entries) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory listing records", f->path);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(f->zip, (zip_uint64_t)i, 0);
        size_t nl = name ? strlen(name) : 0;
        if (name && nl > pl && !strncmp(name, f->prefix, pl) && name[nl - 1] != '/')
            f->record_entries[f->nrecords++] = i;
    }
    return PTHCV_OK;
}

int64_t pthcv_file_record_count(const pthcv_file *f) { return f->zip ? f->nrecords : 0; }

const char *pthcv_file_record_name(const pthcv_file *f, int64_t i)
{
    if (!f->zip || i < 0 || i >= f->nrecords) return NULL;
    const char *name = zip_get_name(f->zip, (zip_uint64_t)f->record_entries[i], 0);
    return name ? name + strlen(f->prefix) : NULL;
}

void *pthcv_file_read_record(pthcv_file *f, const char *name, int64_t *len)
{
    if (!f || !name || !len) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_file_read_record: NULL argument");
    if (!f->zip) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: a %s file has no records", f->path, f->format);
    char record[1024];
    if ((size_t)snprintf(record, sizeof record, "%s%s", f->prefix, name) >= sizeof record)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: record name too long", f->path);
    unsigned char *buf;
    size_t n;
    if (zip_read_record(f, record, &buf, &n)) return NULL;
    buf[n] = '\0';
    *len = (int64_t)n;
    return buf;
}

void pthcv_free(void *p) { free(p); }

int pthcv_open_zip(pthcv_file *f)
{
    int err = 0;
    zip_t *za = zip_open(f->path, ZIP_RDONLY, &err);
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        int st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s zip archive: %s", f->path,
                            err == ZIP_ER_NOZIP || err == ZIP_ER_INCONS ? "truncated or damaged" : "unreadable",
                            zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    f->zip = za;
    pthcv_source *src = calloc(1, sizeof *src);
    if (!src || !(src->path = strdup(f->path))) {
        free(src);
        zip_discard(za);
        f->zip = NULL;
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    }
    src->refcount = 1;
    src->impl = za;
    src->read = zip_read_storage;
    src->destroy = zip_destroy;
    f->src = src;
    /* the mapping only serves storages in place; without it, records are copied */
    struct stat sb;
    f->file_size = stat(f->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    if (map_file(f, &src->map, &src->map_size) == PTHCV_OK) {
        f->nlocal = (uint64_t)zip_get_num_entries(za, 0);
        f->local_offsets = zip_local_offsets(src->map, src->map_size, f->nlocal);
    } else {
        pthcv_clear_error();
    }

    /* the top folder: the one holding data.pkl */
    zip_int64_t n = zip_get_num_entries(za, 0);
    if (n > f->opts.max_zip_entries)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %lld zip entries, more than the limit of %lld (max_zip_entries)",
                          f->path, (long long)n, (long long)f->opts.max_zip_entries);
    for (zip_int64_t i = 0; i < n && !f->prefix; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        if (!name) continue;
        const char *slash = strchr(name, '/');
        if (!strcmp(name, "data.pkl")) f->prefix = strdup("");
        else if (slash && !strcmp(slash + 1, "data.pkl")) f->prefix = strndup(name, (size_t)(slash - name + 1));
    }
    if (!f->prefix) /* not torch.save's: numpy.savez's, or an error naming both (npz.c) */
        return pthcv_open_npz(f);

    char rec[512];
    snprintf(rec, sizeof rec, "%sbyteorder", f->prefix);
    if (zip_has(f, rec)) {
        unsigned char *b;
        size_t len;
        int st = zip_read_record(f, rec, &b, &len);
        if (st) return st;
        while (len && (b[len - 1] == '\n' || b[len - 1] == '\r')) len--;
        if (len == 3 && !memcmp(b, "big", 3)) f->big_endian = 1;
        else if (!(len == 6 && !memcmp(b, "little", 6))) {
            free(b);
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: record '%s' says neither 'little' nor 'big'", f->path,
                              pthcv_esc(rec));
        }
        free(b);
    }
    char data_rec[512];
    snprintf(data_rec, sizeof data_rec, "%sdata.pkl", f->prefix);
    snprintf(rec, sizeof rec, "%sconstants.pkl", f->prefix);
    zip_int64_t data_idx = zip_name_locate(za, data_rec, 0), const_idx = zip_name_locate(za, rec, 0);
    f->format = const_idx >= 0 ? "torchscript" : "zip";
    if (zip_list_records(f)) return pthcv_last_status();

    /* A scan reads on after a damaged pickle (a later one may still hold a
     * dangerous global), keeping the first error (pthcv_open decides). */
    char first_error[1024] = "";
    int first = zip_unpickle(f, data_idx, data_rec, "data/", &f->root);
    if (first && !f->opts.scan_only) return first;
    if (first) snprintf(first_error, sizeof first_error, "%s", pthcv_last_error());
    if (const_idx >= 0) {
        int st = zip_unpickle(f, const_idx, rec, "constants/", &f->constants);
        if (st && !f->opts.scan_only) return st;
        if (st && !first) first = st, snprintf(first_error, sizeof first_error, "%s", pthcv_last_error());
    }
    /* Every other pickle in the archive, in any folder and under any name
     * given twice: torch reads data.pkl from the folder of the archive's
     * first entry, which need not be the one pthcv took, and TorchScript
     * archives hold more pickles (bytecode.pkl, extra/...). Their contents
     * are not needed, and their errors (a bytecode pickle may reference
     * tensors stored elsewhere) pass; a dangerous global in any of them
     * makes the file unsafe. */
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        size_t nl = name ? strlen(name) : 0;
        if (!name || i == data_idx || i == const_idx || nl < 4 || strcmp(name + nl - 4, ".pkl")) continue;
        pthcv_value *ignored;
        char record[512];
        snprintf(record, sizeof record, "%s", name);
        int st = zip_unpickle(f, i, record, "data/", &ignored);
        if (st == PTHCV_ERR_UNSAFE) return st;
        if (st) pthcv_clear_error();
    }
    return first ? pthcv_fail(first, "%s", first_error) : PTHCV_OK;
}

/* ======================= legacy stream and tar ========================= */

static int map_read_storage(pthcv_source *src, const pthcv_storage *st, void *dst)
{
    if (st->file_offset < 0 || (uint64_t)st->file_offset + (uint64_t)st->nbytes > src->map_size)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: storage '%s' lies outside the file", src->path, pthcv_esc(st->record));
    memcpy(dst, src->map + st->file_offset, (size_t)st->nbytes);
    return PTHCV_OK;
}

static void map_destroy(pthcv_source *src)
{
    if (src->map && src->map_size) munmap(src->map, src->map_size);
}

static int legacy_key(pthcv_pickle *p, pthcv_value *key, char *buf, size_t n)
{
    if (key->kind == PTHCV_V_STR) snprintf(buf, n, "%s", key->s);
    else if (key->kind == PTHCV_V_INT) snprintf(buf, n, "%lld", (long long)key->i);
    else
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage key is neither a string nor an integer",
                          PK_WHERE(p));
    if (strlen(buf) >= n - 1)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage key too long", PK_WHERE(p));
    return PTHCV_OK;
}

/* Creates (or finds) the root storage `key` of `dtype` and `numel` elements;
 * its file offset is filled in when the data section is walked. */
static storage_entry *legacy_root(pthcv_pickle *p, const char *key, int dtype, int64_t numel)
{
    pthcv_file *f = p->file;
    storage_entry *e = pthcv_file_find_storage(f, key);
    if (e) {
        if (e->dtype != dtype || e->numel != numel)
            return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage '%s' declared twice differently",
                                   PK_WHERE(p), pthcv_esc(key));
        return e;
    }
    int64_t nbytes;
    if (numel < 0 || !pthcv_mul_ok(numel, pthcv_dtype_size(dtype), &nbytes))
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage '%s': bad element count %lld",
                               PK_WHERE(p), pthcv_esc(key), (long long)numel);
    char record[300];
    snprintf(record, sizeof record, "storage %s", key);
    if (pthcv_file_charge(f, nbytes, record)) return NULL;
    pthcv_storage *st = pthcv_storage_new_record(f->src, dtype, nbytes, key, record);
    if (!st) return NULL;
    st->file_offset = -1; /* not yet located: the data section comes last */
    e = pthcv_file_add_storage(f, key, st, dtype, 0, numel);
    pthcv_storage_release(st);
    return e;
}

/* The storage entry for a slice [off, off + numel) of root, found or made. */
static storage_entry *view_entry(pthcv_file *f, const char *key, storage_entry *root, int64_t off, int64_t numel)
{
    char vkey[200];
    snprintf(vkey, sizeof vkey, "view/%s", key);
    storage_entry *e = pthcv_file_find_storage(f, vkey);
    if (e) return e;
    int64_t esz = pthcv_dtype_size(root->dtype);
    pthcv_storage *v = pthcv_storage_new_view(root->storage, root->dtype, off * esz, numel * esz);
    if (!v) return NULL;
    e = pthcv_file_add_storage(f, vkey, v, root->dtype, 0, numel);
    pthcv_storage_release(v);
    return e;
}

/* ('storage', type, root_key, location, numel, view_metadata) or
 * ('module', class, source_file, source) */
static int legacy_persistent_load(pthcv_pickle *p, pthcv_value *pid, pthcv_value **out)
{
    if (pid->kind != PTHCV_V_TUPLE || pid->n < 1 || pid->items[0]->kind != PTHCV_V_STR)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: persistent id is not a tuple naming its kind",
                          PK_WHERE(p));
    if (!strcmp(pid->items[0]->s, "module") && pid->n >= 2) {
        *out = pid->items[1]; /* the module's class; its source is not needed */
        return PTHCV_OK;
    }
    if (strcmp(pid->items[0]->s, "storage") || pid->n < 6 || pid->items[1]->kind != PTHCV_V_GLOBAL ||
        pid->items[4]->kind != PTHCV_V_INT)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: %s at byte %zu: persistent id is not ('storage', type, key, location, numel, view)",
                          PK_WHERE(p));
    int dtype = pthcv_storage_type_dtype(pid->items[1]->s);
    if (dtype < 0)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: %s at byte %zu: unknown storage type %s", PK_WHERE(p),
                          pthcv_esc(pid->items[1]->s));
    char key[128];
    int st = legacy_key(p, pid->items[2], key, sizeof key);
    if (st) return st;
    storage_entry *root = legacy_root(p, key, dtype, pid->items[4]->i);
    if (!root) return pthcv_last_status();
    pthcv_value *view = pid->items[5];
    if (view->kind == PTHCV_V_NONE) {
        *out = pthcv_storage_value(p, root);
        return *out ? PTHCV_OK : pthcv_last_status();
    }
    /* (view_key, offset, size): a slice of the root storage, in elements */
    if (view->kind != PTHCV_V_TUPLE || view->n != 3 || view->items[1]->kind != PTHCV_V_INT ||
        view->items[2]->kind != PTHCV_V_INT)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: storage view is not (key, offset, size)", PK_WHERE(p));
    int64_t off = view->items[1]->i, sz = view->items[2]->i, end;
    if (off < 0 || sz < 0 || !pthcv_add_ok(off, sz, &end) || end > root->numel)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: %s at byte %zu: storage view [%lld, +%lld) lies outside storage '%s' of %lld elements",
                          PK_WHERE(p), (long long)off, (long long)sz, pthcv_esc(key), (long long)root->numel);
    /* torch gives such tensors the slice as their storage, offsets counted
     * from the slice: keep that, sharing the root's bytes */
    char vkey[160];
    if ((st = legacy_key(p, view->items[0], vkey, sizeof vkey - 8))) return st;
    storage_entry *e = view_entry(p->file, vkey, root, off, sz);
    if (!e) return pthcv_last_status();
    *out = pthcv_storage_value(p, e);
    return *out ? PTHCV_OK : pthcv_last_status();
}

/* tar: a persistent id is a tensor's key (or a module tuple) */
static int tar_persistent_load(pthcv_pickle *p, pthcv_value *pid, pthcv_value **out)
{
    if (pid->kind == PTHCV_V_TUPLE && pid->n >= 1) {
        *out = pid->items[0];
        return PTHCV_OK;
    }
    char key[128];
    int64_t v;
    if (pid->kind == PTHCV_V_STR) {
        char *end;
        v = strtoll(pid->s, &end, 10);
        if (*end || end == pid->s)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: persistent id '%s' is not a tensor key",
                              PK_WHERE(p), pthcv_esc_n(pid->s, strlen(pid->s) > 40 ? 40 : strlen(pid->s)));
    } else if (pid->kind == PTHCV_V_INT) {
        v = pid->i;
    } else {
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: persistent id is not a tensor key", PK_WHERE(p));
    }
    snprintf(key, sizeof key, "tensor/%lld", (long long)v);
    storage_entry *e = pthcv_file_find_storage(p->file, key);
    if (!e || !e->tensor)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: tensor %lld is missing from the 'tensors' member",
                          PK_WHERE(p), (long long)v);
    *out = e->tensor;
    return PTHCV_OK;
}

static int run_pickle(pthcv_file *f, const unsigned char *buf, size_t len, size_t *pos, const char *record,
                      persistent_load_fn pl, pthcv_value **out)
{
    pthcv_pickle p;
    memset(&p, 0, sizeof p);
    p.file = f;
    p.buf = buf;
    p.len = len;
    p.pos = *pos;
    p.record = record;
    p.persistent_load = pl;
    int st = pthcv_unpickle(&p, out);
    *pos = p.pos;
    return st;
}

static int64_t rd_i64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return (int64_t)v;
}

static int is_magic(const pthcv_value *v)
{
    static const unsigned char magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return v->kind == PTHCV_V_BIGINT && v->len == 10 && !memcmp(v->s, magic, 10);
}

/* The first pickle of a file that is neither a zip nor a tar, read as
 * torch.load reads it: unpickled whole (whatever it calls runs) before its
 * value is checked against torch's magic number. */
static int first_pickle(pthcv_file *f, const unsigned char *map, size_t size, size_t *pos, pthcv_value **v)
{
    int st = run_pickle(f, map, size, pos, "pickle", NULL, v);
    if (st != PTHCV_ERR_FORMAT && st != PTHCV_ERR_UNSUPPORTED) return st;
    char msg[1024];
    size_t pl = strlen(f->path);
    const char *m = pthcv_last_error();
    snprintf(msg, sizeof msg, "%s", strncmp(m, f->path, pl) || strncmp(m + pl, ": ", 2) ? m : m + pl + 2);
    return pthcv_fail(st,
                      "%s: not a PyTorch file: neither a zip nor a tar archive, and not a pickle that can be read (%s)",
                      f->path, msg);
}

/* Pickles back to back, as torch.load reads a file that is neither a zip
 * nor a tar archive: when the first pickle is torch's magic number, the
 * legacy layout (each of its pickles is unpickled in turn, then the storages'
 * bytes follow); any other first pickle is the whole file for pthcv, format
 * "pickle" (torch would run it, then fail on the magic number). */
static int open_pickle_stream(pthcv_file *f, const unsigned char *map, size_t size)
{
    size_t pos = 0;
    pthcv_value *v;
    f->format = "pickle";
    int st = first_pickle(f, map, size, &pos, &v);
    if (st) return st;
    if (!is_magic(v)) {
        f->format = "pickle";
        f->root = v;
        if (pos < size && !f->opts.scan_only)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: a plain pickle (not a file torch.save wrote) ends at byte %zu, and %zu more bytes "
                              "follow: pthcv reads one pickle",
                              f->path, pos, size - pos);
        return PTHCV_OK;
    }
    f->format = "legacy";
    if ((st = run_pickle(f, map, size, &pos, "protocol version", NULL, &v))) return st;
    if (v->kind != PTHCV_V_INT || v->i != 1001)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: legacy protocol version %lld, expected 1001", f->path,
                          v->kind == PTHCV_V_INT ? (long long)v->i : -1LL);
    if ((st = run_pickle(f, map, size, &pos, "sys_info", NULL, &v))) return st;
    if ((st = run_pickle(f, map, size, &pos, "main pickle", legacy_persistent_load, &f->root))) return st;
    pthcv_value *keys;
    size_t keys_at = pos;
    if ((st = run_pickle(f, map, size, &pos, "storage key list", NULL, &keys))) return st;
    if (f->opts.scan_only) return PTHCV_OK; /* every pickle is read; a scan takes no storage */
    if (keys->kind != PTHCV_V_LIST && keys->kind != PTHCV_V_TUPLE)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: storage key list at byte %zu is not a list", f->path, keys_at);
    /* the data section: per key, an int64 element count then the bytes */
    for (int64_t i = 0; i < keys->n; i++) {
        char key[128];
        pthcv_pickle dummy = {.file = f, .record = "storage key list", .op_offset = keys_at};
        if ((st = legacy_key(&dummy, keys->items[i], key, sizeof key))) return st;
        storage_entry *e = pthcv_file_find_storage(f, key);
        if (!e)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: storage '%s' is listed but no tensor uses it, so its element size is unknown",
                              f->path, pthcv_esc(key));
        if (size - pos < 8)
            return pthcv_fail(
                PTHCV_ERR_FORMAT,
                "%s: truncated: the element count of storage '%s' at byte %zu is past the end of the file (%zu bytes)",
                f->path, pthcv_esc(key), pos, size);
        int64_t count = rd_i64(map + pos);
        if (count != e->numel)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: storage '%s' at byte %zu holds %lld elements, the pickle declares %lld", f->path,
                              pthcv_esc(key), pos, (long long)count, (long long)e->numel);
        pos += 8;
        if ((uint64_t)e->storage->nbytes > size - pos)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: truncated: storage '%s' needs %lld bytes at byte %zu, the file ends at %zu", f->path,
                              pthcv_esc(key), (long long)e->storage->nbytes, pos, size);
        e->storage->file_offset = (int64_t)pos;
        pos += (size_t)e->storage->nbytes;
    }
    for (int64_t i = 0; i < f->nstorages; i++)
        if (f->storages[i].storage->file_offset < 0)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: storage '%s' is missing from the data section", f->path,
                              pthcv_esc(f->storages[i].key));
    return PTHCV_OK;
}

/* ---- tar (torch < 0.4): members found by tar.c ---- */

static int open_tar(pthcv_file *f, const unsigned char *map, size_t size)
{
    size_t off, len, pos;
    int st;
    pthcv_value *v;
    if ((st = pthcv_tar_find(f, map, size, "storages", &off, &len))) return st;
    const unsigned char *m = map + off;
    pos = 0;
    if ((st = run_pickle(f, m, len, &pos, "storages", NULL, &v))) return st;
    if (v->kind != PTHCV_V_INT || v->i < 0)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'storages' does not start with a count", f->path);
    int64_t count = v->i;
    for (int64_t i = 0; i < count; i++) {
        size_t at = pos;
        if ((st = run_pickle(f, m, len, &pos, "storages", NULL, &v))) return st;
        if (v->kind != PTHCV_V_TUPLE || v->n != 3 || v->items[2]->kind != PTHCV_V_GLOBAL)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: tar 'storages' at byte %zu: expected (key, location, storage type)", f->path, at);
        int dtype = pthcv_storage_type_dtype(v->items[2]->s);
        if (dtype < 0)
            return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: tar 'storages': unknown storage type %s", f->path,
                              pthcv_esc(v->items[2]->s));
        char key[128];
        pthcv_pickle dummy = {.file = f, .record = "storages", .op_offset = at};
        if ((st = legacy_key(&dummy, v->items[0], key, sizeof key))) return st;
        if (len - pos < 8)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: truncated: tar 'storages' ends before storage '%s'", f->path,
                              pthcv_esc(key));
        int64_t numel = rd_i64(m + pos), nbytes;
        pos += 8;
        if (numel < 0 || !pthcv_mul_ok(numel, pthcv_dtype_size(dtype), &nbytes) || (uint64_t)nbytes > len - pos)
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: truncated: storage '%s' of %lld elements does not fit in tar 'storages'", f->path,
                              pthcv_esc(key), (long long)numel);
        storage_entry *e = legacy_root(&dummy, key, dtype, numel);
        if (!e) return pthcv_last_status();
        e->storage->file_offset = (int64_t)(off + pos);
        pos += (size_t)nbytes;
    }
    /* views: (target_key, root_key, offset, numel) */
    if ((st = run_pickle(f, m, len, &pos, "storages", NULL, &v))) return st;
    for (int64_t i = 0; (v->kind == PTHCV_V_LIST || v->kind == PTHCV_V_TUPLE) && i < v->n; i++) {
        pthcv_value *t = v->items[i];
        char tk[128], rk[128];
        pthcv_pickle dummy = {.file = f, .record = "storages"};
        if (t->kind != PTHCV_V_TUPLE || t->n != 4 || t->items[2]->kind != PTHCV_V_INT ||
            t->items[3]->kind != PTHCV_V_INT || legacy_key(&dummy, t->items[0], tk, sizeof tk) ||
            legacy_key(&dummy, t->items[1], rk, sizeof rk))
            return pthcv_fail(PTHCV_ERR_FORMAT,
                              "%s: tar 'storages': storage view %lld is not (key, root, offset, numel)", f->path,
                              (long long)i);
        storage_entry *root = pthcv_file_find_storage(f, rk);
        int64_t end;
        if (!root || t->items[2]->i < 0 || t->items[3]->i < 0 || !pthcv_add_ok(t->items[2]->i, t->items[3]->i, &end) ||
            end > root->numel)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'storages': view '%s' lies outside storage '%s'", f->path,
                              pthcv_esc(tk), pthcv_esc(rk));
        storage_entry *ve = view_entry(f, tk, root, t->items[2]->i, t->items[3]->i);
        if (!ve || !pthcv_file_add_storage(f, tk, ve->storage, ve->dtype, 0, ve->numel)) return pthcv_last_status();
    }

    if ((st = pthcv_tar_find(f, map, size, "tensors", &off, &len))) return st;
    m = map + off;
    pos = 0;
    if ((st = run_pickle(f, m, len, &pos, "tensors", NULL, &v))) return st;
    if (v->kind != PTHCV_V_INT || v->i < 0)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'tensors' does not start with a count", f->path);
    count = v->i;
    for (int64_t i = 0; i < count; i++) {
        size_t at = pos;
        if ((st = run_pickle(f, m, len, &pos, "tensors", NULL, &v))) return st;
        char key[128], sk[128], where[300];
        pthcv_pickle dummy = {.file = f, .record = "tensors", .op_offset = at};
        if (v->kind != PTHCV_V_TUPLE || v->n < 2 || legacy_key(&dummy, v->items[0], key, sizeof key) ||
            legacy_key(&dummy, v->items[1], sk, sizeof sk))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'tensors' at byte %zu: expected (key, storage key, type)",
                              f->path, at);
        storage_entry *se = pthcv_file_find_storage(f, sk);
        if (!se)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'tensors': tensor '%s' uses missing storage '%s'", f->path,
                              pthcv_esc(key), pthcv_esc(sk));
        if (len - pos < 8)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: truncated: tar 'tensors' ends inside tensor '%s'", f->path,
                              pthcv_esc(key));
        int32_t nd = (int32_t)(uint32_t)(m[pos] | m[pos + 1] << 8 | m[pos + 2] << 16 | (uint32_t)m[pos + 3] << 24);
        pos += 8; /* ndim, then 4 bytes torch once wrote as part of an 8-byte ndim */
        if (nd < 0 || nd > PTHCV_MAX_DIMS)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'tensors': tensor '%s' has %d dimensions", f->path,
                              pthcv_esc(key), nd);
        if (len - pos < (size_t)(16 * nd + 8))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: truncated: tar 'tensors' ends inside tensor '%s'", f->path,
                              pthcv_esc(key));
        int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
        for (int k = 0; k < nd; k++) shape[k] = rd_i64(m + pos + 8 * k);
        for (int k = 0; k < nd; k++) stride[k] = rd_i64(m + pos + 8 * (nd + k));
        int64_t offset = rd_i64(m + pos + 16 * nd), total;
        pos += (size_t)(16 * nd + 8);
        if (offset < 0 || !pthcv_add_ok(offset, se->offset, &total))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar 'tensors': tensor '%s' has a bad offset", f->path,
                              pthcv_esc(key));
        snprintf(where, sizeof where, "%s: tar 'tensors' tensor '%s'", f->path, pthcv_esc(key));
        /* a view storage bounds the tensor by its own extent */
        int64_t last = 0, prod, numel = 1;
        for (int k = 0; k < nd; k++) {
            if (shape[k] < 0 || stride[k] < 0 || !pthcv_mul_ok(numel, shape[k], &numel))
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s: bad size or stride", where);
        }
        for (int k = 0; numel && k < nd; k++)
            if (!pthcv_mul_ok(shape[k] - 1, stride[k], &prod) || !pthcv_add_ok(last, prod, &last))
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s: size * stride overflows 64 bits", where);
        if (numel && (!pthcv_add_ok(last, offset, &last) || last >= se->numel))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: reaches element %lld, outside its storage of %lld elements", where,
                              (long long)last, (long long)se->numel);
        pthcv_tensor *t = pthcv_tensor_over(se->storage, se->dtype, nd, shape, stride, total, where);
        if (!t) return pthcv_last_status();
        if ((st = pthcv_file_charge_view(f, t, where))) {
            pthcv_tensor_release(t);
            return st;
        }
        pthcv_value *tv = pthcv_value_new(f, PTHCV_V_TENSOR);
        if (!tv) {
            pthcv_tensor_release(t);
            return pthcv_last_status();
        }
        tv->tensor = t;
        char tkey[160];
        snprintf(tkey, sizeof tkey, "tensor/%s", key);
        storage_entry *te = pthcv_file_add_storage(f, tkey, NULL, -1, 0, 0);
        if (!te) return pthcv_last_status();
        te->tensor = tv;
    }

    if ((st = pthcv_tar_find(f, map, size, "pickle", &off, &len))) return st;
    pos = 0;
    return run_pickle(f, map + off, len, &pos, "pickle", tar_persistent_load, &f->root);
}

int pthcv_open_mapped(pthcv_file *f, unsigned char **map, size_t *size)
{
    int st = map_file(f, map, size);
    if (st) return st;
    pthcv_source *src = calloc(1, sizeof *src);
    if (!src || !(src->path = strdup(f->path))) {
        free(src);
        munmap(*map, *size);
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    }
    src->refcount = 1;
    src->map = *map;
    src->map_size = *size;
    src->read = map_read_storage;
    src->destroy = map_destroy;
    f->src = src;
    f->file_size = *size;
    return PTHCV_OK;
}

int pthcv_open_legacy(pthcv_file *f, int tar)
{
    unsigned char *map;
    size_t size;
    int st = pthcv_open_mapped(f, &map, &size);
    if (st) return st;
    f->format = tar ? "tar" : "legacy";
    f->legacy_tar = tar;
    st = tar ? open_tar(f, map, size) : open_pickle_stream(f, map, size);
    if (st && tar && st != PTHCV_ERR_NOMEM && (st != PTHCV_ERR_UNSAFE || f->opts.scan_only)) {
        /* torch.load reads the file as pickles when tarfile fails on it (a
         * damaged or truncated member), so pthcv does too: a scan must see
         * what torch would then run. When that fails too, the tar's error
         * is the one that explains the file. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pthcv_last_error());
        pthcv_file_drop_storages(f);
        f->root = NULL;
        f->legacy_tar = 0;
        int st2 = open_pickle_stream(f, map, size);
        if (st2 == PTHCV_ERR_UNSAFE || !st2) st = st2;
        else st = pthcv_fail(st, "%s", msg), f->format = "tar";
    }
    /* storages whose bytes are aligned for their elements are used in place */
    for (int64_t i = 0; !st && i < f->nstorages; i++) {
        pthcv_storage *s1 = f->storages[i].storage;
        if (!s1 || s1->base || s1->dtype < 0) continue;
        int align = pthcv_dtype_size(s1->dtype) > 8 ? 8 : pthcv_dtype_size(s1->dtype);
        if (s1->file_offset >= 0 && s1->file_offset % align == 0) s1->in_place = 1;
    }
    return st;
}

/* ---- for npz.c: zip members that are not torch records ---- */

int pthcv_zip_check_entry(pthcv_file *f, const struct zip_stat *zs, const char *name)
{
    return zip_check_ratio(f, zs, name);
}

void pthcv_zip_use_in_place(pthcv_file *f, pthcv_storage *st, uint64_t idx, const struct zip_stat *zs,
                            const char *record, int dtype)
{
    zip_in_place(f, st, idx, zs, record, dtype);
}

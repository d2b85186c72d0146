/*
 * tar.c -- the members of a tar archive, found as torch.load finds them.
 *
 * torch.load hands every file that is not a zip to Python's tarfile first
 * (torch < 0.4 wrote checkpoints as tar archives of three pickled members),
 * and a file tarfile opens is read as a tar, whatever else it looks like.
 * What counts is therefore tarfile's reading, not the tar standard's:
 *   - a file is a tar when its first header block's numeric fields are
 *     octal text (or base-256) and its checksum adds up, magic or not;
 *   - headers follow one another until an all-zero or invalid block; only
 *     regular members (and unknown types) are followed by data blocks;
 *   - GNU long names ('L') and pax headers ('x', and 'g' for every later
 *     member) rename members and pax ones resize them;
 *   - a name is looked up exactly, and its last occurrence wins.
 * Reading the members any other way could let a scan look at other bytes
 * than torch unpickles. GNU sparse members are refused.
 */
#include "reader.h"
#include <string.h>

enum { BLOCK = 512, NAME_MAX_BYTES = 4096 };

/* Python's tarfile.nti over a numeric field: base-256 when the first byte is
 * 0x80 or 0xff, else octal text as int(text.strip() or "0", 8) reads it (a
 * sign, a 0o prefix, underscores between digits). 0 when invalid. */
static int tar_number(const unsigned char *f, size_t n, int64_t *out)
{
    if (f[0] == 0x80 || f[0] == 0xff) {
        uint64_t v = 0;
        for (size_t i = 1; i < n; i++) {
            if (v >> 55) {
                v = INT64_MAX;
                break;
            } /* beyond any file: saturate */
            v = v << 8 | f[i];
        }
        *out = f[0] == 0xff ? -(int64_t)(v & INT64_MAX) : (int64_t)(v & INT64_MAX);
        return 1;
    }
    size_t end = 0;
    while (end < n && f[end]) end++;
    size_t a = 0, b = end;
    for (size_t i = 0; i < end; i++)
        if (f[i] >= 0x80) return 0;
    while (a < b && strchr(" \t\n\r\v\f", f[a])) a++;
    while (b > a && strchr(" \t\n\r\v\f", f[b - 1])) b--;
    if (a == b) {
        *out = 0;
        return 1;
    }
    int neg = 0;
    if (f[a] == '+' || f[a] == '-') neg = f[a++] == '-';
    int prefixed = b - a >= 2 && f[a] == '0' && (f[a + 1] == 'o' || f[a + 1] == 'O');
    if (prefixed) a += 2;
    int64_t v = 0;
    int digits = 0, after_digit = prefixed; /* "0o_7" is valid: _ may follow the prefix */
    for (size_t i = a; i < b; i++) {
        if (f[i] == '_') {
            if (!after_digit || i + 1 == b) return 0;
            after_digit = 0;
            continue;
        }
        if (f[i] < '0' || f[i] > '7') return 0;
        if (v < (INT64_MAX >> 3)) v = v * 8 + (f[i] - '0');
        digits++;
        after_digit = 1;
    }
    if (!digits) return 0;
    *out = neg ? -v : v;
    return 1;
}

/* tarfile's frombuf check: every numeric field valid, and the checksum
 * (bytes 148-155) the sum of the block's bytes with that field as spaces,
 * counted unsigned or signed. An all-zero block is not a header. */
static int header_valid(const unsigned char *h)
{
    static const unsigned short fields[][2] = {{100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}, {329, 8}, {337, 8}};
    int64_t chksum, v;
    int zero = 1;
    for (int i = 0; zero && i < BLOCK; i++) zero = h[i] == 0;
    if (zero || !tar_number(h + 148, 8, &chksum)) return 0;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (!tar_number(h + fields[i][0], fields[i][1], &v)) return 0;
    int64_t sum_u = 256, sum_s = 256;
    for (int i = 0; i < BLOCK; i++) {
        if (i >= 148 && i < 156) continue;
        sum_u += h[i];
        sum_s += (signed char)h[i];
    }
    return chksum == sum_u || chksum == sum_s;
}

int pthcv_tar_is_archive(const unsigned char *head, size_t n) { return n >= BLOCK && header_valid(head); }

/* A name field: its bytes up to the first NUL. */
static size_t field_len(const unsigned char *f, size_t n)
{
    size_t k = 0;
    while (k < n && f[k]) k++;
    return k;
}

static int64_t blocks(int64_t size) { return size <= 0 ? 0 : (size + BLOCK - 1) / BLOCK * BLOCK; }

/* What pax records ("%d %s=%s\n") set: path and size; a GNU.sparse key
 * makes the member sparse. 0 when a record is malformed (tarfile then ends
 * the archive there). */
typedef struct {
    const unsigned char *path;
    size_t path_len;
    int has_path, has_size, sparse;
    int64_t size;
} pax_info;

static int parse_pax(const unsigned char *buf, size_t n, pax_info *info)
{
    size_t pos = 0;
    while (pos < n && buf[pos]) {
        size_t d = pos, len = 0;
        while (d < n && d - pos < 20 && buf[d] >= '0' && buf[d] <= '9') len = len * 10 + (buf[d++] - '0');
        if (d == pos || d >= n || buf[d] != ' ' || len < 5 || len > n - pos) return 0;
        const unsigned char *kv = buf + d + 1, *end = buf + pos + len - 1; /* end: the '\n' */
        const unsigned char *eq = memchr(kv, '=', (size_t)(end - kv));
        if (*end != '\n' || !eq || eq == kv) return 0;
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(end - eq - 1);
        if (klen == 4 && !memcmp(kv, "path", 4)) {
            info->path = eq + 1;
            info->path_len = vlen;
            while (info->path_len && info->path[info->path_len - 1] == '/') info->path_len--; /* rstrip("/") */
            info->has_path = 1;
        } else if (klen == 4 && !memcmp(kv, "size", 4)) {
            int64_t v = 0;
            int ok = vlen > 0;
            for (size_t i = 0; ok && i < vlen; i++) {
                ok = eq[1 + i] >= '0' && eq[1 + i] <= '9';
                if (ok && v < INT64_MAX / 10) v = v * 10 + (eq[1 + i] - '0');
            }
            info->size = ok ? v : 0; /* tarfile: a size that int() refuses is 0 */
            info->has_size = 1;
        } else if (klen > 11 && !memcmp(kv, "GNU.sparse.", 11)) {
            info->sparse = 1;
        }
        pos += len;
    }
    return 1;
}

/* Regular members carry data blocks; so do types tarfile does not know. */
static int has_data(unsigned char type) { return !strchr("123456LKSxgX", type) || type == 0; }

int pthcv_tar_find(pthcv_file *f, const unsigned char *map, size_t size, const char *name, size_t *off, size_t *len)
{
    size_t want = strlen(name), pos = 0, found_at = 0;
    pax_info global = {0}, local = {0};
    int have_local = 0, found = 0, extends = 0; /* extends: the header before belongs to the next one */
    const unsigned char *long_name = NULL;      /* from a GNU 'L' member, for the next one */
    size_t long_len = 0;
    unsigned char found_type = 0;
    int64_t found_size = 0;
    for (;;) {
        if (size - pos < BLOCK || !header_valid(map + pos)) {
            /* tarfile reads a long name's or pax header's member with it:
             * without one the archive is damaged (and torch reads the file
             * as a pickle instead, as the caller then does too) */
            if (extends)
                return pthcv_fail(
                    PTHCV_ERR_FORMAT,
                    "%s: damaged tar archive: no valid header at byte %zu after a long name or pax header", f->path,
                    pos);
            break; /* an end block, or what tarfile takes for one */
        }
        const unsigned char *h = map + pos;
        int64_t hsize;
        tar_number(h + 124, 12, &hsize);
        unsigned char type = h[156];
        size_t data = pos + BLOCK;
        if (type == 'L' || type == 'K' || type == 'x' || type == 'X' || type == 'g') {
            if (hsize < 0 || (uint64_t)hsize > size - data)
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s: truncated: the tar header data at byte %zu needs %lld bytes",
                                  f->path, pos, (long long)hsize);
            if (type == 'L') {
                long_name = map + data;
                long_len = field_len(long_name, (size_t)hsize);
            } else if (type != 'K') {
                pax_info *into = type == 'g' ? &global : &local;
                if (type != 'g') local = global, have_local = 1;
                if (!parse_pax(map + data, (size_t)hsize, into)) break; /* tarfile: an invalid header ends it */
            }
            pos = data + (size_t)blocks(hsize) < size ? data + (size_t)blocks(hsize) : size;
            extends = 1;
            continue;
        }
        extends = 0;
        if (type == 'S' || global.sparse || (have_local && local.sparse))
            return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                              "%s: the tar member at byte %zu is a GNU sparse file, which pthcv does not read", f->path,
                              pos);

        /* the member's name: its header's (with the ustar prefix), then a
         * global pax path, a local one, a GNU long name, in tarfile's order */
        const unsigned char *nm = h;
        size_t nl = field_len(h, 100), pl = field_len(h + 345, 155);
        char joined[NAME_MAX_BYTES];
        if (type == 0 && nl && nm[nl - 1] == '/') type = '5'; /* a V7 directory */
        if (type == '5')
            while (nl && nm[nl - 1] == '/') nl--;
        if (pl) {
            int k = snprintf(joined, sizeof joined, "%.*s/%.*s", (int)pl, (const char *)h + 345, (int)nl,
                             (const char *)nm);
            nm = (const unsigned char *)joined;
            nl = (size_t)k;
        }
        int64_t msize = hsize;
        pax_info *pax[2] = {&global, have_local ? &local : NULL};
        for (int i = 0; i < 2; i++) {
            if (!pax[i]) continue;
            if (pax[i]->has_path) nm = pax[i]->path, nl = pax[i]->path_len;
            if (pax[i]->has_size) msize = pax[i]->size;
        }
        if (long_name) nm = long_name, nl = long_len;
        if (nl == want && !memcmp(nm, name, want)) {
            found = 1;
            found_at = pos;
            found_type = type;
            found_size = msize;
            *off = data;
        }
        /* the next header: after the data blocks, counted from a local pax
         * size when there is one, else from the header's */
        int64_t skip = has_data(type) ? blocks(have_local && local.has_size ? local.size : hsize) : 0;
        long_name = NULL;
        have_local = 0;
        if (skip < 0 || (uint64_t)skip > size - data) break; /* tarfile finds no header past the end */
        pos = data + (size_t)skip;
    }
    if (!found) return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tar member '%s' is missing", f->path, pthcv_esc(name));
    if (!has_data(found_type))
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: tar member '%s' at byte %zu is a link or a special file (type '%c'), not a regular file",
                          f->path, pthcv_esc(name), found_at, found_type);
    if (found_size < 0 || (uint64_t)found_size > size - *off)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: truncated: tar member '%s' at byte %zu needs %lld bytes", f->path,
                          pthcv_esc(name), found_at, (long long)found_size);
    *len = (size_t)found_size;
    return PTHCV_OK;
}

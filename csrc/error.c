/* error.c -- the per-thread status and message behind pthcv_last_error(),
 * and the escaping of text taken from files for messages. */
#include "internal.h"
#include <string.h>

static _Thread_local int last_status;
static _Thread_local char last_message[1024];

/* Length of the valid UTF-8 sequence at s[0..n), 0 when there is none
 * (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF
 * or cut short). */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* A code point that moves the cursor or the terminal rather than printing:
 * C0 and C1 controls and DEL. */
static int is_control(const unsigned char *s, size_t len)
{
    if (len == 1) return s[0] < 0x20 || s[0] == 0x7F;
    return len == 2 && s[0] == 0xC2 && s[1] < 0xA0;
}

int pthcv_name_is_printable(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_length(p + i, n - i);
        if (!len || is_control(p + i, len)) return 0;
        i += len;
    }
    return 1;
}

int pthcv_utf8_valid(const char *s, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_length(p + i, n - i);
        if (!len) {
            *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

/* Copies s[0..n) into dst (cap > 4 bytes, NUL-terminated) with every byte
 * that is not printable UTF-8 written as \xNN, and a backslash as \\ when
 * `backslash` is set. When dst is too small the copy ends, on a character
 * boundary, with "...". Returns the length written. */
static size_t escape_into(char *dst, size_t cap, const char *src, size_t n, int backslash)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t len = utf8_length(s + i, n - i), plen = 0;
        char piece[16];
        if (len == 0 || is_control(s + i, len)) {
            if (len == 0) len = 1;
            for (size_t k = 0; k < len; k++)
                plen += (size_t)snprintf(piece + plen, sizeof piece - plen, "\\x%02x", s[i + k]);
        } else if (backslash && s[i] == '\\') {
            piece[plen++] = '\\';
            piece[plen++] = '\\';
        } else {
            memcpy(piece, s + i, len);
            plen = len;
        }
        if (o + plen + 4 > cap) break; /* keep room for "..." and the NUL */
        memcpy(dst + o, piece, plen);
        o += plen;
        i += len;
    }
    if (i < n) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return o;
}

/* Per-thread buffers for pthcv_esc, used in turn: a message may hold
 * ESC_SLOTS escaped strings at once. */
enum { ESC_SLOTS = 8, ESC_SIZE = 256 };

const char *pthcv_esc_n(const char *s, size_t n)
{
    static _Thread_local char bufs[ESC_SLOTS][ESC_SIZE];
    static _Thread_local unsigned next;
    char *b = bufs[next++ % ESC_SLOTS];
    if (!s) return strcpy(b, "(null)");
    escape_into(b, ESC_SIZE, s, n, 1);
    return b;
}

const char *pthcv_esc(const char *s) { return pthcv_esc_n(s, s ? strlen(s) : 0); }

int pthcv_fail(int status, const char *fmt, ...)
{
    /* Formatted at twice the size, then made printable UTF-8 into the
     * message: a string from a file that no call site escaped, a path, or a
     * message cut inside a character can never put raw bytes on a
     * terminal. Tabs and line ends become spaces (OpenCV's messages carry
     * them). */
    char raw[2 * sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    size_t n = len < 0 ? 0 : (size_t)len < sizeof raw ? (size_t)len : sizeof raw - 1;
    while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r')) n--;
    for (size_t i = 0; i < n; i++)
        if (raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t') raw[i] = ' ';
    escape_into(last_message, sizeof last_message, raw, n, 0);
    last_status = status;
    return status;
}

void pthcv_clear_error(void)
{
    last_status = PTHCV_OK;
    last_message[0] = '\0';
}

const char *pthcv_last_error(void) { return last_message; }
int pthcv_last_status(void) { return last_status; }
const char *pthcv_version(void) { return "0.1.0"; }

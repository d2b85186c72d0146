/* error.c -- the per-thread status and message behind pthcv_last_error(). */
#include "internal.h"
#include <string.h>

static _Thread_local int last_status;
static _Thread_local char last_message[1024];

int pthcv_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
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

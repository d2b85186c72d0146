/* check.h -- the CHECK macro of the C tests: counts a passed or failed
 * check, printing "FAIL file:line: message" for a failed one. The test
 * defines `static int passed, failed;` and ends with
 * printf("%d passed, %d failed\n", passed, failed). */
#ifndef PTHCV_CHECK_H
#define PTHCV_CHECK_H

#include <stdio.h>

#define CHECK(cond, ...)                                \
    do {                                                \
        if (cond) {                                     \
            passed++;                                   \
        } else {                                        \
            failed++;                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
        }                                               \
    } while (0)

#endif

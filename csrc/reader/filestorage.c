/*
 * filestorage.c -- recognising OpenCV FileStorage files by their first
 * bytes: "%YAML", "<?xml", a JSON object ('{' after white space), or gzip's
 * magic (1f 8b: FileStorage's .gz files). Reading them is OpenCV's job
 * (csrc/opencv/filestorage_read.cpp); this part needs no OpenCV, so the
 * reader without the bridge (the fuzzer) tells them apart too.
 */
#include "reader.h"
#include <string.h>

int pthcv_is_filestorage(const unsigned char *head, size_t n)
{
    if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) return 1;
    if (n >= 5 && (!memcmp(head, "%YAML", 5) || !memcmp(head, "<?xml", 5))) return 1;
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    return i < n && head[i] == '{';
}

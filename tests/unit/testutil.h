/* Helpers shared by the cmocka tests. cmocka needs these includes in this order. */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A fresh empty folder WEFT_TEST_TMP/<name> (removed first if present); returns a
 * malloc'ed path. */
char *tu_fresh_dir(const char *name);
/* Writes len bytes to path (creating it); fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t len);
/* Reads a file relative to the source tree (e.g. "workflows/txt2img.json"); malloc'ed,
 * NUL-terminated; fails the test when absent. */
char *tu_read_source(const char *rel, size_t *len);
#endif

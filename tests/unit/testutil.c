#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

char *tu_fresh_dir(const char *name)
{
    size_t n = strlen(WEFT_TEST_TMP) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", WEFT_TEST_TMP, name);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(base_mkdir_p(p), 0);
    return p;
}

void tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

char *tu_read_source(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", WEFT_SOURCE_DIR, rel);
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(base_read_file(path, 1u << 30, &data, &n), 0);
    if (len)
        *len = n;
    return data;
}

#if defined(__SANITIZE_ADDRESS__)
/* libtorch's worker threads use dynamic TLS, which LeakSanitizer's exit-time scan of
 * intercepted __tls_get_addr blocks crashes on ("Tracer caught signal 11"); without the
 * interception leaks are still found. Read by the ASan runtime at start-up. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "intercept_tls_get_addr=0";
}
#endif

/* First start with an empty user table: an admin user with a random password and an admin
 * API key, so a fresh server is never open and never unreachable. The key is printed once and
 * kept in <base>/admin.key (mode 0600) for scripts; the password is printed once. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srv_auth.h"

int srv__random_password(char *out, size_t n)
{
    /* 64 symbols: each byte keeps 6 random bits, so no modulo bias. */
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (!n)
        return BASE_E_INVAL;
    unsigned char rnd[128];
    size_t len = n - 1 < sizeof rnd ? n - 1 : sizeof rnd;
    if (RAND_bytes(rnd, (int)len) != 1)
        return BASE_E_IO;
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[rnd[i] & 63];
    out[len] = '\0';
    OPENSSL_cleanse(rnd, sizeof rnd);
    return 0;
}

/* Writes "<key>\n" to path: a new regular file of mode 0600. A stale regular file (from a
 * deleted database) is replaced; a symlink or anything else is refused, so the key can never
 * be written through a link somebody planted. */
static int write_key_file(const char *path, const char *key)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            fprintf(stderr, "weft serve: %s exists and is not a regular file; not writing the admin key there\n",
                    path);
            return BASE_E_EXIST;
        }
        if (unlink(path) != 0) {
            fprintf(stderr, "weft serve: cannot replace %s: %s\n", path, strerror(errno));
            return BASE_E_IO;
        }
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "weft serve: cannot create %s: %s\n", path, strerror(errno));
        return BASE_E_IO;
    }
    size_t n = strlen(key);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, key, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    ok = fsync(fd) == 0 && ok;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "weft serve: cannot write %s\n", path);
        unlink(path);
        return BASE_E_IO;
    }
    return 0;
}

int srv_auth_bootstrap(auth_t *a, const char *base_dir, FILE *out)
{
    int64_t n = auth_user_count(a);
    if (n < 0) {
        fprintf(stderr, "weft serve: cannot count users: %s\n", base_strerror((int)n));
        return (int)n;
    }
    if (n > 0)
        return 0;
    char pw[25], *key = NULL, key_id[32] = "";
    int rc = srv__random_password(pw, sizeof pw);
    if (rc) {
        fprintf(stderr, "weft serve: no random bytes for the admin password\n");
        return rc;
    }
    if ((rc = auth_user_add(a, "admin", pw, AUTH_ROLE_ADMIN, NULL))) {
        fprintf(stderr, "weft serve: cannot create the admin user: %s\n", base_strerror(rc));
        goto out;
    }
    if ((rc = auth_key_create(a, "admin", 0, 0, "bootstrap", &key, key_id))) {
        fprintf(stderr, "weft serve: cannot create the admin key: %s\n", base_strerror(rc));
        goto out;
    }
    base_buf_t path = BASE_BUF_INIT;
    if ((rc = base_buf_printf(&path, "%s/admin.key", base_dir)))
        goto out;
    /* Without the file the key is still printed below: the bootstrap is not lost. */
    bool in_file = write_key_file(path.data, key) == 0;
    if (in_file)
        fprintf(out, "weft: created admin user 'admin' and API key (also in %s): %s\n", path.data, key);
    else
        fprintf(out, "weft: created admin user 'admin' and API key: %s\n", key);
    fprintf(out, "weft: admin password (shown once; change it with `weft users passwd admin --password-stdin`): %s\n",
            pw);
    fflush(out);
    base_buf_free(&path);
    json_t *d = json_new_object();
    if (d)
        json_object_set(d, "key_id", json_new_string(key_id));
    auth_audit(a, "weft", NULL, "bootstrap", "admin", d);
    json_free(d);
out:
    OPENSSL_cleanse(pw, sizeof pw);
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    return rc;
}

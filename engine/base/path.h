/* Any thread. Confining request-supplied file names to a folder.
 *
 * A name is refused (BASE_E_PATH) when it is empty, absolute, contains a NUL byte, a
 * backslash, or a ".." component, or when, after resolving symlinks, the file (or for new
 * files, its parent folder) lies outside root. "." components and duplicate slashes are
 * tolerated. This is the only way nodes and routes turn names into paths. */
#ifndef WEFT_BASE_PATH_H
#define WEFT_BASE_PATH_H

#include <stdbool.h>
#include <stddef.h>

/* Lexical check only (no file system access). 0 or BASE_E_PATH. */
int base_path_check_rel(const char *rel);

/* Resolves rel under root. must_exist: the file must exist (BASE_E_NOENT otherwise) and its
 * real path must be inside root's real path. !must_exist: the parent folder must exist and be
 * inside root; the file itself may not exist yet but, when it exists, must not be a symlink
 * leading outside. *out is a malloc'ed absolute path (caller frees). */
int base_path_resolve(const char *root, const char *rel, bool must_exist, char **out);

/* Creates root/rel_dir and its missing parents (mode 0755), refusing escapes as above;
 * rel_dir "" is root itself. 0, BASE_E_PATH or BASE_E_IO. */
int base_path_mkdirs(const char *root, const char *rel_dir);

/* mkdir -p for a trusted absolute or cwd-relative path (the base dir at startup). */
int base_mkdir_p(const char *path);

/* Reads a whole file (at most max bytes, else BASE_E_TOOBIG). *data malloc'ed, NUL-terminated. */
int base_read_file(const char *path, size_t max, char **data, size_t *len);

#endif

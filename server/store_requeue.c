/* Graceful shutdown's store operation: a prompt interrupted by the shutdown goes back to
 * PENDING so it runs again on the next start. */
#include "store_internal.h"

int store_requeue(store_t *st, const char *prompt_id)
{
    if (!st || !prompt_id)
        return BASE_E_INVAL;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "UPDATE prompts SET status = 0, started_ms = 0 WHERE prompt_id = ?1 AND status = 1",
                           -1, &s, NULL) != SQLITE_OK)
        return store__fail(st, "prepare requeue");
    int rc = 0;
    if (sqlite3_bind_text(s, 1, prompt_id, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__fail(st, "requeue a running prompt");
    else if (sqlite3_changes(st->db) == 0)
        rc = BASE_E_NOENT;
    sqlite3_finalize(s);
    return rc;
}

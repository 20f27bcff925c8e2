/* Any thread. Exact integers in [-(2^64-1), 2^64-1]: ComfyUI seeds go up to 2^64-1 and
 * other INT inputs go negative, so neither int64_t nor uint64_t alone holds every value
 * a workflow may carry, and a double would round seeds. */
#ifndef WEFT_BASE_BINT_H
#define WEFT_BASE_BINT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t mag; /* absolute value */
    bool neg;     /* true only when mag > 0 */
} base_int_t;

/* Initialiser for a constant that fits int64_t, usable in static tables. */
#define BASE_INT(v) {.mag = (uint64_t)((v) < 0 ? -(int64_t)(v) : (int64_t)(v)), .neg = (v) < 0}
#define BASE_INT_U64MAX {.mag = UINT64_MAX, .neg = false}

static inline base_int_t base_int_from_i64(int64_t v)
{
    base_int_t r;
    r.neg = v < 0;
    r.mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return r;
}

static inline base_int_t base_int_from_u64(uint64_t v)
{
    base_int_t r = {v, false};
    return r;
}

/* -1, 0, 1 like strcmp. */
static inline int base_int_cmp(base_int_t a, base_int_t b)
{
    bool an = a.neg && a.mag, bn = b.neg && b.mag;
    if (an != bn)
        return an ? -1 : 1;
    if (a.mag == b.mag)
        return 0;
    return ((a.mag < b.mag) != an) ? -1 : 1;
}

/* False when the value does not fit int64_t. */
static inline bool base_int_to_i64(base_int_t a, int64_t *out)
{
    if (a.neg) {
        if (a.mag > (uint64_t)INT64_MAX + 1)
            return false;
        *out = a.mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)a.mag;
        return true;
    }
    if (a.mag > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)a.mag;
    return true;
}

static inline double base_int_to_double(base_int_t a)
{
    return a.neg ? -(double)a.mag : (double)a.mag;
}

#endif

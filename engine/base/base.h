/* Umbrella header of the leaf "base" library that every folder links. */
#ifndef WEFT_BASE_H
#define WEFT_BASE_H
#include "arena.h"
#include "bint.h"
#include "buf.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "map.h"
#include "path.h"
#endif

/* Any thread. Random (version 4) UUIDs, lower case with dashes, as ComfyUI mints prompt ids. */
#ifndef WEFT_SRV_UUID_H
#define WEFT_SRV_UUID_H
#include "base.h"
int srv_uuid4(char out[37]);
#endif

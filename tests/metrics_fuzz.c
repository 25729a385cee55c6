/*
 * metrics_fuzz — libFuzzer target: any bytes as a label value and a HELP
 * text must render to an exposition that reads back (metrics_roundtrip.h).
 */
#include <stdint.h>
#include <stdlib.h>

#include "metrics_roundtrip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (metrics_roundtrip(data, size) != 0) abort();
    return 0;
}

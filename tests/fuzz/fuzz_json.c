/* tests/fuzz/fuzz_json.c - libFuzzer target: client messages in JSON.
 * See fuzz_common.h for what is checked. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_one(PROTO_JSON, data, size);
    return 0;
}

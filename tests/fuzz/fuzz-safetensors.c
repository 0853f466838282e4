/*
 * fuzz-safetensors: libFuzzer target for the safetensors header parser
 * (lib/model/safetensors.c). Any input must either parse into tensors whose
 * bytes lie inside the input, or fail with a message; never crash, read
 * out of bounds or leak. Run by the suite through a plain driver for a
 * bounded number of iterations (tests/unit/test-safetensors-fuzz.c), and
 * with real libFuzzer by `make fuzz`.
 */
#include "model/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct safetensors st;
	memset(&st, 0, sizeof st);
	if (safetensors_parse(&st, data, size, "fuzz") < 0)
		return 0;
	volatile float sink = 0;
	for (size_t i = 0; i < st.ntensors; i++) {
		const struct st_tensor *t = &st.tensors[i];
		const uint8_t *p = t->data;
		if (p < data || p + t->nbytes > data + size)
			abort();
		if (t->numel > 0 && t->numel <= 4096) {
			float *f = malloc((size_t)t->numel * sizeof *f);
			st_tensor_to_f32(t, f);
			sink += f[0];
			free(f);
		}
	}
	(void)sink;
	safetensors_meta(&st, "x");
	safetensors_close(&st);
	return 0;
}

/* Seeds for drivers that want them: small valid and nearly valid files. */
int fuzz_seeds(void (*add)(const void *, size_t));
int fuzz_seeds(void (*add)(const void *, size_t))
{
	static const char *const headers[] = {
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
	    "{\"__metadata__\":{\"k\":\"v\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],"
	    "\"data_offsets\":[0,8]},\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[8,10]}}",
	    "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		size_t hl = strlen(headers[i]);
		unsigned char buf[512] = {0};
		for (int b = 0; b < 8; b++)
			buf[b] = (unsigned char)((uint64_t)hl >> (8 * b));
		memcpy(buf + 8, headers[i], hl);
		for (size_t k = 0; k < 16; k++)
			buf[8 + hl + k] = (unsigned char)(k * 37);
		add(buf, 8 + hl + 16);
	}
	return 0;
}

/*
 * fuzz-json.c: eosin-cat -r's path, JSON text to a record (jansson's parser,
 * then our conversion with $base64 handling), on arbitrary bytes.
 */
#include "core/json.h"
#include "core/stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DISABLE_EOF_CHECK, &err);
	if (!j)
		return 0;
	struct recb b;
	recb_init(&b);
	if (recb_from_json(&b, j) == 0) {
		char *p;
		size_t n;
		if (recb_finish(&b, &p, &n) == 0)
			free(p);
	}
	recb_release(&b);
	json_decref(j);
	return 0;
}

int fuzz_seeds(void (*add)(const void *, size_t))
{
	static const char *s[] = {
	    "{\"k\":\"tile\",\"v\":1,\"id\":\"a\",\"jpeg\":{\"$base64\":\"AAEC\"},\"x\":[1,2.5,null,true]}",
	    "{\"k\":\"hdr\",\"v\":1,\"args\":[\"a\",\"b\"],\"m\":{\"n\":{\"$base64\":\"QQ==\"}}}",
	    "{\"k\":\"bag\",\"v\":2,\"img_emb\":{\"dtype\":\"f32\",\"dim\":1,\"data\":{\"$bin\":4}}}",
	};
	for (size_t i = 0; i < sizeof s / sizeof *s; i++)
		add(s[i], strlen(s[i]));
	return 0;
}

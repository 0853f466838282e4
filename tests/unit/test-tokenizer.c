/*
 * test-tokenizer.c: lib/model/tokenizer.c against OpenAI CLIP's own token ids
 * (../shared/data/reference/clip_tokenizer_vectors.jsonl, made by
 * clip/simple_tokenizer.py and clip.tokenize), through both loaders (the
 * merges file and a tokenizer.json written here from it), plus edge cases
 * whose answers follow from CLIP's definition, and concurrent use.
 */
#include "core/error.h"
#include "model/tokenizer.h"
#include "text/text.h"
#include "tap.h"

#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CTX 77
#define MAXIDS 4096

struct vector {
	char *text;
	size_t len;
	int32_t ids[MAXIDS];
	int nids;
	int32_t context[CTX];
	int truncated, ftfy_sensitive;
};

static struct vector *vectors;
static int nvectors;

static int load_vectors(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f)
		return -1;
	while ((n = getline(&line, &cap, f)) > 0) {
		json_error_t err;
		json_t *o = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &err), *ids, *ctx, *v;
		struct vector *vec;
		size_t i;
		if (!o) {
			printf("# bad vector line: %s\n", err.text);
			continue;
		}
		vectors = realloc(vectors, (size_t)(nvectors + 1) * sizeof *vectors);
		vec = &vectors[nvectors++];
		memset(vec, 0, sizeof *vec);
		vec->len = json_string_length(json_object_get(o, "text"));
		vec->text = malloc(vec->len + 1);
		memcpy(vec->text, json_string_value(json_object_get(o, "text")), vec->len + 1);
		ids = json_object_get(o, "ids");
		ctx = json_object_get(o, "context");
		json_array_foreach(ids, i, v) if (i < MAXIDS) vec->ids[i] =
		    (int32_t)json_integer_value(v);
		vec->nids = (int)json_array_size(ids);
		json_array_foreach(ctx, i, v) if (i < CTX) vec->context[i] =
		    (int32_t)json_integer_value(v);
		vec->truncated = json_is_true(json_object_get(o, "truncated"));
		vec->ftfy_sensitive = json_is_true(json_object_get(o, "ftfy_sensitive"));
		json_decref(o);
	}
	free(line);
	fclose(f);
	return 0;
}

/* Does t give the vector's ids (through map, when not NULL) and context? */
static int check_vector(const struct clip_tokenizer *t, const struct vector *v, const int32_t *map,
                        int verbose)
{
	int32_t ids[MAXIDS], ctx[CTX];
	int n = clip_tokenize(t, v->text, v->len, ids, MAXIDS), i, trunc = -1, nctx;
	int good = n == v->nids;

	for (i = 0; good && i < n; i++)
		good = ids[i] == (map ? map[v->ids[i]] : v->ids[i]);
	nctx = clip_tokenize_context(t, v->text, v->len, ctx, CTX, &trunc);
	good = good && nctx >= 2 && trunc == v->truncated;
	for (i = 0; good && i < CTX; i++)
		good = ctx[i] == (map ? map[v->context[i]] : v->context[i]);
	if (!good && verbose) {
		printf("#   text %s\n#   got %d ids:", v->text, n);
		for (i = 0; i < n && i < 40; i++)
			printf(" %d", ids[i]);
		printf("\n#   want %d ids:", v->nids);
		for (i = 0; i < v->nids && i < 40; i++)
			printf(" %d", v->ids[i]);
		printf("\n");
	}
	return good;
}

/* bytes_to_unicode() of clip/simple_tokenizer.py, written out again here
 * (independently of lib/) for building a tokenizer.json. */
static void byte_symbols(char sym[256][8])
{
	int b, n = 0;
	for (b = 0; b < 256; b++) {
		int printable =
		    (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
		unsigned cp = printable ? (unsigned)b : 256u + (unsigned)n++;
		if (cp < 0x80) {
			sym[b][0] = (char)cp;
			sym[b][1] = 0;
		} else {
			sym[b][0] = (char)(0xC0 | cp >> 6);
			sym[b][1] = (char)(0x80 | (cp & 0x3F));
			sym[b][2] = 0;
		}
	}
}

/* Write tokenizer.json from the CLIP merges file, the way Hugging Face's
 * CLIP tokenizers lay it out; with perm, every id i becomes perm[i] and the
 * merges are written as [a, b] pairs instead of "a b". */
static int write_hf_json(const char *merges_gz, const char *out, const int32_t *perm)
{
	gzFile f = gzopen(merges_gz, "rb");
	char sym[256][8], line[1024], buf[1100];
	json_t *root = json_object(), *model = json_object(), *vocab = json_object();
	json_t *merges = json_array(), *added = json_array();
	int id = 0, nline = 0, b, k, rc;

	if (!f)
		return -1;
	byte_symbols(sym);
	/* ids 0..255: printable bytes first (bytes_to_unicode order). */
	for (k = 0; k < 2; k++) {
		for (b = 0; b < 256; b++) {
			int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
			                (b >= 174 && b <= 255);
			if (printable) {
				snprintf(buf, sizeof buf, "%s%s", sym[b], k ? "</w>" : "");
				json_object_set_new(vocab, buf, json_integer(perm ? perm[id] : id));
				id++;
			}
		}
		for (b = 0; b < 256; b++) {
			int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
			                (b >= 174 && b <= 255);
			if (!printable) {
				snprintf(buf, sizeof buf, "%s%s", sym[b], k ? "</w>" : "");
				json_object_set_new(vocab, buf, json_integer(perm ? perm[id] : id));
				id++;
			}
		}
	}
	while (gzgets(f, line, sizeof line) && nline < 48895) {
		char *sp, *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (nline++ == 0)
			continue;
		sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = 0;
		snprintf(buf, sizeof buf, "%s%s", line, sp + 1);
		json_object_set_new(vocab, buf, json_integer(perm ? perm[id] : id));
		id++;
		if (perm) {
			json_array_append_new(merges, json_pack("[ss]", line, sp + 1));
		} else {
			*sp = ' ';
			json_array_append_new(merges, json_string(line));
		}
	}
	gzclose(f);
	json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", perm ? perm[id] : id,
	                                       "content", "<|startoftext|>", "special", 1));
	json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", perm ? perm[id + 1] : id + 1,
	                                       "content", "<|endoftext|>", "special", 1));
	json_object_set_new(model, "type", json_string("BPE"));
	json_object_set_new(model, "vocab", vocab);
	json_object_set_new(model, "merges", merges);
	json_object_set_new(model, "end_of_word_suffix", json_string("</w>"));
	json_object_set_new(model, "continuing_subword_prefix", json_string(""));
	json_object_set_new(model, "unk_token", json_string("<|endoftext|>"));
	json_object_set_new(root, "version", json_string("1.0"));
	json_object_set_new(root, "added_tokens", added);
	json_object_set_new(root, "model", model);
	rc = json_dump_file(root, out, JSON_COMPACT);
	json_decref(root);
	return rc;
}

/* A copy of the tokenizer.json at src with one thing broken by how, for
 * the errors of clip_tokenizer_load_hf. */
static int write_broken_hf(const char *src, const char *dst, int how)
{
	json_error_t jerr;
	json_t *root = json_load_file(src, 0, &jerr);
	if (!root)
		return -1;
	json_t *model = json_object_get(root, "model");
	json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
	switch (how) {
	case 0: json_object_del(root, "model"); break;
	case 1: json_object_set_new(model, "continuing_subword_prefix", json_string("##")); break;
	case 2:
		json_object_set_new(model, "end_of_word_suffix",
		                    json_string("</w-a-suffix-longer-than-thirty-two-bytes>"));
		break;
	case 3: json_object_set_new(vocab, "x", json_integer(-4)); break;
	case 4: json_object_del(vocab, "a"); break;
	case 5: json_array_append_new(merges, json_integer(7)); break;
	case 6: json_array_append_new(merges, json_string("qzx qzy")); break;
	case 7: json_object_set_new(root, "added_tokens", json_array()); break;
	}
	int rc = json_dump_file(root, dst, JSON_COMPACT);
	json_decref(root);
	return rc;
}

/* Tokenize text (NUL-terminated unless len given) into ids. */
static int tok(const struct clip_tokenizer *t, const char *s, size_t len, int32_t *ids)
{
	return clip_tokenize(t, s, len, ids, MAXIDS);
}

static int same_ids(const struct clip_tokenizer *t, const char *a, size_t alen, const char *b,
                    size_t blen)
{
	int32_t x[MAXIDS], y[MAXIDS];
	int n = tok(t, a, alen, x), m = tok(t, b, blen, y);
	return n >= 0 && n == m && memcmp(x, y, (size_t)n * sizeof *x) == 0;
}

static void edge_cases(const struct clip_tokenizer *t)
{
	int32_t ids[MAXIDS], ctx[CTX], big[8];
	int n, trunc, i, good;

	n = tok(t, "", 0, ids);
	ok(n == 0, "empty text: no ids");
	n = clip_tokenize_context(t, "", 0, ctx, CTX, &trunc);
	good = n == 2 && ctx[0] == 49406 && ctx[1] == 49407 && !trunc;
	for (i = 2; good && i < CTX; i++)
		good = ctx[i] == 0;
	ok(good, "empty text: context is [SOT EOT 0...]");
	ok(tok(t, " \t\r\n\xc2\xa0\xe3\x80\x80 ", 10, ids) == 0,
	   "whitespace only (incl. NBSP, U+3000): no ids");
	ok(tok(t, NULL, 0, ids) == 0, "NULL text of length 0: no ids");

	/* Byte symbols are numbered printable bytes first: 'a' = 97-33 = 64,
	 * "a</w>" = 256+64; byte 0 is the 189th entry (188), "\0</w>" 444. */
	n = tok(t, "a\0b", 3, ids);
	ok(n == 3 && ids[0] == 320 && ids[1] == 444 && ids[2] == 321,
	   "NUL byte is a symbol of its own");
	n = tok(t, "\x01\x02", 2, ids);
	ok(n == 2 && ids[0] == 189 && ids[1] == 446,
	   "control characters form one piece of two bytes");

	/* Ill-formed UTF-8 reads as bytes.decode('utf-8', 'replace'). */
	ok(same_ids(t,
	            "a\xff"
	            "b",
	            3,
	            "a\xef\xbf\xbd"
	            "b",
	            5),
	   "invalid byte -> U+FFFD");
	ok(same_ids(t,
	            "a\xe2\x82"
	            "b",
	            4,
	            "a\xef\xbf\xbd"
	            "b",
	            5),
	   "truncated sequence -> one U+FFFD");
	ok(same_ids(t, "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9),
	   "encoded surrogate -> three U+FFFD");
	ok(same_ids(t, "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6), "overlong '/' -> two U+FFFD");
	ok(same_ids(t, "\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	            12),
	   "above U+10FFFF -> four U+FFFD");
	ok(same_ids(t, "x\xf0\x9f\x98", 4, "x\xef\xbf\xbd", 4),
	   "truncated 4-byte sequence at the end");

	/* cap: the full count comes back, nothing past cap is written. */
	for (i = 0; i < 8; i++)
		big[i] = -7;
	n = clip_tokenize(t, "one two three four five", 23, big, 2);
	ok(n == 5 && big[2] == -7 && big[0] != -7, "cap 2 of 5: count 5, two written");
	ok(clip_tokenize(t, "one two", 7, NULL, 0) == 2, "cap 0 counts only");
	ok(clip_tokenize_context(t, "x", 1, ctx, 0, &trunc) == -1 && *eosin_errmsg(),
	   "context length 0 is an error");
	n = clip_tokenize_context(t, "one two three", 13, ctx, 1, &trunc);
	ok(n == 1 && ctx[0] == 49407 && trunc, "context length 1: [EOT], truncated");
	n = clip_tokenize_context(t, "one two three", 13, ctx, 4, &trunc);
	ok(n == 4 && ctx[0] == 49406 && ctx[3] == 49407 && trunc,
	   "context length 4: cut, last is EOT");
	n = clip_tokenize_context(t, "one two", 7, ctx, 4, &trunc);
	ok(n == 4 && ctx[3] == 49407 && !trunc, "exactly fitting context is not truncated");

	/* Long text: 10,000+ characters of repeated captions tokenizes to the
	 * repeated ids (pieces never span a space), and one 10,000-letter word
	 * tokenizes at all. */
	{
		const char *cap = "Poorly differentiated adenocarcinoma, 40x; H&amp;E. ";
		size_t clen = strlen(cap), reps = 200, k;
		char *text = malloc(clen * reps + 1);
		int32_t *many = malloc(200000 * sizeof *many);
		int one;
		for (k = 0; k < reps; k++)
			memcpy(text + k * clen, cap, clen);
		one = tok(t, cap, clen, ids);
		n = clip_tokenize(t, text, clen * reps, many, 200000);
		good = one > 0 && n == one * (int)reps;
		for (k = 0; good && k < (size_t)n; k++)
			good = many[k] == ids[k % (size_t)one];
		ok(good, "%zu chars of repeated caption: %d ids, the caption's ids %zu times",
		   clen * reps, n, reps);
		memset(text, 'q', 10000);
		n = clip_tokenize(t, text, 10000, many, 200000);
		good = n > 0 && n <= 10000;
		for (k = 0; good && k < (size_t)n; k++)
			good = many[k] >= 0 && many[k] < 49406;
		ok(good, "one 10,000-letter word: %d ids in range", n);
		free(text);
		free(many);
	}
}

struct thread_arg {
	const struct clip_tokenizer *t;
	int start, failures;
};

static void *thread_run(void *p)
{
	struct thread_arg *a = p;
	int round, i;
	for (round = 0; round < 3; round++)
		for (i = 0; i < nvectors; i++) {
			const struct vector *v = &vectors[(i + a->start) % nvectors];
			if (!v->ftfy_sensitive && !check_vector(a->t, v, NULL, 0))
				a->failures++;
		}
	return NULL;
}

int main(void)
{
	const char *shared = getenv("EOSIN_SHARED") ? getenv("EOSIN_SHARED") : "../shared/data";
	char merges[4096], vecpath[4096], json1[64], json2[64];
	struct clip_tokenizer *t, *hf;
	int i, good, plain = 0, nftfy = 0, ftfy_ok = 0;
	int32_t *perm;

	snprintf(merges, sizeof merges, "%s/tokenizers/bpe_simple_vocab_16e6.txt.gz", shared);
	snprintf(vecpath, sizeof vecpath, "%s/reference/clip_tokenizer_vectors.jsonl", shared);
	if (access(merges, R_OK) || access(vecpath, R_OK))
		skip_all("no ../shared/data (CLIP merges and reference vectors)");
	if (load_vectors(vecpath) < 0 || nvectors == 0)
		skip_all("cannot read the reference vectors");

	ok(!clip_tokenizer_load("/nonexistent/merges.gz") && strstr(eosin_errmsg(), "/nonexistent"),
	   "missing merges file: error names it");
	t = clip_tokenizer_load(merges);
	if (!ok(t != NULL, "load %s", merges)) {
		printf("#   %s\n", eosin_errmsg());
		return tap_done();
	}
	ok(clip_tokenizer_vocab_size(t) == 49408 && clip_tokenizer_sot(t) == 49406 &&
	       clip_tokenizer_eot(t) == 49407,
	   "vocab 49408, SOT 49406, EOT 49407");

	for (i = 0; i < nvectors; i++) {
		const struct vector *v = &vectors[i];
		good = check_vector(t, v, NULL, 1);
		if (v->ftfy_sensitive) {
			nftfy++;
			ftfy_ok += good;
		} else {
			plain += good;
		}
		ok(good, "vector %d%s: ids and context", i + 1,
		   v->ftfy_sensitive ? " (ftfy_sensitive)" : "");
	}
	printf("# merges file: %d/%d vectors exact, %d/%d ftfy_sensitive (identity ftfy) exact\n",
	       plain, nvectors - nftfy, ftfy_ok, nftfy);

	edge_cases(t);

	/* Decoding: a known text, and every vector's ids back to a text that
	 * tokenizes to the same ids */
	{
		int32_t ids[64];
		char text[4096];
		int n = tok(t, "Large atypical cells.", 21, ids);
		clip_detokenize(t, ids, n, text, sizeof text);
		ok(!strcmp(text, "large atypical cells ."), "decode: '%s'", text);
		int32_t ctx[4] = {clip_tokenizer_sot(t), ids[0], clip_tokenizer_eot(t), 0};
		clip_detokenize(t, ctx, 3, text, sizeof text);
		ok(!strcmp(text, "large"), "decode leaves out [SOT] and [EOT]: '%s'", text);
		clip_detokenize(t, ids, n, text, 8);
		ok(strlen(text) == 7, "decode cuts to the buffer: '%s'", text);
		/* byte pieces of a cut character: U+FFFD, never bad UTF-8 */
		int32_t bytes[3] = {0, 0, 0};
		int32_t lone = -1, one[1];
		for (int b = 0; b < 512 && lone < 0; b++) { /* an id whose byte starts no UTF-8 character */
			one[0] = b;
			unsigned char buf[8];
			if (clip_detokenize(t, one, 1, (char *)buf, sizeof buf) == 3 && buf[0] == 0xEF)
				lone = b;
		}
		bytes[0] = ids[0], bytes[1] = lone >= 0 ? lone : 0, bytes[2] = ids[1];
		clip_detokenize(t, bytes, 3, text, sizeof text);
		ok(lone >= 0 && text_is_utf8(text, strlen(text)) && strstr(text, "\xEF\xBF\xBD"),
		   "decode of a lone byte piece gives U+FFFD: '%s'", text);
		int same = 0, tried = 0;
		for (i = 0; i < nvectors; i++) {
			const struct vector *v = &vectors[i];
			int special = 0; /* decoding leaves the special tokens out */
			for (int k = 0; k < v->nids; k++)
				special |= v->ids[k] == clip_tokenizer_sot(t) ||
				           v->ids[k] == clip_tokenizer_eot(t);
			if (v->ftfy_sensitive || v->nids > 64 || special)
				continue;
			int32_t again[MAXIDS];
			size_t len = clip_detokenize(t, v->ids, v->nids, text, sizeof text);
			int m = clip_tokenize(t, text, len, again, MAXIDS);
			tried++;
			same += m == v->nids && !memcmp(again, v->ids, sizeof(int32_t) * m);
		}
		ok(tried > 200 && same == tried, "decode then encode gives the ids back: %d of %d",
		   same, tried);
	}

	/* Four threads share one tokenizer. */
	{
		pthread_t th[4];
		struct thread_arg arg[4];
		int failures = 0;
		for (i = 0; i < 4; i++) {
			arg[i] = (struct thread_arg){t, i * nvectors / 4, 0};
			pthread_create(&th[i], NULL, thread_run, &arg[i]);
		}
		for (i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			failures += arg[i].failures;
		}
		ok(failures == 0, "4 threads x 3 rounds over the vectors: %d mismatches", failures);
	}

	/* tokenizer.json: the same vocabulary, and a permuted one. */
	snprintf(json1, sizeof json1, "/tmp/eosin-tok-%d-a.json", (int)getpid());
	snprintf(json2, sizeof json2, "/tmp/eosin-tok-%d-b.json", (int)getpid());
	ok(write_hf_json(merges, json1, NULL) == 0, "write tokenizer.json from the merges");
	hf = clip_tokenizer_load_hf(json1);
	if (!hf)
		printf("#   %s\n", eosin_errmsg());
	ok(hf && clip_tokenizer_vocab_size(hf) == 49408, "load_hf: vocab 49408");
	good = 0;
	for (i = 0; hf && i < nvectors; i++)
		good += check_vector(hf, &vectors[i], NULL, 1);
	ok(good == nvectors, "load_hf: %d/%d vectors exact", good, nvectors);
	clip_tokenizer_free(hf);

	{
		static const struct {
			const char *what, *says;
		} broken[] = {
		    {"no model", "no BPE model"},
		    {"a continuing_subword_prefix", "continuing_subword_prefix"},
		    {"a suffix over 32 bytes", "end_of_word_suffix too long"},
		    {"a negative id", "model.vocab \"x\": not an id"},
		    {"a byte without its symbol", "byte 0x61 has no symbol"},
		    {"a merge that is a number", "model.merges[48894]: not a merge"},
		    {"a merge of unknown symbols",
		     "model.merges[48894]: symbol not in model.vocab"},
		    {"no special tokens", "no <|startoftext|> or <|endoftext|> token"},
		};
		for (int k = 0; k < (int)(sizeof broken / sizeof broken[0]); k++) {
			int w = write_broken_hf(json1, json2, k) == 0;
			struct clip_tokenizer *bad = w ? clip_tokenizer_load_hf(json2) : NULL;
			ok(w && !bad && strstr(eosin_errmsg(), broken[k].says),
			   "tokenizer.json with %s is refused (%s)", broken[k].what,
			   eosin_errmsg());
			clip_tokenizer_free(bad);
		}
		unlink(json2);
	}

	perm = malloc(49408 * sizeof *perm);
	for (i = 0; i < 49408; i++)
		perm[i] = (int32_t)(((int64_t)i * 7919 + 13) % 49408);
	perm[0] = 0; /* keep the padding id */
	for (i = 1; i < 49408; i++)
		if (perm[i] == 0)
			perm[i] = (int32_t)((0 * 7919 + 13) % 49408);
	ok(write_hf_json(merges, json2, perm) == 0,
	   "write a permuted tokenizer.json ([a, b] merges)");
	hf = clip_tokenizer_load_hf(json2);
	if (!hf)
		printf("#   %s\n", eosin_errmsg());
	ok(hf && clip_tokenizer_sot(hf) == perm[49406] && clip_tokenizer_eot(hf) == perm[49407],
	   "load_hf: special ids from added_tokens");
	good = 0;
	for (i = 0; hf && i < nvectors; i++)
		good += check_vector(hf, &vectors[i], perm, 1);
	ok(good == nvectors, "load_hf permuted: %d/%d vectors map exactly", good, nvectors);
	clip_tokenizer_free(hf);
	unlink(json1);
	unlink(json2);
	free(perm);

	/* The merges file uncompressed, and a malformed one. */
	{
		gzFile in = gzopen(merges, "rb");
		FILE *f = fopen(json1, "w");
		char buf[65536];
		int got;
		while ((got = gzread(in, buf, sizeof buf)) > 0)
			fwrite(buf, 1, (size_t)got, f);
		gzclose(in);
		fclose(f);
		hf = clip_tokenizer_load(json1);
		good = 0;
		for (i = 0; hf && i < nvectors; i++)
			good += check_vector(hf, &vectors[i], NULL, 1);
		ok(hf && good == nvectors, "uncompressed merges file: %d/%d vectors exact", good,
		   nvectors);
		clip_tokenizer_free(hf);
		f = fopen(json1, "w");
		fputs("#version: 0.2\nh e\nl l o\n", f);
		fclose(f);
		ok(!clip_tokenizer_load(json1) && strstr(eosin_errmsg(), "line 3"),
		   "malformed merges line: error names the line (%s)", eosin_errmsg());
		f = fopen(json1, "w");
		fputs("#version: 0.2\nh e\nhe llo\n", f);
		fclose(f);
		ok(!clip_tokenizer_load(json1) && strstr(eosin_errmsg(), "line 3: merge of a symbol"),
		   "a merge of a symbol no merge made: refused (%s)", eosin_errmsg());
		f = fopen(json1, "w");
		fclose(f);
		ok(!clip_tokenizer_load(json1) && strstr(eosin_errmsg(), "empty merges file"),
		   "an empty merges file: refused (%s)", eosin_errmsg());
		unlink(json1);
	}

	{
		FILE *f = fopen(json1, "w");
		fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": [] }}", f);
		fclose(f);
		ok(!clip_tokenizer_load_hf(json1) && strstr(eosin_errmsg(), "BPE"),
		   "a non-BPE tokenizer.json is refused");
		unlink(json1);
	}

	clip_tokenizer_free(t);
	for (i = 0; i < nvectors; i++)
		free(vectors[i].text);
	free(vectors);
	return tap_done();
}

/*
 * tokenizer.c: OpenAI CLIP's BPE tokenizer (see tokenizer.h).
 *
 * A call runs CLIP's steps on arrays of code points:
 *   decode UTF-8 -> html.unescape -> html.unescape -> strip
 *   -> \s+ to ' ' -> strip -> str.lower() -> pre-tokenise into pieces
 * and each piece, as UTF-8 bytes, through BPE. The Unicode behaviour of
 * Python and the regex module comes from the tables in utf8-tables.c.
 *
 * BPE keeps the word as a linked list of symbols and a min-heap of adjacent
 * pairs ordered by (merge rank, position), validated lazily when popped.
 * Popping the lowest rank, leftmost first, merges exactly what CLIP's loop
 * merges (all non-overlapping occurrences of the best pair, left to right,
 * then the next best), in O(n log n) for an n-byte word.
 */
#include "model/tokenizer.h"

#include "core/error.h"
#include "model/utf8.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CLIP_NMERGES 48894 /* lines [1 : 49152-256-2+1] of the merges file */
#define EOW "</w>"

struct clip_tokenizer {
	int32_t byte_id[256];     /* id of the symbol for a byte */
	int32_t byte_eow_id[256]; /* the same with "</w>" (end of word) */
	int32_t sot_id, eot_id;
	int vocab_size;
	/* Merge table: open addressing on (left id, right id). */
	uint64_t *merge_key;
	int32_t *merge_rank; /* -1: empty slot */
	int32_t *merge_id;   /* id of the merged symbol */
	size_t merge_mask;
	/* Decoding: what each id stands for, a byte (with the end of a word
	 * or not) or the two ids it merges; built by decode_table() */
	struct dec_entry {
		int32_t a, b;     /* merged ids, or -1 */
		int16_t byte;     /* the byte, or -1 */
		int16_t eow;      /* 1: the byte ends a word */
	} *dec;
};

/* ---- Loading ----------------------------------------------------------- */

/* Bytes that bytes_to_unicode() shows as themselves: '!'..'~', U+00A1..U+00AC
 * and U+00AE..U+00FF. */
static int is_printable_byte(int b)
{
	return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* bytes_to_unicode(): byte b is shown as code point byte_cp[b]; vocab_byte[i]
 * is the byte of vocabulary entry i (the printable bytes first, then the
 * others, which are shown as U+0100 onwards in byte order). */
static void bytes_to_unicode(uint32_t byte_cp[256], int vocab_byte[256])
{
	int b, n = 0, extra = 0;

	for (b = 0; b < 256; b++) {
		if (is_printable_byte(b)) {
			byte_cp[b] = (uint32_t)b;
			vocab_byte[n++] = b;
		}
	}
	for (b = 0; b < 256; b++) {
		if (!is_printable_byte(b)) {
			byte_cp[b] = 256 + (uint32_t)extra++;
			vocab_byte[n++] = b;
		}
	}
}

/* A string -> id map used while loading (last insertion of a string wins,
 * like Python's dict(zip(vocab, range))). Keys point into caller memory. */
struct strmap {
	const char **key;
	size_t *klen;
	int32_t *val;
	size_t mask, n;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	while (n--)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static int strmap_init(struct strmap *m, size_t expect)
{
	size_t cap = 1024;
	while (cap < expect * 2)
		cap <<= 1;
	m->key = calloc(cap, sizeof *m->key);
	m->klen = calloc(cap, sizeof *m->klen);
	m->val = calloc(cap, sizeof *m->val);
	m->mask = cap - 1;
	m->n = 0;
	if (!m->key || !m->klen || !m->val)
		return eosin_error("out of memory");
	return 0;
}

static void strmap_release(struct strmap *m)
{
	free(m->key);
	free(m->klen);
	free(m->val);
}

static int32_t *strmap_slot(const struct strmap *m, const char *s, size_t n, int *found)
{
	size_t i = hash_bytes(s, n) & m->mask;
	for (;; i = (i + 1) & m->mask) {
		if (!m->key[i]) {
			*found = 0;
			return &m->val[i];
		}
		if (m->klen[i] == n && memcmp(m->key[i], s, n) == 0) {
			*found = 1;
			return &m->val[i];
		}
	}
}

static int strmap_get(const struct strmap *m, const char *s, size_t n)
{
	int found;
	int32_t *v = strmap_slot(m, s, n, &found);
	return found ? *v : -1;
}

/* Keys must stay valid while the map lives. */
static int strmap_put(struct strmap *m, const char *s, size_t n, int32_t val)
{
	int found;
	int32_t *v = strmap_slot(m, s, n, &found);

	if (!found) {
		size_t i = (size_t)(v - m->val);
		if ((m->n + 1) * 2 > m->mask + 1)
			return eosin_error("too many vocabulary entries");
		m->key[i] = s;
		m->klen[i] = n;
		m->n++;
	}
	*v = val;
	return 0;
}

static size_t merge_slot(const struct clip_tokenizer *t, uint64_t key)
{
	size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->merge_mask;
	while (t->merge_rank[i] >= 0 && t->merge_key[i] != key)
		i = (i + 1) & t->merge_mask;
	return i;
}

static int merge_table_init(struct clip_tokenizer *t, size_t nmerges)
{
	size_t cap = 1024, i;
	while (cap < nmerges * 2)
		cap <<= 1;
	t->merge_key = malloc(cap * sizeof *t->merge_key);
	t->merge_rank = malloc(cap * sizeof *t->merge_rank);
	t->merge_id = malloc(cap * sizeof *t->merge_id);
	if (!t->merge_key || !t->merge_rank || !t->merge_id)
		return eosin_error("out of memory");
	for (i = 0; i < cap; i++)
		t->merge_rank[i] = -1;
	t->merge_mask = cap - 1;
	return 0;
}

/* bpe_ranks[(a, b)] = rank (a later duplicate pair overwrites). */
static void merge_table_put(struct clip_tokenizer *t, int32_t a, int32_t b, int32_t rank,
                            int32_t merged)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	size_t i = merge_slot(t, key);
	t->merge_key[i] = key;
	t->merge_rank[i] = rank;
	t->merge_id[i] = merged;
}

/* -1 when (a, b) is not a merge. */
static inline int32_t merge_lookup(const struct clip_tokenizer *t, int32_t a, int32_t b,
                                   int32_t *merged)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	size_t i = merge_slot(t, key);
	*merged = t->merge_id[i];
	return t->merge_rank[i];
}

void clip_tokenizer_free(struct clip_tokenizer *t)
{
	if (!t)
		return;
	free(t->merge_key);
	free(t->merge_rank);
	free(t->merge_id);
	free(t->dec);
	free(t);
}

/* t->dec from the byte symbols and the merge table (vocab_size set) */
static int decode_table(struct clip_tokenizer *t)
{
	t->dec = malloc(sizeof *t->dec * (size_t)t->vocab_size);
	if (!t->dec)
		return eosin_error("out of memory");
	for (int i = 0; i < t->vocab_size; i++)
		t->dec[i] = (struct dec_entry){.a = -1, .b = -1, .byte = -1};
	for (int c = 0; c < 256; c++) {
		if (t->byte_id[c] >= 0 && t->byte_id[c] < t->vocab_size)
			t->dec[t->byte_id[c]] = (struct dec_entry){.a = -1, .b = -1, .byte = (int16_t)c};
		if (t->byte_eow_id[c] >= 0 && t->byte_eow_id[c] < t->vocab_size)
			t->dec[t->byte_eow_id[c]] =
			    (struct dec_entry){.a = -1, .b = -1, .byte = (int16_t)c, .eow = 1};
	}
	for (size_t i = 0; i <= t->merge_mask; i++) {
		int32_t id = t->merge_id[i];
		if (t->merge_rank[i] < 0 || id < 0 || id >= t->vocab_size || t->dec[id].byte >= 0)
			continue;
		t->dec[id].a = (int32_t)(t->merge_key[i] >> 32);
		t->dec[id].b = (int32_t)(t->merge_key[i] & 0xffffffffu);
	}
	return 0;
}

/* id's bytes into out[*n..cap), a space after each word's end; depth
 * bounds a malformed table's recursion */
static void decode_id(const struct clip_tokenizer *t, int32_t id, char *out, size_t cap,
                      size_t *n, int depth)
{
	if (id < 0 || id >= t->vocab_size || depth > 64)
		return;
	const struct dec_entry *e = &t->dec[id];
	if (e->byte >= 0) {
		if (*n + 1 < cap)
			out[(*n)++] = (char)e->byte;
		if (e->eow && *n + 1 < cap)
			out[(*n)++] = ' ';
		return;
	}
	if (e->a >= 0 && e->b >= 0) {
		decode_id(t, e->a, out, cap, n, depth + 1);
		decode_id(t, e->b, out, cap, n, depth + 1);
	}
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 if none */
static size_t utf8_valid_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t need = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
	                                                         : (c >= 0xF0 && c <= 0xF4) ? 4
	                                                                                    : 0;
	if (need == 0 || need > n)
		return 0;
	for (size_t k = 1; k < need; k++)
		if ((p[k] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
	    (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return need;
}

size_t clip_detokenize(const struct clip_tokenizer *t, const int32_t *ids, int n, char *out,
                       size_t cap)
{
	if (cap == 0)
		return 0;
	/* the bytes, then as UTF-8 with each byte that starts no well-formed
	 * sequence replaced by U+FFFD (Python's errors="replace" does so per
	 * maximal bad subsequence; a caption of sampled byte pieces may differ
	 * there) */
	size_t raw_cap = 4 * cap + 16, len = 0, o = 0;
	char *raw = malloc(raw_cap);
	if (!raw) {
		out[0] = 0;
		return 0;
	}
	for (int i = 0; i < n; i++)
		if (ids[i] != t->sot_id && ids[i] != t->eot_id)
			decode_id(t, ids[i], raw, raw_cap, &len, 0);
	for (size_t i = 0; i < len;) {
		size_t k = utf8_valid_len((const unsigned char *)raw + i, len - i);
		const char *src = k ? raw + i : "\xEF\xBF\xBD";
		size_t m = k ? k : 3;
		if (o + m + 1 > cap)
			break;
		memcpy(out + o, src, m);
		o += m;
		i += k ? k : 1;
	}
	free(raw);
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = 0;
	return o;
}

/* The 512 base symbols ("c" and "c</w>" for each byte's code point c),
 * written into buf (512 * 8 bytes) as NUL-separated strings. */
static void base_symbols(char *buf, const char *suffix, const char *sym[512], size_t len[512],
                         const int vocab_byte[256], const uint32_t byte_cp[256])
{
	size_t slen = strlen(suffix);
	int i, k;

	for (k = 0; k < 2; k++) {
		for (i = 0; i < 256; i++) {
			unsigned char *p = (unsigned char *)buf + (k * 256 + i) * (8 + slen);
			size_t n = utf8_encode(byte_cp[vocab_byte[i]], p);
			if (k) {
				memcpy(p + n, suffix, slen);
				n += slen;
			}
			sym[k * 256 + i] = (const char *)p;
			len[k * 256 + i] = n;
		}
	}
}

/* Split a merges line "a b" at its single space. */
static int split_merge(const char *line, size_t n, size_t *space)
{
	const char *sp = memchr(line, ' ', n);
	if (!sp || sp == line || sp == line + n - 1 ||
	    memchr(sp + 1, ' ', n - (size_t)(sp - line) - 1))
		return -1;
	*space = (size_t)(sp - line);
	return 0;
}

static char *read_maybe_gzip(const char *path, size_t *size)
{
	gzFile f = gzopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		eosin_error("cannot open '%s'", path);
		return NULL;
	}
	for (;;) {
		int got;
		if (cap - n < 65536) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 1 << 20);
			if (!nb) {
				free(buf);
				gzclose(f);
				eosin_error("out of memory reading '%s'", path);
				return NULL;
			}
			buf = nb;
		}
		got = gzread(f, buf + n, (unsigned)(cap - n - 1));
		if (got < 0) {
			int zerr;
			eosin_error("cannot read '%s': %s", path, gzerror(f, &zerr));
			free(buf);
			gzclose(f);
			return NULL;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	gzclose(f);
	buf[n] = '\0';
	*size = n;
	return buf;
}

/* A merges file in memory, cut into lines: line 0 is the "#version"
 * header, lines 1 .. CLIP_NMERGES the merges "a b". */
struct merges_file {
	char *text;
	size_t size, nlines;
	const char **line;
	size_t *linelen, *space; /* space: where a merge's two symbols part */
	/* what the vocabulary's keys point into (a strmap borrows its keys) */
	char base[512 * 12]; /* the byte symbols */
	char *joined;        /* the merged symbols */
};

static void merges_release(struct merges_file *mf)
{
	free(mf->text);
	free(mf->line);
	free(mf->linelen);
	free(mf->space);
	free(mf->joined);
}

static int merges_read(const char *path, struct merges_file *mf)
{
	*mf = (struct merges_file){.nlines = 0};
	if (!(mf->text = read_maybe_gzip(path, &mf->size)))
		return -1;
	mf->line = malloc((CLIP_NMERGES + 1) * sizeof *mf->line);
	mf->linelen = malloc((CLIP_NMERGES + 1) * sizeof *mf->linelen);
	mf->space = malloc((CLIP_NMERGES + 1) * sizeof *mf->space);
	if (!mf->line || !mf->linelen || !mf->space)
		return eosin_error("out of memory");
	for (size_t pos = 0; pos < mf->size && mf->nlines <= CLIP_NMERGES;) {
		char *nl = memchr(mf->text + pos, '\n', mf->size - pos);
		size_t end = nl ? (size_t)(nl - mf->text) : mf->size;
		mf->line[mf->nlines] = mf->text + pos;
		mf->linelen[mf->nlines] = end - pos;
		mf->nlines++;
		pos = end + 1;
	}
	while (mf->nlines > 1 && mf->linelen[mf->nlines - 1] == 0)
		mf->nlines--; /* a final newline */
	if (mf->nlines < 1)
		return eosin_error("'%s': empty merges file", path);
	return 0;
}

/* CLIP's vocabulary: the 512 byte symbols (alone, then at a word's end),
 * then the merged symbol of every merge in order:
 * vocab += [''.join(merge) for merge in merges]. Its keys point into mf,
 * which must outlive it. */
static int merges_vocab(const char *path, struct merges_file *mf, struct strmap *vocab,
                        int *vocab_byte)
{
	uint32_t byte_cp[256];
	const char *sym[512];
	size_t symlen[512];
	bytes_to_unicode(byte_cp, vocab_byte);
	base_symbols(mf->base, EOW, sym, symlen, vocab_byte, byte_cp);
	if (strmap_init(vocab, 512 + mf->nlines) < 0)
		return -1;
	for (size_t i = 0; i < 512; i++)
		if (strmap_put(vocab, sym[i], symlen[i], (int32_t)i) < 0)
			return -1;
	char *joined = mf->joined = malloc(mf->size + 1);
	if (!joined)
		return eosin_error("out of memory");
	size_t jpos = 0;
	int ret = 0;
	for (size_t i = 1; i < mf->nlines && ret == 0; i++) {
		const char *l = mf->line[i];
		size_t len = mf->linelen[i];
		if (split_merge(l, len, &mf->space[i]) < 0) {
			ret = eosin_error("'%s' line %zu: not a merge \"a b\"", path, i + 1);
			break;
		}
		memcpy(joined + jpos, l, mf->space[i]);
		memcpy(joined + jpos + mf->space[i], l + mf->space[i] + 1, len - mf->space[i] - 1);
		if (strmap_put(vocab, joined + jpos, len - 1, (int32_t)(512 + i - 1)) < 0)
			ret = -1;
		jpos += len - 1;
	}
	return ret;
}

/* The merge table, rank i - 1 for line i; both symbols must be known. */
static int merges_table(const char *path, const struct merges_file *mf, const struct strmap *vocab,
                        struct clip_tokenizer *t)
{
	if (merge_table_init(t, mf->nlines) < 0)
		return -1;
	for (size_t i = 1; i < mf->nlines; i++) {
		const char *l = mf->line[i];
		size_t sp = mf->space[i], len = mf->linelen[i];
		int a = strmap_get(vocab, l, sp), b = strmap_get(vocab, l + sp + 1, len - sp - 1);
		if (a < 0 || b < 0)
			return eosin_error("'%s' line %zu: merge of a symbol not in the vocabulary",
			                   path, i + 1);
		merge_table_put(t, a, b, (int32_t)(i - 1), (int32_t)(512 + i - 1));
	}
	return 0;
}

struct clip_tokenizer *clip_tokenizer_load(const char *merges_path)
{
	struct merges_file mf;
	struct strmap vocab = {0};
	int vocab_byte[256];
	struct clip_tokenizer *t = NULL;
	int ok = merges_read(merges_path, &mf) == 0;
	if (ok && !(t = calloc(1, sizeof *t)))
		ok = eosin_error("out of memory") == 0;
	ok = ok && merges_vocab(merges_path, &mf, &vocab, vocab_byte) == 0 &&
	     merges_table(merges_path, &mf, &vocab, t) == 0;
	if (ok) {
		for (int i = 0; i < 256; i++) {
			t->byte_id[vocab_byte[i]] = (int32_t)i;
			t->byte_eow_id[vocab_byte[i]] = (int32_t)(256 + i);
		}
		t->sot_id = (int32_t)(512 + mf.nlines - 1);
		t->eot_id = t->sot_id + 1;
		t->vocab_size = t->eot_id + 1;
		ok = decode_table(t) == 0;
	}
	strmap_release(&vocab);
	merges_release(&mf);
	if (!ok) {
		clip_tokenizer_free(t);
		return NULL;
	}
	return t;
}

/* id of an added token or vocabulary entry named s, or -1. */
static int hf_special_id(json_t *root, const struct strmap *vocab, const char *s)
{
	json_t *added = json_object_get(root, "added_tokens"), *tok;
	size_t i;

	json_array_foreach(added, i, tok)
	{
		json_t *c = json_object_get(tok, "content"), *id = json_object_get(tok, "id");
		if (json_is_string(c) && json_is_integer(id) &&
		    strcmp(json_string_value(c), s) == 0)
			return (int)json_integer_value(id);
	}
	return strmap_get(vocab, s, strlen(s));
}

/* model.vocab and model.merges of a BPE model this tokenizer can run, and
 * its end_of_word_suffix ("" when none). */
static int hf_model(const char *path, json_t *root, json_t **jvocab, json_t **merges,
                    const char **suffix)
{
	json_t *model = json_object_get(root, "model"), *v;
	*jvocab = json_object_get(model, "vocab");
	*merges = json_object_get(model, "merges");
	if (!json_is_object(*jvocab) || !json_is_array(*merges))
		return eosin_error("'%s': no BPE model (model.vocab, model.merges)", path);
	v = json_object_get(model, "type");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), "BPE") != 0))
		return eosin_error("'%s': model type is not \"BPE\"", path);
	v = json_object_get(model, "continuing_subword_prefix");
	if (json_is_string(v) && json_string_length(v) > 0)
		return eosin_error("'%s': continuing_subword_prefix is not supported", path);
	v = json_object_get(model, "end_of_word_suffix");
	*suffix = json_is_string(v) ? json_string_value(v) : "";
	if (strlen(*suffix) > 32)
		return eosin_error("'%s': end_of_word_suffix too long", path);
	return 0;
}

/* model.vocab into vocab; *max_id is the largest id. */
static int hf_vocab(const char *path, json_t *jvocab, struct strmap *vocab, long *max_id)
{
	const char *key;
	json_t *v;
	json_object_foreach(jvocab, key, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > INT_MAX / 2)
			return eosin_error("'%s': model.vocab \"%s\": not an id", path, key);
		if (strmap_put(vocab, key, strlen(key), (int32_t)json_integer_value(v)) < 0)
			return -1;
		if (json_integer_value(v) > *max_id)
			*max_id = (long)json_integer_value(v);
	}
	return 0;
}

/* Every byte's symbol, alone and at the end of a word (base: room for 512
 * of them), must be in the vocab. */
static int hf_bytes(const char *path, struct clip_tokenizer *t, const struct strmap *vocab,
                    char *base, const char *suffix)
{
	uint32_t byte_cp[256];
	int vocab_byte[256];
	const char *sym[512];
	size_t symlen[512];
	bytes_to_unicode(byte_cp, vocab_byte);
	base_symbols(base, suffix, sym, symlen, vocab_byte, byte_cp);
	for (size_t i = 0; i < 256; i++) {
		int a = strmap_get(vocab, sym[i], symlen[i]);
		int b = strmap_get(vocab, sym[256 + i], symlen[256 + i]);
		if (a < 0 || b < 0)
			return eosin_error("'%s': byte 0x%02x has no symbol in model.vocab", path,
			                   vocab_byte[i]);
		t->byte_id[vocab_byte[i]] = a;
		t->byte_eow_id[vocab_byte[i]] = b;
	}
	return 0;
}

/* A merge's two symbols, from "a b" or ["a", "b"]; -1 when it is neither. */
static int hf_merge_pair(json_t *v, const char **a, size_t *alen, const char **b, size_t *blen)
{
	size_t space;
	if (json_is_string(v) &&
	    split_merge(json_string_value(v), json_string_length(v), &space) == 0) {
		*a = json_string_value(v);
		*alen = space;
		*b = *a + space + 1;
		*blen = json_string_length(v) - space - 1;
		return 0;
	}
	if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
	    json_is_string(json_array_get(v, 1))) {
		*a = json_string_value(json_array_get(v, 0));
		*alen = json_string_length(json_array_get(v, 0));
		*b = json_string_value(json_array_get(v, 1));
		*blen = json_string_length(json_array_get(v, 1));
		return 0;
	}
	return -1;
}

/* Merges in rank order; both symbols and the merged one must be in the
 * vocab. */
static int hf_merges(const char *path, struct clip_tokenizer *t, json_t *merges,
                     const struct strmap *vocab)
{
	size_t i, total = 0;
	json_t *v;
	json_array_foreach(merges, i, v)
	{
		if (json_is_string(v))
			total += json_string_length(v) + 1;
		else if (json_is_array(v) && json_array_size(v) == 2)
			total += json_string_length(json_array_get(v, 0)) +
			         json_string_length(json_array_get(v, 1)) + 2;
	}
	char *joined = malloc(total + 1);
	if (!joined)
		return eosin_error("out of memory");
	int ret = 0;
	json_array_foreach(merges, i, v)
	{
		const char *a, *b;
		size_t alen, blen;
		if (hf_merge_pair(v, &a, &alen, &b, &blen) < 0) {
			ret = eosin_error("'%s': model.merges[%zu]: not a merge", path, i);
			break;
		}
		memcpy(joined, a, alen);
		memcpy(joined + alen, b, blen);
		int ia = strmap_get(vocab, a, alen), ib = strmap_get(vocab, b, blen);
		int im = strmap_get(vocab, joined, alen + blen);
		if (ia < 0 || ib < 0 || im < 0) {
			ret = eosin_error("'%s': model.merges[%zu]: symbol not in model.vocab",
			                  path, i);
			break;
		}
		merge_table_put(t, ia, ib, (int32_t)i, im);
	}
	free(joined);
	return ret;
}

/* <|startoftext|> and <|endoftext|>, which may lie past the vocab. */
static int hf_specials(const char *path, struct clip_tokenizer *t, json_t *root,
                       const struct strmap *vocab, long max_id)
{
	t->sot_id = hf_special_id(root, vocab, "<|startoftext|>");
	t->eot_id = hf_special_id(root, vocab, "<|endoftext|>");
	if (t->sot_id < 0 || t->eot_id < 0)
		return eosin_error("'%s': no <|startoftext|> or <|endoftext|> token", path);
	if (t->sot_id > max_id)
		max_id = t->sot_id;
	if (t->eot_id > max_id)
		max_id = t->eot_id;
	t->vocab_size = (int)max_id + 1;
	return 0;
}

struct clip_tokenizer *clip_tokenizer_load_hf(const char *path)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr), *jvocab, *merges;
	if (!root) {
		eosin_error("'%s' line %d: %s", path, jerr.line, jerr.text);
		return NULL;
	}
	const char *suffix = "";
	struct clip_tokenizer *t = NULL;
	struct strmap vocab = {0};
	char *base = NULL;
	long max_id = -1;
	int ok = hf_model(path, root, &jvocab, &merges, &suffix) == 0;
	if (ok) {
		t = calloc(1, sizeof *t);
		base = malloc(512 * (8 + strlen(suffix)));
		if (!t || !base)
			ok = eosin_error("out of memory") == 0;
	}
	ok = ok && strmap_init(&vocab, json_object_size(jvocab) + 16) == 0 &&
	     merge_table_init(t, json_array_size(merges)) == 0 &&
	     hf_vocab(path, jvocab, &vocab, &max_id) == 0 &&
	     hf_bytes(path, t, &vocab, base, suffix) == 0 &&
	     hf_merges(path, t, merges, &vocab) == 0 &&
	     hf_specials(path, t, root, &vocab, max_id) == 0 && decode_table(t) == 0;
	strmap_release(&vocab);
	free(base);
	json_decref(root);
	if (!ok) {
		clip_tokenizer_free(t);
		return NULL;
	}
	return t;
}

int clip_tokenizer_vocab_size(const struct clip_tokenizer *t)
{
	return t->vocab_size;
}
int clip_tokenizer_sot(const struct clip_tokenizer *t)
{
	return t->sot_id;
}
int clip_tokenizer_eot(const struct clip_tokenizer *t)
{
	return t->eot_id;
}

/* ---- Text cleaning ----------------------------------------------------- */

static int is_hex(uint32_t c)
{
	return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f');
}

/* Characters of a named reference: [^\t\n\f <&#;] */
static int is_name_char(uint32_t c)
{
	return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' &&
	       c != '#' && c != ';';
}

static const struct html_entity *entity_lookup(const uint32_t *s, size_t n)
{
	char name[40];
	size_t i;

	if (n >= sizeof name)
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] >= 0x80)
			return NULL;
		name[i] = (char)s[i];
	}
	return html_entity_find(name, n);
}

/* html.unescape(in[0..n)) into out (room for n: the result is never longer).
 * Returns the output length. */
static size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		size_t j, k;
		if (in[i] != '&' || i + 1 >= n) {
			out[o++] = in[i++];
			continue;
		}
		j = i + 1;
		if (in[j] == '#') {
			uint64_t num = 0;
			k = j + 1;
			if (k < n && in[k] >= '0' && in[k] <= '9') {
				for (; k < n && in[k] >= '0' && in[k] <= '9'; k++)
					num = num > 0x110000 ? num : num * 10 + (in[k] - '0');
			} else if (k + 1 < n && (in[k] == 'x' || in[k] == 'X') &&
			           is_hex(in[k + 1])) {
				for (k++; k < n && is_hex(in[k]); k++) {
					uint32_t d =
					    in[k] <= '9' ? in[k] - '0' : (in[k] | 32) - 'a' + 10;
					num = num > 0x110000 ? num : num * 16 + d;
				}
			} else {
				out[o++] = in[i++]; /* "&#" then nothing numeric: no match */
				continue;
			}
			if (k < n && in[k] == ';')
				k++;
			{
				uint32_t cp;
				if (html_numeric_ref(num, &cp))
					out[o++] = cp;
			}
			i = k;
			continue;
		}
		/* Named: up to 32 name characters, then an optional ';'. */
		for (k = j; k < n && k - j < 32 && is_name_char(in[k]); k++)
			;
		if (k == j) {
			out[o++] = in[i++];
			continue;
		}
		if (k < n && in[k] == ';')
			k++;
		{
			const struct html_entity *e = entity_lookup(in + j, k - j);
			size_t x;
			if (!e) {
				/* Longest prefix (at least 2), for the legacy names. */
				for (x = k - j - 1; x >= 2; x--) {
					e = entity_lookup(in + j, x);
					if (e)
						break;
				}
			} else {
				x = k - j;
			}
			if (!e) {
				while (i < k)
					out[o++] = in[i++];
				continue;
			}
			out[o++] = e->cp[0];
			if (e->cp[1])
				out[o++] = e->cp[1];
			for (i = j + x; i < k; i++)
				out[o++] = in[i];
		}
	}
	return o;
}

static int has_class(uint32_t c, unsigned flag)
{
	return (unicode_class(c) & flag) != 0;
}

/* str.strip(): [*start, *end) without leading and trailing isspace(). */
static void py_strip(const uint32_t *s, size_t *start, size_t *end)
{
	while (*start < *end && has_class(s[*start], UC_PY_SPACE))
		(*start)++;
	while (*end > *start && has_class(s[*end - 1], UC_PY_SPACE))
		(*end)--;
}

/* Python's final-sigma rule for U+03A3 at s[i] of s[0..n). */
static int final_sigma(const uint32_t *s, size_t n, size_t i)
{
	size_t j;
	unsigned c = 0;

	for (j = i; j > 0; j--) {
		c = unicode_class(s[j - 1]);
		if (!(c & UC_CASE_IGNORABLE))
			break;
	}
	if (j == 0 || !(c & UC_CASED))
		return 0;
	for (j = i + 1; j < n; j++) {
		c = unicode_class(s[j]);
		if (!(c & UC_CASE_IGNORABLE))
			break;
	}
	return j == n || !(c & UC_CASED);
}

/* basic_clean, whitespace_clean and lower: text[0..n) -> out (room for 3n),
 * returns the output length. tmp has room for n. */
static size_t clean_text(uint32_t *text, size_t n, uint32_t *tmp, uint32_t *out)
{
	size_t start, end, i, m = 0;

	n = html_unescape(text, n, tmp);
	n = html_unescape(tmp, n, text);
	start = 0;
	end = n;
	py_strip(text, &start, &end);
	/* \s+ -> ' ' (regex \s), then strip() again. */
	for (i = start; i < end;) {
		if (has_class(text[i], UC_RE_SPACE)) {
			while (i < end && has_class(text[i], UC_RE_SPACE))
				i++;
			tmp[m++] = ' ';
		} else {
			tmp[m++] = text[i++];
		}
	}
	start = 0;
	end = m;
	py_strip(tmp, &start, &end);
	m = 0;
	for (i = start; i < end; i++) {
		if (tmp[i] == 0x3A3) {
			out[m++] = final_sigma(tmp + start, end - start, i - start) ? 0x3C2 : 0x3C3;
		} else {
			uint32_t lo[3];
			int k, nl = unicode_lower(tmp[i], lo);
			for (k = 0; k < nl; k++)
				out[m++] = lo[k];
		}
	}
	return m;
}

/* ---- Pre-tokenising and BPE -------------------------------------------- */

/* Does s[i..n) start with lit under regex IGNORECASE? Returns its length. */
static size_t match_literal(const uint32_t *s, size_t n, size_t i, const char *lit)
{
	size_t k;
	for (k = 0; lit[k]; k++)
		if (i + k >= n || unicode_fold_ascii(s[i + k]) != (unsigned char)lit[k])
			return 0;
	return k;
}

/* Length of the piece the CLIP pattern matches at s[i] (0: none, skip one):
 * <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
static size_t next_piece(const uint32_t *s, size_t n, size_t i)
{
	static const char *const literal[] = {
	    "<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
	unsigned c = unicode_class(s[i]);
	size_t k, len;

	if (s[i] == '<' || s[i] == '\'') {
		for (k = 0; k < sizeof literal / sizeof *literal; k++)
			if ((len = match_literal(s, n, i, literal[k])))
				return len;
	}
	if (c & UC_LETTER) {
		for (k = i + 1; k < n && (unicode_class(s[k]) & UC_LETTER); k++)
			;
		return k - i;
	}
	if (c & UC_NUMBER)
		return 1;
	if (c & UC_OTHER) {
		for (k = i + 1; k < n && (unicode_class(s[k]) & UC_OTHER); k++)
			;
		return k - i;
	}
	return 0;
}

struct bpe_pair {
	int32_t rank, left, right; /* node indices; left is also the position */
	int32_t left_id, right_id;
};

struct bpe_scratch {
	int32_t *id, *next, *prev; /* per symbol; id -1 once merged away */
	struct bpe_pair *heap;
	size_t nheap;
};

static int pair_less(const struct bpe_pair *a, const struct bpe_pair *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(struct bpe_scratch *w, struct bpe_pair p)
{
	size_t i = w->nheap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!pair_less(&p, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = p;
}

static struct bpe_pair heap_pop(struct bpe_scratch *w)
{
	struct bpe_pair top = w->heap[0], last = w->heap[--w->nheap];
	size_t i = 0, n = w->nheap;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && pair_less(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!pair_less(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (n)
		w->heap[i] = last;
	return top;
}

static void push_pair(const struct clip_tokenizer *t, struct bpe_scratch *w, int32_t left,
                      int32_t right)
{
	int32_t merged, rank;
	if (left < 0 || right < 0)
		return;
	rank = merge_lookup(t, w->id[left], w->id[right], &merged);
	if (rank >= 0)
		heap_push(w, (struct bpe_pair){rank, left, right, w->id[left], w->id[right]});
}

struct emitter {
	int32_t *ids;
	int cap, count;
};

static void emit(struct emitter *e, int32_t id)
{
	if (e->count < e->cap)
		e->ids[e->count] = id;
	e->count++;
}

/* BPE of one piece's bytes (n >= 1); emits its ids. The scratch has room for
 * n symbols and 3n heap entries. */
static void bpe_word(const struct clip_tokenizer *t, const unsigned char *bytes, size_t n,
                     struct bpe_scratch *w, struct emitter *e)
{
	size_t i;
	int32_t k;

	for (i = 0; i < n; i++) {
		w->id[i] = i + 1 < n ? t->byte_id[bytes[i]] : t->byte_eow_id[bytes[i]];
		w->prev[i] = (int32_t)i - 1;
		w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	w->nheap = 0;
	for (i = 0; i + 1 < n; i++)
		push_pair(t, w, (int32_t)i, (int32_t)i + 1);
	while (w->nheap) {
		struct bpe_pair p = heap_pop(w);
		int32_t merged, r;
		if (w->id[p.left] != p.left_id || w->id[p.right] != p.right_id ||
		    w->next[p.left] != p.right)
			continue; /* stale */
		merge_lookup(t, p.left_id, p.right_id, &merged);
		w->id[p.left] = merged;
		w->id[p.right] = -1;
		r = w->next[p.right];
		w->next[p.left] = r;
		if (r >= 0)
			w->prev[r] = p.left;
		push_pair(t, w, w->prev[p.left], p.left);
		push_pair(t, w, p.left, r);
	}
	for (k = 0; k >= 0; k = w->next[k])
		emit(e, w->id[k]);
}

static int tokenize(const struct clip_tokenizer *t, const char *utf8, size_t len, struct emitter *e)
{
	uint32_t *text = NULL, *tmp = NULL, *low = NULL;
	unsigned char *bytes = NULL;
	struct bpe_scratch w = {0};
	size_t n = 0, m, i, pos, maxbytes;
	int ret = -1;

	if (!t || (!utf8 && len))
		return eosin_error("clip_tokenize: no tokenizer or text");
	if (len > (size_t)INT_MAX / 16)
		return eosin_error("clip_tokenize: text of %zu bytes is too long", len);
	text = malloc((len + 1) * sizeof *text);
	tmp = malloc((len + 1) * sizeof *tmp);
	low = malloc((3 * len + 1) * sizeof *low);
	if (!text || !tmp || !low)
		goto oom;
	for (pos = 0; pos < len;)
		pos += utf8_decode((const unsigned char *)utf8 + pos, len - pos, &text[n++]);
	m = clean_text(text, n, tmp, low);
	/* BPE scratch for the longest piece. */
	maxbytes = 1;
	for (i = 0; i < m;) {
		size_t plen = next_piece(low, m, i);
		if (4 * plen + 1 > maxbytes)
			maxbytes = 4 * plen + 1;
		i += plen ? plen : 1;
	}
	bytes = malloc(maxbytes);
	w.id = malloc(maxbytes * sizeof *w.id);
	w.next = malloc(maxbytes * sizeof *w.next);
	w.prev = malloc(maxbytes * sizeof *w.prev);
	w.heap = malloc(3 * maxbytes * sizeof *w.heap);
	if (!bytes || !w.id || !w.next || !w.prev || !w.heap)
		goto oom;
	for (i = 0; i < m;) {
		size_t plen = next_piece(low, m, i), nb = 0, k;
		if (!plen) {
			i++;
			continue;
		}
		for (k = i; k < i + plen; k++)
			nb += utf8_encode(low[k], bytes + nb);
		i += plen;
		if (nb == 15 && memcmp(bytes, "<|startoftext|>", 15) == 0)
			emit(e, t->sot_id);
		else if (nb == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0)
			emit(e, t->eot_id);
		else
			bpe_word(t, bytes, nb, &w, e);
	}
	ret = 0;
	goto out;
oom:
	eosin_error("clip_tokenize: out of memory");
out:
	free(text);
	free(tmp);
	free(low);
	free(bytes);
	free(w.id);
	free(w.next);
	free(w.prev);
	free(w.heap);
	return ret;
}

int clip_tokenize(const struct clip_tokenizer *t, const char *utf8, size_t len, int32_t *ids,
                  int cap)
{
	struct emitter e = {ids, cap < 0 ? 0 : cap, 0};
	if (cap > 0 && !ids)
		return eosin_error("clip_tokenize: no output array");
	if (tokenize(t, utf8, len, &e) < 0)
		return -1;
	return e.count;
}

int clip_tokenize_context(const struct clip_tokenizer *t, const char *utf8, size_t len,
                          int32_t *out, int ctx, int *truncated)
{
	struct emitter e;
	int n, i;

	if (ctx < 1 || !out)
		return eosin_error("clip_tokenize_context: context length %d", ctx);
	if (!t)
		return eosin_error("clip_tokenize_context: no tokenizer");
	e = (struct emitter){out + 1, ctx - 1, 0};
	if (tokenize(t, utf8, len, &e) < 0)
		return -1;
	out[0] = t->sot_id;
	n = e.count + 2;
	if (truncated)
		*truncated = n > ctx;
	if (n > ctx) {
		out[ctx - 1] = t->eot_id;
		return ctx;
	}
	out[n - 1] = t->eot_id;
	for (i = n; i < ctx; i++)
		out[i] = 0;
	return n;
}

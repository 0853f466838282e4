/*
 * utf8.c: UTF-8 decoding and lookups in the generated Unicode and HTML
 * tables (utf8-tables.c). See utf8.h.
 */
#include "model/utf8.h"

#include <string.h>

size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned c = s[0];
	size_t need, i;
	unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else {
		*cp = UTF8_REPLACEMENT;
		return 1;
	}
	for (i = 1; i <= need; i++) {
		unsigned b;
		if (i >= len)
			break;
		b = s[i];
		if (b < lo || b > hi)
			break;
		v = v << 6 | (b & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	if (i <= need) {
		*cp = UTF8_REPLACEMENT;
		return i;
	}
	*cp = v;
	return need + 1;
}

size_t utf8_encode(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xC0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xE0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char)(0xF0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

unsigned unicode_class(uint32_t cp)
{
	size_t lo = 0, hi = utf8_class_nruns; /* answer in [lo, hi) */

	if (cp < 0x80)
		return utf8_ascii_class[cp];
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (utf8_class_runs[mid] >> 8 <= cp)
			lo = mid;
		else
			hi = mid;
	}
	return utf8_class_runs[lo] & 0xFF;
}

int unicode_lower(uint32_t cp, uint32_t out[3])
{
	size_t lo = 0, hi = utf8_lower_nruns, i;

	if (cp < 0x80) {
		out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
		return 1;
	}
	for (i = 0; i < utf8_lower_nmulti; i++) {
		if (utf8_lower_multi[i].cp == cp) {
			int n = 0;
			while (n < 3 && utf8_lower_multi[i].lower[n]) {
				out[n] = utf8_lower_multi[i].lower[n];
				n++;
			}
			return n;
		}
	}
	out[0] = cp;
	if (utf8_lower_nruns == 0 || cp < utf8_lower_runs[0].first)
		return 1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (utf8_lower_runs[mid].first <= cp)
			lo = mid;
		else
			hi = mid;
	}
	{
		const struct utf8_lower_run *r = &utf8_lower_runs[lo];
		uint32_t off = cp - r->first;
		if (off % r->stride == 0 && off / r->stride < r->count)
			out[0] = (uint32_t)((int64_t)cp + r->delta);
	}
	return 1;
}

uint32_t unicode_fold_ascii(uint32_t cp)
{
	size_t i;

	if (cp < 0x80)
		return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
	for (i = 0; i < utf8_ascii_nfolds; i++)
		if (utf8_ascii_folds[i].cp == cp)
			return (uint32_t)utf8_ascii_folds[i].ascii;
	return cp;
}

static int entity_cmp(const char *name, size_t len, const char *key)
{
	size_t klen = strlen(key);
	int c = memcmp(name, key, len < klen ? len : klen);
	if (c)
		return c;
	return len < klen ? -1 : len > klen;
}

const struct html_entity *html_entity_find(const char *name, size_t len)
{
	size_t lo = 0, hi = html_nentities;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = entity_cmp(name, len, html_entities[mid].name);
		if (c == 0)
			return &html_entities[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int html_numeric_ref(uint64_t num, uint32_t *cp)
{
	size_t i;

	for (i = 0; i < html_ncharref_fixes; i++) {
		if (html_charref_fixes[i].num == num) {
			*cp = html_charref_fixes[i].cp;
			return 1;
		}
	}
	if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
		*cp = UTF8_REPLACEMENT;
		return 1;
	}
	for (i = 0; i < html_ndropped_codepoints; i++)
		if (num >= html_dropped_codepoints[i][0] && num <= html_dropped_codepoints[i][1])
			return 0;
	*cp = (uint32_t)num;
	return 1;
}

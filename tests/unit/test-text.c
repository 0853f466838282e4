/*
 * test-text: lib/text/text.c on hand-written reports (expected values written
 * by hand) and, for properties that must hold on any text, on the real
 * gastric adenocarcinoma captions in ../shared/data/text.
 */
#include "tap.h"
#include "text/text.h"

#include <ctype.h>
#include <string.h>

static int span_is(const char *s, struct text_span sp, const char *want)
{
	return sp.len == strlen(want) && !memcmp(s + sp.off, want, sp.len);
}

static int part_is(const char *s, const struct text_part *p, const char *label,
                   const char *want)
{
	return p && !strcmp(p->label, label) && p->len == strlen(want) &&
	       !memcmp(s + p->off, want, p->len);
}

static void test_sentences(void)
{
	const char *s = "Dr. Smith measured approx. 2.5 cm, e.g. in the pT3N1 case. "
	                "Margins are free!  Is it invasive? Yes (see fig. 2).\n\n"
	                "FINAL NOTE without full stop";
	struct text_span *sp;
	size_t n;
	ok(text_sentences(s, strlen(s), &sp, &n) == 0, "sentences: ok");
	ok(n == 5, "sentences: 5 (got %zu)", n);
	if (n == 5) {
		ok(span_is(s, sp[0], "Dr. Smith measured approx. 2.5 cm, e.g. in the pT3N1 case."),
		   "sentences: abbreviations, decimals and stages do not split");
		ok(span_is(s, sp[1], "Margins are free!"), "sentences: exclamation");
		ok(span_is(s, sp[2], "Is it invasive?"), "sentences: question");
		ok(span_is(s, sp[3], "Yes (see fig. 2)."), "sentences: fig. and bracket");
		ok(span_is(s, sp[4], "FINAL NOTE without full stop"), "sentences: blank line ends one");
	}
	free(sp);
	ok(text_sentences("   ", 3, &sp, &n) == 0 && n == 0, "sentences: blank text has none");
	free(sp);
	const char *t = "Tumor size 3.2 x 2.1 cm. Grade 2.";
	ok(text_sentences(t, strlen(t), &sp, &n) == 0 && n == 2 &&
	       span_is(t, sp[0], "Tumor size 3.2 x 2.1 cm.") && span_is(t, sp[1], "Grade 2."),
	   "sentences: sizes and a digit after the stop");
	free(sp);
}

static void test_parts(void)
{
	const char *r = "FINAL DIAGNOSIS:\n"
	                "A. Stomach, antrum, biopsy: adenocarcinoma.\n"
	                "   1. Tumour size 2 cm.\n"
	                "   2. Margins free.\n"
	                "B) Lymph node: no tumour (0/3).\n"
	                "C: Omentum: negative.\n";
	struct text_part *p;
	size_t n;
	ok(text_split_parts(r, strlen(r), &p, &n) == 0, "parts: ok");
	ok(n == 3, "parts: three lettered parts, numbered items stay inside (got %zu)", n);
	if (n == 3) {
		ok(part_is(r, &p[0], "A",
		           "Stomach, antrum, biopsy: adenocarcinoma.\n   1. Tumour size 2 cm.\n"
		           "   2. Margins free."),
		   "parts: A with its items");
		ok(part_is(r, &p[1], "B", "Lymph node: no tumour (0/3)."), "parts: B)");
		ok(part_is(r, &p[2], "C", "Omentum: negative."), "parts: C:");
		ok(text_find_part(p, n, "b") == &p[1], "parts: find is case-blind");
		ok(text_find_part(p, n, "3") == &p[2], "parts: 3 finds C");
		ok(text_find_part(p, n, "D") == NULL, "parts: D absent");
	}
	free(p);

	const char *r2 = "Part 1: Colon, sigmoid, resection\nInvasive adenocarcinoma, pT3N1.\n"
	                 "1. Depth: subserosa.\n"
	                 "PART 2: Liver wedge\nMetastatic carcinoma.\n"
	                 "SPECIMEN C\nFat.\n"
	                 "Specimen #4 - Appendix. Unremarkable.\n"
	                 "The specimen a portion of fat.\n";
	ok(text_split_parts(r2, strlen(r2), &p, &n) == 0 && n == 4,
	   "parts: Part/Specimen headers win over numbered items (got %zu)", n);
	if (n == 4) {
		ok(part_is(r2, &p[0], "1",
		           "Colon, sigmoid, resection\nInvasive adenocarcinoma, pT3N1.\n"
		           "1. Depth: subserosa."),
		   "parts: Part 1:");
		ok(part_is(r2, &p[1], "2", "Liver wedge\nMetastatic carcinoma."), "parts: PART 2:");
		ok(part_is(r2, &p[2], "C", "Fat."), "parts: SPECIMEN C");
		ok(part_is(r2, &p[3], "4",
		           "Appendix. Unremarkable.\nThe specimen a portion of fat."),
		   "parts: Specimen #4 -");
		ok(text_find_part(p, n, "A") == &p[0], "parts: slide part A finds Part 1");
	}
	free(p);

	const char *r3 = "Sections show adenocarcinoma.\n2. Unrelated numbered line.\n";
	ok(text_split_parts(r3, strlen(r3), &p, &n) == 0 && n == 0 && !p,
	   "parts: a list not starting at 1 or A is no split");
	free(p);
	ok(text_split_parts("", 0, &p, &n) == 0 && n == 0, "parts: empty report");
	free(p);

	struct text_part_rule rule;
	char label[TEXT_LABEL_MAX];
	ok(text_part_rule_init(&rule, NULL) == 0, "part rule: default compiles");
	ok(text_part_of_slide(&rule, "S12-3456-A", label, sizeof label) == 1 && !strcmp(label, "A"),
	   "part rule: trailing -A");
	ok(text_part_of_slide(&rule, "S12-3456_b2", label, sizeof label) == 1 && !strcmp(label, "B"),
	   "part rule: trailing _b2 is part B block 2");
	ok(text_part_of_slide(&rule, "TCGA-3X-AAVA", label, sizeof label) == 0,
	   "part rule: TCGA patient id names no part");
	ok(text_part_of_slide(&rule, "tcga-cr-7395-01a-01-ts1", label, sizeof label) == 0,
	   "part rule: TCGA slide barcode names no part");
	text_part_rule_release(&rule);
	ok(text_part_rule_init(&rule, "^case[0-9]+p([0-9]+)$") == 0 &&
	       text_part_of_slide(&rule, "case17p03", label, sizeof label) == 1 &&
	       !strcmp(label, "3"),
	   "part rule: user expression, first group, leading zero dropped");
	text_part_rule_release(&rule);
	ok(text_part_rule_init(&rule, "([") < 0, "part rule: bad expression refused");
}

static int has(char **v, size_t n, const char *w)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], w))
			return 1;
	return 0;
}

static void test_keywords(void)
{
	const char *s = "Poorly differentiated adenocarcinoma with signet ring cells. "
	                "Signet ring cells infiltrate the muscularis propria; "
	                "the tumour measures 2.5 cm.";
	char **kw;
	size_t n;
	ok(text_keywords(s, strlen(s), 10, &kw, &n) == 0, "keywords: ok");
	ok(has(kw, n, "poorly differentiated adenocarcinoma"), "keywords: a 3-word phrase");
	ok(has(kw, n, "signet ring cells"), "keywords: repeated phrase kept once");
	ok(n > 0 && !strcmp(kw[0], "signet ring cells"), "keywords: the repeated phrase ranks first");
	ok(has(kw, n, "muscularis propria"), "keywords: phrase ended by punctuation");
	ok(!has(kw, n, "the") && !has(kw, n, "with") && !has(kw, n, "2") && !has(kw, n, "5 cm"),
	   "keywords: stop words and numbers are not keywords");
	text_free_strings(kw, n);
	ok(text_keywords(s, strlen(s), 2, &kw, &n) == 0 && n == 2, "keywords: max respected");
	text_free_strings(kw, n);
	ok(text_keywords("the of and", 10, 5, &kw, &n) == 0 && n == 0, "keywords: none in stop words");
	text_free_strings(kw, n);

	char *c = text_clean("  a \n\t b  ", 10);
	ok(c && !strcmp(c, "a b"), "clean: whitespace collapsed and trimmed");
	free(c);
}

/* One CSV field (RFC 4180 quoting) into buf; returns the next position. */
static const char *csv_field(const char *p, char *buf, size_t size, int *end_of_row)
{
	size_t o = 0;
	int quoted = *p == '"';
	if (quoted)
		p++;
	for (; *p; p++) {
		if (quoted && *p == '"' && p[1] == '"')
			p++;
		else if (quoted && *p == '"') {
			quoted = 0;
			continue;
		} else if (!quoted && (*p == ',' || *p == '\n' || *p == '\r'))
			break;
		if (o + 1 < size)
			buf[o++] = *p;
	}
	buf[o] = 0;
	*end_of_row = *p != ',';
	if (*p == '\r')
		p++;
	return *p ? p + 1 : p;
}

static void test_real_captions(void)
{
	const char *dir = getenv("EOSIN_SHARED") ? getenv("EOSIN_SHARED") : "../shared/data";
	char path[4096];
	snprintf(path, sizeof path, "%s/text/gastric-adenocarcinoma-captions.csv", dir);
	FILE *f = fopen(path, "rb");
	if (!f) {
		printf("# skipping real captions: %s missing\n", path);
		return;
	}
	static char data[1 << 20];
	size_t len = fread(data, 1, sizeof data - 1, f);
	fclose(f);
	data[len] = 0;
	const char *p = strchr(data, '\n');
	p = p ? p + 1 : data + len;
	int rows = 0, bad_cover = 0, bad_kw = 0, none = 0, multi = 0, parts_found = 0;
	static char fields[3][8192];
	while (*p) {
		int end = 0, nf = 0;
		while (!end && nf < 3)
			p = csv_field(p, fields[nf++], sizeof fields[0], &end);
		if (nf < 3)
			break;
		const char *text = fields[2];
		size_t n = strlen(text), nonspace = 0, covered = 0;
		rows++;
		for (size_t i = 0; i < n; i++)
			nonspace += !isspace((unsigned char)text[i]);
		struct text_span *sp;
		size_t ns;
		if (text_sentences(text, n, &sp, &ns) < 0)
			break;
		none += ns == 0;
		multi += ns > 1;
		for (size_t k = 0; k < ns; k++)
			for (size_t i = 0; i < sp[k].len; i++)
				covered += !isspace((unsigned char)text[sp[k].off + i]);
		bad_cover += covered != nonspace;
		free(sp);
		char **kw;
		size_t nk;
		if (text_keywords(text, n, 8, &kw, &nk) < 0)
			break;
		char lower[8192];
		for (size_t i = 0; i <= n; i++)
			lower[i] = (char)tolower((unsigned char)text[i]);
		/* every keyword's words occur in the text, words 1..3, distinct */
		for (size_t k = 0; k < nk; k++) {
			char tmp[256], *save = NULL;
			int words = 0;
			snprintf(tmp, sizeof tmp, "%s", kw[k]);
			for (char *w = strtok_r(tmp, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
				words++;
				bad_kw += strstr(lower, w) == NULL;
			}
			bad_kw += words < 1 || words > 3;
			for (size_t m = 0; m < k; m++)
				bad_kw += !strcmp(kw[m], kw[k]);
		}
		bad_kw += nk == 0 && n > 20;
		text_free_strings(kw, nk);
		struct text_part *parts;
		size_t np;
		if (text_split_parts(text, n, &parts, &np) == 0)
			parts_found += np > 0;
		free(parts);
	}
	ok(rows == 991, "real captions: 991 rows read (got %d)", rows);
	ok(bad_cover == 0, "real captions: sentences cover every non-space byte (%d bad)", bad_cover);
	ok(none == 0, "real captions: every caption has a sentence");
	ok(multi > 100, "real captions: many captions have several sentences (%d)", multi);
	ok(bad_kw == 0, "real captions: keywords are 1-3 distinct words of the text (%d bad)", bad_kw);
	ok(parts_found == 0, "real captions: one-paragraph captions have no parts (%d)", parts_found);
}

int main(void)
{
	test_sentences();
	test_parts();
	test_keywords();
	test_real_captions();
	return tap_done();
}

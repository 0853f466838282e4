/*
 * text.c: report parts, sentences and keywords (see text.h for the API and
 * eosin-caption-fetch(1), section TEXT, for the rules in words).
 */
#include "text/text.h"

#include "core/error.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- specimen parts ---- */

/* "Part 1:", "PART A:", "SPECIMEN A", "Specimen #2", "Part No. 3". The word
 * is case-blind; a letter label must be upper case so that "specimen a
 * portion" is not a header. */
static const char strong_header[] =
    "^[[:space:]]*([Pp][Aa][Rr][Tt]|[Ss][Pp][Ee][Cc][Ii][Mm][Ee][Nn])[[:space:]]*"
    "(#|[Nn][Oo]\\.?)?[[:space:]]*([A-Z]|[0-9]{1,2})([[:space:]]*[:.)-]|[[:space:]]|$)";
/* "A.", "A)", "A:", "1.", "(2)" at line start, then a space or the end. */
static const char weak_header[] =
    "^[[:space:]]*\\(?([A-Z]|[0-9]{1,2})[.):]([[:space:]]|$)";

/* A = 1, B = 2, ..., "3" = 3; 0 when not a label. */
static int label_index(const char *label)
{
	if (isalpha((unsigned char)label[0]) && !label[1])
		return toupper((unsigned char)label[0]) - 'A' + 1;
	if (isdigit((unsigned char)label[0]))
		return atoi(label);
	return 0;
}

struct header {
	size_t line;     /* offset of the header line's first byte */
	size_t body;     /* offset just after the label and its punctuation */
	char label[TEXT_LABEL_MAX];
	int strong;
};

static void normalise_label(const char *p, size_t n, char *out)
{
	size_t o = 0;
	while (n > 1 && *p == '0') /* "01" is part 1 */
		p++, n--;
	for (size_t i = 0; i < n && o + 1 < TEXT_LABEL_MAX; i++)
		out[o++] = (char)toupper((unsigned char)p[i]);
	out[o] = 0;
}

/* Every line that looks like a part header, strong or weak, into *h;
 * returns how many are strong, -1 when memory ran out. */
static int find_headers(const char *s, size_t n, const regex_t *strong, const regex_t *weak,
                        struct header **h, size_t *nh)
{
	size_t caph = 0;
	char line[160];
	int nstrong = 0;
	for (size_t ls = 0; ls < n; ls++) {
		size_t le = ls;
		while (le < n && s[le] != '\n')
			le++;
		size_t m = le - ls < sizeof line - 1 ? le - ls : sizeof line - 1;
		memcpy(line, s + ls, m);
		line[m] = 0;
		regmatch_t g[5];
		int is_strong = regexec(strong, line, 5, g, 0) == 0, gi = is_strong ? 3 : 1;
		if (is_strong || regexec(weak, line, 5, g, 0) == 0) {
			if (*nh == caph) {
				caph = caph ? 2 * caph : 16;
				struct header *nhp = realloc(*h, caph * sizeof *nhp);
				if (!nhp)
					return eosin_error("out of memory");
				*h = nhp;
			}
			struct header *hd = &(*h)[(*nh)++];
			hd->line = ls;
			hd->body = ls + (size_t)g[0].rm_eo;
			hd->strong = is_strong;
			normalise_label(line + g[gi].rm_so, (size_t)(g[gi].rm_eo - g[gi].rm_so),
			                hd->label);
			nstrong += is_strong;
		}
		ls = le;
	}
	return nstrong;
}

/* Strong headers win: numbered findings inside a part ("1. tumour size")
 * must not split it. Weak headers count only as a sequence A, B, C... or
 * 1, 2, 3... from the first. Returns how many are kept, in place. */
static size_t keep_headers(struct header *h, size_t nh, int nstrong)
{
	size_t keep = 0;
	int expect = 1, letters = -1;
	for (size_t i = 0; i < nh; i++) {
		if (nstrong) {
			if (h[i].strong)
				h[keep++] = h[i];
			continue;
		}
		int is_letter = isalpha((unsigned char)h[i].label[0]);
		if (label_index(h[i].label) != expect || (letters >= 0 && is_letter != letters))
			continue;
		letters = is_letter;
		expect++;
		h[keep++] = h[i];
	}
	return keep;
}

int text_split_parts(const char *s, size_t n, struct text_part **parts, size_t *count)
{
	regex_t strong, weak;
	struct header *h = NULL;
	size_t nh = 0;
	*parts = NULL;
	*count = 0;
	if (regcomp(&strong, strong_header, REG_EXTENDED))
		return eosin_error("cannot compile the part header expression");
	if (regcomp(&weak, weak_header, REG_EXTENDED)) {
		regfree(&strong);
		return eosin_error("cannot compile the part header expression");
	}
	int nstrong = find_headers(s, n, &strong, &weak, &h, &nh), ret = nstrong < 0 ? -1 : 0;
	if (ret == 0)
		nh = keep_headers(h, nh, nstrong);
	struct text_part *p = ret == 0 && nh ? calloc(nh, sizeof *p) : NULL;
	if (ret == 0 && nh && !p)
		ret = eosin_error("out of memory");
	/* A part runs from its header's end to the next header's line. */
	for (size_t i = 0; p && i < nh; i++) {
		size_t a = h[i].body, b = i + 1 < nh ? h[i + 1].line : n;
		while (a < b && isspace((unsigned char)s[a]))
			a++;
		while (b > a && isspace((unsigned char)s[b - 1]))
			b--;
		memcpy(p[i].label, h[i].label, sizeof p[i].label);
		p[i].off = a;
		p[i].len = b - a;
	}
	if (p) {
		*parts = p;
		*count = nh;
	}
	free(h);
	regfree(&strong);
	regfree(&weak);
	return ret;
}

const struct text_part *text_find_part(const struct text_part *parts, size_t count,
                                       const char *label)
{
	int want = label_index(label);
	for (size_t i = 0; i < count; i++)
		if (!strcasecmp(parts[i].label, label))
			return &parts[i];
	for (size_t i = 0; want > 0 && i < count; i++)
		if (label_index(parts[i].label) == want)
			return &parts[i];
	return NULL;
}

static const char default_part_rule[] = "[-_.]([A-Za-z])[0-9]{0,2}$";

int text_part_rule_init(struct text_part_rule *rule, const char *pattern)
{
	memset(rule, 0, sizeof *rule);
	int rc = regcomp(&rule->re, pattern ? pattern : default_part_rule, REG_EXTENDED);
	if (rc) {
		char msg[128];
		regerror(rc, &rule->re, msg, sizeof msg);
		return eosin_error("bad regular expression '%s': %s", pattern, msg);
	}
	rule->compiled = 1;
	return 0;
}

void text_part_rule_release(struct text_part_rule *rule)
{
	if (rule->compiled)
		regfree(&rule->re);
	rule->compiled = 0;
}

int text_part_of_slide(const struct text_part_rule *rule, const char *slide, char *out,
                       size_t size)
{
	regmatch_t g[2];
	if (!rule->compiled || regexec(&rule->re, slide, 2, g, 0) != 0)
		return 0;
	regmatch_t m = g[1].rm_so >= 0 ? g[1] : g[0];
	size_t len = (size_t)(m.rm_eo - m.rm_so);
	if (len == 0)
		return 0;
	if (len >= size)
		return eosin_error("part '%.*s' of slide '%s' is too long", (int)len,
		                   slide + m.rm_so, slide);
	normalise_label(slide + m.rm_so, len, out);
	return 1;
}

/* ---- sentences ---- */

/* Words that end with a full stop without ending a sentence (compared
 * lower-case, without their final full stop). */
static const char *const abbreviations[] = {
    "e.g", "i.e", "eg", "ie", "dr", "mr", "mrs", "ms", "prof", "approx", "appr",
    "vs", "cf", "fig", "figs", "no", "nos", "al", "st", "ca", "incl", "max", "min",
    "dept", "sr", "jr", "pt", "pts", "sp", "spp", "var", "diam", "resp", "vol", "wt",
    "ref", "cap", "ext", "lt", "rt", "hx", "dx", "sz", "est", "avg", NULL,
};

static int is_abbreviation(const char *s, size_t start, size_t dot)
{
	size_t a = dot;
	while (a > start && (isalpha((unsigned char)s[a - 1]) || s[a - 1] == '.'))
		a--;
	size_t len = dot - a;
	if (len == 0)
		return 0;
	if (len == 1 && isupper((unsigned char)s[a])) /* an initial: "J. Smith" */
		return 1;
	char w[16];
	if (len >= sizeof w)
		return 0;
	for (size_t i = 0; i < len; i++)
		w[i] = (char)tolower((unsigned char)s[a + i]);
	w[len] = 0;
	for (int i = 0; abbreviations[i]; i++)
		if (!strcmp(w, abbreviations[i]))
			return 1;
	return 0;
}

static int push_span(struct text_span **v, size_t *n, size_t *cap, const char *s, size_t a,
                     size_t b)
{
	while (a < b && isspace((unsigned char)s[a]))
		a++;
	while (b > a && isspace((unsigned char)s[b - 1]))
		b--;
	if (a == b)
		return 0;
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		struct text_span *nv = realloc(*v, *cap * sizeof **v);
		if (!nv)
			return eosin_error("out of memory");
		*v = nv;
	}
	(*v)[*n].off = a;
	(*v)[*n].len = b - a;
	(*n)++;
	return 0;
}

int text_sentences(const char *s, size_t n, struct text_span **spans, size_t *count)
{
	struct text_span *v = NULL;
	size_t nv = 0, cap = 0, start = 0;
	*spans = NULL;
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\n') {
			/* A blank line always ends a sentence. */
			size_t k = i + 1;
			while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
				k++;
			if (k < n && s[k] == '\n') {
				if (push_span(&v, &nv, &cap, s, start, i) < 0)
					goto fail;
				start = k;
				i = k;
			}
			continue;
		}
		if (c != '.' && c != '!' && c != '?')
			continue;
		size_t j = i + 1;
		while (j < n && strchr(".!?)]\"'", s[j]))
			j++;
		if (j < n && !isspace((unsigned char)s[j]))
			continue; /* "2.5", "e.g.," */
		size_t k = j;
		while (k < n && isspace((unsigned char)s[k]))
			k++;
		if (k < n && islower((unsigned char)s[k]))
			continue;
		if (c == '.' && is_abbreviation(s, start, i))
			continue;
		if (push_span(&v, &nv, &cap, s, start, j) < 0)
			goto fail;
		start = j;
		i = j - 1;
	}
	if (push_span(&v, &nv, &cap, s, start, n) < 0)
		goto fail;
	*spans = v;
	*count = nv;
	return 0;
fail:
	free(v);
	return -1;
}

/* ---- keywords ---- */

/* English function words and the filler verbs of pathology prose; they
 * end a candidate phrase and never start one. Sorted, for bsearch. */
static const char *const stop_words[] = {
    "a", "about", "above", "after", "again", "against", "all", "along", "also",
    "although", "among", "an", "and", "any", "appear", "appears", "are", "around", "as",
    "at", "be", "because", "been", "being", "below", "between", "both", "but", "by",
    "can", "composed", "consist", "consisting", "consists", "contain", "containing",
    "contains", "could", "demonstrate", "demonstrates", "did", "do", "does", "each",
    "either", "especially", "etc", "evident", "few", "for", "form", "formed", "forming",
    "forms", "found", "from", "further", "had", "has", "have", "having", "here", "however",
    "identified", "if", "in", "including", "into", "is", "it", "its", "mainly", "may",
    "more", "most", "mostly", "much", "must", "no", "nor", "not", "noted", "observed", "of",
    "on", "one", "only", "or", "other", "otherwise", "our", "out", "over", "partly",
    "per", "present", "respectively", "same", "seen", "several", "show",
    "showing", "shown", "shows", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "thus", "to", "too",
    "under", "up", "very", "was", "we", "were", "what", "when", "where", "whereas",
    "which", "while", "who", "whose", "with", "within", "without", "would",
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_stop_word(const char *w)
{
	size_t n = sizeof stop_words / sizeof stop_words[0];
	return bsearch(&w, stop_words, n, sizeof stop_words[0], cmp_str) != NULL;
}

struct phrase {
	char *text;
	size_t first;    /* order of first occurrence */
	int count;       /* occurrences */
	double score;
};

struct word {
	char *text;
	int freq, degree;
};

#define KW_MAX_WORDS 3

static int word_slot(struct word **w, size_t *nw, size_t *cap, const char *t)
{
	for (size_t i = 0; i < *nw; i++)
		if (!strcmp((*w)[i].text, t))
			return (int)i;
	if (*nw == *cap) {
		*cap = *cap ? 2 * *cap : 32;
		struct word *nwp = realloc(*w, *cap * sizeof **w);
		if (!nwp)
			return eosin_error("out of memory");
		*w = nwp;
	}
	if (!((*w)[*nw].text = strdup(t)))
		return eosin_error("out of memory");
	(*w)[*nw].freq = (*w)[*nw].degree = 0;
	return (int)(*nw)++;
}

static int cmp_phrase(const void *a, const void *b)
{
	const struct phrase *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* What text_keywords gathers: the content words and the candidate phrases. */
struct kw_state {
	struct word *words;
	size_t nwords, capw;
	struct phrase *ph;
	size_t nph, capph;
	size_t order; /* phrases seen so far */
};

/* The token starting at s[*i] (alphanumeric), lower-cased into tok; *i is
 * left on its last byte. Returns whether it is a content word: letters in
 * it, two bytes or more, not too long, not a stop word. */
static int kw_token(const char *s, size_t n, size_t *i, char tok[64])
{
	size_t a = *i, t = 0, j = *i;
	int alpha = 0;
	while (j < n && (isalnum((unsigned char)s[j]) ||
	                 (s[j] == '-' && j + 1 < n && isalnum((unsigned char)s[j + 1]) && j > a))) {
		if (t + 1 < 64)
			tok[t++] = (char)tolower((unsigned char)s[j]);
		alpha |= isalpha((unsigned char)s[j]);
		j++;
	}
	tok[t] = 0;
	*i = j - 1;
	return !(!alpha || t < 2 || j - a >= 64 || is_stop_word(tok));
}

/* The candidate of run's nrun words: counted into its words' frequency and
 * degree, and added to the phrases (or counted again). */
static int kw_phrase(struct kw_state *st, const int *run, int nrun)
{
	char buf[KW_MAX_WORDS * 64 + 4];
	size_t o = 0;
	for (int k = 0; k < nrun; k++) {
		const char *t = st->words[run[k]].text;
		size_t l = strlen(t);
		if (k)
			buf[o++] = ' ';
		memcpy(buf + o, t, l);
		o += l;
		st->words[run[k]].freq++;
		st->words[run[k]].degree += nrun;
	}
	buf[o] = 0;
	size_t p = 0;
	while (p < st->nph && strcmp(st->ph[p].text, buf))
		p++;
	if (p < st->nph) {
		st->ph[p].count++;
		return 0;
	}
	if (st->nph == st->capph) {
		size_t cap = st->capph ? 2 * st->capph : 32;
		struct phrase *np = realloc(st->ph, cap * sizeof *np);
		if (!np)
			return eosin_error("out of memory");
		st->ph = np;
		st->capph = cap;
	}
	if (!(st->ph[st->nph].text = strdup(buf)))
		return eosin_error("out of memory");
	st->ph[st->nph].first = st->order++;
	st->ph[st->nph].count = 1;
	st->nph++;
	return 0;
}

/* RAKE-like score: a word scores degree/frequency (words that sit in
 * longer phrases score higher); a phrase scores the sum of its words plus
 * one per repeat. */
static void kw_score(struct kw_state *st)
{
	for (size_t p = 0; p < st->nph; p++) {
		double sc = st->ph[p].count - 1;
		char *save = NULL, tmp[KW_MAX_WORDS * 64 + 4];
		snprintf(tmp, sizeof tmp, "%s", st->ph[p].text);
		for (char *w = strtok_r(tmp, " ", &save); w; w = strtok_r(NULL, " ", &save))
			for (size_t k = 0; k < st->nwords; k++)
				if (!strcmp(st->words[k].text, w))
					sc += (double)st->words[k].degree / st->words[k].freq;
		st->ph[p].score = sc;
	}
}

/* The best max phrases, best first, handed to the caller. */
static int kw_take(struct kw_state *st, size_t max, char ***keywords, size_t *count)
{
	if (st->nph)
		qsort(st->ph, st->nph, sizeof *st->ph, cmp_phrase);
	size_t nout = st->nph < max ? st->nph : max;
	char **out = nout ? calloc(nout, sizeof *out) : NULL;
	if (nout && !out)
		return eosin_error("out of memory");
	for (size_t p = 0; p < nout; p++) {
		out[p] = st->ph[p].text;
		st->ph[p].text = NULL;
	}
	*keywords = out;
	*count = nout;
	return 0;
}

int text_keywords(const char *s, size_t n, size_t max, char ***keywords, size_t *count)
{
	/* Tokens are lower-cased runs of letters and digits (an inner hyphen
	 * joins: "well-differentiated"). A candidate is a run of content words
	 * between stop words, punctuation, numbers and one-letter words, cut
	 * into pieces of at most three words. */
	struct kw_state st = {.nwords = 0};
	int run[KW_MAX_WORDS]; /* word indices of the open candidate */
	int nrun = 0, ret = -1;
	char tok[64];
	*keywords = NULL;
	*count = 0;
	for (size_t i = 0; i <= n; i++) {
		int flush = 0, wi = -1;
		if (i < n && isalnum((unsigned char)s[i])) {
			if (!kw_token(s, n, &i, tok))
				flush = 1;
			else if ((wi = word_slot(&st.words, &st.nwords, &st.capw, tok)) < 0)
				goto out;
		} else if (i == n || !isspace((unsigned char)s[i])) {
			flush = 1;
		}
		if (wi >= 0)
			run[nrun++] = wi;
		if (nrun > 0 && (flush || nrun == KW_MAX_WORDS)) {
			if (kw_phrase(&st, run, nrun) < 0)
				goto out;
			nrun = 0;
		}
	}
	kw_score(&st);
	ret = kw_take(&st, max, keywords, count);
out:
	for (size_t p = 0; p < st.nph; p++)
		free(st.ph[p].text);
	free(st.ph);
	for (size_t k = 0; k < st.nwords; k++)
		free(st.words[k].text);
	free(st.words);
	return ret;
}

char *text_clean(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	if (!out) {
		eosin_error("out of memory");
		return NULL;
	}
	size_t o = 0;
	int space = 0;
	for (size_t i = 0; i < n; i++) {
		if (isspace((unsigned char)s[i])) {
			space = o > 0;
			continue;
		}
		if (space)
			out[o++] = ' ';
		space = 0;
		out[o++] = s[i];
	}
	out[o] = 0;
	return out;
}

void text_free_strings(char **v, size_t count)
{
	for (size_t i = 0; v && i < count; i++)
		free(v[i]);
	free(v);
}

int text_is_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t k;
		unsigned min;
		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			k = 1, min = 0x80, c &= 0x1f;
		else if ((c & 0xf0) == 0xe0)
			k = 2, min = 0x800, c &= 0x0f;
		else if ((c & 0xf8) == 0xf0)
			k = 3, min = 0x10000, c &= 0x07;
		else
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (p[i + j] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

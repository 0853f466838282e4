/*
 * textmetrics.c: BLEU-4, ROUGE-L and token F1 of a hypothesis against a
 * reference. See textmetrics.h for the definitions and conventions.
 *
 * Tokens of both texts get a common integer id (equal strings, equal ids),
 * so that n-grams are compared as integers. An n-gram of order n is named
 * by the pair (rank of its first n-1 tokens, id of its last token); sorting
 * those pairs for the hypothesis and the reference together groups equal
 * n-grams, and each group's rank names it at order n + 1.
 */
#include "search/textmetrics.h"

#include "core/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct token {
	size_t off, len; /* in the lower-cased copy of both texts */
};

/* An n-gram at position pos of side 0 (hypothesis) or 1 (reference). */
struct gram {
	size_t a, b;
	size_t pos;
	int side;
};

static int is_word_byte(unsigned char ch)
{
	return ch >= 0x80 || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z');
}

/* Lower-case src (n bytes) into dst and list its tokens at tok (offsets
 * from base); returns their count. */
static size_t tokenize(const char *src, size_t n, char *dst, size_t base, struct token *tok)
{
	size_t count = 0;
	for (size_t i = 0; i < n;) {
		if (!is_word_byte((unsigned char)src[i])) {
			dst[i] = ' ';
			i++;
			continue;
		}
		size_t start = i;
		for (; i < n && is_word_byte((unsigned char)src[i]); i++) {
			unsigned char ch = (unsigned char)src[i];
			dst[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
		}
		tok[count++] = (struct token){base + start, i - start};
	}
	return count;
}

static const char *sort_text; /* the lower-cased texts, while sorting tokens */

struct token_ref {
	struct token t;
	size_t index; /* into the combined token list */
};

static int by_token_text(const void *x, const void *y)
{
	const struct token *a = &((const struct token_ref *)x)->t;
	const struct token *b = &((const struct token_ref *)y)->t;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(sort_text + a->off, sort_text + b->off, n);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int by_gram(const void *x, const void *y)
{
	const struct gram *a = x, *b = y;
	if (a->a != b->a)
		return (a->a > b->a) - (a->a < b->a);
	return (a->b > b->b) - (a->b < b->b);
}

/* Sort the m grams, give each group of equal ones a rank (into rank[side]
 * at the gram's position) and return the clipped matches: the sum over
 * groups of min(count in the hypothesis, count in the reference). */
static size_t rank_grams(struct gram *g, size_t m, size_t *rank[2])
{
	qsort(g, m, sizeof(*g), by_gram);
	size_t matches = 0, group = 0;
	for (size_t i = 0; i < m;) {
		size_t count[2] = {0, 0}, j = i;
		for (; j < m && g[j].a == g[i].a && g[j].b == g[i].b; j++) {
			count[g[j].side]++;
			rank[g[j].side][g[j].pos] = group;
		}
		matches += count[0] < count[1] ? count[0] : count[1];
		group++;
		i = j;
	}
	return matches;
}

static int is_article(const char *s, size_t n)
{
	return (n == 1 && s[0] == 'a') || (n == 2 && !memcmp(s, "an", 2)) ||
	       (n == 3 && !memcmp(s, "the", 3));
}

/* Length of the longest common subsequence of x (nx) and y (ny), with two
 * rows of ny + 1. */
static size_t lcs_length(const size_t *x, size_t nx, const size_t *y, size_t ny, size_t *row)
{
	size_t *prev = row, *cur = row + ny + 1;
	memset(prev, 0, (ny + 1) * sizeof(*prev));
	for (size_t i = 0; i < nx; i++) {
		cur[0] = 0;
		for (size_t j = 0; j < ny; j++) {
			if (x[i] == y[j])
				cur[j + 1] = prev[j] + 1;
			else
				cur[j + 1] = prev[j + 1] >= cur[j] ? prev[j + 1] : cur[j];
		}
		size_t *t = prev;
		prev = cur;
		cur = t;
	}
	return prev[ny];
}

int text_pair_count(const char *hyp, size_t hn, const char *ref, size_t rn,
                    struct text_pair_counts *c)
{
	memset(c, 0, sizeof(*c));
	size_t most = hn + rn; /* tokens can be no more than bytes */
	char *text = malloc(most ? most : 1);
	struct token *tok = malloc((most ? most : 1) * sizeof(*tok));
	struct token_ref *tr = malloc((most ? most : 1) * sizeof(*tr));
	size_t *id = malloc((most ? most : 1) * sizeof(*id));
	size_t *rank = malloc((most ? most : 1) * sizeof(*rank));
	struct gram *g = malloc((most ? most : 1) * sizeof(*g));
	size_t *row = NULL, *count = NULL;
	int rc = -1;
	if (!text || !tok || !tr || !id || !rank || !g)
		goto out;
	size_t nh = tokenize(hyp, hn, text, 0, tok);
	size_t nr = tokenize(ref, rn, text + hn, hn, tok + nh);
	size_t n = nh + nr;
	c->hyp_len = nh;
	c->ref_len = nr;

	/* Common ids: equal strings, equal ids. */
	for (size_t i = 0; i < n; i++)
		tr[i] = (struct token_ref){tok[i], i};
	sort_text = text;
	qsort(tr, n, sizeof(*tr), by_token_text);
	size_t nid = 0;
	for (size_t i = 0; i < n; i++) {
		if (i && by_token_text(&tr[i - 1], &tr[i]))
			nid++;
		id[tr[i].index] = nid;
	}
	nid += n > 0;
	size_t *hid = id, *rid = id + nh;

	/* BLEU's n-grams, order 1 to 4; rank[] holds the hypothesis's ranks
	 * then the reference's. */
	size_t *r[2] = {rank, rank + nh};
	for (int order = 1; order <= TEXT_BLEU_ORDER; order++) {
		size_t mh = nh >= (size_t)order ? nh - (size_t)order + 1 : 0;
		size_t mr = nr >= (size_t)order ? nr - (size_t)order + 1 : 0;
		size_t m = 0;
		for (size_t p = 0; p < mh; p++)
			g[m++] = (struct gram){order == 1 ? 0 : r[0][p], hid[p + (size_t)order - 1],
			                       p, 0};
		for (size_t p = 0; p < mr; p++)
			g[m++] = (struct gram){order == 1 ? 0 : r[1][p], rid[p + (size_t)order - 1],
			                       p, 1};
		c->match[order - 1] = rank_grams(g, m, r);
		c->total[order - 1] = mh > 0 ? mh : 1;
	}

	row = malloc(2 * (nr + 1) * sizeof(*row));
	count = calloc(nid ? nid : 1, sizeof(*count));
	if (!row || !count)
		goto out;
	c->lcs = lcs_length(hid, nh, rid, nr, row);

	/* Token F1 without articles: the multiset intersection by id counts. */
	for (size_t i = 0; i < nh; i++) {
		if (is_article(text + tok[i].off, tok[i].len))
			continue;
		c->f1_hyp_len++;
		count[hid[i]]++;
	}
	for (size_t i = 0; i < nr; i++) {
		if (is_article(text + tok[nh + i].off, tok[nh + i].len))
			continue;
		c->f1_ref_len++;
		if (count[rid[i]]) {
			count[rid[i]]--;
			c->f1_common++;
		}
	}
	rc = 0;
out:
	if (rc < 0)
		eosin_error("out of memory scoring a text of %zu bytes against one of %zu", hn, rn);
	free(text), free(tok), free(tr), free(id), free(rank), free(g), free(row), free(count);
	return rc;
}

static double brevity_penalty(size_t hyp_len, size_t ref_len)
{
	if (hyp_len > ref_len)
		return 1.0;
	if (hyp_len == 0)
		return 0.0;
	return exp(1.0 - (double)ref_len / (double)hyp_len);
}

/* exp(sum of log p_n / 4) times the brevity penalty; a zero precision
 * makes it 0 unless smoothed. */
static double bleu(const size_t *match, const size_t *total, size_t hyp_len, size_t ref_len,
                   int smooth)
{
	if (match[0] == 0)
		return 0.0;
	double log_sum = 0;
	for (int n = 0; n < TEXT_BLEU_ORDER; n++) {
		double num = (double)match[n];
		if (match[n] == 0) {
			if (!smooth)
				return 0.0;
			num = TEXT_BLEU_EPSILON;
		}
		log_sum += log(num / (double)total[n]) / TEXT_BLEU_ORDER;
	}
	return brevity_penalty(hyp_len, ref_len) * exp(log_sum);
}

double text_sentence_bleu(const struct text_pair_counts *c)
{
	return bleu(c->match, c->total, c->hyp_len, c->ref_len, 1);
}

double text_rouge_l(const struct text_pair_counts *c)
{
	const double beta = 1.0;
	if (c->lcs == 0)
		return 0.0;
	double p = (double)c->lcs / (double)c->hyp_len, r = (double)c->lcs / (double)c->ref_len;
	return (1 + beta * beta) * p * r / (r + beta * beta * p);
}

double text_token_f1(const struct text_pair_counts *c)
{
	if (c->f1_hyp_len == 0 || c->f1_ref_len == 0)
		return c->f1_hyp_len == c->f1_ref_len ? 1.0 : 0.0;
	if (c->f1_common == 0)
		return 0.0;
	double p = (double)c->f1_common / (double)c->f1_hyp_len;
	double r = (double)c->f1_common / (double)c->f1_ref_len;
	return 2 * p * r / (p + r);
}

void text_corpus_add(struct text_corpus *s, const struct text_pair_counts *c)
{
	s->npairs++;
	s->hyp_len += c->hyp_len;
	s->ref_len += c->ref_len;
	for (int n = 0; n < TEXT_BLEU_ORDER; n++) {
		s->match[n] += c->match[n];
		s->total[n] += c->total[n];
	}
	s->sentence_bleu_sum += text_sentence_bleu(c);
	s->rouge_l_sum += text_rouge_l(c);
	s->token_f1_sum += text_token_f1(c);
}

double text_corpus_bleu(const struct text_corpus *s)
{
	if (s->npairs == 0)
		return NAN;
	return bleu(s->match, s->total, s->hyp_len, s->ref_len, 0);
}

double text_corpus_brevity_penalty(const struct text_corpus *s)
{
	return brevity_penalty(s->hyp_len, s->ref_len);
}

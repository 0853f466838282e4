/*
 * textmetrics.h: scores of generated text (a hypothesis) against one
 * reference text: BLEU-4, ROUGE-L and SQuAD-style token F1, per pair and
 * over a corpus of pairs. Used by eosin-query --text-metrics.
 *
 * Tokens. A token is a maximal run of bytes that are ASCII letters, ASCII
 * digits or any byte >= 0x80 (so UTF-8 letters stay inside words); ASCII
 * letters are lower-cased; every other byte (space, punctuation) only
 * separates. "Well-differentiated, (G1)." is well differentiated g1.
 * Token F1 also drops the articles a, an and the, as SQuAD's evaluation
 * does; BLEU and ROUGE-L keep them.
 *
 * BLEU-4 (Papineni et al. 2002) with uniform weights 1/4 and one
 * reference, with the conventions of NLTK's bleu_score: the modified
 * precision of order n has as its denominator max(1, number of n-grams of
 * the hypothesis), so a hypothesis shorter than n adds 1 there; the
 * brevity penalty is 1 when the hypothesis length c exceeds the reference
 * length r, 0 when c is 0, else exp(1 - r/c); when no unigram matches the
 * score is 0. Corpus BLEU sums matches, denominators and lengths over the
 * pairs before taking the precisions (not a mean of sentence scores), and
 * is unsmoothed: an order with no match makes it 0. Sentence BLEU is
 * smoothed by adding epsilon = 0.1 to the numerator of an order with no
 * match (Chen and Cherry 2014, method 1).
 *
 * ROUGE-L (Lin 2004): with L the length of the longest common subsequence
 * of tokens, P = L / |hyp|, R = L / |ref|, F = (1 + beta^2) P R / (R +
 * beta^2 P), beta = 1 (the F1 that rouge-score reports); 0 when L is 0.
 *
 * Token F1 (SQuAD v1.1): common = the size of the multiset intersection of
 * the two token lists, P = common / |hyp|, R = common / |ref|, F1 = 2PR /
 * (P + R); 0 when nothing is common; when either list is empty, 1 if both
 * are and 0 if not. Corpus ROUGE-L and token F1 are means over the pairs.
 *
 * Memory: a pair needs O(|hyp| + |ref|) (tokens, sorted n-gram lists, two
 * rows of the LCS table); time O(|hyp| |ref|) for the LCS. Nothing is kept
 * between pairs except the corpus sums.
 */
#ifndef EOSIN_TEXTMETRICS_H
#define EOSIN_TEXTMETRICS_H

#include <stddef.h>

#define TEXT_BLEU_ORDER 4
#define TEXT_BLEU_EPSILON 0.1

/* Counts of one hypothesis-reference pair, from which every score follows. */
struct text_pair_counts {
	size_t hyp_len, ref_len;                  /* tokens */
	size_t match[TEXT_BLEU_ORDER];            /* clipped n-gram matches, order n+1 */
	size_t total[TEXT_BLEU_ORDER];            /* max(1, n-grams of the hypothesis) */
	size_t lcs;                               /* longest common subsequence, tokens */
	size_t f1_hyp_len, f1_ref_len, f1_common; /* tokens without articles */
};

/* Sums over the pairs of a corpus; clear with {0}. */
struct text_corpus {
	size_t npairs;
	size_t hyp_len, ref_len;
	size_t match[TEXT_BLEU_ORDER], total[TEXT_BLEU_ORDER];
	double sentence_bleu_sum, rouge_l_sum, token_f1_sum;
};

/* Count the pair (hyp is hn bytes, ref rn; neither need be NUL-terminated).
 * 0, or -1 with an eosin_error when memory runs out. */
int text_pair_count(const char *hyp, size_t hn, const char *ref, size_t rn,
                    struct text_pair_counts *c);

/* Sentence BLEU-4, smoothed (method 1). */
double text_sentence_bleu(const struct text_pair_counts *c);
double text_rouge_l(const struct text_pair_counts *c);
double text_token_f1(const struct text_pair_counts *c);

void text_corpus_add(struct text_corpus *s, const struct text_pair_counts *c);
/* Corpus BLEU-4, unsmoothed; NaN for an empty corpus. */
double text_corpus_bleu(const struct text_corpus *s);
/* The brevity penalty of the corpus (lengths summed). */
double text_corpus_brevity_penalty(const struct text_corpus *s);

#endif

/*
 * test-textmetrics.c: lib/search/textmetrics.c on cases worked out by hand
 * (the arithmetic is in the comments). t3010 compares it with NLTK on real
 * captions.
 */
#include "search/textmetrics.h"
#include "tap.h"

#include <math.h>
#include <string.h>

static struct text_pair_counts count(const char *h, const char *r)
{
	struct text_pair_counts c;
	if (text_pair_count(h, strlen(h), r, strlen(r), &c) < 0)
		memset(&c, 0, sizeof(c));
	return c;
}

int main(void)
{
	/* hyp: the cat sat on the mat; ref: the cat is on the mat (6 and 6).
	 * unigrams 5/6 (the twice, cat, on, mat); bigrams 3/5 (the cat, on the,
	 * the mat); trigrams 1/4 (on the mat); 4-grams 0/3, smoothed 0.1/3;
	 * brevity penalty exp(1 - 6/6) = 1. LCS "the cat on the mat" 5: P = R
	 * = 5/6. Without articles: cat sat on mat / cat is on mat, 3 common. */
	struct text_pair_counts c = count("the cat sat on the mat", "The cat is on the mat.");
	ok(c.hyp_len == 6 && c.ref_len == 6, "6 tokens each");
	ok(c.match[0] == 5 && c.match[1] == 3 && c.match[2] == 1 && c.match[3] == 0,
	   "clipped matches 5 3 1 0");
	ok(c.total[0] == 6 && c.total[1] == 5 && c.total[2] == 4 && c.total[3] == 3,
	   "hypothesis n-grams 6 5 4 3");
	double want = exp((log(5.0 / 6) + log(3.0 / 5) + log(1.0 / 4) + log(0.1 / 3)) / 4);
	ok_near(text_sentence_bleu(&c), want, 1e-15, "sentence BLEU, 4-grams smoothed");
	ok_near(text_rouge_l(&c), 5.0 / 6, 1e-15, "ROUGE-L 5/6");
	ok_near(text_token_f1(&c), 0.75, 1e-15, "token F1 3/4 without articles");
	struct text_corpus s = {0};
	text_corpus_add(&s, &c);
	ok(text_corpus_bleu(&s) == 0, "corpus BLEU unsmoothed: no 4-gram match gives 0");

	/* Case and punctuation only separate: the same tokens score 1. */
	c = count("Well-differentiated, (G1).", "well differentiated g1");
	ok(c.hyp_len == 3 && text_sentence_bleu(&c) < 1, "3 tokens, too short for a 4-gram");
	ok_near(text_rouge_l(&c), 1, 1e-15, "ROUGE-L 1");
	ok_near(text_token_f1(&c), 1, 1e-15, "token F1 1");
	/* 3 tokens: 4-gram precision 0.1/1 (denominator max(1, 0)). */
	ok_near(text_sentence_bleu(&c), pow(0.1, 0.25), 1e-15, "BLEU (1 * 1 * 1 * 0.1)^(1/4)");

	/* Brevity: hyp 4 tokens, all in ref of 8 in order: p = 1 1 1 1,
	 * BP = exp(1 - 8/4) = exp(-1). */
	c = count("a b c d", "a b c d e f g h");
	ok_near(text_sentence_bleu(&c), exp(-1), 1e-15, "brevity penalty exp(1 - r/c)");
	ok_near(text_rouge_l(&c), 2 * 0.5 / 1.5, 1e-15, "ROUGE-L P 1 R 1/2");

	/* Empty texts. */
	c = count("", "tumour");
	ok(text_sentence_bleu(&c) == 0 && text_rouge_l(&c) == 0 && text_token_f1(&c) == 0,
	   "empty hypothesis scores 0");
	c = count("the", "an a");
	ok(text_token_f1(&c) == 1, "articles only on both sides: token F1 1 (SQuAD)");
	c = count("caf\xc3\xa9 au lait", "CAF\xc3\xa9 AU LAIT");
	ok(c.match[0] == 3, "UTF-8 bytes stay in their word, ASCII lower-cased");
	return tap_done();
}

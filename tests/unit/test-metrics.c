/*
 * test-metrics.c: lib/search/metrics.c against cases worked out by hand (see the
 * comments for the arithmetic) and the midrank AUC against the pairwise
 * definition (positives above negatives, ties one half) on random scores.
 */
#include "search/metrics.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>

/* AUC by definition, O(npos * nneg). */
static double auc_pairwise(const double *s, const int *pos, size_t n)
{
	double wins = 0, pairs = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (pos[i] && !pos[j]) {
				pairs++;
				wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
			}
	return pairs ? wins / pairs : NAN;
}

int main(void)
{
	/* y 0 0 1 1 2 2, pred 0 1 1 1 2 0.
	 * class 0: tp 1, support 2, predicted 2: recall 1/2, F1 1/2
	 * class 1: tp 2, support 2, predicted 3: recall 1,   F1 4/5
	 * class 2: tp 1, support 2, predicted 1: recall 1/2, F1 2/3 */
	int y[] = {0, 0, 1, 1, 2, 2}, p[] = {0, 1, 1, 1, 2, 0};
	ok_near(metric_accuracy(y, p, 6), 4.0 / 6, 1e-12, "accuracy 4/6");
	ok_near(metric_balanced_accuracy(y, p, 6, 3), 2.0 / 3, 1e-12, "balanced accuracy 2/3");
	ok_near(metric_weighted_f1(y, p, 6, 3), (0.5 + 0.8 + 2.0 / 3) / 3, 1e-12,
	        "weighted F1 (1/2 + 4/5 + 2/3) / 3");

	/* A class predicted but absent from y counts in neither average:
	 * class 0 recall 1/2, F1 2/3; class 1 recall 1, F1 1. */
	int y2[] = {0, 0, 1}, p2[] = {0, 2, 1};
	ok_near(metric_balanced_accuracy(y2, p2, 3, 3), 0.75, 1e-12, "balanced accuracy skips absent class");
	ok_near(metric_weighted_f1(y2, p2, 3, 3), (2 * (2.0 / 3) + 1) / 3, 1e-12,
	        "weighted F1 skips absent class");

	/* Positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs. */
	double s1[] = {0.1, 0.4, 0.35, 0.8};
	int pos1[] = {0, 0, 1, 1};
	ok_near(metric_auc(s1, pos1, 4), 0.75, 1e-12, "AUC 3/4");
	/* Positives 2, 3 against negatives 1, 2: 1 + 0.5 + 1 + 1 of 4. */
	double s2[] = {1, 2, 2, 3};
	int pos2[] = {0, 1, 0, 1};
	ok_near(metric_auc(s2, pos2, 4), 0.875, 1e-12, "AUC with a tie counts it one half");
	double s3[] = {0.5, 0.5, 0.5, 0.5};
	ok_near(metric_auc(s3, pos2, 4), 0.5, 1e-12, "AUC all tied is 1/2");
	int allpos[] = {1, 1, 1, 1};
	ok(isnan(metric_auc(s1, allpos, 4)), "AUC without negatives is NaN");

	/* Random scores on a coarse grid (many ties) against the definition. */
	srand(7);
	int bad = 0;
	for (int trial = 0; trial < 50; trial++) {
		size_t n = 5 + (size_t)(rand() % 60);
		double s[70];
		int pos[70];
		for (size_t i = 0; i < n; i++) {
			s[i] = (rand() % 10) / 10.0;
			pos[i] = rand() % 3 == 0;
		}
		double a = metric_auc(s, pos, n), b = auc_pairwise(s, pos, n);
		if (!(isnan(a) && isnan(b)) && fabs(a - b) > 1e-12)
			bad++;
	}
	ok(bad == 0, "midrank AUC equals pairwise AUC on 50 random tied cases (%d differ)", bad);

	/* One-vs-rest: scores (4, 2); class 1 column = 1 - class 0 column. */
	double sc[] = {0.9, 0.1, 0.6, 0.4, 0.7, 0.3, 0.2, 0.8};
	int yc[] = {0, 0, 1, 1};
	double auc[2];
	double macro = metric_ovr_auc(sc, yc, 4, 2, auc);
	/* class 0: positives 0.9, 0.6 vs negatives 0.7, 0.2: 1+1+0+1 = 3/4 */
	ok_near(auc[0], 0.75, 1e-12, "one-vs-rest AUC class 0");
	ok_near(auc[1], 0.75, 1e-12, "one-vs-rest AUC class 1");
	ok_near(macro, 0.75, 1e-12, "macro AUC");
	int yc3[] = {0, 0, 0, 0};
	macro = metric_ovr_auc(sc, yc3, 4, 2, auc);
	ok(isnan(auc[0]) && isnan(auc[1]) && isnan(macro), "AUC undefined when one class only");

	/* Recall@k: query 0's target ranks first; query 1's third (0.5 and
	 * 0.6 above it); query 2 ties everywhere, the two earlier ties first. */
	float sim[] = {0.9f, 0.1f, 0.2f, 0.5f, 0.4f, 0.6f, 0.3f, 0.3f, 0.3f};
	int gt[] = {0, 1, 2};
	ok_near(metric_recall_at_k(sim, gt, 3, 3, 1), 1.0 / 3, 1e-12, "R@1");
	ok_near(metric_recall_at_k(sim, gt, 3, 3, 2), 1.0 / 3, 1e-12, "R@2");
	ok_near(metric_recall_at_k(sim, gt, 3, 3, 3), 1.0, 1e-12, "R@3");
	return tap_done();
}

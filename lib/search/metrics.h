/*
 * metrics.h: classification and retrieval metrics for evaluation, as the
 * MR-PLIP, PathAlign and PathFLIP papers report them (and as scikit-learn
 * defines them).
 *
 * Classes are integers 0..nclass-1; y is the truth, pred the prediction,
 * both n long. A class absent from y (no support) does not count in the
 * balanced accuracy or the weighted F1. Precision or recall with an empty
 * denominator is 0 (scikit-learn's zero_division=0).
 *
 * AUC is the Mann-Whitney statistic: the probability that a random positive
 * scores above a random negative, ties counting one half. It is NaN when a
 * class has no positives or no negatives.
 */
#ifndef EOSIN_METRICS_H
#define EOSIN_METRICS_H

#include <stddef.h>

double metric_accuracy(const int *y, const int *pred, size_t n);
/* Mean over classes present in y of the recall of that class. */
double metric_balanced_accuracy(const int *y, const int *pred, size_t n, int nclass);
/* Sum over classes of F1(class) * support(class) / n. */
double metric_weighted_f1(const int *y, const int *pred, size_t n, int nclass);
/* AUC of score (n) for positive[i] != 0 against the rest; NaN if undefined.
 * O(n log n). */
double metric_auc(const double *score, const int *positive, size_t n);
/* One-vs-rest AUC of every class: scores is (n, nclass) row-major, auc
 * (nclass) gets NaN for classes without positives or negatives. Returns
 * the mean over the defined classes (macro AUC), NaN if none. */
double metric_ovr_auc(const double *scores, const int *y, size_t n, int nclass, double *auc);
/* Recall at k: the fraction of queries whose true target (gt[q]) is among
 * the k highest of sim's row q. sim is (nq, nt) row-major. A target's rank
 * is the number of targets scoring strictly higher plus the ties that come
 * before it in index order (a stable descending sort). */
double metric_recall_at_k(const float *sim, const int *gt, size_t nq, size_t nt, int k);

#endif

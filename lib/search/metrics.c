/*
 * metrics.c: classification and retrieval metrics. See metrics.h.
 */
#include "search/metrics.h"

#include <math.h>
#include <stdlib.h>

double metric_accuracy(const int *y, const int *pred, size_t n)
{
	if (n == 0)
		return NAN;
	size_t right = 0;
	for (size_t i = 0; i < n; i++)
		right += y[i] == pred[i];
	return (double)right / (double)n;
}

/* Per-class true positives, support (in y) and predicted counts. */
static int confusion_counts(const int *y, const int *pred, size_t n, int nclass, size_t **tp,
                            size_t **support, size_t **predicted)
{
	*tp = calloc((size_t)nclass, sizeof(size_t));
	*support = calloc((size_t)nclass, sizeof(size_t));
	*predicted = calloc((size_t)nclass, sizeof(size_t));
	if (!*tp || !*support || !*predicted) {
		free(*tp), free(*support), free(*predicted);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (y[i] >= 0 && y[i] < nclass)
			(*support)[y[i]]++;
		if (pred[i] >= 0 && pred[i] < nclass)
			(*predicted)[pred[i]]++;
		if (y[i] == pred[i] && y[i] >= 0 && y[i] < nclass)
			(*tp)[y[i]]++;
	}
	return 0;
}

double metric_balanced_accuracy(const int *y, const int *pred, size_t n, int nclass)
{
	size_t *tp, *support, *predicted;
	if (n == 0 || confusion_counts(y, pred, n, nclass, &tp, &support, &predicted) < 0)
		return NAN;
	double sum = 0;
	int present = 0;
	for (int c = 0; c < nclass; c++) {
		if (!support[c])
			continue;
		sum += (double)tp[c] / (double)support[c];
		present++;
	}
	free(tp), free(support), free(predicted);
	return present ? sum / present : NAN;
}

double metric_weighted_f1(const int *y, const int *pred, size_t n, int nclass)
{
	size_t *tp, *support, *predicted;
	if (n == 0 || confusion_counts(y, pred, n, nclass, &tp, &support, &predicted) < 0)
		return NAN;
	double sum = 0;
	size_t total = 0;
	for (int c = 0; c < nclass; c++) {
		if (!support[c])
			continue;
		/* F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (predicted + support) */
		double f1 = 2.0 * (double)tp[c] / (double)(predicted[c] + support[c]);
		sum += f1 * (double)support[c];
		total += support[c];
	}
	free(tp), free(support), free(predicted);
	return total ? sum / (double)total : NAN;
}

struct scored {
	double s;
	int pos;
};

static int by_score(const void *a, const void *b)
{
	double x = ((const struct scored *)a)->s, y = ((const struct scored *)b)->s;
	return (x > y) - (x < y);
}

double metric_auc(const double *score, const int *positive, size_t n)
{
	struct scored *v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return NAN;
	size_t npos = 0;
	for (size_t i = 0; i < n; i++) {
		v[i].s = score[i];
		v[i].pos = positive[i] != 0;
		npos += v[i].pos;
	}
	size_t nneg = n - npos;
	if (npos == 0 || nneg == 0) {
		free(v);
		return NAN;
	}
	qsort(v, n, sizeof(*v), by_score);
	/* Sum of the positives' ranks (1-based), ties sharing their mean rank. */
	double rank_sum = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		size_t pos_here = 0;
		while (j < n && v[j].s == v[i].s)
			pos_here += v[j++].pos;
		double mid = 0.5 * (double)(i + 1 + j);
		rank_sum += mid * (double)pos_here;
		i = j;
	}
	free(v);
	double u = rank_sum - 0.5 * (double)npos * (double)(npos + 1);
	return u / ((double)npos * (double)nneg);
}

double metric_ovr_auc(const double *scores, const int *y, size_t n, int nclass, double *auc)
{
	double *col = malloc((n ? n : 1) * sizeof(double));
	int *pos = malloc((n ? n : 1) * sizeof(int));
	double sum = 0;
	int defined = 0;
	for (int c = 0; c < nclass; c++) {
		if (!col || !pos) {
			auc[c] = NAN;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			col[i] = scores[i * (size_t)nclass + (size_t)c];
			pos[i] = y[i] == c;
		}
		auc[c] = metric_auc(col, pos, n);
		if (!isnan(auc[c])) {
			sum += auc[c];
			defined++;
		}
	}
	free(col);
	free(pos);
	return defined ? sum / defined : NAN;
}

double metric_recall_at_k(const float *sim, const int *gt, size_t nq, size_t nt, int k)
{
	if (nq == 0)
		return NAN;
	size_t hits = 0;
	for (size_t q = 0; q < nq; q++) {
		const float *row = sim + q * nt;
		int t = gt[q];
		if (t < 0 || (size_t)t >= nt)
			continue;
		size_t rank = 0;
		for (size_t j = 0; j < nt; j++)
			rank += row[j] > row[t] || (row[j] == row[t] && j < (size_t)t);
		hits += rank < (size_t)k;
	}
	return (double)hits / (double)nq;
}

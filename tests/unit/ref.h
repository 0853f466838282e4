/*
 * ref.h: helpers for the parity tests against ../shared/data/reference:
 * locate the folder, read raw little-endian arrays, max abs difference.
 */
#ifndef EOSIN_TEST_REF_H
#define EOSIN_TEST_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static char ref_dir[4096];

/* The reference folder, or NULL (the test then skips). */
static inline const char *ref_find(void)
{
	const char *shared = getenv("SHARED");
	if (shared)
		snprintf(ref_dir, sizeof ref_dir, "%s/reference", shared);
	else
		snprintf(ref_dir, sizeof ref_dir, "../shared/data/reference");
	char probe[4200];
	snprintf(probe, sizeof probe, "%s/vit_weights.safetensors", ref_dir);
	FILE *f = fopen(probe, "rb");
	if (!f)
		return NULL;
	fclose(f);
	return ref_dir;
}

static inline char *ref_path(const char *name)
{
	static char p[4200];
	snprintf(p, sizeof p, "%s/%s", ref_dir, name);
	return p;
}

/* Read exactly n elements of size sz; malloc'd, NULL on error. */
static inline void *ref_read(const char *name, size_t n, size_t sz)
{
	FILE *f = fopen(ref_path(name), "rb");
	if (!f)
		return NULL;
	void *buf = malloc(n * sz);
	size_t got = fread(buf, sz, n, f);
	int extra = fgetc(f) != EOF;
	fclose(f);
	if (got != n || extra) {
		free(buf);
		return NULL;
	}
	return buf;
}

static inline double max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (!(d <= m))
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

#endif

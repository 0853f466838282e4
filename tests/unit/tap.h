/*
 * tap.h: the smallest TAP producer for C unit tests, read by prove.
 *   ok(cond, "what")           one test
 *   ok_near(a, b, tol, "what")  |a-b| <= tol
 *   skip_all("why")            nothing can run here (plan 0, skip)
 *   return tap_done();         plan and exit status
 */
#ifndef EOSIN_TAP_H
#define EOSIN_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define ok_near(a, b, tol, ...)                                                              \
	do {                                                                                 \
		double a_ = (a), b_ = (b);                                                   \
		if (!tap_ok(fabs(a_ - b_) <= (tol), __FILE__, __LINE__, __VA_ARGS__))        \
			printf("#   got %.9g, want %.9g (tol %g)\n", a_, b_, (double)(tol));    \
	} while (0)

static inline void skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif

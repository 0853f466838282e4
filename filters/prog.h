/*
 * prog.h: what every eosin program shares: messages, exit status, progress.
 * Programs only (lib/ never prints or exits).
 *
 * Exit status, the same in every program and listed in every manual:
 *   0  success
 *   1  failure (bad input, a failed slide or request, a write error)
 *   2  usage error
 * Diagnostics go to stderr as "PROGRAM: message"; only records go to stdout.
 */
#ifndef EOSIN_PROG_H
#define EOSIN_PROG_H

#include "core/error.h"
#include "core/stream.h"

#include <err.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

/* Print the library's last message under the program's name and exit 1. */
#define die_lib(...) errx(1, "%s", eosin_errmsg())
#define warn_lib() warnx("%s", eosin_errmsg())

/* Close the output stream; a write error (a full disk, /dev/full) is fatal. */
static inline void prog_close_output(struct stream_writer *w)
{
	if (stream_writer_close(w) < 0)
		die_lib();
}

static inline double prog_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A file of lines read one at a time: PATH, or stdin for "-". name is what
 * messages call it, number the line last read (from 1). */
struct lines {
	FILE *f;
	const char *name;
	char *line;
	size_t cap;
	uint64_t number;
};

/* 0, or -1 after a warning that says why PATH cannot be opened. */
static inline int lines_open(struct lines *L, const char *path)
{
	int std = !strcmp(path, "-");
	*L = (struct lines){.f = std ? stdin : fopen(path, "r"), .name = std ? "<stdin>" : path};
	if (!L->f) {
		warn("cannot open '%s'", path);
		return -1;
	}
	return 0;
}

/* The next line into L->line, with its newline; its length, or -1 at the end. */
static inline ssize_t lines_next(struct lines *L)
{
	ssize_t n = getline(&L->line, &L->cap, L->f);
	if (n >= 0)
		L->number++;
	return n;
}

static inline void lines_close(struct lines *L)
{
	free(L->line);
	if (L->f != stdin)
		fclose(L->f);
}

/* A progress line on stderr, only when stderr is a terminal, at most 5 per
 * second. progress_done() ends the line. */
struct progress {
	const char *what;
	int tty;
	double start, last;
	long long n, total;
};

static inline void progress_init(struct progress *p, const char *what, long long total)
{
	p->what = what;
	p->tty = isatty(2);
	p->start = p->last = prog_now();
	p->n = 0;
	p->total = total;
}

static inline void progress_add(struct progress *p, long long n)
{
	p->n += n;
	if (!p->tty)
		return;
	double t = prog_now();
	if (t - p->last < 0.2)
		return;
	p->last = t;
	double rate = p->n / (t - p->start > 1e-9 ? t - p->start : 1e-9);
	if (p->total > 0)
		fprintf(stderr, "\r%s: %lld/%lld %s (%.1f/s)\033[K", program_invocation_short_name,
		        p->n, p->total, p->what, rate);
	else
		fprintf(stderr, "\r%s: %lld %s (%.1f/s)\033[K", program_invocation_short_name, p->n,
		        p->what, rate);
}

static inline void progress_done(struct progress *p)
{
	if (p->tty && p->n > 0)
		fprintf(stderr, "\r\033[K");
}

/* Parse a number argument or exit 2 naming the flag. */
static inline long prog_long(const char *flag, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		errx(EXIT_USAGE, "%s: '%s' is not an integer in [%ld, %ld]", flag, s, min, max);
	return v;
}

static inline double prog_double(const char *flag, const char *s, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		errx(EXIT_USAGE, "%s: '%s' is not a number in [%g, %g]", flag, s, min, max);
	return v;
}

#endif

/*
 * eosin-cat: show a stream as JSON lines, turn JSON lines back into a
 * stream, or check records against the schemas. See eosin-cat(1).
 */
#include "core/json.h"
#include "prog.h"
#include "core/schema.h"
#include "core/stream.h"

#include <getopt.h>
#include <inttypes.h>

static void usage(void)
{
	fprintf(stderr, "usage: eosin-cat [-r | --check [--strict]] [--base64] [--vectors] "
	                "[--kind KIND] [file ...]\n");
	exit(EXIT_USAGE);
}

static int base64, vectors, strict, kind_filter_set;
static const char *kind_filter;

/* Stream to JSON lines (or validation only). 0 ok, 1 had invalid records,
 * -1 unreadable input (after writing every good record before it). */
static int cat_stream(const char *path, int check, uint64_t *nbad, uint64_t *nall)
{
	struct stream_reader r;
	struct record rec;
	int ret, bad = 0;
	if (stream_reader_open(&r, path) < 0) {
		warn_lib();
		return -1;
	}
	int flags = (base64 ? JSON_BIN_BASE64 : 0) | (vectors ? JSON_VEC_FLOATS : 0);
	while ((ret = stream_read(&r, &rec)) == 1) {
		if (kind_filter_set && !record_is(&rec, kind_filter))
			continue;
		(*nall)++;
		if (check) {
			int c = schema_check(&rec, strict);
			if (c < 0 || (c == 1 && strict)) {
				if (c == 1)
					warnx("%s: record %" PRIu64 ": unknown kind '%.*s'", r.name, rec.number,
					      (int)rec.kind_len, rec.kind);
				else
					warnx("%s: %s", r.name, eosin_errmsg());
				bad = 1;
				(*nbad)++;
			}
			continue;
		}
		json_t *j = mpo_to_json(&rec.root, flags);
		if (!j || json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9)) < 0)
			errx(1, "cannot convert record %" PRIu64 " of %s to JSON", rec.number, r.name);
		json_decref(j);
		putchar('\n');
	}
	if (ret < 0)
		warn_lib();
	stream_reader_release(&r);
	return ret < 0 ? -1 : bad;
}

/* JSON lines to a stream. */
static int uncat(const char *path, struct stream_writer *w)
{
	struct lines L;
	if (lines_open(&L, path) < 0)
		return -1;
	int ret = 0;
	struct recb b;
	recb_init(&b);
	ssize_t n;
	while ((n = lines_next(&L)) > 0) {
		char *line = L.line;
		if (strspn(line, " \t\r\n") == (size_t)n)
			continue;
		json_error_t jerr;
		json_t *j = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
		if (!j) {
			warnx("%s:%" PRIu64 ": invalid JSON: %s", L.name, L.number, jerr.text);
			ret = -1;
			break;
		}
		int bad = recb_from_json(&b, j) < 0;
		json_decref(j);
		if (bad) {
			warnx("%s:%" PRIu64 ": %s", L.name, L.number, eosin_errmsg());
			ret = -1;
			break;
		}
		if (recb_write(&b, w) < 0)
			die_lib();
	}
	recb_release(&b);
	lines_close(&L);
	return ret;
}

int main(int argc, char **argv)
{
	int reverse = 0, check = 0;
	static const struct option opts[] = {
	    {"reverse", no_argument, 0, 'r'}, {"check", no_argument, 0, 'c'},
	    {"strict", no_argument, 0, 's'},  {"base64", no_argument, 0, 'b'},
	    {"vectors", no_argument, 0, 'V'}, {"kind", required_argument, 0, 'k'},
	    {"help", no_argument, 0, 'h'},    {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "rk:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': reverse = 1; break;
		case 'c': check = 1; break;
		case 's': strict = 1; break;
		case 'b': base64 = 1; break;
		case 'V': vectors = 1; break;
		case 'k': kind_filter = optarg; kind_filter_set = 1; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (reverse && check)
		usage();
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	int failed = 0;
	uint64_t nbad = 0, nall = 0;
	if (reverse) {
		struct stream_writer w;
		if (stream_writer_init(&w, 1, "<stdout>") < 0)
			die_lib();
		for (int i = 0; i < argc; i++)
			failed |= uncat(argv[i], &w) < 0;
		prog_close_output(&w);
		return failed;
	}
	for (int i = 0; i < argc; i++)
		failed |= cat_stream(argv[i], check, &nbad, &nall) != 0;
	if (fflush(stdout) == EOF || ferror(stdout) || fclose(stdout) == EOF)
		err(1, "write error on <stdout>");
	if (check)
		fprintf(stderr, "eosin-cat: %" PRIu64 " records checked, %" PRIu64 " invalid\n", nall,
		        nbad);
	return failed;
}

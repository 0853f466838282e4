/*
 * fetch.h: many HTTP(S) and file:// requests at once, through libcurl's
 * multi interface, with the resilience a run over millions of patches
 * needs.
 *
 * The caller adds requests (GET, or POST with a body) with fetch_add() and
 * turns the crank with fetch_pump(), which starts what may start, waits for
 * network activity (or for a descriptor of the caller's, such as its
 * input), and reports each finished request exactly once through the done
 * callback, in completion order (the caller restores input order).
 *
 * What the engine does for every request:
 *   - at most cfg.inflight transfers at once, at most cfg.per_host to one
 *     host (scheme, host and port), at most cfg.rate starts per second per
 *     host (evenly spaced);
 *   - a time limit per attempt (cfg.timeout);
 *   - retries, up to cfg.retries more attempts, on timeouts, connection
 *     errors, HTTP 408, 429 and 5xx, and on answers the check callback
 *     refuses (malformed JSON, a wrong content type): the n-th retry waits
 *     cfg.backoff * 2^(n-1) seconds (at most cfg.backoff_max) times a
 *     random factor in [0.5, 1]; a server's Retry-After (seconds or a date)
 *     replaces that delay (at most cfg.retry_after_max, plus up to 10%
 *     jitter);
 *   - answers larger than cfg.max_answer bytes fail.
 * Failures are reported with a short reason ("http 503", "timeout after
 * 2.0 s", the check's words); neither headers nor request bodies ever
 * appear in them, so a key passed in a header stays out of messages.
 *
 * Ownership: the engine copies url and the header strings; it takes the
 * body (malloc'd, freed when the request is done). `user` is the caller's.
 * The callbacks must not call fetch_add() or fetch_cancel_all().
 */
#ifndef EOSIN_FETCH_H
#define EOSIN_FETCH_H

#include <stddef.h>

struct fetch_config {
	int inflight;            /* transfers at once, all hosts (>= 1) */
	int per_host;            /* transfers at once to one host; 0: inflight */
	double rate;             /* starts per second per host; 0: no limit */
	int retries;             /* more attempts after a retryable failure */
	double timeout;          /* seconds per attempt; 0: none */
	double backoff;          /* seconds before the first retry */
	double backoff_max;      /* cap on one backoff delay, seconds */
	double retry_after_max;  /* cap on a server's Retry-After, seconds */
	size_t max_answer;       /* bytes; 0: 64 MiB */
	const char *const *headers; /* NULL-terminated "Name: value" for HTTP requests, or NULL */
	const char *cacert;      /* PEM file of the CAs https servers are checked against,
	                            instead of the system's; NULL: the system's */
};

struct fetch_answer {
	const char *url;
	long status;              /* HTTP status; 0 for file:// */
	const char *body;         /* NUL-terminated (the NUL not counted) */
	size_t len;
	const char *content_type; /* NULL when the server sent none */
	int attempts;             /* 1 for a first-time success */
	const char *error;        /* NULL on success, else a short reason */
};

/* Is a successful transfer's answer usable? 0: yes; -1: no, a short reason
 * in why (the request is retried while attempts remain). */
typedef int (*fetch_check_fn)(void *ctx, void *user, const struct fetch_answer *a, char *why,
                              size_t size);
/* Called once per request, with a->error NULL on success. */
typedef void (*fetch_done_fn)(void *ctx, void *user, const struct fetch_answer *a);

struct fetch_stats {
	long requests;  /* attempts started */
	long retried;   /* attempts after the first */
	long ok;        /* requests that succeeded */
	long failed;    /* requests that failed for good */
};

struct fetch;

/* NULL (error set) on failure. check may be NULL. */
struct fetch *fetch_new(const struct fetch_config *cfg, fetch_check_fn check, fetch_done_fn done,
                        void *ctx);
void fetch_free(struct fetch *f);

/* Queue a request: GET when body is NULL, else POST body (len bytes,
 * taken). -1 on a bad URL or out of memory (the body is freed). */
int fetch_add(struct fetch *f, const char *url, char *body, size_t len, void *user);

/* Start what may start, wait up to max_wait seconds for activity (less when
 * a retry or a rate slot comes due; not at all when nothing is queued and
 * fd < 0), finish what finished. fd >= 0 is also watched for input;
 * *fd_ready says whether it is readable (or at end or in error). 0, or -1
 * on a libcurl failure. */
int fetch_pump(struct fetch *f, double max_wait, int fd, int *fd_ready);

/* Requests added and not yet reported done. */
size_t fetch_outstanding(const struct fetch *f);

/* Report every outstanding request as failed with reason why (in flight
 * ones are aborted). */
void fetch_cancel_all(struct fetch *f, const char *why);

void fetch_get_stats(const struct fetch *f, struct fetch_stats *st);

#endif

/*
 * fetch.c: the libcurl multi engine (see fetch.h for what it promises).
 *
 * Requests wait in one FIFO queue (new ones, and retries with a not-before
 * time); each pump walks it and starts every request whose time has come
 * and whose host has a free slot and a rate slot. Easy handles are pooled so
 * that their setup is paid once; connections are reused through the multi
 * handle's connection cache.
 */
#include "text/fetch.h"

#include "core/error.h"

#include <curl/curl.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct fetch_host {
	char *name;          /* scheme://host:port */
	int active;          /* transfers in flight */
	double next_start;   /* earliest start allowed by the rate limit */
};

struct fetch_job {
	char *url;
	char *body;          /* POST body or NULL */
	size_t body_len;
	void *user;
	int attempts;
	double not_before;   /* monotonic seconds */
	struct fetch_host *host;
	CURL *easy;
	char *answer;
	size_t answer_len, answer_cap;
	size_t limit;        /* max_answer */
	int oversize;        /* the answer passed limit; transfer aborted */
	char errbuf[CURL_ERROR_SIZE];
	struct fetch_job *next;              /* in the wait queue */
	struct fetch_job *aprev, *anext;     /* in the in-flight list */
};

struct fetch {
	struct fetch_config cfg;
	fetch_check_fn check;
	fetch_done_fn done;
	void *ctx;
	CURLM *multi;
	struct curl_slist *headers;
	struct fetch_host **hosts;
	size_t nhosts;
	struct fetch_job *wait_head, *wait_tail;   /* queued, not in flight */
	struct fetch_job *active;                  /* in flight */
	size_t nwaiting, nactive;
	CURL **pool;                               /* idle easy handles */
	size_t npool, cap_pool;
	uint64_t rng;
	struct fetch_stats stats;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double random_unit(struct fetch *f)
{
	/* xorshift64*: jitter only, not security */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return (double)((f->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

struct fetch *fetch_new(const struct fetch_config *cfg, fetch_check_fn check, fetch_done_fn done,
                        void *ctx)
{
	static int global_done;
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			eosin_error("cannot initialise libcurl");
			return NULL;
		}
		global_done = 1;
	}
	struct fetch *f = calloc(1, sizeof *f);
	if (!f) {
		eosin_error("out of memory");
		return NULL;
	}
	f->cfg = *cfg;
	if (f->cfg.inflight < 1)
		f->cfg.inflight = 1;
	if (f->cfg.per_host <= 0 || f->cfg.per_host > f->cfg.inflight)
		f->cfg.per_host = f->cfg.inflight;
	if (f->cfg.max_answer == 0)
		f->cfg.max_answer = (size_t)64 << 20;
	f->cfg.headers = NULL;
	f->check = check;
	f->done = done;
	f->ctx = ctx;
	f->rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^ 1;
	if (!(f->multi = curl_multi_init())) {
		free(f);
		eosin_error("cannot initialise libcurl");
		return NULL;
	}
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->cfg.inflight + 8);
	for (const char *const *h = cfg->headers; h && *h; h++) {
		struct curl_slist *n = curl_slist_append(f->headers, *h);
		if (!n) {
			fetch_free(f);
			eosin_error("out of memory");
			return NULL;
		}
		f->headers = n;
	}
	return f;
}

static void job_free(struct fetch_job *j)
{
	free(j->url);
	free(j->body);
	free(j->answer);
	free(j);
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	fetch_cancel_all(f, "cancelled");
	for (size_t i = 0; i < f->npool; i++)
		curl_easy_cleanup(f->pool[i]);
	free(f->pool);
	for (size_t i = 0; i < f->nhosts; i++) {
		free(f->hosts[i]->name);
		free(f->hosts[i]);
	}
	free(f->hosts);
	curl_slist_free_all(f->headers);
	curl_multi_cleanup(f->multi);
	free(f);
}

static struct fetch_host *host_for(struct fetch *f, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, name[1024];
	if (!u) {
		eosin_error("out of memory");
		return NULL;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		eosin_error("'%s' is not a URL", url);
		return NULL;
	}
	curl_url_get(u, CURLUPART_HOST, &host, 0);
	curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	snprintf(name, sizeof name, "%s://%s:%s", scheme, host ? host : "", port ? port : "");
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	for (size_t i = 0; i < f->nhosts; i++)
		if (!strcmp(f->hosts[i]->name, name))
			return f->hosts[i];
	struct fetch_host **nh = realloc(f->hosts, (f->nhosts + 1) * sizeof *nh);
	if (!nh) {
		eosin_error("out of memory");
		return NULL;
	}
	f->hosts = nh;
	struct fetch_host *h = calloc(1, sizeof *h);
	if (!h || !(h->name = strdup(name))) {
		free(h);
		eosin_error("out of memory");
		return NULL;
	}
	f->hosts[f->nhosts++] = h;
	return h;
}

static void enqueue(struct fetch *f, struct fetch_job *j)
{
	j->next = NULL;
	if (f->wait_tail)
		f->wait_tail->next = j;
	else
		f->wait_head = j;
	f->wait_tail = j;
	f->nwaiting++;
}

int fetch_add(struct fetch *f, const char *url, char *body, size_t len, void *user)
{
	struct fetch_job *j = calloc(1, sizeof *j);
	if (!j) {
		free(body);
		return eosin_error("out of memory");
	}
	j->body = body;
	j->body_len = len;
	j->user = user;
	if (!(j->url = strdup(url))) {
		job_free(j);
		return eosin_error("out of memory");
	}
	if (!(j->host = host_for(f, url))) {
		job_free(j);
		return -1;
	}
	enqueue(f, j);
	return 0;
}

size_t fetch_outstanding(const struct fetch *f)
{
	return f->nwaiting + f->nactive;
}

void fetch_get_stats(const struct fetch *f, struct fetch_stats *st)
{
	*st = f->stats;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct fetch_job *j = arg;
	size_t k = size * n;
	if (j->answer_len + k > j->limit) {
		j->oversize = 1;
		return 0;
	}
	if (j->answer_len + k + 1 > j->answer_cap) {
		size_t cap = j->answer_cap ? j->answer_cap : 4096;
		while (cap < j->answer_len + k + 1)
			cap *= 2;
		char *na = realloc(j->answer, cap);
		if (!na)
			return 0;
		j->answer = na;
		j->answer_cap = cap;
	}
	memcpy(j->answer + j->answer_len, p, k);
	j->answer_len += k;
	return k;
}

static int start(struct fetch *f, struct fetch_job *j)
{
	CURL *e = f->npool ? f->pool[--f->npool] : curl_easy_init();
	if (!e)
		return eosin_error("cannot create a libcurl handle");
	curl_easy_reset(e);
	j->easy = e;
	j->answer_len = 0;
	j->errbuf[0] = 0;
	j->attempts++;
	j->limit = f->cfg.max_answer;
	j->oversize = 0;
	curl_easy_setopt(e, CURLOPT_URL, j->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, j);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "eosin/0.1");
	if (f->cfg.cacert)
		curl_easy_setopt(e, CURLOPT_CAINFO, f->cfg.cacert);
	if (f->cfg.timeout > 0) {
		long ms = (long)ceil(f->cfg.timeout * 1000);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
	}
	if (f->headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
	if (j->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
	} else {
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
		curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	}
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		j->easy = NULL;
		return eosin_error("cannot start a transfer");
	}
	j->host->active++;
	f->nactive++;
	j->aprev = NULL;
	j->anext = f->active;
	if (f->active)
		f->active->aprev = j;
	f->active = j;
	f->stats.requests++;
	if (j->attempts > 1)
		f->stats.retried++;
	return 0;
}

/* Start what may start; returns the seconds until the next queued request
 * could start (HUGE_VAL when none waits on time). */
static double start_ready(struct fetch *f)
{
	double t = now_s(), wake = HUGE_VAL;
	struct fetch_job *prev = NULL, *j = f->wait_head;
	while (j && f->nactive < (size_t)f->cfg.inflight) {
		struct fetch_job *next = j->next;
		struct fetch_host *h = j->host;
		int go = 1;
		if (j->not_before > t) {
			wake = fmin(wake, j->not_before - t);
			go = 0;
		} else if (h->active >= f->cfg.per_host) {
			go = 0;
		} else if (f->cfg.rate > 0) {
			if (h->next_start > t) {
				wake = fmin(wake, h->next_start - t);
				go = 0;
			} else {
				/* evenly spaced starts, no saved-up burst */
				h->next_start = fmax(h->next_start, t) + 1 / f->cfg.rate;
			}
		}
		if (go) {
			if (prev)
				prev->next = next;
			else
				f->wait_head = next;
			if (f->wait_tail == j)
				f->wait_tail = prev;
			f->nwaiting--;
			if (start(f, j) < 0) {
				/* cannot even start: report it as a failure */
				struct fetch_answer a = {.url = j->url, .error = eosin_errmsg(),
				                         .attempts = j->attempts};
				f->stats.failed++;
				f->done(f->ctx, j->user, &a);
				job_free(j);
			}
		} else {
			prev = j;
		}
		j = next;
	}
	return wake;
}

static int retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_WEIRD_SERVER_REPLY:
		return 1;
	default:
		return 0;
	}
}

static void release_easy(struct fetch *f, struct fetch_job *j)
{
	curl_multi_remove_handle(f->multi, j->easy);
	if (j->aprev)
		j->aprev->anext = j->anext;
	else
		f->active = j->anext;
	if (j->anext)
		j->anext->aprev = j->aprev;
	if (f->npool == f->cap_pool) {
		size_t cap = f->cap_pool ? 2 * f->cap_pool : 16;
		CURL **np = realloc(f->pool, cap * sizeof *np);
		if (!np) {
			curl_easy_cleanup(j->easy);
			j->easy = NULL;
			goto out;
		}
		f->pool = np;
		f->cap_pool = cap;
	}
	f->pool[f->npool++] = j->easy;
	j->easy = NULL;
out:
	j->host->active--;
	f->nactive--;
}

static void finish(struct fetch *f, struct fetch_job *j, CURLcode rc)
{
	char why[256] = "";
	int retry = 0;
	long status = 0;
	char *ctype = NULL, *scheme = NULL;
	curl_off_t retry_after = -1;
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(j->easy, CURLINFO_CONTENT_TYPE, &ctype);
	curl_easy_getinfo(j->easy, CURLINFO_SCHEME, &scheme);
	int is_http = scheme && (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https"));
	if (!j->answer && !(j->answer = malloc(1)))
		rc = CURLE_OUT_OF_MEMORY;
	if (j->answer)
		j->answer[j->answer_len] = 0;
	char ctype_copy[128] = "";
	if (ctype)
		snprintf(ctype_copy, sizeof ctype_copy, "%s", ctype);
	struct fetch_answer a = {
	    .url = j->url, .status = is_http ? status : 0, .body = j->answer,
	    .len = j->answer_len, .content_type = ctype ? ctype_copy : NULL,
	    .attempts = j->attempts,
	};
	if (j->oversize) {
		snprintf(why, sizeof why, "answer larger than %zu bytes", f->cfg.max_answer);
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(why, sizeof why, "timeout after %.1f s", f->cfg.timeout);
		retry = 1;
	} else if (rc != CURLE_OK) {
		snprintf(why, sizeof why, "%s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
		retry = retryable_curl(rc);
	} else if (is_http && (status < 200 || status > 299)) {
		snprintf(why, sizeof why, "http %ld", status);
		retry = status == 408 || status == 429 || status >= 500;
		curl_easy_getinfo(j->easy, CURLINFO_RETRY_AFTER, &retry_after);
	} else if (f->check && f->check(f->ctx, j->user, &a, why, sizeof why) < 0) {
		if (!why[0])
			snprintf(why, sizeof why, "unusable answer");
		retry = 1;
	}
	release_easy(f, j);
	if (why[0] && retry && j->attempts <= f->cfg.retries) {
		double delay;
		if (retry_after > 0) {
			delay = fmin((double)retry_after, f->cfg.retry_after_max);
			delay += 0.1 * delay * random_unit(f);
		} else {
			delay = fmin(f->cfg.backoff * pow(2, j->attempts - 1), f->cfg.backoff_max);
			delay *= 0.5 + 0.5 * random_unit(f);
		}
		j->not_before = now_s() + delay;
		enqueue(f, j);
		return;
	}
	if (why[0]) {
		a.error = why;
		f->stats.failed++;
	} else {
		f->stats.ok++;
	}
	f->done(f->ctx, j->user, &a);
	job_free(j);
}

int fetch_pump(struct fetch *f, double max_wait, int fd, int *fd_ready)
{
	double wake = start_ready(f);
	if (fd_ready)
		*fd_ready = 0;
	double wait = fmin(max_wait, wake);
	if (f->nactive == 0 && fd < 0 && (f->nwaiting == 0 || wake == HUGE_VAL))
		wait = 0;
	if (wait < 0)
		wait = 0;
	struct curl_waitfd extra = {.fd = fd, .events = CURL_WAIT_POLLIN};
	CURLMcode mc = curl_multi_poll(f->multi, fd >= 0 ? &extra : NULL, fd >= 0 ? 1 : 0,
	                               (int)ceil(wait * 1000), NULL);
	if (mc != CURLM_OK)
		return eosin_error("libcurl: %s", curl_multi_strerror(mc));
	if (fd >= 0 && fd_ready)
		*fd_ready = extra.revents != 0;
	/* Transfers that finished free their slots for queued requests; those
	 * are started and, in a second round, sent at once, not at the next
	 * pump, which may come only after the caller has read more input. */
	for (int round = 0; round < 2; round++) {
		int running;
		mc = curl_multi_perform(f->multi, &running);
		if (mc != CURLM_OK)
			return eosin_error("libcurl: %s", curl_multi_strerror(mc));
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(f->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct fetch_job *j = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
			finish(f, j, m->data.result);
		}
		long started = f->stats.requests;
		start_ready(f);
		if (f->stats.requests == started)
			break;
	}
	return 0;
}

void fetch_cancel_all(struct fetch *f, const char *why)
{
	struct fetch_job *j;
	while ((j = f->active)) {
		release_easy(f, j);
		struct fetch_answer a = {.url = j->url, .error = why, .attempts = j->attempts};
		f->stats.failed++;
		f->done(f->ctx, j->user, &a);
		job_free(j);
	}
	while ((j = f->wait_head)) {
		f->wait_head = j->next;
		f->nwaiting--;
		struct fetch_answer a = {.url = j->url, .error = why, .attempts = j->attempts};
		f->stats.failed++;
		f->done(f->ctx, j->user, &a);
		job_free(j);
	}
	f->wait_tail = NULL;
}

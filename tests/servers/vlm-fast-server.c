/*
 * vlm-fast-server: an OpenAI-compatible /v1/chat/completions server for
 * eosin's benchmarks and tests, fast enough that a benchmark measures the
 * client, not the server.
 *
 * One thread, epoll, non-blocking sockets, HTTP/1.1 keep-alive. Every chat
 * request is answered --delay seconds after its last byte arrived: answers
 * wait in one FIFO queue (the delay is the same for all, so arrival order is
 * due order) behind one timerfd, never in a sleeping thread, so thousands can
 * wait at once at no cost.
 *
 * By default the request is not looked at (a benchmark measures the client)
 * and the answer is "Fast answer.". With --check each request is checked the
 * way tests/servers/vlm-server.py checks it (JSON with a model, temperature
 * 0, an integer max_tokens, a last user message with a text part and a JPEG
 * data URL) and answered as that server answers:
 *   "Image <first 16 hex of sha256(jpeg)> asked '<first 3 words of prompt>'.
 *    Nuclei are round."
 * or 400 when the request is not valid. Faults are vlm-server.py's job.
 *
 * GET /stats: {"requests", "answered", "bad", "active", "max_active",
 * "connections", "late_ms", "turnaround_ms"}: chat requests, good answers,
 * invalid requests, requests waiting for their answer now and at most,
 * connections accepted; the mean time answers left after their due time
 * (this server's slack), and the mean time from an answer to the next
 * request on its connection having arrived whole (the client's share of
 * each round trip, with the transfer). With 64 connections busy and a
 * 50 ms delay, requests/s = 64 / (0.05 s + late + turnaround).
 * POST /reset zeroes them (active excepted). GET /last: the body of the last
 * chat request, as it came (for tests of what the client sends).
 *
 * Usage: vlm-fast-server [--port N] [--port-file F] [--delay S] [--check]
 * --port 0 (default) takes a free port; --port-file F receives it (written
 * whole, by rename). It runs until killed.
 */
#include "core/json.h"
#include "core/sha256.h"

#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER (64 << 10)  /* bytes of request line and headers */
#define MAX_BODY (64 << 20)    /* bytes of request body */

struct conn {
	int fd;                /* -1 once closed */
	char *in;              /* bytes read, not yet consumed */
	size_t in_len, in_cap;
	char *out;             /* the answer being written (or waiting) */
	size_t out_len, out_off, out_cap;
	int waiting;           /* an answer sits in the delay queue */
	int writing;           /* out has bytes left to write */
	int close_after;       /* the client asked for Connection: close */
	int continued;         /* 100 Continue sent for the current request */
	int retired;           /* on srv.closed */
	struct timespec due;   /* when the waiting answer may go */
	struct conn *queue_next;
	struct timespec sent;  /* when the last answer went; 0 before any */
};

static struct {
	double delay;          /* seconds */
	int check;
	int epoll, listener, timer;
	struct conn *queue_head, *queue_tail;
	struct conn *closed;   /* closed, freed after this round of events */
	long requests, answered, bad, active, max_active, connections;
	double late;           /* seconds answers went after their due time, summed */
	double turnaround;     /* seconds from an answer to the next request on
	                        * its connection, summed over `turns` */
	long turns;
	char *last;            /* the last chat request's body (GET /last) */
	size_t last_len;
} srv;

static const char fast_answer[] =
    "{\"id\":\"cmpl-test\",\"object\":\"chat.completion\",\"model\":\"test-vlm\","
    "\"choices\":[{\"index\":0,\"finish_reason\":\"stop\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"Fast answer.\"}}]}";

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec);
}

static void usage(void)
{
	fprintf(stderr, "usage: vlm-fast-server [--port N] [--port-file F] [--delay S] [--check]\n");
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	if (!(p = realloc(p, n)))
		errx(1, "out of memory");
	return p;
}

static void reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	*buf = xrealloc(*buf, c);
	*cap = c;
}

static void epoll_set(struct conn *c, int op, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(srv.epoll, op, c->fd, &ev) < 0)
		err(1, "epoll_ctl");
}

/* Close c's socket. Its memory goes once no event of this round and no
 * waiting answer can point at it. */
static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);  /* also leaves the epoll set */
		c->fd = -1;
	}
	if (c->waiting || c->retired)
		return; /* release_due() sees fd < 0 and retires it */
	c->retired = 1;
	c->queue_next = srv.closed;
	srv.closed = c;
}

static void free_closed(void)
{
	while (srv.closed) {
		struct conn *c = srv.closed;
		srv.closed = c->queue_next;
		free(c->in);
		free(c->out);
		free(c);
	}
}

static void serve(struct conn *c);

/* ---- answers ---- */

/* Put a whole HTTP answer in c->out (not sent yet). */
static void set_answer(struct conn *c, int status, const char *reason, const char *body,
                       size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 %d %s\r\nServer: vlm-fast-server/1\r\n"
	                 "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
	                 status, reason, len, c->close_after ? "Connection: close\r\n" : "");
	reserve(&c->out, &c->out_cap, (size_t)n + len);
	memcpy(c->out, head, (size_t)n);
	memcpy(c->out + n, body, len);
	c->out_len = (size_t)n + len;
	c->out_off = 0;
}

/* Write what c->out holds; close the connection when it asked so. 0, or
 * -1 when c was closed. */
static int flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->writing)
				epoll_set(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
			c->writing = 1;
			return 0;
		}
		if (k < 0) {
			conn_close(c);
			return -1;
		}
		c->out_off += (size_t)k;
	}
	if (c->writing)
		epoll_set(c, EPOLL_CTL_MOD, EPOLLIN);
	c->writing = 0;
	c->out_len = c->out_off = 0;
	if (c->close_after) {
		conn_close(c);
		return -1;
	}
	return 0;
}

/* The first three words of s, joined by single spaces. */
static void first_words(const char *s, char *out, size_t size)
{
	size_t n = 0;
	for (int w = 0; w < 3; w++) {
		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		if (w && n + 1 < size)
			out[n++] = ' ';
		while (*s && !isspace((unsigned char)*s)) {
			if (n + 1 < size)
				out[n++] = *s;
			s++;
		}
	}
	out[n] = 0;
}

/* --check: the caption vlm-server.py would give, or -1 for a request it
 * would refuse. */
static int checked_caption(const char *body, size_t len, char *caption, size_t size)
{
	static const char prefix[] = "data:image/jpeg;base64,";
	json_t *req = json_loadb(body, len, 0, NULL);
	json_t *model = json_object_get(req, "model"), *temp = json_object_get(req, "temperature");
	json_t *messages = json_object_get(req, "messages"), *user = NULL, *m;
	const char *text = NULL, *url = NULL;
	size_t i;
	int ret = -1;
	if (!json_is_string(model) || !json_string_length(model) || !json_is_number(temp) ||
	    json_number_value(temp) != 0 || !json_is_integer(json_object_get(req, "max_tokens")) ||
	    !json_is_array(messages))
		goto out;
	json_array_foreach(messages, i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		if (role && !strcmp(role, "user"))
			user = m;
	}
	json_t *parts = json_object_get(user, "content");
	json_array_foreach(parts, i, m)
	{
		const char *type = json_string_value(json_object_get(m, "type"));
		if (type && !strcmp(type, "text") && !text)
			text = json_string_value(json_object_get(m, "text"));
		if (type && !strcmp(type, "image_url") && !url)
			url = json_string_value(json_object_get(json_object_get(m, "image_url"), "url"));
	}
	if (!text || !url || strncmp(url, prefix, sizeof prefix - 1))
		goto out;
	url += sizeof prefix - 1;
	size_t n = strlen(url);
	unsigned char *jpeg = malloc(n / 4 * 3 + 1);
	if (!jpeg)
		errx(1, "out of memory");
	long jn = base64_decode(url, n, jpeg);
	if (jn >= 2 && jpeg[0] == 0xff && jpeg[1] == 0xd8) {
		char hex[65], words[256];
		sha256_hex(jpeg, (size_t)jn, hex);
		first_words(text, words, sizeof words);
		snprintf(caption, size, "Image %.16s asked '%s'. Nuclei are round.", hex, words);
		ret = 0;
	}
	free(jpeg);
out:
	json_decref(req);
	return ret;
}

/* Answer one chat request (queued for --delay). */
static void chat(struct conn *c, const char *body, size_t len)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	srv.requests++;
	srv.last = xrealloc(srv.last, len + 1);
	memcpy(srv.last, body, len);
	srv.last_len = len;
	if (c->sent.tv_sec) {
		srv.turnaround += seconds_between(&c->sent, &now);
		srv.turns++;
	}
	if (!srv.check) {
		set_answer(c, 200, "OK", fast_answer, sizeof fast_answer - 1);
		srv.answered++;
	} else {
		char caption[512];
		if (checked_caption(body, len, caption, sizeof caption) < 0) {
			srv.bad++;
			static const char e[] = "{\"error\": \"bad request\"}";
			set_answer(c, 400, "Bad Request", e, sizeof e - 1);
		} else {
			json_t *a = json_pack("{s:s, s:s, s:s, s:[{s:i, s:s, s:{s:s, s:s}}]}", "id",
			                      "cmpl-test", "object", "chat.completion", "model", "test-vlm",
			                      "choices", "index", 0, "finish_reason", "stop", "message",
			                      "role", "assistant", "content", caption);
			char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
			if (!s)
				errx(1, "out of memory");
			set_answer(c, 200, "OK", s, strlen(s));
			free(s);
			json_decref(a);
			srv.answered++;
		}
	}
	if (srv.delay <= 0)
		return; /* the caller writes it now */
	c->due = now;
	long ns = (long)(srv.delay * 1e9);
	c->due.tv_sec += ns / 1000000000 + (c->due.tv_nsec + ns % 1000000000) / 1000000000;
	c->due.tv_nsec = (c->due.tv_nsec + ns % 1000000000) % 1000000000;
	c->waiting = 1;
	c->queue_next = NULL;
	if (srv.queue_tail) {
		srv.queue_tail->queue_next = c;
	} else {
		srv.queue_head = c;
		struct itimerspec its = {.it_value = c->due};
		if (timerfd_settime(srv.timer, TFD_TIMER_ABSTIME, &its, NULL) < 0)
			err(1, "timerfd_settime");
	}
	srv.queue_tail = c;
	if (++srv.active > srv.max_active)
		srv.max_active = srv.active;
}

/* Send the answers whose time has come; arm the timer for the next. */
static void release_due(void)
{
	uint64_t ticks;
	if (read(srv.timer, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
		err(1, "timerfd read");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct conn *c;
	while ((c = srv.queue_head) &&
	       (c->due.tv_sec < now.tv_sec ||
	        (c->due.tv_sec == now.tv_sec && c->due.tv_nsec <= now.tv_nsec))) {
		srv.queue_head = c->queue_next;
		if (!srv.queue_head)
			srv.queue_tail = NULL;
		srv.active--;
		c->waiting = 0;
		srv.late += seconds_between(&c->due, &now);
		c->sent = now;
		if (c->fd < 0) {
			conn_close(c);  /* the client left before its answer */
			continue;
		}
		if (flush_out(c) == 0 && !c->writing)
			serve(c);  /* a request that came behind this one */
	}
	if (srv.queue_head) {
		struct itimerspec its = {.it_value = srv.queue_head->due};
		if (timerfd_settime(srv.timer, TFD_TIMER_ABSTIME, &its, NULL) < 0)
			err(1, "timerfd_settime");
	}
}

/* ---- requests ---- */

/* Value of header name in the header block [h, end), or NULL; *n its length. */
static const char *header(const char *h, const char *end, const char *name, size_t *n)
{
	size_t k = strlen(name);
	for (const char *line = h; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		if ((size_t)(eol - line) > k && line[k] == ':' && !strncasecmp(line, name, k)) {
			const char *v = line + k + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			*n = (size_t)(ve - v);
			return v;
		}
		line = eol + 1;
	}
	return NULL;
}

static void stats_answer(struct conn *c)
{
	char s[512];
	int n = snprintf(s, sizeof s,
	                 "{\"requests\": %ld, \"answered\": %ld, \"bad\": %ld, \"active\": %ld, "
	                 "\"max_active\": %ld, \"connections\": %ld, \"late_ms\": %.3f, "
	                 "\"turnaround_ms\": %.3f}",
	                 srv.requests, srv.answered, srv.bad, srv.active, srv.max_active,
	                 srv.connections, srv.answered ? 1e3 * srv.late / (double)srv.answered : 0,
	                 srv.turns ? 1e3 * srv.turnaround / (double)srv.turns : 0);
	set_answer(c, 200, "OK", s, (size_t)n);
}

/* Handle every whole request buffered on c, one at a time: an answer that
 * waits stops the loop until it has gone. */
static void serve(struct conn *c)
{
	while (!c->waiting && !c->writing && c->fd >= 0) {
		char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		if (!end) {
			if (c->in_len > MAX_HEADER) {
				c->close_after = 1;
				static const char e[] = "{\"error\": \"headers too large\"}";
				set_answer(c, 431, "Request Header Fields Too Large", e, sizeof e - 1);
				flush_out(c);
			}
			return;
		}
		const char *h = memchr(c->in, '\n', (size_t)(end - c->in));
		h = h ? h + 1 : end;
		size_t n = 0;
		const char *v = header(h, end + 2, "Content-Length", &n);
		char num[32] = "0";
		if (v && n < sizeof num) {
			memcpy(num, v, n);
			num[n] = 0;
		}
		char *stop;
		unsigned long long body_len = strtoull(num, &stop, 10);
		int chunked = header(h, end + 2, "Transfer-Encoding", &n) != NULL;
		v = header(h, end + 2, "Connection", &n);
		c->close_after = v && n == 5 && !strncasecmp(v, "close", 5);
		if (*stop || body_len > MAX_BODY || chunked) {
			c->close_after = 1;
			static const char e[] = "{\"error\": \"want a Content-Length body\"}";
			set_answer(c, chunked ? 411 : 413, chunked ? "Length Required" : "Too Large", e,
			           sizeof e - 1);
			flush_out(c);
			return;
		}
		size_t head_len = (size_t)(end + 4 - c->in), total = head_len + body_len;
		if (c->in_len < total) {
			v = header(h, end + 2, "Expect", &n);
			if (v && !c->continued && n == 12 && !strncasecmp(v, "100-continue", 12)) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				(void)!send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
				c->continued = 1;
			}
			reserve(&c->in, &c->in_cap, total);
			return;
		}
		c->continued = 0;
		const char *body = c->in + head_len;
		if (!strncmp(c->in, "POST /v1/chat/completions ", 26)) {
			chat(c, body, body_len);
		} else if (!strncmp(c->in, "GET /stats ", 11)) {
			stats_answer(c);
		} else if (!strncmp(c->in, "GET /last ", 10)) {
			set_answer(c, 200, "OK", srv.last ? srv.last : "{}", srv.last ? srv.last_len : 2);
		} else if (!strncmp(c->in, "POST /reset ", 12)) {
			srv.requests = srv.answered = srv.bad = srv.connections = srv.turns = 0;
			srv.late = srv.turnaround = 0;
			srv.max_active = srv.active;
			set_answer(c, 200, "OK", "{}", 2);
		} else if (!strncmp(c->in, "GET /v1/models ", 15)) {
			static const char m[] = "{\"object\": \"list\", \"data\": [{\"id\": \"test-vlm\"}]}";
			set_answer(c, 200, "OK", m, sizeof m - 1);
		} else {
			static const char e[] = "{\"error\": \"not found\"}";
			set_answer(c, 404, "Not Found", e, sizeof e - 1);
		}
		memmove(c->in, c->in + total, c->in_len - total);
		c->in_len -= total;
		if (!c->waiting && flush_out(c) < 0)
			return;
	}
}

static void on_readable(struct conn *c)
{
	for (;;) {
		reserve(&c->in, &c->in_cap, c->in_len + 16384);
		ssize_t k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (k > 0) {
			c->in_len += (size_t)k;
			if (c->in_len > MAX_HEADER + MAX_BODY) {
				conn_close(c);
				return;
			}
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_close(c);  /* end of input or an error */
		return;
	}
	serve(c);
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(srv.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EMFILE && errno != ENFILE)
				warn("accept");
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (!c)
			errx(1, "out of memory");
		c->fd = fd;
		srv.connections++;
		epoll_set(c, EPOLL_CTL_ADD, EPOLLIN);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, 0, 'p'},
	    {"port-file", required_argument, 0, 'f'},
	    {"delay", required_argument, 0, 'd'},
	    {"check", no_argument, 0, 'c'},
	    {0, 0, 0, 0},
	};
	const char *port_file = NULL;
	long port = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		switch (ch) {
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port < 0 || port > 65535)
				usage();
			break;
		case 'f': port_file = optarg; break;
		case 'd':
			srv.delay = strtod(optarg, &end);
			if (*end || !(srv.delay >= 0 && srv.delay < 3600))
				usage();
			break;
		case 'c': srv.check = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	signal(SIGPIPE, SIG_IGN);

	srv.listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(srv.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof sa;
	if (srv.listener < 0 || bind(srv.listener, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    listen(srv.listener, 1024) < 0 ||
	    getsockname(srv.listener, (struct sockaddr *)&sa, &salen) < 0)
		err(1, "cannot listen on 127.0.0.1:%ld", port);
	if (port_file) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 ||
		    rename(tmp, port_file) < 0)
			err(1, "cannot write '%s'", port_file);
	}

	if ((srv.epoll = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (srv.timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		err(1, "epoll");
	/* the listener and the timer are told apart from connections by
	 * their data: pointers to these two markers */
	static int listener_tag, timer_tag;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener_tag};
	if (epoll_ctl(srv.epoll, EPOLL_CTL_ADD, srv.listener, &ev) < 0)
		err(1, "epoll_ctl");
	ev.data.ptr = &timer_tag;
	if (epoll_ctl(srv.epoll, EPOLL_CTL_ADD, srv.timer, &ev) < 0)
		err(1, "epoll_ctl");

	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(srv.epoll, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err(1, "epoll_wait");
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &listener_tag) {
				accept_all();
			} else if (p == &timer_tag) {
				release_due();
			} else {
				struct conn *c = p;  /* perhaps closed earlier this round */
				if (c->fd >= 0 && evs[i].events & EPOLLOUT && c->writing &&
				    flush_out(c) == 0 && !c->writing)
					serve(c);
				if (c->fd >= 0 && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					on_readable(c);
			}
		}
		free_closed();
	}
}

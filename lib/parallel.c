/*
 * parallel.c: a parallel loop on plain threads. See parallel.h.
 */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct loop {
	int64_t n;
	atomic_llong next;
	void (*body)(void *ctx, int64_t i, int thread);
	void *ctx;
};

struct runner {
	struct loop *loop;
	int thread;
};

static void run_items(struct loop *l, int thread)
{
	for (;;) {
		int64_t i = atomic_fetch_add(&l->next, 1);
		if (i >= l->n)
			break;
		l->body(l->ctx, i, thread);
	}
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	run_items(r->loop, r->thread);
	return NULL;
}

int parallel_for(int64_t n, int threads, void (*body)(void *ctx, int64_t i, int thread),
                 void *ctx)
{
	struct loop l = {.n = n, .body = body, .ctx = ctx};
	atomic_init(&l.next, 0);
	if (threads > n)
		threads = n > 1 ? (int)n : 1;
	pthread_t *tids = NULL;
	struct runner *runners = NULL;
	int started = 0;
	if (threads > 1) {
		tids = malloc((size_t)(threads - 1) * sizeof *tids);
		runners = malloc((size_t)(threads - 1) * sizeof *runners);
	}
	if (tids && runners)
		for (; started < threads - 1; started++) {
			runners[started] = (struct runner){&l, started + 1};
			if (pthread_create(&tids[started], NULL, runner_main, &runners[started]) != 0)
				break;
		}
	run_items(&l, 0);
	for (int t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	free(runners);
	return started + 1;
}

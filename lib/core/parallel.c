/*
 * parallel.c: a parallel loop on plain threads. See parallel.h.
 *
 * The loop's extra threads are helpers kept for the life of the process
 * (as many as the most any loop asked for), asleep between loops: a
 * thread started and joined per loop costs its start, and on exit an
 * madvise of its stack, whose TLB shootdown stalls the other threads of
 * the process; on a virtual machine a join took up to 6 ms.
 */
#include "core/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct loop {
	int64_t n;
	atomic_llong next;
	void (*body)(void *ctx, int64_t i, int thread);
	void *ctx;
	int want;          /* helpers it may take */
	int joined;        /* helpers that took part so far */
	int active;        /* helpers inside it now */
	struct loop *link; /* the pool's list of open loops */
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

/* ---- the helpers ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a loop opened */
	pthread_cond_t done; /* a helper left a loop */
	struct loop *open;   /* loops helpers may join, oldest first */
	int helpers;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL,
          0};

static void *helper_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "loop-helper");
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct loop *l = pool.open;
		while (l && (l->joined >= l->want || atomic_load(&l->next) >= l->n))
			l = l->link;
		if (!l) {
			pthread_cond_wait(&pool.work, &pool.lock);
			continue;
		}
		int thread = ++l->joined;
		l->active++;
		pthread_mutex_unlock(&pool.lock);
		run_items(l, thread);
		pthread_mutex_lock(&pool.lock);
		if (--l->active == 0)
			pthread_cond_broadcast(&pool.done);
	}
	return NULL;
}

int parallel_for(int64_t n, int threads, void (*body)(void *ctx, int64_t i, int thread),
                 void *ctx)
{
	struct loop l = {.n = n, .body = body, .ctx = ctx};
	atomic_init(&l.next, 0);
	if (threads > n)
		threads = n > 1 ? (int)n : 1;
	if (threads > 1) {
		pthread_mutex_lock(&pool.lock);
		while (pool.helpers < threads - 1) {
			pthread_t tid;
			pthread_attr_t attr;
			pthread_attr_init(&attr);
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			int e = pthread_create(&tid, &attr, helper_main, NULL);
			pthread_attr_destroy(&attr);
			if (e != 0)
				break;
			pool.helpers++;
		}
		l.want = threads - 1 < pool.helpers ? threads - 1 : pool.helpers;
		if (l.want > 0) {
			struct loop **end = &pool.open;
			while (*end)
				end = &(*end)->link;
			*end = &l;
			pthread_cond_broadcast(&pool.work);
		}
		pthread_mutex_unlock(&pool.lock);
	}
	run_items(&l, 0);
	if (l.want == 0)
		return 1;
	/* wait for the helpers' last items */
	pthread_mutex_lock(&pool.lock);
	struct loop **p = &pool.open;
	while (*p != &l)
		p = &(*p)->link;
	*p = l.link;
	int joined = l.joined;
	while (l.active > 0)
		pthread_cond_wait(&pool.done, &pool.lock);
	pthread_mutex_unlock(&pool.lock);
	return joined + 1;
}

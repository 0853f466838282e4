/*
 * parallel.h: a parallel loop on plain threads, for the few places that
 * need one outside OpenMP's reach.
 *
 * Why not `#pragma omp parallel for`: after a parallel region libgomp's
 * idle threads spin, waiting for the next one, and a program that also
 * runs threads of its own (eosin-tile's tile workers) then pays for that
 * spinning with CPU time its own threads need. The helpers here sleep
 * on a condition variable between loops: nothing runs after a loop.
 */
#ifndef EOSIN_PARALLEL_H
#define EOSIN_PARALLEL_H

#include <stdint.h>

/* Call body(ctx, i, thread) for every i in [0, n), on up to `threads`
 * threads (the caller's among them), thread in [0, threads) naming the
 * one that runs it (for per-thread state); items are handed out one at
 * a time in increasing order. Returns the number of threads that took
 * part (>= 1): when no helper can be started the caller runs them all.
 * Several threads may run loops at once; the helpers serve the oldest
 * open loop first. */
int parallel_for(int64_t n, int threads, void (*body)(void *ctx, int64_t i, int thread),
                 void *ctx);

#endif

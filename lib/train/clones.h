/*
 * clones.h: CLONES, for the hot elementwise loops of the trainer: a function
 * so marked is built for AVX-512, AVX2 and the x86-64 baseline, and the
 * loader picks the best the CPU has (GCC function multiversioning; elsewhere
 * it marks nothing). Built as ISO C, without floating-point contraction,
 * each version does the same float operations in each lane: only the
 * vector width, and so the order of a loop's reductions, differs.
 * Put the loop itself in the marked function (an OpenMP parallel loop
 * calling it over spans of elements), not around it: the bodies OpenMP
 * outlines are not cloned.
 */
#ifndef EOSIN_CLONES_H
#define EOSIN_CLONES_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#endif

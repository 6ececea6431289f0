/* What the CUDA benchmarks share: one-line CUDA errors under the bench's
 * name, event timing, and seeded random device tensors (the same numbers on
 * every run, so two runs time the same work). Host-side C; CUDA runtime API. */
#ifndef LUKV_BENCH_CUDA_H
#define LUKV_BENCH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The program name bench_cuda_ok prints (default "bench"); a static string. */
void bench_set_prog(const char *prog);

/* 1 on cudaSuccess; else prints "<prog>: <what>: <error text> (<name>)" on
 * stderr and returns 0. */
int bench_cuda_ok(cudaError_t e, const char *what);

/* Milliseconds of one call of fn(ctx) on the default stream, the mean of reps
 * calls timed with events after one synchronised warm-up; -1 when fn returns
 * 0 or a CUDA call fails. */
typedef int (*bench_timed_fn)(void *ctx);
double bench_time_ms(bench_timed_fn fn, void *ctx, int reps);

/* Milliseconds of one call of fn(ctx) on stream st, the best of reps calls
 * timed with events after one synchronised warm-up; -1 when fn returns 0 or
 * a CUDA call fails. For work whose minimum is the figure (bandwidth, graph
 * replays), not its mean. */
double bench_best_ms(bench_timed_fn fn, void *ctx, int reps, cudaStream_t st);

/* n bf16 values uniform in [-1, 1) (xorshift64 from seed, round to nearest
 * even) copied to the device buffer dev; 1 on success. */
int bench_fill_random_bf16(void *dev, size_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif

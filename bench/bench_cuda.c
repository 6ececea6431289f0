#include "bench_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bench_prog = "bench";

void bench_set_prog(const char *prog) { bench_prog = prog; }

int bench_cuda_ok(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 1;
  fprintf(stderr, "%s: %s: %s (%s)\n", bench_prog, what, cudaGetErrorString(e), cudaGetErrorName(e));
  return 0;
}

double bench_time_ms(bench_timed_fn fn, void *ctx, int reps) {
  cudaEvent_t a, b;
  if (!bench_cuda_ok(cudaEventCreate(&a), "cudaEventCreate")) return -1;
  if (!bench_cuda_ok(cudaEventCreate(&b), "cudaEventCreate")) {
    cudaEventDestroy(a);
    return -1;
  }
  float ms = -1;
  if (fn(ctx) && bench_cuda_ok(cudaDeviceSynchronize(), "warm-up") &&
      bench_cuda_ok(cudaEventRecord(a, 0), "cudaEventRecord")) {
    int ok = 1;
    for (int i = 0; i < reps && ok; i++) ok = fn(ctx);
    if (ok && bench_cuda_ok(cudaEventRecord(b, 0), "cudaEventRecord") &&
        bench_cuda_ok(cudaEventSynchronize(b), "run") &&
        bench_cuda_ok(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime"))
      ms /= (float)reps;
    else
      ms = -1;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

double bench_best_ms(bench_timed_fn fn, void *ctx, int reps, cudaStream_t st) {
  cudaEvent_t a, b;
  if (!bench_cuda_ok(cudaEventCreate(&a), "cudaEventCreate")) return -1;
  if (!bench_cuda_ok(cudaEventCreate(&b), "cudaEventCreate")) {
    cudaEventDestroy(a);
    return -1;
  }
  float best = -1;
  int ok = fn(ctx) && bench_cuda_ok(cudaStreamSynchronize(st), "warm-up");
  for (int i = 0; i < reps && ok; i++) {
    float ms;
    ok = bench_cuda_ok(cudaEventRecord(a, st), "cudaEventRecord") && fn(ctx) &&
         bench_cuda_ok(cudaEventRecord(b, st), "cudaEventRecord") &&
         bench_cuda_ok(cudaEventSynchronize(b), "run") &&
         bench_cuda_ok(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    if (ok && (best < 0 || ms < best)) best = ms;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ok ? best : -1;
}

int bench_fill_random_bf16(void *dev, size_t n, uint64_t seed) {
  uint16_t *h = malloc(2 * (n ? n : 1));
  if (!h) return 0;
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    float f = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    uint32_t u;
    memcpy(&u, &f, 4);
    h[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  int ok = bench_cuda_ok(cudaMemcpy(dev, h, 2 * n, cudaMemcpyHostToDevice), "cudaMemcpy");
  free(h);
  return ok;
}

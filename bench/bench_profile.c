/* bench-profile: the profiler's CUDA statistics pass (profiler/stats_cuda.h)
 * against the engine's flash-attention forward on the same shapes, in the
 * same run (issue 5, "Benchmark"):
 *
 *   forward   lukv_cuda_flash_attention over T rows (bf16 q/k/v, causal): the
 *             attention the statistics ride on; its lse feeds the statistics
 *   stats     lukv_layer_stats_cuda of one layer: value norms, oracle
 *             utility, snapkv and keydiff scores, every loss curve, copied to
 *             the host with the rounding guards (what lukv-profile runs per
 *             layer), wall time including its synchronisation
 *   parts     the same pieces alone (each synchronises): vnorm, utility,
 *             snapkv, keydiff, curves; and gram, the Gram matrices W_Oqᵀ W_Oq
 *             of o_proj, which lukv-profile computes once per layer and run
 *             (lukv_stats_cuda_gram) and stats and vnorm take from the view;
 *             vnorm-f32, the value norms on the cuBLAS f32 path instead of
 *             the tensor-core kernel (d 64, 128), for comparison
 *
 * Default: one Llama-3.1-8B layer (32 query heads, 8 KV heads, head dim 128,
 * hidden 4096), T = 4096, 16384, 32768 rows with F = T/8 future rows and
 * T_ctx = T − F context rows, random inputs (q, k, v uniform in [−1, 1) as
 * bf16, widened to f32 as the engine's tap does; o_proj normal / sqrt(Hq·d)),
 * sink 4, window 32, pool 7, grid 256, utility max. Target (issue 5):
 * stats / forward <= 0.6.
 *
 * Per-layer times only: the whole-profile tokens/s comes from an end-to-end
 * `lukv-profile --random-init CONFIG --device cuda` run (printed below).
 * The PyTorch peer is bench/profile_peer.py on the same GPU; the command is
 * printed. Exits 77 with one line when there is no CUDA device.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "bench_cuda.h"

#include "cuda_kernels.h"
#include "stats.h"
#include "stats_cuda.h"

static const char usage[] =
    "usage: bench-profile [--lengths T1,T2,...] [--future-div N | --future F] [--reps N]\n"
    "                     [--heads HQ] [--kv-heads HKV] [--head-dim D] [--hidden H]\n"
    "                     [--utility max|sum] [--grid G] [--seed N]\n"
    "\n"
    "The profiler's CUDA statistics of one layer against the flash-attention\n"
    "forward on the same shapes (random inputs), per-layer times.\n"
    "\n"
    "  --lengths LIST    rows T per layer (default 4096,16384,32768)\n"
    "  --future-div N    F = T / N future rows (default 8)\n"
    "  --future F        a fixed F instead\n"
    "  --reps N          timed repetitions after one warm-up (default 3)\n"
    "  --heads, --kv-heads, --head-dim, --hidden   the layer (default 32, 8, 128, 4096)\n"
    "  --utility U       max (default) | sum\n"
    "  --grid G          curve grid (default 256)\n"
    "  --seed N          input seed (default 1)\n";

#define MAX_LENGTHS 16

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int lukv_ok(int rc, const lukv_error *err) {
  if (rc == LUKV_OK) return 1;
  fprintf(stderr, "bench-profile: %s\n", err->msg);
  return 0;
}

static uint64_t xs_next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static int fill_random_f32(float *dev, size_t n, double sd, uint64_t seed) {
  float *h = malloc(sizeof(float) * n);
  if (!h) return 0;
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 7;
  for (size_t i = 0; i < n; i++) { /* sum of 4 uniforms: near normal, sd 1 */
    double z = 0;
    for (int k = 0; k < 4; k++) z += (double)(xs_next(&s) >> 11) / 9007199254740992.0 - 0.5;
    h[i] = (float)(sd * z * sqrt(3.0));
  }
  int ok = bench_cuda_ok(cudaMemcpy(dev, h, sizeof(float) * n, cudaMemcpyHostToDevice), "cudaMemcpy");
  free(h);
  return ok;
}

typedef struct run {
  lukv_attn_shape sh;
  void *qb, *kb, *vb, *ob; /* bf16 */
  float *lse, *q, *k, *v, *wo;
  float *vn, *u, *score;
  lukv_layer_view x;
  lukv_stats_params p;
  lukv_stats_cuda *ctx;
  float *curves[2], *oracle, *total, *curves_h;
} run;

static int flash_once(void *vr) {
  run *r = vr;
  return bench_cuda_ok(lukv_cuda_flash_attention(r->qb, r->kb, r->vb, &r->sh, r->ob, r->lse, 0), "flash attention");
}

enum { PART_LAYER, PART_VNORM, PART_UTILITY, PART_SNAPKV, PART_KEYDIFF, PART_CURVES, PART_GRAM, PART_VNORM_F32, N_PARTS };
static const char *const part_names[N_PARTS] = {"stats",  "vnorm", "utility", "snapkv",
                                                "keydiff", "curves", "gram",   "vnorm-f32"};

static int part_once(run *r, int part, lukv_error *err) {
  const lukv_layer_view *x = &r->x;
  const size_t ht = (size_t)x->n_kv_heads * x->T_ctx;
  static const lukv_scorer_id ids[2] = {LUKV_SCORER_SNAPKV, LUKV_SCORER_KEYDIFF};
  const float *sp[2] = {r->score, r->score + ht};
  switch (part) {
  case PART_LAYER:
    return lukv_layer_stats_cuda(r->ctx, x, &r->p, 2, ids, 1, 1, 0, 0, r->curves, r->oracle, r->total, err);
  case PART_VNORM: return lukv_stats_cuda_vnorm(r->ctx, x, r->vn, err);
  case PART_UTILITY: return lukv_stats_cuda_utility(r->ctx, x, r->vn, r->p.utility, r->u, err);
  case PART_SNAPKV: return lukv_score_cuda_snapkv(r->ctx, x, r->p.window, r->p.pool_kernel, r->score, err);
  case PART_KEYDIFF: return lukv_score_cuda_keydiff(r->ctx, x, r->score + ht, err);
  case PART_CURVES:
    return lukv_stats_cuda_curves(r->ctx, r->u, 2, sp, x->n_kv_heads, x->T_ctx, r->p.sink, r->p.window, r->p.grid,
                                  r->curves_h, err);
  case PART_GRAM: { /* into slot 1: slot 0 holds the view's o_gram */
    const float *g = NULL;
    return lukv_stats_cuda_gram(r->ctx, 1, x, &g, err);
  }
  case PART_VNORM_F32: { /* the cuBLAS f32 path, for comparison with vnorm */
    int rc = lukv_stats_cuda_set_vnorm_f32(r->ctx, 1, err);
    if (rc == LUKV_OK) rc = lukv_stats_cuda_vnorm(r->ctx, x, r->vn, err);
    lukv_stats_cuda_set_vnorm_f32(r->ctx, 0, NULL);
    return rc;
  }
  }
  return LUKV_ERR_INVALID;
}

/* Milliseconds of wall time per call (each call synchronises), mean of reps
 * after one warm-up (which also grows the context's scratch). */
static double time_part(run *r, int part, int reps) {
  lukv_error err;
  lukv_error_clear(&err);
  if (!lukv_ok(part_once(r, part, &err), &err)) return -1;
  double t0 = now_s();
  for (int i = 0; i < reps; i++)
    if (!lukv_ok(part_once(r, part, &err), &err)) return -1;
  return (now_s() - t0) * 1e3 / reps;
}

static void run_free(run *r) {
  cudaFree(r->qb), cudaFree(r->kb), cudaFree(r->vb), cudaFree(r->ob), cudaFree(r->lse);
  cudaFree(r->q), cudaFree(r->k), cudaFree(r->v), cudaFree(r->wo);
  cudaFree(r->vn), cudaFree(r->u), cudaFree(r->score);
  free(r->curves[0]), free(r->curves[1]), free(r->oracle), free(r->total), free(r->curves_h);
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  bench_set_prog("bench-profile");
  int Ts[MAX_LENGTHS] = {4096, 16384, 32768}, nT = 3;
  long future_div = 8, future = -1, reps = 3, Hq = 32, Hkv = 8, d = 128, D = 4096, grid = 256, seed = 1;
  lukv_utility_mode mode = LUKV_UTILITY_MAX;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long x = 0;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "bench-profile: unknown option or missing value: %s\n%s", a, usage);
      return 2;
    }
    i++;
    if (!strcmp(a, "--lengths")) {
      char buf[256];
      snprintf(buf, sizeof buf, "%s", v);
      nT = 0;
      for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (nT == MAX_LENGTHS || parse_long(t, 2, 1 << 22, &x)) {
          fprintf(stderr, "bench-profile: bad --lengths '%s'\n", v);
          return 2;
        }
        Ts[nT++] = (int)x;
      }
      if (nT == 0) {
        fprintf(stderr, "bench-profile: empty --lengths\n");
        return 2;
      }
    } else if (!strcmp(a, "--utility")) {
      if (!strcmp(v, "max")) mode = LUKV_UTILITY_MAX;
      else if (!strcmp(v, "sum")) mode = LUKV_UTILITY_SUM;
      else {
        fprintf(stderr, "bench-profile: --utility max or sum, not '%s'\n", v);
        return 2;
      }
    } else {
      long *dst = !strcmp(a, "--future-div") ? &future_div
                  : !strcmp(a, "--future")   ? &future
                  : !strcmp(a, "--reps")     ? &reps
                  : !strcmp(a, "--heads")    ? &Hq
                  : !strcmp(a, "--kv-heads") ? &Hkv
                  : !strcmp(a, "--head-dim") ? &d
                  : !strcmp(a, "--hidden")   ? &D
                  : !strcmp(a, "--grid")     ? &grid
                  : !strcmp(a, "--seed")     ? &seed
                                             : NULL;
      if (!dst || parse_long(v, 1, 1 << 24, &x)) {
        fprintf(stderr, "bench-profile: bad option %s '%s'\n%s", a, v, usage);
        return 2;
      }
      *dst = x;
    }
  }
  if (Hq % Hkv != 0) {
    fprintf(stderr, "bench-profile: --heads %ld is not a multiple of --kv-heads %ld\n", Hq, Hkv);
    return 2;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
    printf("bench-profile: no CUDA device: skipped\n");
    return 77;
  }
  struct cudaDeviceProp prop;
  if (!bench_cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;

  lukv_error err;
  lukv_error_clear(&err);
  lukv_stats_cuda *ctx = NULL;
  if (!lukv_ok(lukv_stats_cuda_create(&ctx, &err), &err)) return 1;

  printf("# bench-profile on %s: one layer, Hq %ld, Hkv %ld, d %ld, D %ld; sink 4, window 32, pool 7, grid %ld, "
         "utility %s; F = %s\n",
         prop.name, Hq, Hkv, d, D, grid, mode == LUKV_UTILITY_MAX ? "max" : "sum",
         future > 0 ? "--future" : "T / --future-div");
  printf("# forward: flash attention over T rows (bf16); stats: lukv_layer_stats_cuda (snapkv + keydiff, "
         "curves to the host); ms per layer, mean of %ld after a warm-up\n",
         reps);
  printf("%7s %7s %6s %10s %10s %8s |", "T", "T_ctx", "F", "forward", "stats", "ratio");
  for (int pt = 1; pt < N_PARTS; pt++) printf(" %9s", part_names[pt]);
  printf("\n");
  int failed = 0;
  for (int ti = 0; ti < nT; ti++) {
    const int T = Ts[ti];
    const int F = (int)(future > 0 ? future : T / future_div);
    const int T_ctx = T - F;
    if (F < 1 || T_ctx <= 36) {
      fprintf(stderr, "bench-profile: T %d with F %d leaves no mid tokens\n", T, F);
      failed = 1;
      continue;
    }
    run r;
    memset(&r, 0, sizeof r);
    r.sh = (lukv_attn_shape){.T = T, .S = T, .n_heads = (int)Hq, .n_kv_heads = (int)Hkv, .head_dim = (int)d,
                             .window = 0};
    const size_t nq = (size_t)T * Hq * d, nk = (size_t)T * Hkv * d, nw = (size_t)D * Hq * d;
    const size_t ht = (size_t)Hkv * T_ctx, G1 = (size_t)grid + 1;
    int ok = bench_cuda_ok(cudaMalloc(&r.qb, 2 * nq), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&r.kb, 2 * nk), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc(&r.vb, 2 * nk), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&r.ob, 2 * nq), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.lse, sizeof(float) * (size_t)Hq * T), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.q, sizeof(float) * nq), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.k, sizeof(float) * nk), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.v, sizeof(float) * nk), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.wo, sizeof(float) * nw), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.vn, sizeof(float) * (size_t)Hq * T_ctx), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.u, sizeof(float) * ht), "cudaMalloc") &&
             bench_cuda_ok(cudaMalloc((void **)&r.score, sizeof(float) * ht * 2), "cudaMalloc");
    r.curves[0] = malloc(sizeof(float) * Hkv * G1);
    r.curves[1] = malloc(sizeof(float) * Hkv * G1);
    r.oracle = malloc(sizeof(float) * Hkv * G1);
    r.total = malloc(sizeof(float) * Hkv);
    r.curves_h = malloc(sizeof(float) * 3 * Hkv * G1);
    ok = ok && r.curves[0] && r.curves[1] && r.oracle && r.total && r.curves_h;
    ok = ok && bench_fill_random_bf16(r.qb, nq, (uint64_t)seed * 3 + 1) && bench_fill_random_bf16(r.kb, nk, (uint64_t)seed * 3 + 2) &&
         bench_fill_random_bf16(r.vb, nk, (uint64_t)seed * 3 + 3) && fill_random_f32(r.wo, nw, 1.0 / sqrt((double)Hq * d), (uint64_t)seed);
    /* The tap's view: f32 copies of the bf16 values the forward used, its lse. */
    ok = ok && flash_once(&r) && bench_cuda_ok(lukv_cuda_bf16_to_f32(r.qb, nq, r.q, 0), "bf16_to_f32") &&
         bench_cuda_ok(lukv_cuda_bf16_to_f32(r.kb, nk, r.k, 0), "bf16_to_f32") &&
         bench_cuda_ok(lukv_cuda_bf16_to_f32(r.vb, nk, r.v, 0), "bf16_to_f32") &&
         bench_cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    r.x = (lukv_layer_view){.T_ctx = T_ctx, .F = F, .n_heads = (int)Hq, .n_kv_heads = (int)Hkv,
                            .head_dim = (int)d, .hidden_size = (int)D, .scale = (float)(1.0 / sqrt((double)d)),
                            .q = r.q, .k = r.k, .v = r.v, .lse = r.lse, .o_proj = r.wo};
    r.p = (lukv_stats_params){.sink = 4, .window = 32, .pool_kernel = 7, .grid = (int)grid, .utility = mode};
    r.ctx = ctx;
    /* As lukv-profile: the layer's Gram matrices once, then every sample's
     * statistics (and vnorm) take them from the view. */
    ok = ok && lukv_ok(lukv_stats_cuda_gram(ctx, 0, &r.x, &r.x.o_gram, &err), &err);
    double fwd = ok ? bench_time_ms(flash_once, &r, (int)reps) : -1, ms[N_PARTS];
    for (int pt = 0; pt < N_PARTS; pt++) ms[pt] = ok ? time_part(&r, pt, (int)reps) : -1;
    if (fwd > 0 && ms[PART_LAYER] > 0) {
      printf("%7d %7d %6d %10.3f %10.3f %8.3f |", T, T_ctx, F, fwd, ms[PART_LAYER], ms[PART_LAYER] / fwd);
      for (int pt = 1; pt < N_PARTS; pt++) printf(" %9.3f", ms[pt]);
      const int tc = lukv_stats_cuda_last_used_tensor_cores(ctx);
      printf("  (column reduction: %s)\n", tc == 1 ? "tensor cores" : tc == 0 ? "f32" : "?");
    } else {
      printf("%7d failed\n", T);
      failed = 1;
    }
    fflush(stdout);
    run_free(&r);
  }
  lukv_stats_cuda_destroy(ctx);
  printf("# ratio = stats / forward (issue 5 target: <= 0.6). Parts are timed alone, each with its own sync;\n"
         "# stats and vnorm use the Gram matrices computed once per layer (gram: that one-time cost).\n");
  printf("# PyTorch peer (same statistics, chunked over query rows, never T x T), on the same GPU:\n");
  for (int ti = 0; ti < nT; ti++) {
    const int T = Ts[ti];
    const int F = (int)(future > 0 ? future : T / future_div);
    printf("#   python3 bench/profile_peer.py --T %d --F %d --heads %ld --kv-heads %ld --head-dim %ld --hidden %ld "
           "--grid %ld --utility %s\n",
           T, F, Hq, Hkv, d, D, grid, mode == LUKV_UTILITY_MAX ? "max" : "sum");
  }
  printf("# per-layer times only; whole-profile tokens/s on this shape (T = 32K):\n"
         "#   build-gpu/profiler/lukv-profile --random-init bench/configs/llama-3.1-8b.json --device cuda "
         "--context-len 28672 --future-len 4096 --samples 2 -o /tmp/8b-profile.h5\n");
  return failed;
}

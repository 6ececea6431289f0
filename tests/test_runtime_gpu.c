/* liblukv, CUDA backend (suite `gpu`): every kernel against its plain-C twin
 * in runtime/backend_cpu.c, through the public API: two caches with the same
 * configuration, one LUKV_BACKEND_CPU and one LUKV_BACKEND_CUDA, fed the
 * same random bf16 inputs (device copies for CUDA).
 *
 *   score   lukv_compress_scores: |gpu - ref| <= 1e-6 + 1e-4 |ref|, the same
 *           -inf pattern (t >= T_b);
 *   select  the kept positions of every segment: equal, except that a token
 *           may swap with another whose reference score is within 1e-6
 *           (relative) of it — a tie the two float paths may order apart;
 *   gather, append  rows bit for bit (lukv_cache_read_segment) wherever the
 *           positions agree, positions of appended rows equal;
 *   decode  |gpu - ref| <= 1e-2 + 1e-2 |ref| (bf16 outputs, f32 softmax in
 *           another order: exp2 and split merges);
 *   graphs  one decode step (append + decode of a layer) captured in a CUDA
 *           graph and replayed, against the CPU backend doing the same steps;
 *           the host lengths only move with lukv_cache_sync; a replay past
 *           the reserve is dropped and reported.
 * Shapes: GQA group 1, 2, 4, 8; d 64 and 128; B 1 and 3 with different
 * T_b; segments of 1 to 5000 tokens.
 *
 * Exits 77 (skipped) before any Check output when no usable CUDA device is
 * present. The probe runs in a child process: CUDA must not be initialised in
 * the parent, whose forked Check children each open their own context.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "formats.h"
#include "lukv.h"
#include "testutil.h"
#include "testutil_gpu.h"

/* ---- helpers -------------------------------------------------------------- */

#define CUDA_OK(call)                                                                          \
  do {                                                                                         \
    cudaError_t e_ = (call);                                                                   \
    ck_assert_msg(e_ == cudaSuccess, "%s: %s (%s)", #call, cudaGetErrorString(e_),             \
                  cudaGetErrorName(e_));                                                       \
  } while (0)

#define OK(cache, call) ck_assert_msg((call) == LUKV_OK, "line %d: %s", __LINE__, lukv_cache_errmsg(cache))

static uint64_t rng_state;
static void seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static double urand(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static void fill(uint16_t *x, size_t n, double amp) {
  for (size_t i = 0; i < n; i++) x[i] = lukv_bf16_from_float((float)((2.0 * urand() - 1.0) * amp));
}
static uint16_t *bf16_alloc(size_t n) {
  uint16_t *p = calloc(n ? n : 1, sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}
static void *dev_copy(const void *host, size_t bytes) {
  void *d = NULL;
  CUDA_OK(cudaMalloc(&d, bytes ? bytes : 16));
  if (bytes) CUDA_OK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
  return d;
}
static void to_host(void *host, const void *dev, size_t bytes) {
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
}
static double bf(uint16_t x) { return (double)lukv_bf16_to_float(x); }

static lukv_cache *make_cache(lukv_backend_kind be, int L, int H, int Hq, int d, int B, int max_ctx,
                              int reserve) {
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = L, cfg.n_kv_heads = H, cfg.n_q_heads = Hq, cfg.head_dim = d;
  cfg.batch = B, cfg.max_context = max_ctx, cfg.decode_reserve = reserve;
  cfg.backend = be;
  lukv_cache *c = NULL;
  ck_assert_msg(lukv_cache_create(&cfg, &c) == LUKV_OK, "%s", lukv_cache_errmsg(NULL));
  return c;
}

/* One prefill batch on the host and its device copies. */
typedef struct batch {
  int B, H, Hq, d, tm, w;
  int32_t T[8];
  uint16_t *k, *v, *qw;      /* host */
  void *dk, *dv, *dqw;       /* device */
} batch;

static batch make_batch(int B, int H, int Hq, int d, int tm, int w, const int32_t *T) {
  batch x = {B, H, Hq, d, tm, w, {0}, NULL, NULL, NULL, NULL, NULL, NULL};
  for (int b = 0; b < B; b++) x.T[b] = T[b];
  const size_t nkv = (size_t)B * H * tm * d, nq = (size_t)B * Hq * w * d;
  x.k = bf16_alloc(nkv), x.v = bf16_alloc(nkv), x.qw = bf16_alloc(nq);
  fill(x.k, nkv, 2.0), fill(x.v, nkv, 1.0), fill(x.qw, nq, 2.0);
  x.dk = dev_copy(x.k, nkv * 2), x.dv = dev_copy(x.v, nkv * 2), x.dqw = dev_copy(x.qw, nq * 2);
  return x;
}
static void free_batch(batch *x) {
  free(x->k), free(x->v), free(x->qw);
  cudaFree(x->dk), cudaFree(x->dv), cudaFree(x->dqw);
}

static lukv_compress_args args_for(const batch *x, int gpu, int layer, const char *scorer,
                                   int sink, int window) {
  lukv_compress_args a;
  lukv_compress_args_init(&a);
  a.layer = layer;
  a.k = gpu ? x->dk : x->k;
  a.v = gpu ? x->dv : x->v;
  a.q_window = gpu ? x->dqw : x->qw;
  a.t_max = x->tm;
  a.context_len = x->T;
  a.scorer = scorer;
  a.sink = sink;
  a.window = window;
  return a;
}

/* |g - r| <= atol + eps |r|, -inf where r is -inf; returns the worst excess. */
static void expect_close(const float *g, const float *r, size_t n, double atol, double eps,
                         const char *what) {
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(r[i]) || isinf(g[i])) {
      ck_assert_msg(g[i] == r[i], "%s[%zu]: gpu %g, ref %g", what, i, (double)g[i], (double)r[i]);
      continue;
    }
    const double e = fabs((double)g[i] - r[i]) - (atol + eps * fabs((double)r[i]));
    if (e > worst || i == 0) worst = e, at = i;
  }
  ck_assert_msg(worst <= 0.0, "%s[%zu]: gpu %.9g, ref %.9g (over by %g)", what, at,
                (double)g[at], (double)r[at], worst);
}

/* Compares segment (layer, b, h) of two caches: keep, length, positions
 * (up to ties of the reference scores sc [t_max] of that head, may be NULL)
 * and rows bit for bit where positions agree. Returns 1 if positions differed. */
static int compare_segment(lukv_cache *cpu, lukv_cache *gpu, int layer, int b, int h, int d,
                           const float *sc) {
  lukv_segment sr, sg;
  OK(cpu, lukv_cache_segment(cpu, layer, b, h, &sr));
  OK(gpu, lukv_cache_segment(gpu, layer, b, h, &sg));
  ck_assert_int_eq(sg.keep, sr.keep);
  ck_assert_int_eq(sg.length, sr.length);
  ck_assert_int_eq(sg.capacity, sr.capacity);
  ck_assert_int_eq(sg.context_len, sr.context_len);
  const int n = sr.length;
  uint16_t *kr = bf16_alloc((size_t)n * d), *vr = bf16_alloc((size_t)n * d);
  uint16_t *kg = bf16_alloc((size_t)n * d), *vg = bf16_alloc((size_t)n * d);
  int32_t *pr = calloc((size_t)n + 1, sizeof *pr), *pg = calloc((size_t)n + 1, sizeof *pg);
  ck_assert_ptr_nonnull(pr);
  ck_assert_ptr_nonnull(pg);
  OK(cpu, lukv_cache_read_segment(cpu, layer, b, h, kr, vr, pr, n));
  OK(gpu, lukv_cache_read_segment(gpu, layer, b, h, kg, vg, pg, n));
  int differ = 0;
  for (int i = 0; i < n; i++) {
    if (pr[i] == pg[i]) {
      ck_assert_msg(memcmp(kr + (size_t)i * d, kg + (size_t)i * d, 2 * (size_t)d) == 0 &&
                        memcmp(vr + (size_t)i * d, vg + (size_t)i * d, 2 * (size_t)d) == 0,
                    "layer %d seq %d head %d row %d (position %d): rows differ", layer, b, h, i,
                    pr[i]);
      continue;
    }
    differ = 1;
    /* Only a tie may swap: both positions' reference scores must be equal
     * within float rounding. */
    ck_assert_msg(sc != NULL && pr[i] < sr.context_len && pg[i] < sr.context_len,
                  "layer %d seq %d head %d row %d: position %d (cpu) vs %d (gpu)", layer, b, h,
                  i, pr[i], pg[i]);
    const double a = sc[pr[i]], c = sc[pg[i]];
    ck_assert_msg(fabs(a - c) <= 1e-6 * fmax(1e-30, fmax(fabs(a), fabs(c))),
                  "layer %d seq %d head %d: position %d (cpu, score %.9g) vs %d (gpu, score "
                  "%.9g) is not a tie",
                  layer, b, h, pr[i], a, pg[i], c);
  }
  free(kr), free(vr), free(kg), free(vg), free(pr), free(pg);
  return differ;
}

/* Compares lukv_decode_attention of both caches on a random q. */
static void compare_decode(lukv_cache *cpu, lukv_cache *gpu, int layer, int B, int Hq, int d,
                           const char *what) {
  const size_t n = (size_t)B * Hq * d;
  uint16_t *q = bf16_alloc(n), *oc = bf16_alloc(n), *og = bf16_alloc(n);
  fill(q, n, 2.0);
  void *dq = dev_copy(q, 2 * n), *dout = dev_copy(og, 2 * n);
  OK(cpu, lukv_decode_attention(cpu, layer, q, oc, 0.0f));
  OK(gpu, lukv_decode_attention(gpu, layer, dq, dout, 0.0f));
  to_host(og, dout, 2 * n);
  float *fc = malloc(sizeof *fc * n), *fg = malloc(sizeof *fg * n);
  for (size_t i = 0; i < n; i++) fc[i] = (float)bf(oc[i]), fg[i] = (float)bf(og[i]);
  expect_close(fg, fc, n, 1e-2, 1e-2, what);
  free(fc), free(fg), free(q), free(oc), free(og);
  cudaFree(dq), cudaFree(dout);
}

/* ---- shapes --------------------------------------------------------------- */

typedef struct shape {
  int B, H, Hq, d, tm, w, sink;
  int32_t T[4];
} shape;

static const shape shapes[] = {
    {1, 2, 2, 64, 700, 32, 4, {700}},                 /* group 1 */
    {3, 2, 4, 128, 600, 16, 4, {600, 1, 333}},       /* group 2, one 1-token prompt */
    {3, 2, 8, 64, 520, 32, 4, {40, 520, 17}},        /* group 4, T < s + w too */
    {1, 1, 8, 128, 5000, 32, 4, {5000}},             /* group 8, a 5000-token segment */
    {3, 2, 16, 128, 1200, 8, 2, {1200, 900, 2}},     /* group 8 */
    {1, 1, 12, 64, 300, 8, 2, {300}},                /* group 12: two decode blocks per group */
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* ---- tests ---------------------------------------------------------------- */

START_TEST(scores_match_cpu) {
  const shape *sp = &shapes[_i];
  seed(100 + (uint64_t)_i);
  batch x = make_batch(sp->B, sp->H, sp->Hq, sp->d, sp->tm, sp->w, sp->T);
  lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 1, sp->H, sp->Hq, sp->d, sp->B, sp->tm, 0);
  lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, 1, sp->H, sp->Hq, sp->d, sp->B, sp->tm, 0);
  const size_t n = (size_t)sp->B * sp->H * sp->tm;
  float *sr = malloc(sizeof *sr * n), *sg = malloc(sizeof *sg * n);
  const char *scorers[] = {"snapkv", "keydiff"};
  for (int si = 0; si < 2; si++)
    for (int pk = 1; pk <= 7; pk += 6) { /* pool kernel 1 and 7 */
      lukv_compress_args ac = args_for(&x, 0, 0, scorers[si], sp->sink, sp->w);
      lukv_compress_args ag = args_for(&x, 1, 0, scorers[si], sp->sink, sp->w);
      ac.pool_kernel = ag.pool_kernel = pk;
      OK(cpu, lukv_compress_scores(cpu, &ac, sr));
      OK(gpu, lukv_compress_scores(gpu, &ag, sg));
      char what[64];
      snprintf(what, sizeof what, "shape %d %s pool %d", _i, scorers[si], pk);
      expect_close(sg, sr, n, 1e-6, 1e-4, what);
    }
  /* No window: snapkv has no evidence and scores 0. */
  lukv_compress_args ac = args_for(&x, 0, 0, "snapkv", sp->sink, 0);
  lukv_compress_args ag = args_for(&x, 1, 0, "snapkv", sp->sink, 0);
  OK(cpu, lukv_compress_scores(cpu, &ac, sr));
  OK(gpu, lukv_compress_scores(gpu, &ag, sg));
  expect_close(sg, sr, n, 0.0, 0.0, "snapkv w=0");
  free(sr), free(sg);
  lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
  free_batch(&x);
}
END_TEST

/* select + gather + append + decode with explicit random keep counts,
 * several decode steps, both scorers. */
START_TEST(compress_append_decode_match_cpu) {
  const shape *sp = &shapes[_i];
  seed(200 + (uint64_t)_i);
  const int reserve = 5;
  batch x = make_batch(sp->B, sp->H, sp->Hq, sp->d, sp->tm, sp->w, sp->T);
  const int S = sp->B * sp->H;
  int32_t keep[16];
  for (int i = 0; i < S; i++) {
    const int T = sp->T[i / sp->H], lo = sp->sink + sp->w < T ? sp->sink + sp->w : T;
    keep[i] = lo + (int32_t)(urand() * (T - lo + 1));
    if (keep[i] > T) keep[i] = T;
  }
  lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 2, sp->H, sp->Hq, sp->d, sp->B, sp->tm, reserve);
  lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, 2, sp->H, sp->Hq, sp->d, sp->B, sp->tm, reserve);
  const size_t nsc = (size_t)sp->B * sp->H * sp->tm;
  float *sc = malloc(sizeof *sc * nsc);
  const char *scorers[] = {"snapkv", "keydiff"};
  int swaps = 0;
  for (int l = 0; l < 2; l++) {
    lukv_compress_args ac = args_for(&x, 0, l, scorers[l], sp->sink, sp->w);
    lukv_compress_args ag = args_for(&x, 1, l, scorers[l], sp->sink, sp->w);
    ac.policy = ag.policy = LUKV_KEEP_EXPLICIT;
    ac.keep = ag.keep = keep;
    OK(cpu, lukv_compress(cpu, &ac));
    OK(gpu, lukv_compress(gpu, &ag));
    OK(cpu, lukv_compress_scores(cpu, &ac, sc));
    for (int i = 0; i < S; i++)
      swaps += compare_segment(cpu, gpu, l, i / sp->H, i % sp->H, sp->d, sc + (size_t)i * sp->tm);
  }
  ck_assert_msg(swaps <= 2, "%d segments ordered ties apart", swaps);
  for (int l = 0; l < 2; l++) compare_decode(cpu, gpu, l, sp->B, sp->Hq, sp->d, "decode step 0");
  const size_t nn = (size_t)S * sp->d;
  uint16_t *kn = bf16_alloc(nn), *vn = bf16_alloc(nn);
  void *dkn = dev_copy(kn, 2 * nn), *dvn = dev_copy(vn, 2 * nn);
  for (int step = 0; step < reserve; step++)
    for (int l = 0; l < 2; l++) {
      fill(kn, nn, 2.0), fill(vn, nn, 1.0);
      CUDA_OK(cudaMemcpy(dkn, kn, 2 * nn, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dvn, vn, 2 * nn, cudaMemcpyHostToDevice));
      OK(cpu, lukv_append(cpu, l, kn, vn));
      OK(gpu, lukv_append(gpu, l, dkn, dvn));
      compare_decode(cpu, gpu, l, sp->B, sp->Hq, sp->d, "decode after append");
    }
  /* Full: both refuse, nothing written. */
  ck_assert_int_eq(lukv_append(cpu, 0, kn, vn), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_append(gpu, 0, dkn, dvn), LUKV_ERR_RANGE);
  OK(gpu, lukv_cache_sync(gpu));
  for (int l = 0; l < 2; l++) {
    lukv_compress_args ac = args_for(&x, 0, l, scorers[l], sp->sink, sp->w);
    OK(cpu, lukv_compress_scores(cpu, &ac, sc));
    for (int i = 0; i < S; i++)
      compare_segment(cpu, gpu, l, i / sp->H, i % sp->H, sp->d, sc + (size_t)i * sp->tm);
  }
  uint64_t hc, fc, hg, fg;
  OK(cpu, lukv_cache_memory(cpu, &hc, &fc));
  OK(gpu, lukv_cache_memory(gpu, &hg, &fg));
  ck_assert(hc == hg && fc == fg);
  free(kn), free(vn), free(sc);
  cudaFree(dkn), cudaFree(dvn);
  lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
  free_batch(&x);
}
END_TEST

/* Selection rules bit for bit: ties (duplicate keys, zero keys scoring +0 or
 * -0) go to the lower position; NaN scores (a NaN key poisons keydiff's
 * mean, so every score is NaN) rank last, i.e. the lowest positions win. */
START_TEST(select_ties_and_nan) {
  seed(700);
  const int H = 2, Hq = 2, d = 64, B = 1, tm = 300, sink = 2, w = 4;
  const int32_t T[1] = {300}, keep[2] = {100, 57};
  for (int variant = 0; variant < 2; variant++) {
    batch x = make_batch(B, H, Hq, d, tm, w, T);
    uint16_t rows[3][64];
    fill(&rows[0][0], 3 * 64, 1.0);
    for (int h = 0; h < H; h++)
      for (int t = 0; t < tm; t++) {
        uint16_t *dst = x.k + ((size_t)h * tm + t) * d;
        if (t % 7 == 3) memset(dst, 0, 2 * (size_t)d); /* zero key: scores 0 */
        else memcpy(dst, rows[t % 3], 2 * (size_t)d);  /* three distinct keys */
        if (variant == 1 && t == 150) dst[5] = 0x7fc0;  /* NaN */
      }
    CUDA_OK(cudaMemcpy(x.dk, x.k, 2 * (size_t)B * H * tm * d, cudaMemcpyHostToDevice));
    lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 1, H, Hq, d, B, tm, 0);
    lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, 1, H, Hq, d, B, tm, 0);
    lukv_compress_args ac = args_for(&x, 0, 0, "keydiff", sink, w);
    lukv_compress_args ag = args_for(&x, 1, 0, "keydiff", sink, w);
    ac.policy = ag.policy = LUKV_KEEP_EXPLICIT;
    ac.keep = ag.keep = keep;
    OK(cpu, lukv_compress(cpu, &ac));
    OK(gpu, lukv_compress(gpu, &ag));
    for (int h = 0; h < H; h++) ck_assert_int_eq(compare_segment(cpu, gpu, 0, 0, h, d, NULL), 0);
    lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
    free_batch(&x);
  }
}
END_TEST

/* A budgets table on disk with random keep fractions. */
static const char *write_table(int L, int H, int Hq, int d, int sink, int window) {
  static const float rho[2] = {0.5f, 0.8f};
  float *frac = malloc(sizeof *frac * 2 * (size_t)L * H);
  double nan2[2] = {NAN, NAN};
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < L * H; i++) frac[(size_t)r * L * H + i] = (float)(urand() * (1.0 - 0.4 * r));
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  b.model.model_name = (char *)"gpu-test-model";
  b.model.model_hash = (char *)"hash-gpu";
  b.model.n_layers = L, b.model.n_kv_heads = H, b.model.n_q_heads = Hq, b.model.head_dim = d;
  b.scorer = (char *)"snapkv";
  b.aggregation = (char *)"mean-curve";
  b.solver = (char *)"test";
  b.sink = sink, b.window = window, b.grid = 256, b.context_len = 64;
  b.n_ratios = 2;
  b.compression = (float *)rho;
  b.keep_fraction = frac;
  b.report_greedy = b.report_lp_bound = b.report_exact = b.report_uniform = b.report_pyramid = nan2;
  const char *path = lukv_test_path("budgets.h5");
  lukv_error e = {LUKV_OK, ""};
  ck_assert_msg(lukv_budgets_write(path, &b, &e) == LUKV_OK, "%s", e.msg);
  free(frac);
  return path;
}

/* The whole API with each allocator: same keep counts, positions, rows,
 * decode outputs and memory figures. */
START_TEST(whole_api_policies) {
  lukv_test_tmpdir_setup("lukv-runtime-gpu");
  seed(300);
  const int L = 3, H = 2, Hq = 8, d = 128, B = 3, tm = 800, w = 16, sink = 4, reserve = 3;
  const int32_t T[3] = {800, 123, 450};
  lukv_table *table = NULL;
  ck_assert_int_eq(lukv_table_open(write_table(L, H, Hq, d, sink, w), &table), LUKV_OK);
  const lukv_keep_policy pol[] = {LUKV_KEEP_TABLE, LUKV_KEEP_UNIFORM, LUKV_KEEP_PYRAMID,
                                  LUKV_KEEP_ADAKV};
  for (size_t pi = 0; pi < sizeof pol / sizeof pol[0]; pi++) {
    lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, L, H, Hq, d, B, tm, reserve);
    lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, L, H, Hq, d, B, tm, reserve);
    float *sc = malloc(sizeof *sc * (size_t)B * H * tm);
    for (int l = 0; l < L; l++) {
      batch x = make_batch(B, H, Hq, d, tm, w, T);
      lukv_compress_args ac = args_for(&x, 0, l, NULL, LUKV_FROM_TABLE, LUKV_FROM_TABLE);
      lukv_compress_args ag = args_for(&x, 1, l, NULL, LUKV_FROM_TABLE, LUKV_FROM_TABLE);
      ac.table = ag.table = table;
      ac.policy = ag.policy = pol[pi];
      ac.ratio = ag.ratio = 0.8;
      OK(cpu, lukv_compress(cpu, &ac));
      OK(gpu, lukv_compress(gpu, &ag));
      OK(cpu, lukv_compress_scores(cpu, &ac, sc));
      for (int i = 0; i < B * H; i++)
        compare_segment(cpu, gpu, l, i / H, i % H, d, sc + (size_t)i * tm);
      free_batch(&x);
    }
    const size_t nn = (size_t)B * H * d;
    uint16_t *kn = bf16_alloc(nn), *vn = bf16_alloc(nn);
    void *dkn = dev_copy(kn, 2 * nn), *dvn = dev_copy(vn, 2 * nn);
    for (int step = 0; step < reserve; step++)
      for (int l = 0; l < L; l++) {
        fill(kn, nn, 2.0), fill(vn, nn, 1.0);
        CUDA_OK(cudaMemcpy(dkn, kn, 2 * nn, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(dvn, vn, 2 * nn, cudaMemcpyHostToDevice));
        OK(cpu, lukv_append(cpu, l, kn, vn));
        OK(gpu, lukv_append(gpu, l, dkn, dvn));
        compare_decode(cpu, gpu, l, B, Hq, d, "whole api decode");
      }
    uint64_t hc, fc, hg, fg;
    OK(cpu, lukv_cache_memory(cpu, &hc, &fc));
    OK(gpu, lukv_cache_memory(gpu, &hg, &fg));
    ck_assert(hc == hg && fc == fg);
    free(kn), free(vn), free(sc);
    cudaFree(dkn), cudaFree(dvn);
    lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
  }
  lukv_table_close(table);
  lukv_test_tmpdir_teardown();
}
END_TEST

/* keep 0 (s = w = 0): decode of an empty segment is zeros on both. */
START_TEST(empty_segments) {
  seed(400);
  const int H = 2, Hq = 4, d = 64, B = 1, tm = 50;
  const int32_t T[1] = {50}, keep[2] = {0, 7};
  batch x = make_batch(B, H, Hq, d, tm, 0, T);
  lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 1, H, Hq, d, B, tm, 2);
  lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, 1, H, Hq, d, B, tm, 2);
  lukv_compress_args ac = args_for(&x, 0, 0, "keydiff", 0, 0);
  lukv_compress_args ag = args_for(&x, 1, 0, "keydiff", 0, 0);
  ac.policy = ag.policy = LUKV_KEEP_EXPLICIT;
  ac.keep = ag.keep = keep;
  OK(cpu, lukv_compress(cpu, &ac));
  OK(gpu, lukv_compress(gpu, &ag));
  compare_decode(cpu, gpu, 0, B, Hq, d, "empty segment");
  float sc[100];
  OK(cpu, lukv_compress_scores(cpu, &ac, sc));
  for (int h = 0; h < H; h++) compare_segment(cpu, gpu, 0, 0, h, d, sc + h * tm);
  lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
  free_batch(&x);
}
END_TEST

/* Shapes and pointers the CUDA backend refuses, with a message. */
START_TEST(cuda_refusals) {
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = 1, cfg.n_kv_heads = 1, cfg.n_q_heads = 1, cfg.batch = 1, cfg.max_context = 8;
  cfg.backend = LUKV_BACKEND_CUDA;
  lukv_cache *c = (lukv_cache *)&c;
  const int bad_d[] = {4, 12, 264};
  for (size_t i = 0; i < 3; i++) {
    cfg.head_dim = bad_d[i];
    ck_assert_int_eq(lukv_cache_create(&cfg, &c), LUKV_ERR_UNSUPPORTED);
    ck_assert_ptr_null(c);
    ck_assert_str_ne(lukv_cache_errmsg(NULL), "");
  }
  /* More segments per layer than grid y holds: refused before anything is allocated. */
  cfg.head_dim = 8;
  cfg.n_kv_heads = cfg.n_q_heads = 8;
  cfg.batch = 8191; /* 65528 segments: fits */
  ck_assert_msg(lukv_cache_create(&cfg, &c) == LUKV_OK, "%s", lukv_cache_errmsg(NULL));
  lukv_cache_destroy(c);
  cfg.batch = 8192; /* 65536 */
  ck_assert_int_eq(lukv_cache_create(&cfg, &c), LUKV_ERR_UNSUPPORTED);
  ck_assert_ptr_null(c);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(NULL), "65535 segments"));
  cfg.n_kv_heads = cfg.n_q_heads = 1, cfg.batch = 1;
  /* Misaligned device pointers. */
  seed(500);
  const int32_t T[1] = {40};
  batch x = make_batch(1, 1, 1, 64, 40, 8, T);
  lukv_cache *g = make_cache(LUKV_BACKEND_CUDA, 1, 1, 1, 64, 1, 40, 2);
  lukv_compress_args a = args_for(&x, 1, 0, "snapkv", 4, 8);
  a.policy = LUKV_KEEP_UNIFORM;
  a.ratio = 0.5;
  OK(g, lukv_compress(g, &a));
  char *buf = NULL;
  CUDA_OK(cudaMalloc((void **)&buf, 1024));
  ck_assert_int_eq(lukv_append(g, 0, buf + 2, buf + 256), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_decode_attention(g, 0, buf, buf + 512 + 8, 0.0f), LUKV_ERR_INVALID);
  ck_assert_str_ne(lukv_cache_errmsg(g), "");
  lukv_segment sg;
  OK(g, lukv_cache_segment(g, 0, 0, 0, &sg));
  ck_assert_int_eq(sg.length, sg.keep); /* nothing appended */
  /* A stream on the CPU backend is refused; NULL is fine. */
  lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 1, 1, 1, 64, 1, 40, 2);
  ck_assert_int_eq(lukv_cache_set_stream(cpu, (void *)buf), LUKV_ERR_UNSUPPORTED);
  OK(cpu, lukv_cache_set_stream(cpu, NULL));
  OK(cpu, lukv_cache_sync(cpu));
  cudaFree(buf);
  lukv_cache_destroy(cpu), lukv_cache_destroy(g);
  free_batch(&x);
}
END_TEST

/* One decode step of a layer (append + decode) captured in a CUDA graph and
 * replayed with fresh inputs each time, against the CPU backend; then the
 * host view after lukv_cache_sync, and a replay past the reserve. */
START_TEST(graph_capture_replay) {
  const shape *sp = &shapes[_i];
  seed(600 + (uint64_t)_i);
  const int reserve = 6, replays = 5;
  batch x = make_batch(sp->B, sp->H, sp->Hq, sp->d, sp->tm, sp->w, sp->T);
  lukv_cache *cpu = make_cache(LUKV_BACKEND_CPU, 1, sp->H, sp->Hq, sp->d, sp->B, sp->tm, reserve);
  lukv_cache *gpu = make_cache(LUKV_BACKEND_CUDA, 1, sp->H, sp->Hq, sp->d, sp->B, sp->tm, reserve);
  cudaStream_t st;
  CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  OK(gpu, lukv_cache_set_stream(gpu, st));
  lukv_compress_args ac = args_for(&x, 0, 0, "snapkv", sp->sink, sp->w);
  lukv_compress_args ag = args_for(&x, 1, 0, "snapkv", sp->sink, sp->w);
  ac.policy = ag.policy = LUKV_KEEP_UNIFORM;
  ac.ratio = ag.ratio = 0.7;
  OK(cpu, lukv_compress(cpu, &ac));
  OK(gpu, lukv_compress(gpu, &ag));
  /* docs/runtime.md: the engine may reuse its prefill K / V once lukv_compress
   * returns, here from the legacy stream, which the cache's non-blocking
   * stream does not wait for (cudasim reports a race if the call returned
   * before its gather had run). */
  const size_t nkv = (size_t)sp->B * sp->H * sp->tm * sp->d * 2;
  CUDA_OK(cudaMemset(x.dk, 0, nkv));
  CUDA_OK(cudaMemset(x.dv, 0, nkv));
  const int S = sp->B * sp->H;
  const size_t nn = (size_t)S * sp->d, nq = (size_t)sp->B * sp->Hq * sp->d;
  uint16_t *kn = bf16_alloc(nn), *vn = bf16_alloc(nn), *q = bf16_alloc(nq);
  uint16_t *oc = bf16_alloc(nq), *og = bf16_alloc(nq);
  void *dkn = dev_copy(kn, 2 * nn), *dvn = dev_copy(vn, 2 * nn), *dq = dev_copy(q, 2 * nq);
  void *dout = dev_copy(og, 2 * nq);
  lukv_segment before, after;
  OK(gpu, lukv_cache_segment(gpu, 0, 0, 0, &before));

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  int rc1 = lukv_append(gpu, 0, dkn, dvn);
  int rc2 = lukv_decode_attention(gpu, 0, dq, dout, 0.0f);
  CUDA_OK(cudaStreamEndCapture(st, &graph));
  ck_assert_msg(rc1 == LUKV_OK && rc2 == LUKV_OK, "%s", lukv_cache_errmsg(gpu));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  OK(gpu, lukv_cache_segment(gpu, 0, 0, 0, &after));
  ck_assert_int_eq(after.length, before.length); /* capture ran nothing */

  float *fc = malloc(sizeof *fc * nq), *fg = malloc(sizeof *fg * nq);
  for (int r = 0; r < replays; r++) {
    fill(kn, nn, 2.0), fill(vn, nn, 1.0), fill(q, nq, 2.0);
    CUDA_OK(cudaMemcpyAsync(dkn, kn, 2 * nn, cudaMemcpyHostToDevice, st));
    CUDA_OK(cudaMemcpyAsync(dvn, vn, 2 * nn, cudaMemcpyHostToDevice, st));
    CUDA_OK(cudaMemcpyAsync(dq, q, 2 * nq, cudaMemcpyHostToDevice, st));
    CUDA_OK(cudaGraphLaunch(exec, st));
    CUDA_OK(cudaMemcpyAsync(og, dout, 2 * nq, cudaMemcpyDeviceToHost, st));
    CUDA_OK(cudaStreamSynchronize(st));
    OK(cpu, lukv_append(cpu, 0, kn, vn));
    OK(cpu, lukv_decode_attention(cpu, 0, q, oc, 0.0f));
    for (size_t i = 0; i < nq; i++) fc[i] = (float)bf(oc[i]), fg[i] = (float)bf(og[i]);
    char what[64];
    snprintf(what, sizeof what, "shape %d replay %d", _i, r);
    expect_close(fg, fc, nq, 1e-2, 1e-2, what);
  }
  OK(gpu, lukv_cache_sync(gpu));
  OK(gpu, lukv_cache_segment(gpu, 0, 0, 0, &after));
  ck_assert_int_eq(after.length, before.length + replays);
  float *sc = malloc(sizeof *sc * (size_t)S * sp->tm);
  OK(cpu, lukv_compress_scores(cpu, &ac, sc));
  for (int i = 0; i < S; i++)
    compare_segment(cpu, gpu, 0, i / sp->H, i % sp->H, sp->d, sc + (size_t)i * sp->tm);
  /* reserve - replays = 1 row left: the next replay fits, the one after is
   * dropped and reported once. */
  CUDA_OK(cudaGraphLaunch(exec, st));
  CUDA_OK(cudaGraphLaunch(exec, st));
  CUDA_OK(cudaStreamSynchronize(st));
  ck_assert_int_eq(lukv_cache_sync(gpu), LUKV_ERR_RANGE);
  ck_assert_str_ne(lukv_cache_errmsg(gpu), "");
  OK(gpu, lukv_cache_sync(gpu));
  OK(gpu, lukv_cache_segment(gpu, 0, 0, 0, &after));
  ck_assert_int_eq(after.length, after.capacity);
  ck_assert_int_eq(lukv_append(gpu, 0, dkn, dvn), LUKV_ERR_RANGE);

  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  free(fc), free(fg), free(sc), free(kn), free(vn), free(q), free(oc), free(og);
  cudaFree(dkn), cudaFree(dvn), cudaFree(dq), cudaFree(dout);
  lukv_cache_destroy(cpu), lukv_cache_destroy(gpu);
  CUDA_OK(cudaStreamDestroy(st));
  free_batch(&x);
}
END_TEST

static Suite *gpu_suite(void) {
  Suite *s = suite_create("runtime-gpu");
  TCase *t = tcase_create("kernels");
  tcase_set_timeout(t, 600);
  tcase_add_loop_test(t, scores_match_cpu, 0, N_SHAPES);
  tcase_add_loop_test(t, compress_append_decode_match_cpu, 0, N_SHAPES);
  tcase_add_test(t, select_ties_and_nan);
  tcase_add_test(t, whole_api_policies);
  tcase_add_test(t, empty_segments);
  tcase_add_test(t, cuda_refusals);
  tcase_add_loop_test(t, graph_capture_replay, 0, N_SHAPES);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  if (lukv_test_gpu_probe("test-runtime-gpu") != 0) return 77;
  return lukv_test_run(gpu_suite(), CK_NORMAL);
}

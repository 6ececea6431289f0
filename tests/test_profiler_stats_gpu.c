/* Profiler statistics on the GPU (profiler/stats_cuda.h) against their CPU
 * twins (profiler/stats.h) on the SAME f32 inputs. Suite gpu.
 *
 * Exits 77 (skipped) before any Check output when no usable CUDA device is
 * present; the probe runs in a child process so that CUDA is not initialised
 * in the parent, whose forked Check children each open their own context.
 *
 * Tolerances (|gpu − cpu| <= rtol·|cpu| + atol·max|cpu| elementwise):
 *  - vnorm: rtol 1e-5, atol 1e-7. Both sides use the same Gram formula in
 *    f32 GEMMs (cuBLAS vs OpenBLAS: only the summation order differs, ~1e-7
 *    relative) and double for the rest.
 *  - utility, snapkv: rtol 2e-5, atol 1e-7. A probability is exp(s − lse)
 *    with s an f32 dot product over d <= 128 terms; its rounding error is
 *    ~1e-6 absolute on each side for these inputs (|s| of a few units), and
 *    exp turns an absolute error of s into the same relative error of the
 *    probability; reductions are in double on both sides. 2e-5 leaves a
 *    margin of ~4 over the worst element seen in the analysis; the measured
 *    maximum is printed.
 *  - keydiff: atol 1e-6 (scores in [−1, 1]; both sides compute in double and
 *    round once, so differences are a float ulp at most).
 *  - curves (lukv_stats_cuda_curves on identical u and scores): bit for bit,
 *    ties included (the same total order, the same double suffix sums).
 *  - a whole layer (lukv_layer_stats_cuda vs lukv_layer_stats):
 *      * exactly the guarded lukv_stats_curve of the GPU's own utility and
 *        scores (so the curve stage adds no error at all);
 *      * oracle curves and utility_total within
 *            B = 2e-5·total + 1e-7·n_mid·max u + 1e-6·total
 *        (a curve point is the sum of the n − m smallest utilities, which
 *        moves by at most Σ_j |Δu_j| when the utilities move; the last term
 *        covers the f32 rounding of the two sums);
 *      * scorer curves within the same B when both sides rank that head's
 *        mid tokens identically; otherwise every rank where the rankings
 *        differ must hold tokens whose CPU scores are within the score
 *        tolerance of each other (a near-tie that f32 rounding may order
 *        either way), and the head is reported, not compared pointwise.
 */
#include <check.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "formats.h"
#include "stats.h"
#include "stats_cuda.h"
#include "testutil.h"
#include "testutil_gpu.h"

#define CUDA_OK(call)                                                                                   \
  do {                                                                                                  \
    cudaError_t e_ = (call);                                                                            \
    ck_assert_msg(e_ == cudaSuccess, "%s: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
  } while (0)

#define OK(call)                                                        \
  do {                                                                  \
    lukv_error err_;                                                    \
    lukv_error_clear(&err_);                                            \
    int rc_ = (call);                                                   \
    ck_assert_msg(rc_ == LUKV_OK, "%s: %d: %s", #call, rc_, err_.msg);  \
  } while (0)

/* ---- random inputs ------------------------------------------------------------ */

typedef struct {
  uint64_t s;
} rng_t;

static double rng_unif(rng_t *r) {
  return ((double)(lukv_test_splitmix64(&r->s) >> 11) + 0.5) * 0x1.0p-53;
}
static double rng_normal(rng_t *r) {
  return sqrt(-2.0 * log(rng_unif(r))) * cos(6.283185307179586 * rng_unif(r));
}
static void fill_normal(rng_t *r, float *x, size_t n, double sd) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(r));
}

/* One layer on the host (the CPU twin's view) and its device copy (the
 * GPU's view): the same f32 values. */
typedef struct {
  lukv_layer_view x, xd;
  float *q, *k, *v, *lse, *wo;     /* host */
  float *dq, *dk, *dv, *dlse, *dwo; /* device */
} layer_t;

static void *dalloc(size_t bytes) {
  void *p = NULL;
  CUDA_OK(cudaMalloc(&p, bytes ? bytes : 1));
  return p;
}

static void *to_dev(const void *h, size_t bytes) {
  void *p = dalloc(bytes);
  CUDA_OK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
  return p;
}

static void from_dev(void *h, const void *d, size_t bytes) {
  CUDA_OK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* lse[q, i] of the full causal softmax of scale·q_i·k_j, j <= i: f32 scores
 * from sgemm tiles, the log-sum-exp in double. Any lse would do for a twin
 * comparison; the true one keeps the probabilities realistic (<= 1). */
static void make_lse(layer_t *L) {
  const lukv_layer_view *x = &L->x;
  const int T = x->T_ctx + x->F, Hq = x->n_heads, Hkv = x->n_kv_heads, d = x->head_dim;
  const int group = Hq / Hkv, TR = 128;
  float *buf = malloc(sizeof(float) * (size_t)TR * T);
  ck_assert_ptr_nonnull(buf);
  for (int q = 0; q < Hq; q++) {
    const int h = q / group;
    for (int i0 = 0; i0 < T; i0 += TR) {
      const int nr = T - i0 < TR ? T - i0 : TR, kend = i0 + nr;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, kend, d, x->scale,
                  L->q + ((size_t)i0 * Hq + q) * d, Hq * d, L->k + (size_t)h * d, Hkv * d, 0.0f, buf,
                  kend);
      for (int r = 0; r < nr; r++) {
        const int i = i0 + r;
        const float *s = buf + (size_t)r * kend;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= i; j++) mx = fmax(mx, s[j]);
        for (int j = 0; j <= i; j++) sum += exp(s[j] - mx);
        L->lse[(size_t)q * T + i] = (float)(mx + log(sum));
      }
    }
  }
  free(buf);
}

/* Set by the *_bf16 tests: q, k and v rounded to bf16 values (what the CUDA
 * engine's tap hands over), which sends the column reductions to the
 * tensor-core kernel and lets the value norms (d 64, 128) skip the products
 * of v's low parts. Each Check test runs in its own process. */
static int bf16_inputs = 0;

static float bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u; /* to nearest even; inputs are finite */
  memcpy(&x, &u, sizeof x);
  return x;
}

static void layer_make(layer_t *L, uint64_t seed, int T_ctx, int F, int Hq, int Hkv, int d, int D) {
  rng_t r = {seed};
  const int T = T_ctx + F;
  memset(L, 0, sizeof *L);
  const size_t nq = (size_t)T * Hq * d, nk = (size_t)T * Hkv * d, nl = (size_t)Hq * T,
               nw = (size_t)D * Hq * d;
  L->q = malloc(sizeof(float) * nq);
  L->k = malloc(sizeof(float) * nk);
  L->v = malloc(sizeof(float) * nk);
  L->lse = malloc(sizeof(float) * nl);
  L->wo = malloc(sizeof(float) * nw);
  ck_assert(L->q && L->k && L->v && L->lse && L->wo);
  /* As the CPU test: queries hotter than keys (peaked attention), keys with a
   * shared offset (a real KeyDiff anchor). */
  fill_normal(&r, L->q, nq, 1.5);
  fill_normal(&r, L->k, nk, 1.0);
  fill_normal(&r, L->v, nk, 1.0);
  fill_normal(&r, L->wo, nw, 1.0 / sqrt((double)Hq * d));
  for (int j = 0; j < T; j++)
    for (int h = 0; h < Hkv; h++) L->k[((size_t)j * Hkv + h) * d] += 1.0f;
  if (bf16_inputs) {
    for (size_t i = 0; i < nq; i++) L->q[i] = bf16_round(L->q[i]);
    for (size_t i = 0; i < nk; i++) L->k[i] = bf16_round(L->k[i]);
    for (size_t i = 0; i < nk; i++) L->v[i] = bf16_round(L->v[i]);
  }
  L->x = (lukv_layer_view){.T_ctx = T_ctx, .F = F, .n_heads = Hq, .n_kv_heads = Hkv,
                           .head_dim = d, .hidden_size = D, .scale = (float)(1.0 / sqrt(d)),
                           .q = L->q, .k = L->k, .v = L->v, .lse = L->lse, .o_proj = L->wo};
  make_lse(L);
  L->dq = to_dev(L->q, sizeof(float) * nq);
  L->dk = to_dev(L->k, sizeof(float) * nk);
  L->dv = to_dev(L->v, sizeof(float) * nk);
  L->dlse = to_dev(L->lse, sizeof(float) * nl);
  L->dwo = to_dev(L->wo, sizeof(float) * nw);
  L->xd = L->x;
  L->xd.q = L->dq, L->xd.k = L->dk, L->xd.v = L->dv, L->xd.lse = L->dlse, L->xd.o_proj = L->dwo;
}

static void layer_free(layer_t *L) {
  free(L->q), free(L->k), free(L->v), free(L->lse), free(L->wo);
  cudaFree(L->dq), cudaFree(L->dk), cudaFree(L->dv), cudaFree(L->dlse), cudaFree(L->dwo);
}

/* ---- comparisons ------------------------------------------------------------------ */

static double max_abs(const float *a, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
  return m;
}

/* Asserts |g − c| <= rtol·|c| + atol·max|c| elementwise; returns the largest
 * |g − c| / (|c| + atol·max|c|) seen (printed by the callers for the record). */
static double expect_close(const char *what, const char *shape, const float *g, const float *c, size_t n,
                           double rtol, double atol) {
  const double M = max_abs(c, n), floor_ = atol * M;
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double diff = fabs((double)g[i] - (double)c[i]);
    const double tol = rtol * fabs((double)c[i]) + floor_;
    ck_assert_msg(diff <= tol || (g[i] == c[i]), "%s [%s] element %zu: gpu %.9g cpu %.9g (|diff| %.3g > %.3g)",
                  what, shape, i, (double)g[i], (double)c[i], diff, tol);
    const double den = fabs((double)c[i]) + floor_;
    if (den > 0) worst = fmax(worst, diff / den);
  }
  return worst;
}

/* ---- shapes ------------------------------------------------------------------------ */

typedef struct {
  int Hkv, group, d, T_ctx, F;
} shape_t;

/* GQA 1/2/4, d 32/64/128, T_ctx 1..3000, F 1..300; tile edges (63/64/65),
 * single tokens and lengths that are not multiples of anything. */
static const shape_t SHAPES[] = {
    {1, 1, 32, 1, 1},      {2, 2, 64, 17, 5},     {2, 4, 128, 64, 64},    {1, 4, 32, 65, 63},
    {4, 1, 64, 300, 300},  {2, 2, 128, 1000, 129}, {2, 4, 128, 3000, 300}, {1, 2, 32, 3000, 1},
    {3, 2, 64, 777, 33},   {1, 1, 128, 129, 257},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

static void shape_name(const shape_t *s, char *buf, size_t n) {
  snprintf(buf, n, "Hkv %d x group %d, d %d, T_ctx %d, F %d", s->Hkv, s->group, s->d, s->T_ctx, s->F);
}

static void make_shape(layer_t *L, const shape_t *s, uint64_t seed) {
  const int Hq = s->Hkv * s->group;
  /* D = Hq·d as in Llama, at most 512 to keep the CPU twin quick. */
  int D = Hq * s->d;
  if (D > 512) D = 512;
  layer_make(L, seed, s->T_ctx, s->F, Hq, s->Hkv, s->d, D);
}

/* ---- vnorm -------------------------------------------------------------------------- */

static void vnorm_cases(void) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  for (size_t i = 0; i < N_SHAPES; i++) {
    const shape_t *s = &SHAPES[i];
    char name[128];
    shape_name(s, name, sizeof name);
    layer_t L;
    make_shape(&L, s, 100 + i);
    const size_t n = (size_t)L.x.n_heads * L.x.T_ctx;
    float *cpu = malloc(sizeof(float) * n), *gpu = malloc(sizeof(float) * n);
    float *dvn = dalloc(sizeof(float) * n);
    ck_assert(cpu && gpu);
    OK(lukv_stats_vnorm(&L.x, cpu, &err_));
    OK(lukv_stats_cuda_vnorm(c, &L.xd, dvn, &err_));
    from_dev(gpu, dvn, sizeof(float) * n);
    double w = expect_close("vnorm", name, gpu, cpu, n, 1e-5, 1e-7);
    double sum = 0.0;
    for (size_t t = 0; t < n; t++) sum += gpu[t];
    ck_assert_msg(fabs(sum - 1.0) < 1e-5, "vnorm [%s]: layer sum %.9g", name, sum);
    printf("vnorm%s [%s]: max relative difference %.3g\n", bf16_inputs ? " (bf16 inputs)" : "  ", name, w);
    /* The Gram matrices computed once (a slot per layer, as lukv-profile does):
     * the same bits; and against the CPU's lukv_stats_gram. */
    const float *dgram = NULL;
    OK(lukv_stats_cuda_gram(c, (int)i, &L.xd, &dgram, &err_));
    lukv_layer_view y = L.xd;
    y.o_gram = dgram, y.o_proj = NULL, y.hidden_size = 0;
    float *again = malloc(sizeof(float) * n);
    ck_assert(again);
    OK(lukv_stats_cuda_vnorm(c, &y, dvn, &err_));
    from_dev(again, dvn, sizeof(float) * n);
    ck_assert_msg(memcmp(again, gpu, sizeof(float) * n) == 0, "vnorm [%s]: with o_gram, other bits", name);
    const size_t ng = (size_t)L.x.n_heads * L.x.head_dim * L.x.head_dim;
    float *gc = malloc(sizeof(float) * ng), *gg = malloc(sizeof(float) * ng);
    ck_assert(gc && gg);
    OK(lukv_stats_gram(&L.x, gc, &err_));
    from_dev(gg, dgram, sizeof(float) * ng);
    expect_close("gram", name, gg, gc, ng, 1e-5, 1e-6);
    /* The cuBLAS f32 path on every head dim (the default takes it for d 32 only). */
    OK(lukv_stats_cuda_set_vnorm_f32(c, 1, &err_));
    OK(lukv_stats_cuda_vnorm(c, &y, dvn, &err_));
    OK(lukv_stats_cuda_set_vnorm_f32(c, 0, &err_));
    from_dev(again, dvn, sizeof(float) * n);
    const double wf = expect_close("vnorm f32 path", name, again, cpu, n, 1e-5, 1e-7);
    printf("vnorm%s [%s]: cuBLAS f32 path: max relative difference %.3g\n", bf16_inputs ? " (bf16 inputs)" : "  ",
           name, wf);
    free(again), free(gc), free(gg);
    free(cpu), free(gpu), cudaFree(dvn);
    layer_free(&L);
  }
  lukv_stats_cuda_destroy(c);
}

START_TEST(test_vnorm) { vnorm_cases(); }
END_TEST

START_TEST(test_vnorm_bf16) {
  bf16_inputs = 1;
  vnorm_cases();
}
END_TEST

/* ---- utility -------------------------------------------------------------------------- */

/* Which column-reduction kernel ran: the tensor-core one exactly when the
 * inputs are bf16 values and the head dim allows it. */
static void expect_path(lukv_stats_cuda *c, const layer_t *L, const char *name) {
  const int want = bf16_inputs && L->x.head_dim % 16 == 0;
  const int got = lukv_stats_cuda_last_used_tensor_cores(c);
  ck_assert_msg(got == want, "[%s]: column reduction on %s, expected %s", name,
                got == 1 ? "tensor cores" : got == 0 ? "f32" : "nothing", want ? "tensor cores" : "f32");
}

static void utility_cases(void) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  for (size_t i = 0; i < N_SHAPES; i++) {
    const shape_t *s = &SHAPES[i];
    char name[128];
    shape_name(s, name, sizeof name);
    layer_t L;
    make_shape(&L, s, 200 + i);
    const size_t nv = (size_t)L.x.n_heads * L.x.T_ctx, nu = (size_t)L.x.n_kv_heads * L.x.T_ctx;
    float *vn = malloc(sizeof(float) * nv), *cpu = malloc(sizeof(float) * nu), *gpu = malloc(sizeof(float) * nu);
    ck_assert(vn && cpu && gpu);
    /* The CPU's vnorm on both sides: this compares the utility kernel alone. */
    OK(lukv_stats_vnorm(&L.x, vn, &err_));
    float *dvn = to_dev(vn, sizeof(float) * nv), *du = dalloc(sizeof(float) * nu);
    for (int mode = 0; mode < 2; mode++) {
      OK(lukv_stats_utility(&L.x, vn, (lukv_utility_mode)mode, cpu, &err_));
      OK(lukv_stats_cuda_utility(c, &L.xd, dvn, (lukv_utility_mode)mode, du, &err_));
      from_dev(gpu, du, sizeof(float) * nu);
      double w = expect_close(mode ? "utility sum" : "utility max", name, gpu, cpu, nu, 2e-5, 1e-7);
      expect_path(c, &L, name);
      printf("utility %s%s [%s]: max relative difference %.3g\n", mode ? "sum" : "max",
             bf16_inputs ? " (bf16 inputs)" : "", name, w);
    }
    free(vn), free(cpu), free(gpu), cudaFree(dvn), cudaFree(du);
    layer_free(&L);
  }
  lukv_stats_cuda_destroy(c);
}

START_TEST(test_utility) { utility_cases(); }
END_TEST

START_TEST(test_utility_bf16) {
  bf16_inputs = 1;
  utility_cases();
}
END_TEST

/* ---- scorers ---------------------------------------------------------------------------- */

static void snapkv_cases(void) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  const int windows[] = {0, 32, 1, 100}, pools[] = {1, 7, 3};
  for (size_t i = 0; i < N_SHAPES; i++) {
    const shape_t *s = &SHAPES[i];
    char name[160];
    layer_t L;
    make_shape(&L, s, 300 + i);
    const size_t n = (size_t)L.x.n_kv_heads * L.x.T_ctx;
    float *cpu = malloc(sizeof(float) * n), *gpu = malloc(sizeof(float) * n), *dsc = dalloc(sizeof(float) * n);
    ck_assert(cpu && gpu);
    for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++)
      for (size_t pi = 0; pi < sizeof pools / sizeof pools[0]; pi++) {
        const int w = windows[wi], p = pools[pi];
        if (w > L.x.T_ctx) continue;
        char base[128];
        shape_name(s, base, sizeof base);
        snprintf(name, sizeof name, "%s, window %d, pool %d", base, w, p);
        OK(lukv_score_snapkv(&L.x, w, p, cpu, &err_));
        OK(lukv_score_cuda_snapkv(c, &L.xd, w, p, dsc, &err_));
        from_dev(gpu, dsc, sizeof(float) * n);
        double m = expect_close("snapkv", name, gpu, cpu, n, 2e-5, 1e-7);
        if (w > 0) expect_path(c, &L, name);
        if (w == 0)
          for (size_t t = 0; t < n; t++) ck_assert_msg(gpu[t] == 0.0f, "snapkv [%s]: window 0 gives %g", name, gpu[t]);
        printf("snapkv%s [%s]: max relative difference %.3g\n", bf16_inputs ? " (bf16 inputs)" : "", name, m);
      }
    free(cpu), free(gpu), cudaFree(dsc);
    layer_free(&L);
  }
  lukv_stats_cuda_destroy(c);
}

START_TEST(test_snapkv) { snapkv_cases(); }
END_TEST

START_TEST(test_snapkv_bf16) {
  bf16_inputs = 1;
  snapkv_cases();
}
END_TEST

START_TEST(test_keydiff) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  for (size_t i = 0; i < N_SHAPES; i++) {
    const shape_t *s = &SHAPES[i];
    char name[128];
    shape_name(s, name, sizeof name);
    layer_t L;
    make_shape(&L, s, 400 + i);
    /* A zero key (no direction: score 0) in every shape with room for one. */
    if (L.x.T_ctx > 2) {
      memset(L.k + (size_t)1 * L.x.n_kv_heads * L.x.head_dim, 0, sizeof(float) * (size_t)L.x.head_dim);
      CUDA_OK(cudaMemcpy(L.dk, L.k, sizeof(float) * (size_t)(L.x.T_ctx + L.x.F) * L.x.n_kv_heads * L.x.head_dim,
                         cudaMemcpyHostToDevice));
    }
    const size_t n = (size_t)L.x.n_kv_heads * L.x.T_ctx;
    float *cpu = malloc(sizeof(float) * n), *gpu = malloc(sizeof(float) * n), *dsc = dalloc(sizeof(float) * n);
    ck_assert(cpu && gpu);
    OK(lukv_score_keydiff(&L.x, cpu, &err_));
    OK(lukv_score_cuda_keydiff(c, &L.xd, dsc, &err_));
    from_dev(gpu, dsc, sizeof(float) * n);
    double worst = 0.0;
    for (size_t t = 0; t < n; t++) {
      double diff = fabs((double)gpu[t] - cpu[t]);
      ck_assert_msg(diff <= 1e-6, "keydiff [%s] element %zu: gpu %.9g cpu %.9g", name, t, (double)gpu[t],
                    (double)cpu[t]);
      worst = fmax(worst, diff);
    }
    if (L.x.T_ctx > 2) ck_assert(gpu[1] == 0.0f); /* head 0, the zeroed token 1 */
    printf("keydiff [%s]: max |difference| %.3g\n", name, worst);
    free(cpu), free(gpu), cudaFree(dsc);
    layer_free(&L);
  }
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* ---- curves ------------------------------------------------------------------------------ */

/* kind 0: continuous; 1: 8 levels (many exact ties); 2: all zero with random
 * signs (+0 and −0 tie); 3: a few infinities among continuous values;
 * 4: the utility itself (ties wherever the utility ties). */
static void make_scores(rng_t *r, int kind, const float *u, float *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double z = rng_normal(r);
    switch (kind) {
    case 0: s[i] = (float)z; break;
    case 1: s[i] = (float)floor(4.0 * rng_unif(r)) - 2.0f; break;
    case 2: s[i] = rng_unif(r) < 0.5 ? 0.0f : -0.0f; break;
    case 3: s[i] = rng_unif(r) < 0.05 ? (rng_unif(r) < 0.5 ? INFINITY : -INFINITY) : (float)z; break;
    default: s[i] = u[i]; break;
    }
  }
}

START_TEST(test_curves) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  /* {heads, T_ctx, sink, window, grid}; a shape twice in a row: the second
   * call reuses the offsets and grid counts already on the device. */
  static const int cases[][5] = {{1, 1, 0, 0, 16},   {2, 2, 1, 0, 16},     {3, 40, 4, 32, 16},
                                 {2, 300, 4, 32, 256}, {4, 3000, 4, 32, 256}, {4, 3000, 4, 32, 256},
                                 {1, 5000, 0, 0, 256}, {1, 9000, 4, 32, 16},
                                 {2, 2500, 16, 64, 16}, {1, 37, 4, 32, 256}};
  rng_t r = {77};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int H = cases[ci][0], T = cases[ci][1], s = cases[ci][2], w = cases[ci][3], G = cases[ci][4];
    const int nsc = 5;
    const size_t n = (size_t)H * T, G1 = (size_t)G + 1;
    float *u = malloc(sizeof(float) * n), *sc = malloc(sizeof(float) * n * nsc);
    float *gpu = malloc(sizeof(float) * (1 + nsc) * H * G1), *cpu = malloc(sizeof(float) * G1);
    ck_assert(u && sc && gpu && cpu);
    /* Utilities >= 0 with exact ties and exact zeros. */
    for (size_t i = 0; i < n; i++) {
      double x = rng_unif(&r);
      u[i] = x < 0.2 ? 0.0f : x < 0.4 ? 0.25f : (float)(1e-4 * rng_unif(&r));
    }
    for (int k = 0; k < nsc; k++) make_scores(&r, k, u, sc + (size_t)k * n, n);
    float *du = to_dev(u, sizeof(float) * n), *dsc = to_dev(sc, sizeof(float) * n * nsc);
    const float *ptrs[5];
    for (int k = 0; k < nsc; k++) ptrs[k] = dsc + (size_t)k * n;
    OK(lukv_stats_cuda_curves(c, du, nsc, ptrs, H, T, s, w, G, gpu, &err_));
    for (int slot = 0; slot <= nsc; slot++)
      for (int h = 0; h < H; h++) {
        const float *score = slot == 0 ? NULL : sc + (size_t)(slot - 1) * n + (size_t)h * T;
        OK(lukv_stats_curve(u + (size_t)h * T, score, T, s, w, G, cpu, NULL, &err_));
        const float *g = gpu + ((size_t)slot * H + h) * G1;
        for (size_t gi = 0; gi < G1; gi++)
          ck_assert_msg(memcmp(&g[gi], &cpu[gi], sizeof(float)) == 0,
                        "curves case %zu (H %d, T %d, s %d, w %d, G %d) slot %d head %d point %zu: gpu %.9g "
                        "cpu %.9g",
                        ci, H, T, s, w, G, slot, h, gi, (double)g[gi], (double)cpu[gi]);
      }
    free(u), free(sc), free(gpu), free(cpu), cudaFree(du), cudaFree(dsc);
  }
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* ---- a whole layer ------------------------------------------------------------------------ */

typedef struct {
  int key_idx;
  float key;
} rk_t;

static int rk_cmp(const void *pa, const void *pb) { /* the CPU's rank order */
  const rk_t *a = pa, *b = pb;
  if (a->key > b->key) return -1;
  if (a->key < b->key) return 1;
  return (a->key_idx > b->key_idx) - (a->key_idx < b->key_idx);
}

static void rank_mid(const float *score, int T, int s, int w, rk_t *out) {
  const int n_mid = T - s - w;
  for (int r = 0; r < n_mid; r++) out[r].key = score[s + r], out[r].key_idx = s + r;
  qsort(out, (size_t)n_mid, sizeof *out, rk_cmp);
}

typedef struct {
  shape_t sh;
  int sink, window, pool, grid;
  lukv_utility_mode mode;
} layer_case;

static void check_layer(lukv_stats_cuda *c, const layer_case *lc, uint64_t seed) {
  const shape_t *s = &lc->sh;
  char name[200], base[128];
  shape_name(s, base, sizeof base);
  snprintf(name, sizeof name, "%s, s %d, w %d, pool %d, G %d, %s", base, lc->sink, lc->window, lc->pool, lc->grid,
           lc->mode == LUKV_UTILITY_MAX ? "max" : "sum");
  layer_t L;
  make_shape(&L, s, seed);
  const int T = L.x.T_ctx, Hq = L.x.n_heads, Hkv = L.x.n_kv_heads, G = lc->grid;
  const int n_mid = T - lc->sink - lc->window;
  const size_t G1 = (size_t)G + 1, ht = (size_t)Hkv * T;
  const int S = 2, Ly = 3, sample = 1, layer = 2; /* a row that is not the first */
  const size_t rows = (size_t)S * Ly * Hkv;
  lukv_scorer_id ids[2] = {LUKV_SCORER_SNAPKV, LUKV_SCORER_KEYDIFF};
  lukv_stats_params p = {.sink = lc->sink, .window = lc->window, .pool_kernel = lc->pool, .grid = G,
                         .utility = lc->mode};
  float *cc[2], *gc[2], *co = calloc(rows * G1, sizeof(float)), *go = calloc(rows * G1, sizeof(float));
  float *ct = calloc(rows, sizeof(float)), *gt = calloc(rows, sizeof(float));
  for (int i = 0; i < 2; i++) {
    cc[i] = calloc(rows * G1, sizeof(float));
    gc[i] = calloc(rows * G1, sizeof(float));
    ck_assert(cc[i] && gc[i]);
  }
  ck_assert(co && go && ct && gt);
  OK(lukv_layer_stats(&L.x, &p, 2, ids, S, Ly, sample, layer, cc, co, ct, &err_));
  OK(lukv_layer_stats_cuda(c, &L.xd, &p, 2, ids, S, Ly, sample, layer, gc, go, gt, &err_));
  /* Other rows untouched. */
  const size_t head0 = ((size_t)sample * Ly + layer) * Hkv;
  for (size_t i = 0; i < rows * G1; i++)
    if (i / G1 < head0 || i / G1 >= head0 + Hkv) ck_assert(go[i] == 0.0f && gc[0][i] == 0.0f && gc[1][i] == 0.0f);

  /* (1) The GPU's own intermediates through the CPU curve code: bit for bit. */
  float *dvn = dalloc(sizeof(float) * (size_t)Hq * T), *du = dalloc(sizeof(float) * ht);
  float *dsc = dalloc(sizeof(float) * ht * 2);
  OK(lukv_stats_cuda_vnorm(c, &L.xd, dvn, &err_));
  OK(lukv_stats_cuda_utility(c, &L.xd, dvn, lc->mode, du, &err_));
  OK(lukv_score_cuda_snapkv(c, &L.xd, lc->window, lc->pool, dsc, &err_));
  OK(lukv_score_cuda_keydiff(c, &L.xd, dsc + ht, &err_));
  float *ug = malloc(sizeof(float) * ht), *sg = malloc(sizeof(float) * ht * 2);
  float *uc = malloc(sizeof(float) * ht), *scpu = malloc(sizeof(float) * ht * 2);
  float *vn = malloc(sizeof(float) * (size_t)Hq * T), *tmp = malloc(sizeof(float) * G1);
  ck_assert(ug && sg && uc && scpu && vn && tmp);
  from_dev(ug, du, sizeof(float) * ht);
  from_dev(sg, dsc, sizeof(float) * ht * 2);
  for (int h = 0; h < Hkv; h++) {
    const float *orow = go + (head0 + h) * G1;
    OK(lukv_stats_curve(ug + (size_t)h * T, NULL, T, lc->sink, lc->window, G, tmp, NULL, &err_));
    ck_assert_msg(memcmp(tmp, orow, sizeof(float) * G1) == 0, "layer [%s] head %d: oracle differs from the CPU "
                  "curve of the GPU's utility", name, h);
    ck_assert(gt[head0 + h] == orow[0]);
    for (int i = 0; i < 2; i++) {
      OK(lukv_stats_curve(ug + (size_t)h * T, sg + (size_t)i * ht + (size_t)h * T, T, lc->sink, lc->window, G, tmp,
                          NULL, &err_));
      /* The guards as lukv_layer_stats applies them (stats.c). */
      for (int g = 0; g <= G && lukv_keep_count(g, G, T, lc->sink, lc->window) == 0; g++) tmp[g] = orow[0];
      for (int g = 1; g <= G; g++)
        if (tmp[g] > tmp[g - 1]) tmp[g] = tmp[g - 1];
      for (int g = 0; g <= G; g++)
        if (tmp[g] < orow[g]) tmp[g] = orow[g];
      ck_assert_msg(memcmp(tmp, gc[i] + (head0 + h) * G1, sizeof(float) * G1) == 0,
                    "layer [%s] head %d scorer %d: curve differs from the CPU curve of the GPU's scores", name, h, i);
    }
  }

  /* (2) Against the CPU layer: oracle and totals within B; scorers within B
   * when the rankings agree, else near-ties only. */
  OK(lukv_stats_vnorm(&L.x, vn, &err_));
  OK(lukv_stats_utility(&L.x, vn, lc->mode, uc, &err_));
  OK(lukv_score_snapkv(&L.x, lc->window, lc->pool, scpu, &err_));
  OK(lukv_score_keydiff(&L.x, scpu + ht, &err_));
  rk_t *rc_ = malloc(sizeof(rk_t) * (size_t)n_mid), *rg_ = malloc(sizeof(rk_t) * (size_t)n_mid);
  ck_assert(rc_ && rg_);
  int swapped_heads = 0;
  for (int h = 0; h < Hkv; h++) {
    const float *uh = uc + (size_t)h * T;
    double total = 0.0, umax = 0.0;
    for (int j = lc->sink; j < T - lc->window; j++) total += uh[j], umax = fmax(umax, uh[j]);
    const double B = 2e-5 * total + 1e-7 * n_mid * umax + 1e-6 * total;
    const size_t row = (head0 + h) * G1;
    ck_assert_msg(fabs((double)gt[head0 + h] - ct[head0 + h]) <= B, "layer [%s] head %d: utility_total %.9g vs %.9g",
                  name, h, (double)gt[head0 + h], (double)ct[head0 + h]);
    for (size_t g = 0; g < G1; g++)
      ck_assert_msg(fabs((double)go[row + g] - co[row + g]) <= B, "layer [%s] head %d: oracle[%zu] %.9g vs %.9g (B %.3g)",
                    name, h, g, (double)go[row + g], (double)co[row + g], B);
    for (int i = 0; i < 2; i++) {
      const float *scp = scpu + (size_t)i * ht + (size_t)h * T, *sgp = sg + (size_t)i * ht + (size_t)h * T;
      rank_mid(scp, T, lc->sink, lc->window, rc_);
      rank_mid(sgp, T, lc->sink, lc->window, rg_);
      int same = 1;
      const double smax = max_abs(scp, (size_t)T);
      for (int r = 0; r < n_mid; r++) {
        if (rc_[r].key_idx == rg_[r].key_idx) continue;
        same = 0;
        const double a = scp[rc_[r].key_idx], b = scp[rg_[r].key_idx];
        /* Two tokens can trade places only if each score may move by its
         * tolerance: snapkv's (2e-5 relative + 1e-7 of the max), keydiff's
         * (1e-6 absolute). */
        const double tol = i == 0 ? 2 * (2e-5 * fmax(fabs(a), fabs(b)) + 1e-7 * smax) : 2e-6;
        ck_assert_msg(fabs(a - b) <= tol,
                      "layer [%s] head %d scorer %d rank %d: GPU ranks token %d, CPU token %d, scores %.9g / %.9g "
                      "are not a near-tie",
                      name, h, i, r, rg_[r].key_idx, rc_[r].key_idx, a, b);
      }
      if (same) {
        for (size_t g = 0; g < G1; g++)
          ck_assert_msg(fabs((double)gc[i][row + g] - cc[i][row + g]) <= B,
                        "layer [%s] head %d scorer %d: curve[%zu] %.9g vs %.9g (B %.3g)", name, h, i, g,
                        (double)gc[i][row + g], (double)cc[i][row + g], B);
      } else {
        swapped_heads++;
      }
    }
  }
  printf("layer   [%s]: %d (head, scorer) rankings differ from the CPU's by near-ties only\n", name, swapped_heads);

  /* (3) Deterministic: a second run gives the same bits. */
  float *go2 = calloc(rows * G1, sizeof(float)), *gc2[2] = {calloc(rows * G1, sizeof(float)), calloc(rows * G1, sizeof(float))};
  float *gt2 = calloc(rows, sizeof(float));
  ck_assert(go2 && gc2[0] && gc2[1] && gt2);
  OK(lukv_layer_stats_cuda(c, &L.xd, &p, 2, ids, S, Ly, sample, layer, gc2, go2, gt2, &err_));
  ck_assert(memcmp(go2, go, sizeof(float) * rows * G1) == 0);
  ck_assert(memcmp(gc2[0], gc[0], sizeof(float) * rows * G1) == 0);
  ck_assert(memcmp(gc2[1], gc[1], sizeof(float) * rows * G1) == 0);
  ck_assert(memcmp(gt2, gt, sizeof(float) * rows) == 0);

  free(go2), free(gc2[0]), free(gc2[1]), free(gt2);
  free(rc_), free(rg_), free(ug), free(sg), free(uc), free(scpu), free(vn), free(tmp);
  cudaFree(dvn), cudaFree(du), cudaFree(dsc);
  for (int i = 0; i < 2; i++) free(cc[i]), free(gc[i]);
  free(co), free(go), free(ct), free(gt);
  layer_free(&L);
}

START_TEST(test_layer) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  static const layer_case cases[] = {
      {{2, 4, 128, 1000, 100}, 4, 32, 7, 256, LUKV_UTILITY_MAX},
      {{4, 1, 64, 300, 40}, 0, 0, 1, 16, LUKV_UTILITY_SUM},   /* w = 0: snapkv all ties */
      {{1, 2, 32, 2000, 300}, 4, 32, 1, 256, LUKV_UTILITY_MAX},
      {{2, 2, 64, 40, 1}, 4, 32, 7, 256, LUKV_UTILITY_SUM},   /* 4 mid tokens, G > n_mid */
  };
  /* One context for every case: scratch grows and shrinks between shapes. */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_layer(c, &cases[i], 500 + i);
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* The 8B model's head layout (Hkv 8, group 4, d 128) on 3000 tokens: a test
 * of its own, the longest of the suite under cudasim (whose warp-collective
 * mma emulation is slow), so that it has its own timeout. */
START_TEST(test_layer_8b_heads) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  static const layer_case big = {{8, 4, 128, 3000, 300}, 4, 32, 7, 256, LUKV_UTILITY_SUM};
  check_layer(c, &big, 504);
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* lukv_profile_add_layer_cuda fills the same profile as lukv_profile_add_layer
 * (within the layer tolerances; keydiff-only to keep the scorer curves
 * comparable point by point) and records sample_context_len. */
START_TEST(test_profile_add_layer) {
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  layer_t L;
  shape_t sh = {2, 2, 64, 500, 50};
  make_shape(&L, &sh, 900);
  lukv_profile pc, pg;
  char *names[1] = {"keydiff"};
  const int G = 64, Ly = 2, S = 1;
  const size_t nc = (size_t)S * Ly * 2 * (G + 1);
  lukv_profile *ps[2] = {&pc, &pg};
  for (int k = 0; k < 2; k++) {
    lukv_profile *p = ps[k];
    memset(p, 0, sizeof *p);
    p->model.n_layers = Ly, p->model.n_kv_heads = 2, p->model.n_q_heads = 4, p->model.head_dim = 64;
    p->utility = "max", p->sink = 4, p->window = 32, p->pool_kernel = 7, p->grid = G, p->n_samples = S;
    p->n_scorers = 1, p->scorer_names = names;
    p->curves = malloc(sizeof(float *));
    p->curves[0] = calloc(nc, sizeof(float));
    p->oracle = calloc(nc, sizeof(float));
    p->utility_total = calloc((size_t)S * Ly * 2, sizeof(float));
    p->sample_context_len = calloc(S, sizeof(int32_t));
    ck_assert(p->curves && p->curves[0] && p->oracle && p->utility_total && p->sample_context_len);
  }
  OK(lukv_profile_add_layer(&pc, 0, 1, &L.x, &err_));
  OK(lukv_profile_add_layer_cuda(c, &pg, 0, 1, &L.xd, &err_));
  ck_assert_int_eq(pg.sample_context_len[0], 500);
  double tot = 0.0;
  for (size_t i = 0; i < (size_t)S * Ly * 2; i++) tot += pc.utility_total[i];
  for (size_t i = 0; i < nc; i++) {
    ck_assert_msg(fabs((double)pg.oracle[i] - pc.oracle[i]) <= 5e-5 * tot, "oracle %zu: %g vs %g", i,
                  (double)pg.oracle[i], (double)pc.oracle[i]);
    ck_assert_msg(fabs((double)pg.curves[0][i] - pc.curves[0][i]) <= 5e-5 * tot, "keydiff %zu: %g vs %g", i,
                  (double)pg.curves[0][i], (double)pc.curves[0][i]);
  }
  /* A view that disagrees with the profile: the shared check's message. */
  lukv_layer_view bad = L.xd;
  bad.T_ctx = 499;
  lukv_error err;
  lukv_error_clear(&err);
  int rc = lukv_profile_add_layer_cuda(c, &pg, 0, 0, &bad, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_SHAPE, "lukv_profile_add_layer_cuda", "context 499", NULL);
  for (int k = 0; k < 2; k++) {
    free(ps[k]->curves[0]), free(ps[k]->curves), free(ps[k]->oracle), free(ps[k]->utility_total);
    free(ps[k]->sample_context_len);
  }
  layer_free(&L);
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* ---- bad input: the CPU twin's errors ------------------------------------------------------ */

START_TEST(test_errors) {
  lukv_stats_cuda_destroy(NULL); /* no-op */
  lukv_stats_cuda *c = NULL;
  OK(lukv_stats_cuda_create(&c, &err_));
  layer_t L;
  shape_t sh = {2, 2, 32, 100, 10};
  make_shape(&L, &sh, 1000);
  const size_t nv = (size_t)4 * 100, nu = (size_t)2 * 100;
  float *dvn = dalloc(sizeof(float) * nv), *du = dalloc(sizeof(float) * nu);
  lukv_error err;
  int rc;

  lukv_error_clear(&err);
  rc = lukv_stats_cuda_vnorm(NULL, &L.xd, dvn, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "context is NULL", NULL);
  const float *gram = NULL;
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_gram(c, 0, &L.xd, NULL, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "gram_dev is NULL", NULL);
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_gram(c, -1, &L.xd, &gram, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "slot -1", NULL);
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_set_vnorm_f32(c, 2, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "0 or 1", NULL);
  lukv_layer_view nw = L.xd;
  nw.o_proj = NULL;
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_gram(c, 0, &nw, &gram, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "o_proj is NULL", NULL);
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_vnorm(c, &nw, dvn, &err); /* neither o_gram nor o_proj */
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "o_proj is NULL", NULL);
  lukv_error_clear(&err);
  rc = lukv_score_cuda_snapkv(c, &L.xd, 101, 7, du, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "window 101", NULL);
  lukv_error_clear(&err);
  rc = lukv_score_cuda_snapkv(c, &L.xd, 32, 4, du, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "pool kernel 4", NULL);
  lukv_layer_view nf = L.xd;
  nf.F = 0;
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_utility(c, &nf, dvn, LUKV_UTILITY_MAX, du, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_INVALID, "F = 0", NULL);
  lukv_layer_view big = L.xd;
  big.head_dim = 512, big.n_heads = 2, big.n_kv_heads = 1;
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_utility(c, &big, dvn, LUKV_UTILITY_MAX, du, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_UNSUPPORTED, "head_dim 512", NULL);

  /* A NaN score: lukv_stats_curve's message, the smallest bad token. */
  float *sc = malloc(sizeof(float) * nu), *u = malloc(sizeof(float) * nu), *curves = malloc(sizeof(float) * 4 * 17);
  ck_assert(sc && u && curves);
  for (size_t i = 0; i < nu; i++) u[i] = 0.5f, sc[i] = (float)i;
  sc[100 + 50] = NAN, sc[100 + 40] = NAN; /* head 1, tokens 50 and 40 */
  float *dsc = to_dev(sc, sizeof(float) * nu), *du2 = to_dev(u, sizeof(float) * nu);
  const float *ptrs[1] = {dsc};
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_curves(c, du2, 1, ptrs, 2, 100, 4, 32, 16, curves, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_RANGE, "score is NaN at token 40", NULL);
  /* A negative utility. */
  u[7] = -1.0f;
  CUDA_OK(cudaMemcpy(du2, u, sizeof(float) * nu, cudaMemcpyHostToDevice));
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_curves(c, du2, 0, NULL, 2, 100, 4, 32, 16, curves, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_RANGE, "utility -1 at token 7", NULL);

  /* Non-finite values: the value-norm error, as on the CPU. */
  L.v[5] = INFINITY;
  CUDA_OK(cudaMemcpy(L.dv, L.v, sizeof(float) * 110 * 2 * 32, cudaMemcpyHostToDevice));
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_vnorm(c, &L.xd, dvn, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_RANGE, "value norms are not finite", NULL);
  /* NaN in q: the utility error names head and token. */
  L.v[5] = 0.5f;
  CUDA_OK(cudaMemcpy(L.dv, L.v, sizeof(float) * 110 * 2 * 32, cudaMemcpyHostToDevice));
  OK(lukv_stats_cuda_vnorm(c, &L.xd, dvn, &err_));
  L.q[((size_t)105 * 4 + 2) * 32] = NAN; /* future row 105, query head 2 (KV head 1) */
  CUDA_OK(cudaMemcpy(L.dq, L.q, sizeof(float) * 110 * 4 * 32, cudaMemcpyHostToDevice));
  lukv_error_clear(&err);
  rc = lukv_stats_cuda_utility(c, &L.xd, dvn, LUKV_UTILITY_MAX, du, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_RANGE, "utility nan at [head 1, token 0]", NULL);
  lukv_stats_params p = {.sink = 4, .window = 32, .pool_kernel = 7, .grid = 16, .utility = LUKV_UTILITY_MAX};
  float oracle[2 * 17], tot[2];
  lukv_error_clear(&err);
  rc = lukv_layer_stats_cuda(c, &L.xd, &p, 0, NULL, 1, 1, 0, 0, NULL, oracle, tot, &err);
  lukv_test_expect_err(&err, rc, LUKV_ERR_RANGE, "lukv_stats_utility", "head 1, token 0", NULL);

  free(sc), free(u), free(curves);
  cudaFree(dsc), cudaFree(du2), cudaFree(dvn), cudaFree(du);
  layer_free(&L);
  lukv_stats_cuda_destroy(c);
}
END_TEST

/* ---- runner -------------------------------------------------------------------------------- */

static Suite *gpu_suite(void) {
  Suite *s = suite_create("profiler-stats-gpu");
  const lukv_test_case cases[] = {
      {"vnorm", test_vnorm},     {"vnorm_bf16", test_vnorm_bf16},     {"utility", test_utility}, {"snapkv", test_snapkv},
      {"utility_bf16", test_utility_bf16},                  {"snapkv_bf16", test_snapkv_bf16},
      {"keydiff", test_keydiff}, {"curves", test_curves},   {"layer", test_layer},     {"layer_8b_heads", test_layer_8b_heads},
      {"profile_add_layer", test_profile_add_layer},        {"errors", test_errors},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    TCase *t = tcase_create(cases[i].name);
    /* On a GPU each case takes seconds; under cudasim with ASan the largest
     * (layer_8b_heads) took minutes on a 2-core machine. */
    tcase_set_timeout(t, 1800);
    tcase_add_test(t, cases[i].fn);
    suite_add_tcase(s, t);
  }
  return s;
}

int main(void) {
  if (lukv_test_gpu_probe("test-profiler-stats-gpu") != 0) return 77;
  return lukv_test_run(gpu_suite(), CK_NORMAL);
}

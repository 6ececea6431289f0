/* Profiler statistics core (profiler/stats.h) against a naive reference that
 * materialises the full T x T attention in double: value norms, oracle
 * utility (max and sum), SnapKV, KeyDiff, curves, the per-layer driver and
 * bad arguments. Suite cpu.
 *
 * Tolerance: |x − ref| <= 1e-5·scale + 1e-4·|ref| with scale = max|ref| over
 * the array. For arrays of magnitude <= 1 (all of them here) that is at least
 * as strict as 1e-5 + 1e-4·|ref|, and it stays meaningful for utilities,
 * which are ~1e-4 and smaller. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "testutil.h"

/* ---- random inputs -------------------------------------------------------- */

typedef struct {
  uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) { return lukv_test_splitmix64(&r->s); }
static double rng_unif(rng_t *r) { return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53; }
static double rng_normal(rng_t *r) {
  return sqrt(-2.0 * log(rng_unif(r))) * cos(6.283185307179586 * rng_unif(r));
}
static void fill_normal(rng_t *r, float *x, size_t n, double sd) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(r));
}

/* A layer with random tensors and the LSE of a naive full causal softmax. */
typedef struct {
  lukv_layer_view x;
  float *q, *k, *v, *lse, *wo;
} layer_t;

static double dotf(const float *a, const float *b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static const float *qrow(const lukv_layer_view *x, int i, int q) {
  return x->q + ((size_t)i * x->n_heads + q) * x->head_dim;
}
static const float *krow(const lukv_layer_view *x, int j, int h) {
  return x->k + ((size_t)j * x->n_kv_heads + h) * x->head_dim;
}
static const float *vrow(const lukv_layer_view *x, int j, int h) {
  return x->v + ((size_t)j * x->n_kv_heads + h) * x->head_dim;
}

static void layer_make(layer_t *L, uint64_t seed, int T_ctx, int F, int Hq, int Hkv, int d, int D) {
  rng_t r = {seed};
  int T = T_ctx + F;
  memset(L, 0, sizeof *L);
  L->q = malloc(sizeof(float) * (size_t)T * Hq * d);
  L->k = malloc(sizeof(float) * (size_t)T * Hkv * d);
  L->v = malloc(sizeof(float) * (size_t)T * Hkv * d);
  L->lse = malloc(sizeof(float) * (size_t)Hq * T);
  L->wo = malloc(sizeof(float) * (size_t)D * Hq * d);
  ck_assert(L->q && L->k && L->v && L->lse && L->wo);
  /* Queries a little hotter than keys: attention is peaked, not uniform. */
  fill_normal(&r, L->q, (size_t)T * Hq * d, 1.5);
  fill_normal(&r, L->k, (size_t)T * Hkv * d, 1.0);
  fill_normal(&r, L->v, (size_t)T * Hkv * d, 1.0);
  fill_normal(&r, L->wo, (size_t)D * Hq * d, 1.0 / sqrt((double)Hq * d));
  /* Keys with a shared offset give KeyDiff a real anchor direction. */
  for (int j = 0; j < T; j++)
    for (int h = 0; h < Hkv; h++) L->k[((size_t)j * Hkv + h) * d] += 1.0f;
  L->x = (lukv_layer_view){.T_ctx = T_ctx, .F = F, .n_heads = Hq, .n_kv_heads = Hkv,
                           .head_dim = d, .hidden_size = D, .scale = (float)(1.0 / sqrt(d)),
                           .q = L->q, .k = L->k, .v = L->v, .lse = L->lse, .o_proj = L->wo};
  for (int q = 0; q < Hq; q++) {
    int h = q / (Hq / Hkv);
    for (int i = 0; i < T; i++) {
      double mx = -INFINITY;
      for (int j = 0; j <= i; j++)
        mx = fmax(mx, L->x.scale * dotf(qrow(&L->x, i, q), krow(&L->x, j, h), d));
      double s = 0.0;
      for (int j = 0; j <= i; j++)
        s += exp(L->x.scale * dotf(qrow(&L->x, i, q), krow(&L->x, j, h), d) - mx);
      L->lse[(size_t)q * T + i] = (float)(mx + log(s));
    }
  }
}

static void layer_free(layer_t *L) {
  free(L->q), free(L->k), free(L->v), free(L->lse), free(L->wo);
}

/* ---- naive reference ---------------------------------------------------------
 * Everything in double, the T x T attention materialised, straight from the
 * formulas in DESIGN §3; no Gram trick, no factoring of vnorm, no tiles. */

/* A [Hq, T, T]: full causal softmax, 0 above the diagonal. */
static double *naive_attention(const lukv_layer_view *x) {
  int T = x->T_ctx + x->F, Hq = x->n_heads, g = Hq / x->n_kv_heads, d = x->head_dim;
  double *A = calloc((size_t)Hq * T * T, sizeof(double));
  ck_assert_ptr_nonnull(A);
  for (int q = 0; q < Hq; q++)
    for (int i = 0; i < T; i++) {
      double *row = A + ((size_t)q * T + i) * T;
      double mx = -INFINITY, s = 0.0;
      for (int j = 0; j <= i; j++) {
        row[j] = x->scale * dotf(qrow(x, i, q), krow(x, j, q / g), d);
        mx = fmax(mx, row[j]);
      }
      for (int j = 0; j <= i; j++) s += (row[j] = exp(row[j] - mx));
      for (int j = 0; j <= i; j++) row[j] /= s;
    }
  return A;
}

static void naive_vnorm(const lukv_layer_view *x, double *vn /* [Hq, T_ctx] */) {
  int Tc = x->T_ctx, Hq = x->n_heads, g = Hq / x->n_kv_heads, d = x->head_dim, D = x->hidden_size;
  double sum = 0.0;
  for (int q = 0; q < Hq; q++)
    for (int j = 0; j < Tc; j++) {
      const float *v = vrow(x, j, q / g);
      double n2 = 0.0;
      for (int o = 0; o < D; o++) {
        double y = dotf(x->o_proj + (size_t)o * Hq * d + (size_t)q * d, v, d);
        n2 += y * y;
      }
      sum += (vn[(size_t)q * Tc + j] = sqrt(n2));
    }
  for (int i = 0; i < Hq * Tc; i++) vn[i] /= sum;
}

static void naive_utility(const lukv_layer_view *x, const double *A, const double *vn, int sum_mode,
                          double *u /* [Hkv, T_ctx] */) {
  int Tc = x->T_ctx, T = Tc + x->F, Hq = x->n_heads, g = Hq / x->n_kv_heads;
  for (int i = 0; i < x->n_kv_heads * Tc; i++) u[i] = 0.0;
  for (int q = 0; q < Hq; q++)
    for (int j = 0; j < Tc; j++) {
      double agg = 0.0;
      for (int k = Tc; k < T; k++) {
        double a = A[((size_t)q * T + k) * T + j] * vn[(size_t)q * Tc + j];
        agg = sum_mode ? agg + a : fmax(agg, a);
      }
      double *uh = u + (size_t)(q / g) * Tc + j;
      *uh = fmax(*uh, agg);
    }
}

static void naive_snapkv(const lukv_layer_view *x, const double *A, int w, int pool,
                         double *score /* [Hkv, T_ctx] */) {
  int Tc = x->T_ctx, T = Tc + x->F, Hq = x->n_heads, g = Hq / x->n_kv_heads;
  double *a = malloc(sizeof(double) * (size_t)Tc);
  for (int i = 0; i < x->n_kv_heads * Tc; i++) score[i] = 0.0;
  for (int q = 0; q < Hq; q++) {
    for (int j = 0; j < Tc; j++) {
      a[j] = 0.0;
      for (int i = Tc - w; i < Tc; i++) a[j] += A[((size_t)q * T + i) * T + j]; /* 0 when j > i */
    }
    for (int j = 0; j < Tc; j++) {
      double m = -INFINITY;
      for (int t = j - pool / 2; t <= j + pool / 2; t++)
        if (t >= 0 && t < Tc) m = fmax(m, a[t]);
      score[(size_t)(q / g) * Tc + j] += m / g;
    }
  }
  free(a);
}

static void naive_keydiff(const lukv_layer_view *x, double *score /* [Hkv, T_ctx] */) {
  int Tc = x->T_ctx, d = x->head_dim;
  double *m = malloc(sizeof(double) * (size_t)d);
  for (int h = 0; h < x->n_kv_heads; h++) {
    for (int c = 0; c < d; c++) m[c] = 0.0;
    for (int j = 0; j < Tc; j++) {
      const float *k = krow(x, j, h);
      double n = sqrt(dotf(k, k, d));
      for (int c = 0; c < d; c++) m[c] += k[c] / n / Tc;
    }
    for (int j = 0; j < Tc; j++) {
      const float *k = krow(x, j, h);
      double dot = 0.0, mm = 0.0;
      for (int c = 0; c < d; c++) dot += k[c] * m[c], mm += m[c] * m[c];
      score[(size_t)h * Tc + j] = -dot / (sqrt(dotf(k, k, d)) * sqrt(mm));
    }
  }
  free(m);
}

/* loss at each grid point by brute force: selection of the top m by
 * (score desc, index asc), then the sum of what is left. */
static void naive_curve(const double *u, const double *score, int Tc, int s, int w, int G,
                        double *curve) {
  int n = Tc - s - w;
  int *order = malloc(sizeof(int) * (size_t)n);
  char *kept = malloc((size_t)Tc);
  for (int r = 0; r < n; r++) order[r] = s + r;
  for (int r = 0; r < n; r++) /* selection sort: n <= 300 */
    for (int t = r + 1; t < n; t++) {
      double a = score[order[r]], b = score[order[t]];
      if (b > a || (b == a && order[t] < order[r])) {
        int tmp = order[r];
        order[r] = order[t], order[t] = tmp;
      }
    }
  for (int g = 0; g <= G; g++) {
    long m = lround((double)g * Tc / G) - s - w;
    if (m < 0) m = 0;
    if (m > n) m = n;
    memset(kept, 0, (size_t)Tc);
    for (int r = 0; r < m; r++) kept[order[r]] = 1;
    double loss = 0.0;
    for (int j = s; j < Tc - w; j++)
      if (!kept[j]) loss += u[j];
    curve[g] = loss;
  }
  free(order), free(kept);
}

/* ---- comparison -------------------------------------------------------------- */

static void expect_close(const char *what, const float *x, const double *ref, size_t n) {
  double scale = 0.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
  for (size_t i = 0; i < n; i++) {
    double tol = 1e-5 * scale + 1e-4 * fabs(ref[i]);
    if (!(fabs((double)x[i] - ref[i]) <= tol))
      ck_abort_msg("%s[%zu] = %.9g but reference %.9g (tol %.3g)", what, i, (double)x[i], ref[i], tol);
  }
}

typedef struct {
  int T_ctx, F, Hq, Hkv, d, D;
} shape_t;

/* GQA groups 1, 2 and 4; T_ctx + F crosses the 64-row and 256-key tiles. */
static const shape_t shapes[] = {
    {50, 7, 2, 2, 16, 32},   /* group 1 */
    {120, 70, 4, 2, 32, 64}, /* group 2, future crosses a row tile */
    {300, 20, 8, 2, 16, 48}, /* group 4, context crosses a key tile */
    {257, 1, 4, 1, 64, 96},  /* group 4 with one KV head, F = 1 */
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

static void make_shape(layer_t *L, int i) {
  shape_t s = shapes[i];
  layer_make(L, 1000 + (uint64_t)i, s.T_ctx, s.F, s.Hq, s.Hkv, s.d, s.D);
}

/* ---- tests -------------------------------------------------------------------- */

START_TEST(test_vnorm) {
  for (int si = 0; si < N_SHAPES; si++) {
    layer_t L;
    make_shape(&L, si);
    size_t n = (size_t)L.x.n_heads * L.x.T_ctx;
    float *vn = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * n);
    lukv_error err = {0};
    ck_assert_int_eq(lukv_stats_vnorm(&L.x, vn, &err), LUKV_OK);
    naive_vnorm(&L.x, ref);
    expect_close("vnorm", vn, ref, n);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
      ck_assert(vn[i] >= 0.0f);
      sum += vn[i];
    }
    ck_assert_msg(fabs(sum - 1.0) < 1e-5, "sum of vnorm %.9g", sum);
    /* With the Gram matrices precomputed (o_proj then not needed): the same
     * bits. */
    const int d = L.x.head_dim;
    float *gram = malloc(sizeof(float) * (size_t)L.x.n_heads * d * d), *vg = malloc(sizeof(float) * n);
    ck_assert(gram && vg);
    ck_assert_int_eq(lukv_stats_gram(&L.x, gram, &err), LUKV_OK);
    lukv_layer_view y = L.x;
    y.o_gram = gram, y.o_proj = NULL, y.hidden_size = 0;
    ck_assert_int_eq(lukv_stats_vnorm(&y, vg, &err), LUKV_OK);
    ck_assert(memcmp(vg, vn, sizeof(float) * n) == 0);
    /* M_q is symmetric. */
    for (int q = 0; q < L.x.n_heads; q++)
      for (int a = 0; a < d; a++)
        for (int b = 0; b < a; b++) {
          const float *M = gram + (size_t)q * d * d;
          ck_assert(fabsf(M[a * d + b] - M[b * d + a]) <= 1e-6f * (fabsf(M[a * d + b]) + 1e-6f));
        }
    y.hidden_size = L.x.hidden_size;
    ck_assert_int_eq(lukv_stats_gram(&y, gram, &err), LUKV_ERR_INVALID); /* needs o_proj */
    ck_assert_msg(strstr(err.msg, "o_proj is NULL") != NULL, "%s", err.msg);
    ck_assert_int_eq(lukv_stats_gram(&L.x, NULL, &err), LUKV_ERR_INVALID);
    free(gram), free(vg);
    free(vn), free(ref);
    layer_free(&L);
  }
}
END_TEST

START_TEST(test_vnorm_zero_values) {
  layer_t L;
  make_shape(&L, 0);
  memset(L.v, 0, sizeof(float) * (size_t)(L.x.T_ctx + L.x.F) * L.x.n_kv_heads * L.x.head_dim);
  size_t n = (size_t)L.x.n_heads * L.x.T_ctx;
  float *vn = malloc(sizeof(float) * n);
  ck_assert_int_eq(lukv_stats_vnorm(&L.x, vn, NULL), LUKV_OK);
  for (size_t i = 0; i < n; i++) ck_assert(vn[i] == 0.0f);
  free(vn);
  layer_free(&L);
}
END_TEST

START_TEST(test_utility_max_and_sum) {
  for (int si = 0; si < N_SHAPES; si++) {
    layer_t L;
    make_shape(&L, si);
    const lukv_layer_view *x = &L.x;
    size_t nq = (size_t)x->n_heads * x->T_ctx, nh = (size_t)x->n_kv_heads * x->T_ctx;
    float *vn = malloc(sizeof(float) * nq), *umax = malloc(sizeof(float) * nh),
          *usum = malloc(sizeof(float) * nh);
    double *rvn = malloc(sizeof(double) * nq), *ref = malloc(sizeof(double) * nh);
    double *A = naive_attention(x);
    ck_assert_int_eq(lukv_stats_vnorm(x, vn, NULL), LUKV_OK);
    ck_assert_int_eq(lukv_stats_utility(x, vn, LUKV_UTILITY_MAX, umax, NULL), LUKV_OK);
    ck_assert_int_eq(lukv_stats_utility(x, vn, LUKV_UTILITY_SUM, usum, NULL), LUKV_OK);
    naive_vnorm(x, rvn);
    naive_utility(x, A, rvn, 0, ref);
    expect_close("u max", umax, ref, nh);
    naive_utility(x, A, rvn, 1, ref);
    expect_close("u sum", usum, ref, nh);
    /* Σ_k >= max_k for values >= 0; equal when one future step. */
    for (size_t i = 0; i < nh; i++) {
      ck_assert(umax[i] >= 0.0f);
      if (x->F == 1) ck_assert_float_eq(usum[i], umax[i]);
      else ck_assert(usum[i] >= umax[i] * (1.0f - 1e-6f));
    }
    free(vn), free(umax), free(usum), free(rvn), free(ref), free(A);
    layer_free(&L);
  }
}
END_TEST

START_TEST(test_snapkv) {
  const int windows[] = {0, 1, 8, 32, 70};
  const int pools[] = {1, 3, 7};
  for (int si = 0; si < N_SHAPES; si++) {
    layer_t L;
    make_shape(&L, si);
    const lukv_layer_view *x = &L.x;
    size_t nh = (size_t)x->n_kv_heads * x->T_ctx;
    float *sc = malloc(sizeof(float) * nh);
    double *ref = malloc(sizeof(double) * nh);
    double *A = naive_attention(x);
    for (int wi = 0; wi < 5; wi++)
      for (int pi = 0; pi < 3; pi++) {
        int w = windows[wi], pool = pools[pi];
        if (w > x->T_ctx) continue;
        ck_assert_int_eq(lukv_score_snapkv(x, w, pool, sc, NULL), LUKV_OK);
        naive_snapkv(x, A, w, pool, ref);
        char what[64];
        snprintf(what, sizeof what, "snapkv w=%d pool=%d", w, pool);
        expect_close(what, sc, ref, nh);
        if (w == 0)
          for (size_t i = 0; i < nh; i++) ck_assert(sc[i] == 0.0f);
      }
    /* A kernel wider than twice the context pools everything into the
     * per-head maximum: a constant per KV head when the group is 1. */
    if (x->n_heads == x->n_kv_heads) {
      ck_assert_int_eq(lukv_score_snapkv(x, 8, 2 * x->T_ctx + 1, sc, NULL), LUKV_OK);
      for (int h = 0; h < x->n_kv_heads; h++)
        for (int j = 1; j < x->T_ctx; j++)
          ck_assert(sc[(size_t)h * x->T_ctx + j] == sc[(size_t)h * x->T_ctx]);
    }
    free(sc), free(ref), free(A);
    layer_free(&L);
  }
}
END_TEST

START_TEST(test_snapkv_pool1_is_no_pooling) {
  layer_t L;
  make_shape(&L, 1);
  const lukv_layer_view *x = &L.x;
  int Tc = x->T_ctx, w = 16, g = x->n_heads / x->n_kv_heads;
  size_t nh = (size_t)x->n_kv_heads * Tc;
  float *sc = malloc(sizeof(float) * nh);
  double *ref = calloc(nh, sizeof(double));
  double *A = naive_attention(x);
  /* Unpooled by hand: the group mean of the window's summed attention. */
  int T = Tc + x->F;
  for (int q = 0; q < x->n_heads; q++)
    for (int j = 0; j < Tc; j++)
      for (int i = Tc - w; i < Tc; i++) ref[(size_t)(q / g) * Tc + j] += A[((size_t)q * T + i) * T + j] / g;
  ck_assert_int_eq(lukv_score_snapkv(x, w, 1, sc, NULL), LUKV_OK);
  expect_close("snapkv pool 1", sc, ref, nh);
  free(sc), free(ref), free(A);
  layer_free(&L);
}
END_TEST

START_TEST(test_keydiff) {
  for (int si = 0; si < N_SHAPES; si++) {
    layer_t L;
    make_shape(&L, si);
    size_t nh = (size_t)L.x.n_kv_heads * L.x.T_ctx;
    float *sc = malloc(sizeof(float) * nh);
    double *ref = malloc(sizeof(double) * nh);
    ck_assert_int_eq(lukv_score_keydiff(&L.x, sc, NULL), LUKV_OK);
    naive_keydiff(&L.x, ref);
    expect_close("keydiff", sc, ref, nh);
    for (size_t i = 0; i < nh; i++) ck_assert(sc[i] >= -1.0f - 1e-6f && sc[i] <= 1.0f + 1e-6f);
    /* Only the context is scored: changing a future key changes nothing. */
    L.k[(size_t)L.x.T_ctx * L.x.n_kv_heads * L.x.head_dim] += 100.0f;
    float *sc2 = malloc(sizeof(float) * nh);
    ck_assert_int_eq(lukv_score_keydiff(&L.x, sc2, NULL), LUKV_OK);
    ck_assert_mem_eq(sc, sc2, sizeof(float) * nh);
    free(sc), free(sc2), free(ref);
    layer_free(&L);
  }
}
END_TEST

START_TEST(test_keep_count) {
  /* Against lround of the quotient (exact at these sizes) and the clamps. */
  const int Ts[] = {37, 64, 100, 301, 4096};
  const int Gs[] = {1, 7, 8, 64, 256};
  for (int a = 0; a < 5; a++)
    for (int b = 0; b < 5; b++)
      for (int s = 0; s <= 4; s += 4)
        for (int w = 0; w <= 32; w += 16) {
          int T = Ts[a], G = Gs[b], n = T - s - w, prev = 0;
          for (int g = 0; g <= G; g++) {
            long m = lround((double)g * T / G) - s - w;
            m = m < 0 ? 0 : m > n ? n : m;
            int got = lukv_keep_count(g, G, T, s, w);
            ck_assert_int_eq(got, (int)m);
            ck_assert_int_ge(got, prev);
            prev = got;
          }
          ck_assert_int_eq(lukv_keep_count(0, G, T, s, w), 0);
          ck_assert_int_eq(lukv_keep_count(G, G, T, s, w), n);
        }
  ck_assert_int_eq(lukv_keep_count(1, 8, 100, 4, 0), 9); /* round(12.5) = 13, halves up */
  ck_assert_int_eq(lukv_keep_count(9, 8, 100, 4, 32), 0); /* g > G: bad argument */
}
END_TEST

START_TEST(test_curve_vs_naive) {
  rng_t r = {77};
  for (int trial = 0; trial < 40; trial++) {
    int Tc = 40 + (int)(rng_next(&r) % 200), s = (int)(rng_next(&r) % 5), w = (int)(rng_next(&r) % 33);
    int G = 1 + (int)(rng_next(&r) % 64);
    float *u = malloc(sizeof(float) * Tc), *sc = malloc(sizeof(float) * Tc);
    double *ud = malloc(sizeof(double) * Tc), *sd = malloc(sizeof(double) * Tc);
    float *c = malloc(sizeof(float) * (G + 1)), *co = malloc(sizeof(float) * (G + 1));
    double *ref = malloc(sizeof(double) * (G + 1));
    for (int j = 0; j < Tc; j++) {
      /* Heavy-tailed utilities, scores that are a noisy view of them, and a
       * quarter of the scores tied (quantised) to exercise the tie rule. */
      ud[j] = u[j] = (float)pow(rng_unif(&r), 4.0);
      double sv = u[j] + 0.3 * rng_unif(&r);
      if (trial % 4 == 0) sv = floor(sv * 4.0) / 4.0;
      sd[j] = sc[j] = (float)sv;
    }
    double total = -1.0;
    ck_assert_int_eq(lukv_stats_curve(u, sc, Tc, s, w, G, c, &total, NULL), LUKV_OK);
    naive_curve(ud, sd, Tc, s, w, G, ref);
    expect_close("curve", c, ref, (size_t)G + 1);
    ck_assert_int_eq(lukv_stats_curve(u, NULL, Tc, s, w, G, co, NULL, NULL), LUKV_OK);
    naive_curve(ud, ud, Tc, s, w, G, ref);
    expect_close("oracle curve", co, ref, (size_t)G + 1);
    double mid = 0.0;
    for (int j = s; j < Tc - w; j++) mid += u[j];
    ck_assert(fabs(total - mid) <= 1e-12 * (1.0 + mid));
    for (int g = 0; g <= G; g++) {
      if (g > 0) ck_assert(c[g] <= c[g - 1] && co[g] <= co[g - 1]); /* non-increasing */
      ck_assert(co[g] <= c[g] * (1.0f + 1e-6f));                  /* oracle is the best */
    }
    ck_assert(c[G] == 0.0f && co[G] == 0.0f);                      /* every mid token kept */
    free(u), free(sc), free(ud), free(sd), free(c), free(co), free(ref);
  }
}
END_TEST

START_TEST(test_curve_ties_and_sink_window) {
  enum { T = 60, S = 4, W = 10, G = 60 };
  float u[T], sc[T], c[G + 1], c2[G + 1];
  for (int j = 0; j < T; j++) u[j] = (float)(j % 7) * 0.125f, sc[j] = 0.0f;
  /* All scores tied: the lower index is kept first, so keeping m loses the
   * utility of tokens S+m .. T−W−1. With G = T each grid step keeps one more. */
  ck_assert_int_eq(lukv_stats_curve(u, sc, T, S, W, G, c, NULL, NULL), LUKV_OK);
  for (int g = 0; g <= G; g++) {
    int m = lukv_keep_count(g, G, T, S, W);
    double want = 0.0;
    for (int j = S + m; j < T - W; j++) want += u[j];
    ck_assert_float_eq_tol(c[g], want, 1e-6);
  }
  /* Sink and window never compete: whatever their utility or score (even
   * values the mid tokens would be refused for), the curve is the same. */
  memcpy(sc, u, sizeof sc);
  ck_assert_int_eq(lukv_stats_curve(u, sc, T, S, W, G, c, NULL, NULL), LUKV_OK);
  for (int j = 0; j < S; j++) u[j] = 1e30f, sc[j] = NAN;
  for (int j = T - W; j < T; j++) u[j] = -5.0f, sc[j] = INFINITY;
  ck_assert_int_eq(lukv_stats_curve(u, sc, T, S, W, G, c2, NULL, NULL), LUKV_OK);
  ck_assert_mem_eq(c, c2, sizeof c);
}
END_TEST

/* Runs lukv_layer_stats into [S=2, L=3] arrays at (sample 1, layer 2) and
 * checks against the naive pipeline and the promised curve properties. */
static void layer_stats_case(int si, lukv_utility_mode mode, int s, int w, int pool, int G) {
  layer_t L;
  make_shape(&L, si);
  const lukv_layer_view *x = &L.x;
  const int S = 2, NL = 3, sample = 1, layer = 2, H = x->n_kv_heads, Tc = x->T_ctx;
  const size_t ncurve = (size_t)S * NL * H * (G + 1), ntot = (size_t)S * NL * H;
  const lukv_scorer_id ids[2] = {LUKV_SCORER_SNAPKV, LUKV_SCORER_KEYDIFF};
  float *cv[2], *oracle = malloc(sizeof(float) * ncurve), *utot = malloc(sizeof(float) * ntot);
  for (int i = 0; i < 2; i++) {
    cv[i] = malloc(sizeof(float) * ncurve);
    for (size_t t = 0; t < ncurve; t++) cv[i][t] = -7.0f; /* sentinel: other slots stay */
  }
  for (size_t t = 0; t < ncurve; t++) oracle[t] = -7.0f;
  for (size_t t = 0; t < ntot; t++) utot[t] = -7.0f;
  lukv_stats_params p = {.sink = s, .window = w, .pool_kernel = pool, .grid = G, .utility = mode};
  lukv_error err = {0};
  int rc = lukv_layer_stats(x, &p, 2, ids, S, NL, sample, layer, cv, oracle, utot, &err);
  ck_assert_msg(rc == LUKV_OK, "lukv_layer_stats: %s", err.msg);

  /* Naive pipeline. */
  double *A = naive_attention(x);
  double *vn = malloc(sizeof(double) * (size_t)x->n_heads * Tc);
  double *u = malloc(sizeof(double) * (size_t)H * Tc), *sc = malloc(sizeof(double) * (size_t)H * Tc);
  double *ref = malloc(sizeof(double) * (G + 1));
  naive_vnorm(x, vn);
  naive_utility(x, A, vn, mode == LUKV_UTILITY_SUM, u);
  const size_t head0 = ((size_t)sample * NL + layer) * H;
  for (int h = 0; h < H; h++) {
    naive_curve(u + (size_t)h * Tc, u + (size_t)h * Tc, Tc, s, w, G, ref);
    expect_close("oracle", oracle + (head0 + h) * (G + 1), ref, (size_t)G + 1);
    double t = 0.0;
    for (int j = s; j < Tc - w; j++) t += u[(size_t)h * Tc + j];
    expect_close("utility_total", utot + head0 + h, &t, 1);
  }
  for (int i = 0; i < 2; i++) {
    if (ids[i] == LUKV_SCORER_SNAPKV) naive_snapkv(x, A, w, pool, sc);
    else naive_keydiff(x, sc);
    for (int h = 0; h < H; h++) {
      naive_curve(u + (size_t)h * Tc, sc + (size_t)h * Tc, Tc, s, w, G, ref);
      expect_close(lukv_scorer_name(ids[i]), cv[i] + (head0 + h) * (G + 1), ref, (size_t)G + 1);
    }
  }
  /* Exact properties of the stored curves (docs/formats.md). */
  for (int h = 0; h < H; h++) {
    const float *o = oracle + (head0 + h) * (G + 1);
    ck_assert(o[0] == utot[head0 + h] && o[G] == 0.0f);
    for (int i = 0; i < 2; i++) {
      const float *c = cv[i] + (head0 + h) * (G + 1);
      ck_assert(c[0] == utot[head0 + h] && c[G] == 0.0f);
      for (int g = 0; g <= G; g++) {
        ck_assert(o[g] <= c[g]);
        if (g > 0) ck_assert(c[g] <= c[g - 1] && o[g] <= o[g - 1]);
      }
    }
  }
  for (size_t t = 0; t < ntot; t++)
    if (t < head0 || t >= head0 + H) ck_assert(utot[t] == -7.0f);
  for (size_t t = 0; t < ncurve; t++)
    if (t < head0 * (G + 1) || t >= (head0 + H) * (G + 1))
      ck_assert(oracle[t] == -7.0f && cv[0][t] == -7.0f && cv[1][t] == -7.0f);

  free(A), free(vn), free(u), free(sc), free(ref), free(oracle), free(utot), free(cv[0]), free(cv[1]);
  layer_free(&L);
}

START_TEST(test_layer_stats) {
  layer_stats_case(0, LUKV_UTILITY_MAX, 4, 8, 7, 16);
  layer_stats_case(1, LUKV_UTILITY_SUM, 4, 32, 7, 64);
  layer_stats_case(2, LUKV_UTILITY_MAX, 4, 32, 7, 256);
  layer_stats_case(3, LUKV_UTILITY_SUM, 0, 1, 1, 32);
  layer_stats_case(3, LUKV_UTILITY_MAX, 16, 0, 3, 5);
}
END_TEST

START_TEST(test_profile_add_layer) {
  layer_t L;
  make_shape(&L, 1);
  const lukv_layer_view *x = &L.x;
  const int S = 1, NL = 2, H = x->n_kv_heads, G = 32;
  const size_t nc = (size_t)S * NL * H * (G + 1);
  char *names[2] = {"keydiff", "snapkv"};
  float *curves[2] = {calloc(nc, sizeof(float)), calloc(nc, sizeof(float))};
  int32_t tlen[1] = {0};
  lukv_profile prof = {
      .model = {.n_layers = NL, .n_kv_heads = H, .n_q_heads = x->n_heads, .head_dim = x->head_dim},
      .utility = "sum", .sink = 4, .window = 16, .pool_kernel = 5, .grid = G, .n_samples = S,
      .n_scorers = 2, .scorer_names = names, .curves = curves,
      .oracle = calloc(nc, sizeof(float)), .utility_total = calloc((size_t)S * NL * H, sizeof(float)),
      .sample_context_len = tlen};
  lukv_error err = {0};
  ck_assert_msg(lukv_profile_add_layer(&prof, 0, 1, x, &err) == LUKV_OK, "%s", err.msg);
  ck_assert_int_eq(tlen[0], x->T_ctx);

  /* The same through the array API, scorers in the profile's order. */
  float *c2[2] = {calloc(nc, sizeof(float)), calloc(nc, sizeof(float))};
  float *o2 = calloc(nc, sizeof(float)), *t2 = calloc((size_t)S * NL * H, sizeof(float));
  lukv_scorer_id ids[2] = {LUKV_SCORER_KEYDIFF, LUKV_SCORER_SNAPKV};
  lukv_stats_params p = {4, 16, 5, G, LUKV_UTILITY_SUM};
  ck_assert_int_eq(lukv_layer_stats(x, &p, 2, ids, S, NL, 0, 1, c2, o2, t2, NULL), LUKV_OK);
  ck_assert_mem_eq(curves[0], c2[0], nc * sizeof(float));
  ck_assert_mem_eq(curves[1], c2[1], nc * sizeof(float));
  ck_assert_mem_eq(prof.oracle, o2, nc * sizeof(float));
  ck_assert_mem_eq(prof.utility_total, t2, (size_t)S * NL * H * sizeof(float));

  /* A later layer with another context length for the same sample is refused. */
  lukv_layer_view y = *x;
  y.T_ctx -= 1, y.F += 1;
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_profile_add_layer(&prof, 0, 0, &y, &err), LUKV_ERR_SHAPE);
  names[1] = "expected";
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_profile_add_layer(&prof, 0, 0, x, &err), LUKV_ERR_NOTFOUND);
  ck_assert_ptr_nonnull(strstr(err.msg, "expected"));
  names[1] = "snapkv";
  prof.model.n_q_heads *= 2;
  ck_assert_int_eq(lukv_profile_add_layer(&prof, 0, 0, x, NULL), LUKV_ERR_SHAPE);

  free(curves[0]), free(curves[1]), free(prof.oracle), free(prof.utility_total);
  free(c2[0]), free(c2[1]), free(o2), free(t2);
  layer_free(&L);
}
END_TEST

START_TEST(test_names) {
  lukv_scorer_id id;
  lukv_utility_mode m;
  for (int i = 0; i < LUKV_N_SCORERS; i++) {
    ck_assert_int_eq(lukv_scorer_parse(lukv_scorer_name((lukv_scorer_id)i), &id, NULL), LUKV_OK);
    ck_assert_int_eq((int)id, i);
  }
  ck_assert_ptr_null(lukv_scorer_name((lukv_scorer_id)7));
  ck_assert_int_eq(lukv_scorer_parse("h2o", &id, NULL), LUKV_ERR_NOTFOUND);
  ck_assert_int_eq(lukv_utility_parse("sum", &m, NULL), LUKV_OK);
  ck_assert_int_eq(m, LUKV_UTILITY_SUM);
  ck_assert_int_eq(lukv_utility_parse("max", &m, NULL), LUKV_OK);
  ck_assert_int_eq(m, LUKV_UTILITY_MAX);
  ck_assert_int_eq(lukv_utility_parse("mean", &m, NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_utility_parse(NULL, &m, NULL), LUKV_ERR_INVALID);
}
END_TEST

START_TEST(test_bad_args) {
  layer_t L;
  make_shape(&L, 1); /* T_ctx 120, F 70, Hq 4, Hkv 2 */
  lukv_layer_view x = L.x, y;
  const int Tc = x.T_ctx, H = x.n_kv_heads, G = 8;
  float *buf = malloc(sizeof(float) * (size_t)x.n_heads * Tc);
  float *cv = malloc(sizeof(float) * (size_t)H * (G + 1)), *o = malloc(sizeof(float) * (size_t)H * (G + 1));
  float *tot = malloc(sizeof(float) * (size_t)H);
  float *cvs[1] = {cv};
  lukv_scorer_id ids[1] = {LUKV_SCORER_SNAPKV};
  lukv_stats_params p = {4, 32, 7, G, LUKV_UTILITY_MAX}, pb;
  lukv_error err = {0};
#define BAD(call, want)                                                                   \
  do {                                                                                    \
    lukv_error_clear(&err);                                                               \
    int rc_ = (call);                                                                     \
    ck_assert_msg(rc_ == (want), "%s returned %d, want %d", #call, rc_, (int)(want));      \
    ck_assert_msg(err.msg[0] != '\0', "%s left no message", #call);                       \
  } while (0)
#define STATS(view, params) lukv_layer_stats(view, params, 1, ids, 1, 1, 0, 0, cvs, o, tot, &err)

  ck_assert_int_eq(STATS(&x, &p), LUKV_OK);
  BAD(STATS(NULL, &p), LUKV_ERR_INVALID);
  BAD(STATS(&x, NULL), LUKV_ERR_INVALID);
  y = x, y.q = NULL;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.lse = NULL;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.o_proj = NULL;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.F = 0; /* no future: no utility */
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.n_kv_heads = 3; /* 4 query heads are not a multiple of 3 */
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.scale = 0.0f;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.scale = NAN;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  y = x, y.hidden_size = 0;
  BAD(STATS(&y, &p), LUKV_ERR_INVALID);
  pb = p, pb.sink = Tc - 32; /* T_ctx == s + w: no mid tokens */
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  pb = p, pb.window = -1;
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  pb = p, pb.pool_kernel = 4;
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  pb = p, pb.pool_kernel = 0;
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  pb = p, pb.grid = 0;
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  pb = p, pb.utility = (lukv_utility_mode)5;
  BAD(STATS(&x, &pb), LUKV_ERR_INVALID);
  BAD(lukv_layer_stats(&x, &p, 1, ids, 1, 1, 1, 0, cvs, o, tot, &err), LUKV_ERR_INVALID); /* sample */
  BAD(lukv_layer_stats(&x, &p, 1, ids, 1, 1, 0, -1, cvs, o, tot, &err), LUKV_ERR_INVALID); /* layer */
  BAD(lukv_layer_stats(&x, &p, 1, ids, 1, 1, 0, 0, NULL, o, tot, &err), LUKV_ERR_INVALID);
  BAD(lukv_layer_stats(&x, &p, 1, ids, 1, 1, 0, 0, cvs, NULL, tot, &err), LUKV_ERR_INVALID);
  lukv_scorer_id bad_id[1] = {(lukv_scorer_id)9};
  BAD(lukv_layer_stats(&x, &p, 1, bad_id, 1, 1, 0, 0, cvs, o, tot, &err), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_layer_stats(&x, &p, 0, NULL, 1, 1, 0, 0, NULL, o, tot, NULL), LUKV_OK);

  /* The parts one by one. */
  BAD(lukv_stats_vnorm(&x, NULL, &err), LUKV_ERR_INVALID);
  y = x, y.v = NULL;
  BAD(lukv_stats_vnorm(&y, buf, &err), LUKV_ERR_INVALID);
  BAD(lukv_stats_utility(&x, NULL, LUKV_UTILITY_MAX, buf, &err), LUKV_ERR_INVALID);
  y = x, y.T_ctx = 0;
  BAD(lukv_stats_utility(&y, buf, LUKV_UTILITY_MAX, buf, &err), LUKV_ERR_INVALID);
  BAD(lukv_score_snapkv(&x, Tc + 1, 7, buf, &err), LUKV_ERR_INVALID);
  BAD(lukv_score_snapkv(&x, 8, 2, buf, &err), LUKV_ERR_INVALID);
  BAD(lukv_score_snapkv(&x, 8, 7, NULL, &err), LUKV_ERR_INVALID);
  BAD(lukv_score_keydiff(&x, NULL, &err), LUKV_ERR_INVALID);
  y = x, y.k = NULL;
  BAD(lukv_score_keydiff(&y, buf, &err), LUKV_ERR_INVALID);
  BAD(lukv_score(&x, (lukv_scorer_id)-1, 8, 7, buf, &err), LUKV_ERR_INVALID);

  float u[40], sc[40], c[G + 1];
  for (int j = 0; j < 40; j++) u[j] = sc[j] = 0.5f;
  BAD(lukv_stats_curve(u, sc, 36, 4, 32, G, c, NULL, &err), LUKV_ERR_INVALID); /* T_ctx <= s + w */
  BAD(lukv_stats_curve(NULL, sc, 40, 4, 8, G, c, NULL, &err), LUKV_ERR_INVALID);
  BAD(lukv_stats_curve(u, sc, 40, 4, 8, G, NULL, NULL, &err), LUKV_ERR_INVALID);
  BAD(lukv_stats_curve(u, sc, 40, 4, 8, 0, c, NULL, &err), LUKV_ERR_INVALID);
  BAD(lukv_stats_curve(u, sc, 40, -1, 8, G, c, NULL, &err), LUKV_ERR_INVALID);
  u[10] = -1.0f;
  BAD(lukv_stats_curve(u, sc, 40, 4, 8, G, c, NULL, &err), LUKV_ERR_RANGE);
  u[10] = INFINITY;
  BAD(lukv_stats_curve(u, sc, 40, 4, 8, G, c, NULL, &err), LUKV_ERR_RANGE);
  u[10] = 0.5f, sc[12] = NAN;
  BAD(lukv_stats_curve(u, sc, 40, 4, 8, G, c, NULL, &err), LUKV_ERR_RANGE);

  /* Non-finite inputs surface as one range error, never as a stored NaN. */
  L.v[5] = NAN;
  BAD(STATS(&x, &p), LUKV_ERR_RANGE);
  L.v[5] = 0.0f, L.lse[(size_t)0 * (Tc + x.F) + Tc + 3] = NAN;
  BAD(STATS(&x, &p), LUKV_ERR_RANGE);
#undef STATS
#undef BAD
  free(buf), free(cv), free(o), free(tot);
  layer_free(&L);
}
END_TEST

static Suite *stats_suite(void) {
  Suite *s = suite_create("profiler-stats");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, test_vnorm);
  tcase_add_test(t, test_vnorm_zero_values);
  tcase_add_test(t, test_utility_max_and_sum);
  tcase_add_test(t, test_snapkv);
  tcase_add_test(t, test_snapkv_pool1_is_no_pooling);
  tcase_add_test(t, test_keydiff);
  tcase_add_test(t, test_keep_count);
  tcase_add_test(t, test_curve_vs_naive);
  tcase_add_test(t, test_curve_ties_and_sink_window);
  tcase_add_test(t, test_layer_stats);
  tcase_add_test(t, test_profile_add_layer);
  tcase_add_test(t, test_names);
  tcase_add_test(t, test_bad_args);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  return lukv_test_run(stats_suite(), CK_ENV);
}

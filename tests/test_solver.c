/* Budget solver: hull, greedy, exact DP, GLPK LP/MIP, baselines and the
 * whole solve on in-memory profiles (no files). Suite cpu. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "solver.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) { return lukv_test_splitmix64(&r->s); }
static double rng_unif(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }
static int rng_int(rng_t *r, int lo, int hi) {
  return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Curves [n, G+1]. monotone: non-increasing and non-convex (random steps,
 * some flat, some values tied); otherwise arbitrary values. Head scales
 * differ by up to 100x, as real heads do. */
static void make_curves(rng_t *r, int n, int G, int monotone, double *y) {
  for (int h = 0; h < n; h++) {
    double *c = y + (size_t)h * (G + 1);
    double scale = pow(10.0, 2.0 * rng_unif(r) - 1.0);
    if (monotone) {
      c[G] = 0.05 * scale * rng_unif(r);
      for (int g = G - 1; g >= 0; g--) {
        double u = rng_unif(r);
        double inc = u < 0.2 ? 0.0 : scale * pow(rng_unif(r), 3.0);
        if (u > 0.9) inc = floor(inc * 8.0) / 8.0;
        c[g] = c[g + 1] + inc;
      }
    } else {
      for (int g = 0; g <= G; g++) c[g] = scale * floor(rng_unif(r) * 16.0) / 16.0;
    }
  }
}

static int close_rel(double a, double b, double rel) {
  return fabs(a - b) <= rel * fmax(1.0, fmax(fabs(a), fabs(b)));
}

static void check_alloc(const lukv_curve_set *cs, const int32_t *a, int g_min, int64_t B) {
  int n = lukv_curve_set_heads(cs);
  int64_t used = 0;
  for (int h = 0; h < n; h++) {
    ck_assert_int_ge(a[h], g_min);
    ck_assert_int_le(a[h], cs->grid);
    used += a[h];
  }
  ck_assert_int_le(used, B);
}

static void brute(const lukv_curve_set *cs, int g_min, int64_t B, int h, int64_t used, double acc,
                  double *best) {
  int n = lukv_curve_set_heads(cs), G = cs->grid;
  if (h == n) {
    if (acc < *best) *best = acc;
    return;
  }
  for (int g = g_min; g <= G && used + g + (int64_t)(n - h - 1) * g_min <= B; g++)
    brute(cs, g_min, B, h + 1, used + g, acc + cs->loss[(size_t)h * (G + 1) + g], best);
}

/* ---- grid arithmetic ----------------------------------------------------- */

START_TEST(test_budget_units) {
  ck_assert_int_eq(lukv_budget_units(0.8, 256, 4096), 209715); /* 209715.2 */
  ck_assert_int_eq(lukv_budget_units(0.5, 256, 8), 1024);
  ck_assert_int_eq(lukv_budget_units(0.01, 32, 6), 190);       /* 190.08 */
  ck_assert_int_eq(lukv_budget_units(0.99, 32, 6), 2);         /* 1.92 */
  ck_assert_int_eq(lukv_budget_units(0.25, 2, 1), 2);          /* 1.5 rounds up */
}
END_TEST

START_TEST(test_min_keep_index) {
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 4096), 3);  /* 1% wins: ceil(2.56) */
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 1024), 9);  /* exactly 9, not 10 */
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 3600), 3);  /* exactly 1%: ceil(2.56) */
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 1000), 10); /* 9.216 */
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 36), 256);
  ck_assert_int_eq(lukv_min_keep_index(256, 4, 32, 20), 256);  /* clamped to G */
  ck_assert_int_eq(lukv_min_keep_index(100, 0, 0, 50), 1);     /* exactly 1 */
  ck_assert_int_eq(lukv_min_keep_index(32, 4, 8, 256), 2);     /* 1.5 */
}
END_TEST

/* ---- hull ---------------------------------------------------------------- */

START_TEST(test_hull) {
  int idx[16];
  {
    const double y[] = {5, 3, 4, 1, 1, 0};
    int k = lukv_hull_lower(y, 0, 5, idx);
    ck_assert_int_eq(k, 4); /* (0,5) (1,3) (3,1) (5,0) */
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[1], 1);
    ck_assert_int_eq(idx[2], 3);
    ck_assert_int_eq(idx[3], 5);
  }
  {
    const double y[] = {3, 2, 1, 0}; /* collinear: only the ends */
    int k = lukv_hull_lower(y, 0, 3, idx);
    ck_assert_int_eq(k, 2);
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[1], 3);
  }
  {
    const double y[] = {1, 1, 1, 1}; /* flat */
    int k = lukv_hull_lower(y, 0, 3, idx);
    ck_assert_int_eq(k, 2);
    ck_assert_int_eq(idx[1], 3);
  }
  {
    const double y[] = {7, 2};
    ck_assert_int_eq(lukv_hull_lower(y, 1, 1, idx), 1); /* single point */
    ck_assert_int_eq(idx[0], 1);
  }
  {
    const double y[] = {9, 9, 4, 0, 3, 2, 1, 0.5}; /* sub-range from g_lo = 2 */
    int k = lukv_hull_lower(y, 2, 7, idx);
    /* points (2,4) (3,0) (4,3) (5,2) (6,1) (7,0.5): hull 2 -> 3 -> 7 */
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(idx[0], 2);
    ck_assert_int_eq(idx[1], 3);
    ck_assert_int_eq(idx[2], 7);
  }
  {
    const double y[] = {0, 1, -0.5, 1, 0}; /* rising and falling */
    int k = lukv_hull_lower(y, 0, 4, idx);
    ck_assert_int_eq(k, 3);
    ck_assert_int_eq(idx[1], 2);
  }
}
END_TEST

/* ---- greedy -------------------------------------------------------------- */

START_TEST(test_greedy_hand) {
  /* Two heads, G = 4, g_min = 0. Head 0 saves 4 then 1 per unit, head 1
   * 3 per unit for two units then nothing. */
  const double y[] = {10, 6, 5, 4, 3, /* head 0 */ 6, 3, 0, 0, 0};
  lukv_curve_set cs = {1, 2, 4, y};
  int64_t B[] = {0, 1, 2, 3, 4, 8};
  int32_t a[6 * 2];
  lukv_alloc_info in[6];
  lukv_error e;
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_greedy_solve(&cs, 0, B, 6, a, in, &e), LUKV_OK);
  ck_assert_int_eq(a[2 * 1 + 0], 1); /* B=1: head 0's first step (4) */
  ck_assert_int_eq(a[2 * 1 + 1], 0);
  ck_assert_double_eq_tol(in[1].loss, 12.0, 1e-12);
  ck_assert_int_eq(a[2 * 3 + 0], 1); /* B=3: then head 1's two steps */
  ck_assert_int_eq(a[2 * 3 + 1], 2);
  ck_assert_double_eq_tol(in[3].loss, 6.0, 1e-12);
  ck_assert_double_eq_tol(in[3].lambda, 1.0, 1e-12);
  /* B=2: prefix is head 0 at 1; head 1's segment (2 units, 3/unit) does not
   * fit: lp = 12 - 3, fill moves head 1 to 1 (loss 3). */
  ck_assert_double_eq_tol(in[2].loss_prefix, 12.0, 1e-12);
  ck_assert_double_eq_tol(in[2].lp_bound, 9.0, 1e-12);
  ck_assert_double_eq_tol(in[2].lambda, 3.0, 1e-12);
  ck_assert_double_eq_tol(in[2].loss, 9.0, 1e-12);
  ck_assert_int_eq(in[2].used, 2);
  /* B=8: everything that lowers the loss; flat tail of head 1 not taken. */
  ck_assert_int_eq(a[2 * 5 + 0], 4);
  ck_assert_int_eq(a[2 * 5 + 1], 2);
  ck_assert_int_eq(in[5].used, 6);
  ck_assert_double_eq(in[5].lambda, 0.0);
}
END_TEST

START_TEST(test_greedy_matches_lp) {
  /* lp_bound (fractional greedy) equals GLPK's LP optimum over every grid
   * point; greedy is feasible and nested; LP <= greedy. */
  for (int seed = 0; seed < 120; seed++) {
    rng_t r = {1000 + (uint64_t)seed};
    int L = rng_int(&r, 1, 3), H = rng_int(&r, 1, 4), G = rng_int(&r, 6, 24), n = L * H;
    int g_min = rng_int(&r, 0, 3);
    int monotone = seed % 4 != 3;
    double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
    make_curves(&r, n, G, monotone, y);
    lukv_curve_set cs = {L, H, G, y};
    enum { NB = 7 };
    int64_t B[NB];
    for (int k = 0; k < NB; k++) B[k] = (int64_t)n * g_min + ((int64_t)n * (G - g_min) * k) / (NB - 1);
    int32_t a[NB * 12];
    lukv_alloc_info in[NB];
    lukv_error e;
    lukv_error_clear(&e);
    ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, B, NB, a, in, &e), LUKV_OK);
    for (int k = 0; k < NB; k++) {
      const int32_t *ak = a + (size_t)k * n;
      check_alloc(&cs, ak, g_min, B[k]);
      ck_assert_int_eq(in[k].feasible, 1);
      ck_assert(close_rel(in[k].loss, lukv_alloc_loss(&cs, ak), 1e-12));
      ck_assert(in[k].loss <= in[k].loss_prefix + 1e-12);
      ck_assert(in[k].lp_bound <= in[k].loss + 1e-9);
      if (k > 0)
        for (int h = 0; h < n; h++) ck_assert_int_ge(ak[h], a[(size_t)(k - 1) * n + h]);
      double lp = NAN;
      lukv_error_clear(&e);
      ck_assert_int_eq(lukv_glpk_lp(&cs, g_min, B[k], 10.0, &lp, &e), LUKV_OK);
      ck_assert_msg(close_rel(in[k].lp_bound, lp, 1e-6), "seed %d B=%lld: greedy lp %.12g glpk %.12g",
                    seed, (long long)B[k], in[k].lp_bound, lp);
    }
    free(y);
  }
}
END_TEST

START_TEST(test_greedy_deterministic_ties) {
  /* Identical heads: equal slopes go to the lower head index first. */
  const double y[] = {4, 2, 0, 4, 2, 0, 4, 2, 0};
  lukv_curve_set cs = {1, 3, 2, y};
  int64_t B[] = {1, 2, 3};
  int32_t a[9];
  lukv_alloc_info in[3];
  ck_assert_int_eq(lukv_greedy_solve(&cs, 0, B, 3, a, in, NULL), LUKV_OK);
  /* Each hull is one segment of length 2: B=1 fills head 0 by one unit. */
  ck_assert_int_eq(a[0], 1);
  ck_assert_int_eq(a[1], 0);
  ck_assert_int_eq(a[3], 2); /* B=2: head 0 takes its whole segment */
  ck_assert_int_eq(a[4], 0);
  ck_assert_int_eq(a[6], 2); /* B=3: head 1 filled by one */
  ck_assert_int_eq(a[7], 1);
  ck_assert_int_eq(a[8], 0);
}
END_TEST

START_TEST(test_infeasible) {
  rng_t r = {7};
  int n = 6, G = 10, g_min = 3;
  double y[6 * 11];
  make_curves(&r, n, G, 1, y);
  lukv_curve_set cs = {2, 3, G, y};
  int64_t B[] = {5, 17, 18};
  int32_t a[18];
  lukv_alloc_info in[3];
  ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, B, 3, a, in, NULL), LUKV_OK);
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(in[k].feasible, 0);
    ck_assert_int_eq(in[k].used, 18);
    ck_assert(isnan(in[k].lp_bound));
    for (int h = 0; h < n; h++) ck_assert_int_eq(a[k * n + h], g_min);
    ck_assert(close_rel(in[k].loss, lukv_alloc_loss(&cs, a + k * n), 1e-15));
  }
  ck_assert_int_eq(in[2].feasible, 1); /* exactly the floor */
  ck_assert(close_rel(in[2].lp_bound, in[2].loss, 1e-15));
  int32_t x[6];
  double v, gap;
  lukv_error e;
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_exact_dp(&cs, g_min, 17, NULL, 0, x, &v, &e), LUKV_ERR_INFEASIBLE);
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_glpk_lp(&cs, g_min, 17, 5.0, &v, &e), LUKV_ERR_SOLVER);
  ck_assert_ptr_nonnull(strstr(e.msg, "infeasible"));
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_glpk_mip(&cs, g_min, 17, 5.0, NULL, x, &v, &gap, &e), LUKV_ERR_SOLVER);
  ck_assert(isnan(v));
  ck_assert_int_eq(lukv_exact_dp(&cs, g_min, 18, NULL, 0, x, &v, NULL), LUKV_OK);
  for (int h = 0; h < n; h++) ck_assert_int_eq(x[h], g_min);
}
END_TEST

/* ---- exact --------------------------------------------------------------- */

START_TEST(test_dp_brute_force) {
  for (int seed = 0; seed < 400; seed++) {
    rng_t r = {5000 + (uint64_t)seed};
    int n = rng_int(&r, 1, 4), G = rng_int(&r, 2, 6), g_min = rng_int(&r, 0, 2);
    if (g_min > G) g_min = G;
    double y[4 * 7];
    make_curves(&r, n, G, seed % 3 != 0, y);
    lukv_curve_set cs = {1, n, G, y};
    for (int64_t B = (int64_t)n * g_min; B <= (int64_t)n * G; B++) {
      double best = INFINITY, v = NAN, vb = NAN;
      brute(&cs, g_min, B, 0, 0, 0.0, &best);
      int32_t a[4], ab[4];
      lukv_error e;
      lukv_error_clear(&e);
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B, NULL, 0, a, &v, &e), LUKV_OK);
      check_alloc(&cs, a, g_min, B);
      ck_assert_msg(close_rel(v, best, 1e-12), "seed %d B %lld: dp %.17g brute %.17g", seed,
                    (long long)B, v, best);
      ck_assert(close_rel(v, lukv_alloc_loss(&cs, a), 1e-15));
      /* With the greedy's bounds: same optimum. */
      int32_t ga[4];
      lukv_alloc_info in;
      ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, &B, 1, ga, &in, NULL), LUKV_OK);
      lukv_bounds bd = {in.loss, in.lp_bound, in.lambda};
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B, &bd, 0, ab, &vb, &e), LUKV_OK);
      check_alloc(&cs, ab, g_min, B);
      ck_assert_msg(close_rel(vb, best, 1e-12), "seed %d B %lld: dp+bounds %.17g brute %.17g", seed,
                    (long long)B, vb, best);
      ck_assert(in.lp_bound <= best + 1e-9 && best <= in.loss + 1e-12);
    }
  }
}
END_TEST

START_TEST(test_dp_matches_mip) {
  for (int seed = 0; seed < 40; seed++) {
    rng_t r = {9000 + (uint64_t)seed};
    int L = rng_int(&r, 1, 2), H = rng_int(&r, 2, 4), G = rng_int(&r, 6, 12), n = L * H;
    int g_min = rng_int(&r, 0, 2);
    double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
    make_curves(&r, n, G, seed % 4 != 1, y);
    lukv_curve_set cs = {L, H, G, y};
    int64_t B[3];
    for (int k = 0; k < 3; k++) B[k] = (int64_t)n * g_min + ((int64_t)n * (G - g_min) * (k + 1)) / 4;
    int32_t ga[3 * 8];
    lukv_alloc_info in[3];
    ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, B, 3, ga, in, NULL), LUKV_OK);
    for (int k = 0; k < 3; k++) {
      int32_t a[8], am[8], aw[8];
      double v, vm, vw, gap, gapw;
      lukv_error e;
      lukv_error_clear(&e);
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], NULL, 0, a, &v, &e), LUKV_OK);
      ck_assert_int_eq(lukv_glpk_mip(&cs, g_min, B[k], 30.0, NULL, am, &vm, &gap, &e), LUKV_OK);
      ck_assert_int_eq(lukv_glpk_mip(&cs, g_min, B[k], 30.0, ga + (size_t)k * n, aw, &vw, &gapw, &e),
                       LUKV_OK);
      check_alloc(&cs, am, g_min, B[k]);
      check_alloc(&cs, aw, g_min, B[k]);
      ck_assert_msg(close_rel(v, vm, 1e-9), "seed %d: dp %.12g mip %.12g", seed, v, vm);
      ck_assert_msg(close_rel(v, vw, 1e-9), "seed %d: dp %.12g mip(warm) %.12g", seed, v, vw);
      ck_assert_double_eq(gap, 0.0);
      ck_assert_double_eq(gapw, 0.0);
      ck_assert(close_rel(vm, lukv_alloc_loss(&cs, am), 1e-15));
      /* LP <= exact <= greedy. */
      ck_assert(in[k].lp_bound <= v + 1e-9);
      ck_assert(v <= in[k].loss + 1e-12);
    }
    free(y);
  }
}
END_TEST

START_TEST(test_dp_bounds_equal_plain) {
  for (int seed = 0; seed < 40; seed++) {
    rng_t r = {777 + (uint64_t)seed};
    int L = 4, H = 8, G = 32, n = L * H, g_min = rng_int(&r, 0, 3);
    double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
    make_curves(&r, n, G, seed % 5 != 4, y);
    lukv_curve_set cs = {L, H, G, y};
    int64_t B[4];
    for (int k = 0; k < 4; k++) B[k] = (int64_t)n * g_min + ((int64_t)n * (G - g_min) * (2 * k + 1)) / 8;
    int32_t ga[4 * 32];
    lukv_alloc_info in[4];
    ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, B, 4, ga, in, NULL), LUKV_OK);
    for (int k = 0; k < 4; k++) {
      int32_t a[32], ab[32];
      double v, vb;
      lukv_error e;
      lukv_error_clear(&e);
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], NULL, 0, a, &v, &e), LUKV_OK);
      lukv_bounds bd = {in[k].loss, in[k].lp_bound, in[k].lambda};
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], &bd, 0, ab, &vb, &e), LUKV_OK);
      check_alloc(&cs, a, g_min, B[k]);
      check_alloc(&cs, ab, g_min, B[k]);
      ck_assert_msg(close_rel(v, vb, 1e-12), "seed %d k %d: plain %.17g bounds %.17g", seed, k, v, vb);
      ck_assert(in[k].lp_bound <= v + 1e-9 && v <= in[k].loss + 1e-12);
      /* A looser (still valid) upper bound and a non-optimal lambda. */
      lukv_bounds loose = {in[k].loss * 1.5 + 1.0, in[k].lp_bound, in[k].lambda * 0.7};
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], &loose, 0, ab, &vb, &e), LUKV_OK);
      ck_assert(close_rel(v, vb, 1e-12));
    }
    free(y);
  }
}
END_TEST

START_TEST(test_dp_bounds_larger) {
  /* Realistic size for the threshold schedule: 128 heads, G = 64, where the
   * greedy's gap is far above the optimum's and early passes prove it. */
  for (int seed = 0; seed < 3; seed++) {
    rng_t r = {4040 + (uint64_t)seed};
    int L = 16, H = 8, G = 64, n = L * H, g_min = 1;
    double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
    make_curves(&r, n, G, 1, y);
    lukv_curve_set cs = {L, H, G, y};
    int64_t B[3] = {lukv_budget_units(0.9, G, n), lukv_budget_units(0.6, G, n),
                    lukv_budget_units(0.2, G, n)};
    int32_t *ga = malloc(sizeof(int32_t) * 3 * (size_t)n), a[128], ab[128];
    lukv_alloc_info in[3];
    ck_assert_int_eq(lukv_greedy_solve(&cs, g_min, B, 3, ga, in, NULL), LUKV_OK);
    for (int k = 0; k < 3; k++) {
      double v, vb;
      lukv_error e;
      lukv_error_clear(&e);
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], NULL, 0, a, &v, &e), LUKV_OK);
      lukv_bounds bd = {in[k].loss, in[k].lp_bound, in[k].lambda};
      ck_assert_int_eq(lukv_exact_dp(&cs, g_min, B[k], &bd, 0, ab, &vb, &e), LUKV_OK);
      check_alloc(&cs, ab, g_min, B[k]);
      ck_assert_msg(close_rel(v, vb, 1e-12), "seed %d k %d: plain %.17g bounds %.17g", seed, k, v, vb);
      ck_assert(in[k].lp_bound <= vb + 1e-9 && vb <= in[k].loss + 1e-12);
    }
    free(ga);
    free(y);
  }
}
END_TEST

START_TEST(test_dp_limits) {
  rng_t r = {31};
  int n = 16, G = 64;
  double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
  make_curves(&r, n, G, 1, y);
  lukv_curve_set cs = {2, 8, G, y};
  int32_t a[16];
  for (int h = 0; h < n; h++) a[h] = -5;
  double v = -1.0;
  lukv_error e;
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_exact_dp(&cs, 0, 500, NULL, 1024, a, &v, &e), LUKV_ERR_TOO_LARGE);
  ck_assert_ptr_nonnull(strstr(e.msg, "MiB"));
  for (int h = 0; h < n; h++) ck_assert_int_eq(a[h], -5); /* nothing written */
  ck_assert_double_eq(v, -1.0);
  /* An upper bound below the Lagrangian bound is refused. */
  int64_t B = 500;
  lukv_alloc_info in;
  int32_t ga[16];
  ck_assert_int_eq(lukv_greedy_solve(&cs, 0, &B, 1, ga, &in, NULL), LUKV_OK);
  lukv_bounds bad = {in.lp_bound - 1.0, in.lp_bound, in.lambda};
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_exact_dp(&cs, 0, B, &bad, 0, a, &v, &e), LUKV_ERR_INVALID);
  free(y);
}
END_TEST

START_TEST(test_mip_time_limit) {
  /* A MIP GLPK cannot close in 1 ms: either it still proves optimality, or
   * it reports the time limit with the warm incumbent (or better). */
  rng_t r = {4242};
  int L = 8, H = 8, G = 64, n = L * H;
  double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
  make_curves(&r, n, G, 1, y);
  lukv_curve_set cs = {L, H, G, y};
  int64_t B = lukv_budget_units(0.7, G, n);
  int32_t ga[64], a[64];
  lukv_alloc_info in;
  ck_assert_int_eq(lukv_greedy_solve(&cs, 2, &B, 1, ga, &in, NULL), LUKV_OK);
  double v, gap;
  lukv_error e;
  lukv_error_clear(&e);
  int rc = lukv_glpk_mip(&cs, 2, B, 0.001, ga, a, &v, &gap, &e);
  ck_assert_msg(rc == LUKV_OK || rc == LUKV_ERR_TIMELIMIT, "rc %d: %s", rc, e.msg);
  ck_assert(isfinite(v));
  ck_assert(v <= in.loss + 1e-12);
  check_alloc(&cs, a, 2, B);
  ck_assert(close_rel(v, lukv_alloc_loss(&cs, a), 1e-15));
  if (rc == LUKV_ERR_TIMELIMIT) {
    ck_assert_ptr_nonnull(strstr(e.msg, "time limit"));
    ck_assert(isnan(gap) || gap >= 0.0);
  }
  free(y);
}
END_TEST

/* ---- baselines ----------------------------------------------------------- */

START_TEST(test_baselines) {
  int32_t a[64];
  for (int seed = 0; seed < 200; seed++) {
    rng_t r = {100 + (uint64_t)seed};
    int L = rng_int(&r, 1, 8), H = rng_int(&r, 1, 8), G = rng_int(&r, 4, 64), n = L * H;
    int g_min = rng_int(&r, 0, G / 4);
    int64_t B = rng_int(&r, 0, n * G + 5);
    double beta = seed % 3 == 0 ? 20.0 : 1.0 + 30.0 * rng_unif(&r);
    ck_assert_int_eq(lukv_alloc_uniform(L, H, G, g_min, B, a), LUKV_OK);
    int feasible = B >= (int64_t)n * g_min;
    int64_t used = 0;
    for (int h = 0; h < n; h++) {
      ck_assert_int_ge(a[h], g_min);
      ck_assert_int_le(a[h], G);
      ck_assert_int_eq(a[h], a[0]);
      used += a[h];
    }
    if (feasible) ck_assert_int_le(used, B);
    ck_assert_int_eq(lukv_alloc_pyramid(L, H, G, g_min, B, beta, a), LUKV_OK);
    used = 0;
    for (int h = 0; h < n; h++) {
      ck_assert_int_ge(a[h], g_min);
      ck_assert_int_le(a[h], G);
      used += a[h];
    }
    if (!feasible) continue;
    ck_assert_int_le(used, B);
    if (B < (int64_t)n * G)
      ck_assert_msg(used == B, "seed %d: used %lld of %lld", seed, (long long)used, (long long)B);
    /* Shallower layers never get less (beyond the +1 of the remainder). */
    for (int l = 1; l < L; l++) ck_assert_int_le(a[l * H], a[(l - 1) * H] + 1);
  }
  /* The unclamped schedule: L = 4, H = 1, G = 100, budget 160 (avg 40),
   * beta 4: t = 70, 50, 30, 10 exactly. */
  ck_assert_int_eq(lukv_alloc_pyramid(4, 1, 100, 0, 160, 4.0, a), LUKV_OK);
  ck_assert_int_eq(a[0], 70);
  ck_assert_int_eq(a[1], 50);
  ck_assert_int_eq(a[2], 30);
  ck_assert_int_eq(a[3], 10);
  /* Clamped at the floor: g_min 20 lifts layer 3, the line shifts down. */
  ck_assert_int_eq(lukv_alloc_pyramid(4, 1, 100, 20, 160, 4.0, a), LUKV_OK);
  ck_assert_int_eq(a[3], 20);
  ck_assert_int_eq(a[0] + a[1] + a[2] + a[3], 160);
  ck_assert_int_le(abs(a[0] - a[1] - 20), 1);
  ck_assert_int_eq(lukv_alloc_pyramid(4, 1, 100, 0, 160, 0.0, a), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_alloc_uniform(4, 1, 100, 0, 161, a), LUKV_OK);
  ck_assert_int_eq(a[0], 40);
}
END_TEST

START_TEST(test_alloc_loss_frac) {
  const double y[] = {4, 2, 1, /* */ 9, 3, 0};
  lukv_curve_set cs = {1, 2, 2, y};
  const int32_t a[] = {1, 2};
  ck_assert_double_eq(lukv_alloc_loss(&cs, a), 2.0);
  const double g[] = {0.5, 2.0};
  ck_assert_double_eq_tol(lukv_alloc_loss_frac(&cs, g), 3.0, 1e-15);
  const double g2[] = {1.25, 0.0};
  ck_assert_double_eq_tol(lukv_alloc_loss_frac(&cs, g2), 1.75 + 9.0, 1e-15);
}
END_TEST

/* ---- the whole solve ----------------------------------------------------- */

typedef struct {
  lukv_profile p;
  char *names[2];
  float *cur[2];
} test_profile;

static void make_profile(test_profile *tp, int L, int H, int G, int S, uint64_t seed) {
  memset(tp, 0, sizeof *tp);
  lukv_profile *p = &tp->p;
  p->model.model_name = "test-model";
  p->model.model_hash = "abc123";
  p->model.n_layers = L;
  p->model.n_kv_heads = H;
  p->model.n_q_heads = 2 * H;
  p->model.head_dim = 16;
  p->mode = "teacher";
  p->utility = "max";
  p->context_len = 512;
  p->future_len = 64;
  p->sink = 4;
  p->window = 8;
  p->pool_kernel = 7;
  p->grid = G;
  p->n_samples = S;
  p->n_scorers = 2;
  tp->names[0] = "snapkv";
  tp->names[1] = "keydiff";
  p->scorer_names = tp->names;
  size_t per = (size_t)L * H * (G + 1);
  rng_t r = {seed};
  double *tmp = malloc(sizeof(double) * per);
  for (int c = 0; c < 3; c++) {
    float *f = malloc(sizeof(float) * per * S);
    for (int s = 0; s < S; s++) {
      make_curves(&r, L * H, G, 1, tmp);
      for (size_t j = 0; j < per; j++) f[(size_t)s * per + j] = (float)tmp[j];
    }
    if (c < 2)
      tp->cur[c] = f;
    else
      p->oracle = f;
  }
  p->curves = tp->cur;
  p->utility_total = calloc((size_t)S * L * H, sizeof(float));
  p->sample_context_len = malloc(sizeof(int32_t) * S);
  for (int s = 0; s < S; s++) p->sample_context_len[s] = 256 + 64 * (s % 3);
  free(tmp);
}

static void free_profile(test_profile *tp) {
  free(tp->cur[0]), free(tp->cur[1]), free(tp->p.oracle), free(tp->p.utility_total);
  free(tp->p.sample_context_len);
}

static int progress_calls;
static void count_progress(void *user, const char *stage, int done, int total) {
  (void)user;
  ck_assert_ptr_nonnull(stage);
  ck_assert(done >= 1 && done <= total);
  progress_calls++;
}

static const double solve_ratios[] = {0.1, 0.25, 0.5, 0.75, 0.9, 0.99};

static void check_solve_out(const test_profile *tp, const lukv_solve_opts *o, const lukv_budgets *b) {
  const lukv_profile *p = &tp->p;
  const int L = p->model.n_layers, H = p->model.n_kv_heads, G = p->grid, n = L * H;
  ck_assert_str_eq(b->model.model_name, "test-model");
  ck_assert_str_eq(b->model.model_hash, "abc123");
  ck_assert_int_eq(b->model.n_layers, L);
  ck_assert_int_eq(b->model.n_q_heads, 2 * H);
  ck_assert_str_eq(b->scorer, o->scorer);
  ck_assert_str_eq(b->aggregation,
                   o->aggregation == LUKV_AGG_MEAN_CURVE ? "mean-curve" : "mean-of-solutions");
  ck_assert_str_eq(b->solver, "hull-greedy");
  ck_assert_int_eq(b->sink, 4);
  ck_assert_int_eq(b->window, 8);
  ck_assert_int_eq(b->grid, G);
  ck_assert_int_eq(b->context_len, 256);
  ck_assert_int_eq(b->min_keep_index, lukv_min_keep_index(G, 4, 8, 256));
  ck_assert_int_eq(b->n_ratios, o->n_ratios);
  const double *feas = lukv_budgets_extra(b, "feasible");
  const double *lpg = lukv_budgets_extra(b, "lp_glpk");
  const double *st = lukv_budgets_extra(b, "exact_status");
  const double *gap = lukv_budgets_extra(b, "mip_gap");
  ck_assert_ptr_nonnull(feas);
  ck_assert_ptr_nonnull(lpg);
  ck_assert_ptr_nonnull(st);
  ck_assert_ptr_nonnull(gap);
  for (int r = 0; r < b->n_ratios; r++) {
    ck_assert(fabs(b->compression[r] - (float)o->ratios[r]) == 0.0f);
    int64_t B = lukv_budget_units(o->ratios[r], G, n);
    int feasible = B >= (int64_t)n * b->min_keep_index;
    ck_assert_double_eq(feas[r], (feasible ? 1.0 : 0.0));
    double sum = 0.0;
    for (int h = 0; h < n; h++) {
      float k = b->keep_fraction[(size_t)r * n + h];
      ck_assert(k >= (float)b->min_keep_index / G - 1e-6f && k <= 1.0f);
      sum += (double)k * G;
    }
    ck_assert(isfinite(b->report_greedy[r]) && isfinite(b->report_uniform[r]) &&
              isfinite(b->report_pyramid[r]));
    if (!feasible) {
      ck_assert(isnan(b->report_lp_bound[r]) && isnan(b->report_exact[r]));
      if (o->exact != LUKV_EXACT_NONE) ck_assert_double_eq(st[r], (double)LUKV_ERR_INFEASIBLE);
      continue;
    }
    ck_assert(sum <= (double)B + 1e-3 * n);
    double lp = b->report_lp_bound[r], ex = b->report_exact[r], gr = b->report_greedy[r];
    ck_assert(lp <= gr + 1e-9);
    if (o->exact != LUKV_EXACT_NONE) {
      ck_assert_double_eq(st[r], 0.0);
      ck_assert(lp <= ex + 1e-9);
      if (o->aggregation == LUKV_AGG_MEAN_CURVE) ck_assert(ex <= gr + 1e-12);
      ck_assert(ex <= b->report_uniform[r] + 1e-12 && ex <= b->report_pyramid[r] + 1e-12);
      if (o->exact == LUKV_EXACT_MIP)
        ck_assert_double_eq(gap[r], 0.0);
      else
        ck_assert(isnan(gap[r]));
    } else {
      ck_assert(isnan(ex) && isnan(st[r]));
    }
    if (o->lp)
      ck_assert_msg(close_rel(lpg[r], lp, 1e-6), "lp_glpk %.12g lp_bound %.12g", lpg[r], lp);
    else
      ck_assert(isnan(lpg[r]));
  }
  const double *hmc = lukv_budgets_extra(b, "heldout_mean_curve");
  const double *hmos = lukv_budgets_extra(b, "heldout_mean_of_solutions");
  if (o->folds >= 2) {
    ck_assert_ptr_nonnull(hmc);
    ck_assert_ptr_nonnull(hmos);
    for (int r = 0; r < b->n_ratios; r++)
      ck_assert(isfinite(hmc[r]) && hmc[r] >= 0 && isfinite(hmos[r]));
    /* More budget never costs more held-out loss with nested tables. */
    for (int r = 1; r < b->n_ratios; r++) ck_assert(hmc[r] >= hmc[r - 1] - 1e-12);
  } else {
    ck_assert_ptr_null(hmc);
  }
}

START_TEST(test_solve_end_to_end) {
  test_profile tp;
  make_profile(&tp, 3, 2, 32, 7, 99);
  double exact_dp[6], exact_mip[6], greedy_mc[6];
  for (int variant = 0; variant < 4; variant++) {
    lukv_solve_opts o;
    lukv_solve_opts_default(&o);
    o.ratios = solve_ratios;
    o.n_ratios = 6;
    o.lp = 1;
    o.time_limit_s = 20.0;
    o.progress = count_progress;
    o.scorer = variant == 3 ? "oracle" : "snapkv";
    o.aggregation = variant == 1 ? LUKV_AGG_MEAN_OF_SOLUTIONS : LUKV_AGG_MEAN_CURVE;
    o.exact = variant == 2 ? LUKV_EXACT_MIP : LUKV_EXACT_DP;
    o.folds = variant == 1 || variant == 2 ? 3 : 0;
    progress_calls = 0;
    lukv_budgets b;
    memset(&b, 0, sizeof b);
    lukv_error e;
    lukv_error_clear(&e);
    ck_assert_msg(lukv_solve(&tp.p, &o, &b, &e) == LUKV_OK, "variant %d: %s", variant, e.msg);
    ck_assert_int_gt(progress_calls, 0);
    check_solve_out(&tp, &o, &b);
    for (int r = 0; r < 6; r++) {
      if (variant == 0) exact_dp[r] = b.report_exact[r], greedy_mc[r] = b.report_greedy[r];
      if (variant == 2) exact_mip[r] = b.report_exact[r];
    }
    if (variant == 1) /* mean-of-solutions: its own greedy column, shared certificates */
      for (int r = 0; r < 5; r++) ck_assert(b.report_greedy[r] >= b.report_lp_bound[r] - 1e-9);
    lukv_budgets_free(&b);
  }
  for (int r = 0; r < 5; r++) {
    ck_assert_msg(close_rel(exact_dp[r], exact_mip[r], 1e-9), "r %d dp %.12g mip %.12g", r, exact_dp[r],
                  exact_mip[r]);
    ck_assert(exact_dp[r] <= greedy_mc[r] + 1e-12);
  }
  free_profile(&tp);
}
END_TEST

START_TEST(test_solve_records_failures) {
  /* A DP that exceeds its memory limit is recorded, not fatal. */
  test_profile tp;
  make_profile(&tp, 2, 4, 32, 3, 5);
  lukv_solve_opts o;
  lukv_solve_opts_default(&o);
  o.ratios = solve_ratios;
  o.n_ratios = 5;
  o.dp_mem_limit = 64;
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  lukv_error e;
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, &e), LUKV_OK);
  const double *st = lukv_budgets_extra(&b, "exact_status");
  for (int r = 0; r < 5; r++) {
    ck_assert_double_eq(st[r], (double)LUKV_ERR_TOO_LARGE);
    ck_assert(isnan(b.report_exact[r]));
    ck_assert(isfinite(b.report_greedy[r]));
  }
  lukv_budgets_free(&b);
  /* exact none: NaN columns. */
  o.exact = LUKV_EXACT_NONE;
  o.dp_mem_limit = 0;
  memset(&b, 0, sizeof b);
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, &e), LUKV_OK);
  check_solve_out(&tp, &o, &b);
  lukv_budgets_free(&b);
  free_profile(&tp);
}
END_TEST

START_TEST(test_solve_errors) {
  test_profile tp;
  make_profile(&tp, 2, 2, 16, 4, 3);
  lukv_solve_opts o;
  lukv_solve_opts_default(&o);
  ck_assert_int_eq(o.n_ratios, 99);
  ck_assert_double_eq(o.ratios[0], 0.01);
  ck_assert_double_eq(o.ratios[98], 0.99);
  ck_assert_str_eq(o.scorer, "snapkv");
  ck_assert_double_eq(o.pyramid_beta, 20.0);
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  lukv_error e;

  o.scorer = "x";
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, &e), LUKV_ERR_NOTFOUND);
  ck_assert_str_eq(e.msg, "unknown scorer 'x' (available: snapkv, keydiff, oracle)");
  ck_assert_ptr_null(b.keep_fraction);
  o.scorer = "keydiff";

  const double dup[] = {0.1, 0.5, 0.5};
  const double down[] = {0.5, 0.2};
  const double zero[] = {0.0, 0.5};
  const double one[] = {0.5, 1.0};
  const double nan_r[] = {0.2, NAN};
  const double *bad[] = {dup, down, zero, one, nan_r};
  const int nbad[] = {3, 2, 2, 2, 2};
  for (int i = 0; i < 5; i++) {
    o.ratios = bad[i];
    o.n_ratios = nbad[i];
    lukv_error_clear(&e);
    ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, &e), LUKV_ERR_RANGE);
    ck_assert_ptr_null(b.keep_fraction);
  }
  o.ratios = solve_ratios;
  o.n_ratios = 0;
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, NULL), LUKV_ERR_RANGE);
  o.n_ratios = 3;
  o.folds = 5; /* more folds than samples */
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, NULL), LUKV_ERR_RANGE);
  o.folds = 1;
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, NULL), LUKV_ERR_RANGE);
  o.folds = 0;
  o.aggregation = 7;
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, NULL), LUKV_ERR_INVALID);
  o.aggregation = LUKV_AGG_MEAN_CURVE;
  o.exact = LUKV_EXACT_NONE;
  ck_assert_int_eq(lukv_solve(&tp.p, &o, &b, NULL), LUKV_OK);
  lukv_budgets_free(&b);
  free_profile(&tp);
}
END_TEST

START_TEST(test_slice_and_evaluate) {
  /* Calibrate on samples 0..3, read on 4..8: the table's held-out loss
   * equals the loss of its keep fractions on the mean of those samples'
   * curves, and in sample the table is the best table. */
  test_profile tp, held;
  make_profile(&tp, 3, 2, 32, 9, 41);
  make_profile(&held, 3, 2, 32, 9, 41);
  lukv_error e;
  lukv_error_clear(&e);
  /* provenance: the block starts 4 corpus samples later and is no shard */
  held.p.has_first_sample = 1;
  held.p.first_sample = 100;
  held.p.shard_index = 2;
  held.p.shard_count = 3;
  ck_assert_int_eq(lukv_profile_slice(&tp.p, 0, 4, &e), LUKV_OK);
  ck_assert_int_eq(lukv_profile_slice(&held.p, 4, 9, &e), LUKV_OK);
  ck_assert_int_eq(tp.p.n_samples, 4);
  ck_assert_int_eq(held.p.n_samples, 5);
  ck_assert(held.p.has_first_sample && held.p.first_sample == 104 && held.p.shard_count == 0);
  test_profile full;
  make_profile(&full, 3, 2, 32, 9, 41);
  const size_t per = 3 * 2 * 33;
  ck_assert(!memcmp(held.p.curves[0], full.p.curves[0] + 4 * per, 5 * per * sizeof(float)));
  ck_assert(!memcmp(held.p.oracle, full.p.oracle + 4 * per, 5 * per * sizeof(float)));
  ck_assert_int_eq(held.p.sample_context_len[0], full.p.sample_context_len[4]);

  lukv_solve_opts o;
  lukv_solve_opts_default(&o);
  o.ratios = solve_ratios;
  o.n_ratios = 6;
  o.exact = LUKV_EXACT_NONE;
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  ck_assert_msg(lukv_solve(&tp.p, &o, &b, &e) == LUKV_OK, "%s", e.msg);
  lukv_eval_row in[6], out[6];
  ck_assert_msg(lukv_evaluate_table(&tp.p, &b, 20.0, in, &e) == LUKV_OK, "%s", e.msg);
  ck_assert_msg(lukv_evaluate_table(&held.p, &b, 20.0, out, &e) == LUKV_OK, "%s", e.msg);
  double mean[3 * 2 * 33], g[6];
  lukv_curves_mean(held.p.curves[0], 5, 3, 2, 32, NULL, 5, mean);
  lukv_curve_set cs = {3, 2, 32, mean};
  for (int r = 0; r < 6; r++) {
    ck_assert(close_rel(in[r].table, b.report_greedy[r], 1e-12));
    ck_assert(close_rel(in[r].best, b.report_greedy[r], 1e-12));
    ck_assert_double_eq(in[r].keep_l1, 0.0);
    for (int h = 0; h < 6; h++) g[h] = b.keep_fraction[r * 6 + h] * 32.0;
    ck_assert(close_rel(out[r].table, lukv_alloc_loss_frac(&cs, g), 1e-12));
    ck_assert(out[r].table >= out[r].best - 1e-12);
    double total = 0.0;
    for (int h = 0; h < 6; h++) total += mean[h * 33];
    ck_assert(close_rel(out[r].total, total, 1e-12));
  }

  /* Refusals leave everything as it was. */
  ck_assert_int_eq(lukv_profile_slice(&held.p, 3, 3, NULL), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_profile_slice(&held.p, -1, 2, NULL), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_profile_slice(&held.p, 0, 6, NULL), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_profile_slice(NULL, 0, 1, NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(held.p.n_samples, 5);
  ck_assert_int_eq(lukv_evaluate_table(NULL, &b, 20.0, out, NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_evaluate_table(&held.p, &b, 0.0, out, NULL), LUKV_ERR_RANGE);
  held.p.window = 16;
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_evaluate_table(&held.p, &b, 20.0, out, &e), LUKV_ERR_SHAPE);
  ck_assert_str_eq(e.msg, "window is 8 but the profile's is 16");
  held.p.window = 8;
  held.p.model.model_hash = "def456";
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_evaluate_table(&held.p, &b, 20.0, out, &e), LUKV_ERR_INVALID);
  ck_assert_ptr_nonnull(strstr(e.msg, "model_hash"));
  held.p.model.model_hash = "abc123";
  free(b.scorer);
  b.scorer = strdup("h2o");
  lukv_error_clear(&e);
  ck_assert_int_eq(lukv_evaluate_table(&held.p, &b, 20.0, out, &e), LUKV_ERR_NOTFOUND);
  lukv_budgets_free(&b);
  free_profile(&tp), free_profile(&held), free_profile(&full);
}
END_TEST

START_TEST(test_curves_mean) {
  const float c[] = {1, 2, 3, /* s1 */ 3, 4, 5, /* s2 */ 5, 6, 10};
  double out[3];
  lukv_curves_mean(c, 3, 1, 1, 2, NULL, 3, out);
  ck_assert_double_eq_tol(out[0], 3.0, 1e-15);
  ck_assert_double_eq_tol(out[2], 6.0, 1e-15);
  const int64_t pick[] = {0, 2};
  lukv_curves_mean(c, 3, 1, 1, 2, pick, 2, out);
  ck_assert_double_eq_tol(out[1], 4.0, 1e-15);
  ck_assert_double_eq_tol(out[2], 6.5, 1e-15);
}
END_TEST

static Suite *solver_suite(void) {
  Suite *s = suite_create("solver");
  TCase *t = tcase_create("core");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, test_budget_units);
  tcase_add_test(t, test_min_keep_index);
  tcase_add_test(t, test_hull);
  tcase_add_test(t, test_greedy_hand);
  tcase_add_test(t, test_greedy_matches_lp);
  tcase_add_test(t, test_greedy_deterministic_ties);
  tcase_add_test(t, test_infeasible);
  tcase_add_test(t, test_dp_brute_force);
  tcase_add_test(t, test_dp_matches_mip);
  tcase_add_test(t, test_dp_bounds_equal_plain);
  tcase_add_test(t, test_dp_bounds_larger);
  tcase_add_test(t, test_dp_limits);
  tcase_add_test(t, test_mip_time_limit);
  tcase_add_test(t, test_baselines);
  tcase_add_test(t, test_alloc_loss_frac);
  tcase_add_test(t, test_curves_mean);
  tcase_add_test(t, test_solve_end_to_end);
  tcase_add_test(t, test_solve_records_failures);
  tcase_add_test(t, test_solve_errors);
  tcase_add_test(t, test_slice_and_evaluate);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  return lukv_test_run(solver_suite(), CK_ENV);
}

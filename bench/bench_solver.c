/* Budget solver benchmark (not a test): hull + greedy for all 99 ratios
 * against the certificates it is measured by (exact DP, GLPK LP and MIP on
 * one ratio), on L x H in {32x8, 80x8, 128x32}, G = 256, single-threaded.
 *
 *   bench-solver [--quick] [--mip-limit SECONDS] [--lp-limit SECONDS]
 *
 * Curves are synthetic but shaped like profiled ones: per head G chunks of
 * mid tokens with log-normal utilities (head-specific spread), ranked by a
 * noisy scorer (head-specific fidelity), loss(g) = utility not kept, head
 * totals log-normal. So curves are non-increasing, non-convex and differ a
 * lot between heads. Target: greedy for all 99 ratios at 128x32 in 50 ms. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "solver.h"

#define GRID 256
#define TARGET_MS 50.0

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  uint64_t s;
} rng_t;
static uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rng_unif(rng_t *r) { return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53; }
static double rng_normal(rng_t *r) {
  return sqrt(-2.0 * log(rng_unif(r))) * cos(6.283185307179586 * rng_unif(r));
}

typedef struct {
  double key, u;
} chunk;
static int chunk_cmp(const void *a, const void *b) {
  double x = ((const chunk *)a)->key, y = ((const chunk *)b)->key;
  return (x < y) - (x > y); /* descending score */
}

static void make_curves(int n, int G, uint64_t seed, double *y) {
  rng_t r = {seed};
  chunk *c = malloc(sizeof(chunk) * (size_t)G);
  for (int h = 0; h < n; h++) {
    double sigma = 0.5 + 2.0 * rng_unif(&r);  /* how peaked the utility is */
    double noise = 0.1 + 1.5 * rng_unif(&r);  /* how badly the scorer ranks */
    double total = exp(1.0 * rng_normal(&r)); /* head weight */
    double sum = 0.0;
    for (int j = 0; j < G; j++) {
      c[j].u = exp(sigma * rng_normal(&r));
      c[j].key = log(c[j].u) + noise * rng_normal(&r);
      sum += c[j].u;
    }
    qsort(c, (size_t)G, sizeof(chunk), chunk_cmp);
    double *yh = y + (size_t)h * (G + 1);
    yh[G] = 0.0;
    for (int g = G - 1; g >= 0; g--) yh[g] = yh[g + 1] + c[g].u * total / sum;
  }
  free(c);
}

typedef struct {
  int L, H;
} shape;

int main(int argc, char **argv) {
  int quick = 0;
  double mip_limit = 10.0, lp_limit = 300.0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      quick = 1;
    else if (strcmp(argv[i], "--mip-limit") == 0 && i + 1 < argc)
      mip_limit = atof(argv[++i]);
    else if (strcmp(argv[i], "--lp-limit") == 0 && i + 1 < argc)
      lp_limit = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--quick] [--mip-limit SECONDS] [--lp-limit SECONDS]\n", argv[0]);
      return 2;
    }
  }
  const shape shapes[] = {{32, 8}, {80, 8}, {128, 32}};
  const int n_shapes = 3, reps = quick ? 1 : 5;
  const double rho = 0.8;
  const int G = GRID, g_min = lukv_min_keep_index(G, 4, 32, 4096); /* T = 4096: g_min 3 */

  printf("lukv budget solver benchmark: G = %d, g_min = %d, 99 ratios 0.01..0.99, exact/LP/MIP at "
         "rho = %.2f; single thread, best of %d (greedy, DP), 1 run (GLPK)\n\n",
         G, g_min, rho, reps);
  printf("%-8s %6s | %10s | %9s %7s | %10s %8s | %-26s | %9s %9s %9s\n", "LxH", "heads", "greedy 99",
         "DP 1", "DP/gr", "GLPK LP 1", "LP/gr", "GLPK MIP 1 (warm=greedy)", "gr-ex", "ex-lp", "lp chk");
  printf("%-8s %6s | %10s | %9s %7s | %10s %8s | %-26s | %9s %9s %9s\n", "", "", "ms", "ms", "x", "ms",
         "x", "ms / status / gap", "rel", "rel", "rel");

  double greedy_big_ms = NAN;
  for (int si = 0; si < n_shapes; si++) {
    const int L = shapes[si].L, H = shapes[si].H, n = L * H;
    double *y = malloc(sizeof(double) * (size_t)n * (G + 1));
    make_curves(n, G, 12345 + (uint64_t)si, y);
    lukv_curve_set cs = {L, H, G, y};
    int64_t budgets[99];
    for (int i = 0; i < 99; i++) budgets[98 - i] = lukv_budget_units((i + 1) / 100.0, G, n);
    int32_t *alloc = malloc(sizeof(int32_t) * 99 * (size_t)n);
    lukv_alloc_info info[99];
    lukv_error e;

    double t_greedy = INFINITY;
    for (int k = 0; k < reps; k++) {
      double t0 = now_s();
      lukv_error_clear(&e);
      if (lukv_greedy_solve(&cs, g_min, budgets, 99, alloc, info, &e) != LUKV_OK) {
        fprintf(stderr, "greedy failed: %s\n", e.msg);
        return 1;
      }
      double t = now_s() - t0;
      if (t < t_greedy) t_greedy = t;
    }
    /* Single-ratio figures at rho: the greedy allocation is the ratio's row. */
    const int k80 = 98 - 79; /* rho = 0.80 is ratio index 79 */
    const int64_t B = budgets[k80];
    const lukv_alloc_info *gi = &info[k80];
    const int32_t *ga = alloc + (size_t)k80 * n;
    int32_t *a = malloc(sizeof(int32_t) * (size_t)n);

    double t_dp = INFINITY, v_dp = NAN;
    int rc_dp = LUKV_OK;
    for (int k = 0; k < reps; k++) {
      lukv_bounds bd = {gi->loss, gi->lp_bound, gi->lambda};
      lukv_error_clear(&e);
      double t0 = now_s();
      rc_dp = lukv_exact_dp(&cs, g_min, B, &bd, 0, a, &v_dp, &e);
      double t = now_s() - t0;
      if (rc_dp != LUKV_OK) {
        fprintf(stderr, "%dx%d: dp: %s\n", L, H, e.msg);
        break;
      }
      if (t < t_dp) t_dp = t;
    }

    double v_lp = NAN, t_lp = NAN;
    int rc_lp;
    {
      lukv_error_clear(&e);
      double t0 = now_s();
      rc_lp = lukv_glpk_lp(&cs, g_min, B, lp_limit, &v_lp, &e);
      t_lp = now_s() - t0;
      if (rc_lp != LUKV_OK) fprintf(stderr, "%dx%d: lp: %s\n", L, H, e.msg);
    }
    double v_mip = NAN, gap = NAN, t_mip = NAN;
    int rc_mip = LUKV_OK;
    if (!quick || n <= 256) {
      lukv_error_clear(&e);
      double t0 = now_s();
      rc_mip = lukv_glpk_mip(&cs, g_min, B, mip_limit, ga, a, &v_mip, &gap, &e);
      t_mip = now_s() - t0;
      if (rc_mip != LUKV_OK && rc_mip != LUKV_ERR_TIMELIMIT)
        fprintf(stderr, "%dx%d: mip: %s\n", L, H, e.msg);
    }
    char mip_col[64], gap_txt[24];
    if (isnan(gap))
      snprintf(gap_txt, sizeof gap_txt, "no bound"); /* the root LP did not finish */
    else
      snprintf(gap_txt, sizeof gap_txt, "%.1e", gap);
    snprintf(mip_col, sizeof mip_col, "%.0f / %s / %s", t_mip * 1e3,
             rc_mip == LUKV_OK              ? "optimal"
             : rc_mip == LUKV_ERR_TIMELIMIT ? "time limit"
                                            : "failed",
             gap_txt);
    char name[16];
    snprintf(name, sizeof name, "%dx%d", L, H);
    double rel_ge = (gi->loss - v_dp) / v_dp, rel_el = (v_dp - gi->lp_bound) / v_dp;
    double rel_lp = (v_lp - gi->lp_bound) / gi->lp_bound;
    printf("%-8s %6d | %10.2f | %9.2f %7.1f | %10.0f %8.0f | %-26s | %9.1e %9.1e %9.1e\n", name, n,
           t_greedy * 1e3, t_dp * 1e3, t_dp / t_greedy, t_lp * 1e3, t_lp / t_greedy, mip_col, rel_ge,
           rel_el, rel_lp);
    if (rc_mip == LUKV_OK && fabs(v_mip - v_dp) > 1e-9 * fabs(v_dp))
      printf("  !! MIP optimum %.12g differs from DP %.12g\n", v_mip, v_dp);
    if (si == n_shapes - 1) greedy_big_ms = t_greedy * 1e3;
    free(a);
    free(alloc);
    free(y);
  }
  printf(
      "\nMIP: status optimal = proven, gap 0; time limit = stopped at --mip-limit %.0f s with the "
      "greedy (or a better) incumbent, gap relative to GLPK's best bound, 'no bound' if the root LP did not "
      "finish in time.\n",
      mip_limit);
  printf(
      "columns: greedy 99 = hull + greedy for all 99 ratios in one pass; DP 1 = exact DP at rho with "
      "the greedy's bounds; DP/gr, LP/gr = time ratios to greedy-99; gr-ex = (greedy - exact) / exact; "
      "ex-lp = (exact - LP bound) / exact; lp chk = (GLPK LP - greedy lp_bound) / lp_bound.\n");
  printf("target: greedy for all 99 ratios at 128x32 within %.0f ms: %.2f ms, %s\n", TARGET_MS,
         greedy_big_ms, greedy_big_ms <= TARGET_MS ? "met" : "NOT met");
  return 0;
}

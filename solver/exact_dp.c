/* Exact multiple-choice knapsack by dynamic programming, made fast on
 * thousands of heads by reduced-cost fixing (DESIGN §3 "Exact optimum").
 *
 * Why the fixing is exact: for any lambda >= 0 and any feasible allocation,
 *   sum_h loss_h(g_h) = L(lambda) + sum_h rc_h(g_h) + lambda * slack,
 *   rc_h(g)   = loss_h(g) + lambda*g - m_h >= 0,  m_h = min_g loss_h(g) + lambda*g,
 *   L(lambda) = sum_h m_h - lambda*B (Lagrangian lower bound),
 *   slack     = B - sum_h g_h >= 0.
 * Every term is non-negative, so the allocations of loss <= L + t all lie in
 * the space where each choice has rc_h(g) <= t and slack <= t / lambda.
 * With t = upper - L (upper: a feasible loss, e.g. the greedy's) that space
 * holds the optimum. L(lambda) is recomputed here from lambda, so a caller's
 * slightly-off lp or lambda only weakens the fixing, never makes it wrong.
 *
 * The greedy's gap upper - L is mostly the greedy's own rounding loss, often
 * thousands of times the true optimum's gap, so the DP first runs on smaller
 * thresholds t (schedule below): a pass whose optimum U has U - L <= t is
 * proven optimal (anything better would lie inside the space it searched);
 * otherwise U still tightens upper for the next, wider pass. The last pass,
 * at the full gap, is exact by the argument above.
 *
 * A second, bound-free reduction: a choice g is dominated when some g' < g
 * has loss_h(g') <= loss_h(g) (same or better loss for less budget); an
 * optimum using only undominated choices always exists, and the Lagrangian
 * minimiser of each head with the smallest g is undominated, so every pass
 * keeps at least one choice per head.
 *
 * Each pass runs the DP over the heads that keep several choices, on the
 * offset o = sum_k (g_k - lo_k) above the per-head minima, with exact-sum
 * states restricted to the window that can still end in [C_low, C]. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "solver.h"

#define LUKV_DP_DEFAULT_MEM ((size_t)2 << 30)
/* First threshold = gap / 4096, then x16 per pass: at most four passes
 * before the full gap, and the cost of the passes grows geometrically. */
#define LUKV_DP_FIRST_SHRINK 4096.0
#define LUKV_DP_GROWTH 16.0

/* Internal: the pass's space holds no allocation within the budget. */
#define LUKV_DP_EMPTY 1

typedef struct {
  const lukv_curve_set *cs;
  int n, G, g_min;
  int64_t budget;
  double lambda;
  const double *m; /* [n] or NULL: no reduced-cost fixing */
  size_t mem_limit;
  /* scratch, [n] / [n] / [n * (G+1)] x2 / [n] */
  int *lo, *cstart, *multi;
  uint16_t *cd;
  double *cv;
} lukv_dp_ctx;

/* One DP over the choices with rc <= thr (all when ctx->m is NULL). On
 * LUKV_OK, pick [n] and *loss hold the optimum within that space. */
static int lukv_dp_pass(lukv_dp_ctx *c, double thr, int32_t *pick, double *loss, lukv_error *err) {
  const int n = c->n, G = c->G, S = G + 1, g_min = c->g_min;
  const double lambda = c->lambda;
  int K = 0, nc = 0;
  int64_t sum_lo = 0, sum_w = 0;
  for (int h = 0; h < n; h++) {
    const double *y = c->cs->loss + (size_t)h * S;
    double run_min = INFINITY;
    int first = -1;
    c->cstart[h] = nc;
    for (int g = g_min; g <= G; g++) {
      if (!(y[g] < run_min)) continue; /* dominated by a smaller g */
      run_min = y[g];
      if (c->m && y[g] + lambda * g - c->m[h] > thr) continue;
      if (first < 0) first = g;
      c->cd[nc] = (uint16_t)(g - first);
      c->cv[nc] = y[g];
      nc++;
    }
    if (first < 0) return LUKV_DP_EMPTY; /* only with a threshold below the rounding */
    c->lo[h] = first;
    sum_lo += first;
    if (nc - c->cstart[h] > 1) {
      c->multi[K++] = h;
      sum_w += c->cd[nc - 1];
    }
  }
  c->cstart[n] = nc;

  /* Offsets: at most C (the budget, or everything), at least C_low (the
   * slack the threshold allows). */
  int64_t room = c->budget - sum_lo;
  if (room < 0) return LUKV_DP_EMPTY;
  int64_t C = room < sum_w ? room : sum_w, C_low = 0;
  if (c->m && lambda > 0.0) {
    double smax = floor(thr / lambda);
    if (smax < (double)room) C_low = room - (int64_t)smax;
  }
  if (C_low > C) return LUKV_DP_EMPTY;

  /* Window of exact-sum offsets after k multi heads: [wlo[k], whi[k]];
   * choices of step k live at tab[toff[k-1] + (o - wlo[k])]. */
  int64_t *wlo = malloc(sizeof(int64_t) * ((size_t)K + 1));
  int64_t *whi = malloc(sizeof(int64_t) * ((size_t)K + 1));
  size_t *toff = malloc(sizeof(size_t) * ((size_t)K + 1));
  if (!wlo || !whi || !toff) {
    free(wlo), free(whi), free(toff);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "exact dp: out of memory");
  }
  size_t cells = 0;
  {
    int64_t pre = 0, rest = sum_w;
    wlo[0] = whi[0] = 0;
    for (int k = 1; k <= K; k++) {
      int64_t w = c->cd[c->cstart[c->multi[k - 1] + 1] - 1];
      pre += w;
      rest -= w;
      wlo[k] = C_low - rest > 0 ? C_low - rest : 0;
      whi[k] = pre < C ? pre : C;
      toff[k - 1] = cells;
      cells += (size_t)(whi[k] - wlo[k] + 1);
    }
    toff[K] = cells;
  }
  size_t table_bytes = cells * sizeof(uint16_t);
  size_t need = table_bytes + 2 * ((size_t)C + 1) * sizeof(double) +
                (size_t)n * S * (sizeof(uint16_t) + sizeof(double));
  if (need > c->mem_limit) {
    free(wlo), free(whi), free(toff);
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE,
                          "exact dp: tables need %.1f MiB, limit %.1f MiB (%d heads with several "
                          "choices, offset range %lld)",
                          (double)need / 1048576.0, (double)c->mem_limit / 1048576.0, K, (long long)C);
  }
  uint16_t *tab = malloc(table_bytes ? table_bytes : 1);
  double *prev = malloc(((size_t)C + 1) * sizeof(double));
  double *cur = malloc(((size_t)C + 1) * sizeof(double));
  if (!tab || !prev || !cur) {
    free(wlo), free(whi), free(toff), free(tab), free(prev), free(cur);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "exact dp: out of memory (%.1f MiB)",
                          (double)need / 1048576.0);
  }

  prev[0] = 0.0;
  for (int k = 1; k <= K; k++) {
    int h = c->multi[k - 1];
    int64_t a0 = wlo[k], a1 = whi[k], p0 = wlo[k - 1], p1 = whi[k - 1];
    uint16_t *ch = tab + toff[k - 1]; /* [a1 - a0 + 1] */
    for (int64_t o = a0; o <= a1; o++) cur[o] = INFINITY;
    /* Choices in increasing g with a strict '<': ties keep the smaller g. */
    for (int j = c->cstart[h]; j < c->cstart[h + 1]; j++) {
      int64_t d = c->cd[j];
      double v = c->cv[j];
      int64_t o0 = a0 > p0 + d ? a0 : p0 + d;
      int64_t o1 = a1 < p1 + d ? a1 : p1 + d;
      for (int64_t o = o0; o <= o1; o++) {
        double t = prev[o - d] + v;
        if (t < cur[o]) {
          cur[o] = t;
          ch[o - a0] = (uint16_t)d;
        }
      }
    }
    double *sw = prev;
    prev = cur;
    cur = sw;
  }

  /* Best end state; ties to the smaller offset (less budget). */
  int64_t best_o = -1;
  double best_v = INFINITY;
  for (int64_t o = wlo[K]; o <= whi[K]; o++)
    if (prev[o] < best_v) best_v = prev[o], best_o = o;
  int rc = LUKV_DP_EMPTY;
  if (best_o >= 0) {
    for (int h = 0; h < n; h++) pick[h] = c->lo[h];
    int64_t o = best_o;
    for (int k = K; k >= 1; k--) {
      int d = tab[toff[k - 1] + (size_t)(o - wlo[k])];
      pick[c->multi[k - 1]] += d;
      o -= d;
    }
    /* Re-summed in head order so that equal allocations give equal losses
     * in every solver. */
    double l = 0.0;
    for (int h = 0; h < n; h++) l += c->cs->loss[(size_t)h * S + pick[h]];
    *loss = l;
    rc = LUKV_OK;
  }
  free(wlo), free(whi), free(toff), free(tab), free(prev), free(cur);
  return rc;
}

int lukv_exact_dp(const lukv_curve_set *cs, int g_min, int64_t budget, const lukv_bounds *bounds,
                  size_t mem_limit, int32_t *alloc, double *loss, lukv_error *err) {
  if (!cs || !cs->loss || !alloc || !loss)
    return lukv_error_set(err, LUKV_ERR_INVALID, "exact dp: NULL argument");
  const int n = lukv_curve_set_heads(cs), G = cs->grid, S = G + 1;
  if (cs->n_layers <= 0 || cs->n_kv_heads <= 0 || G <= 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "exact dp: empty curve set");
  if (G > 65535) return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "exact dp: grid %d above 65535", G);
  if (g_min < 0 || g_min > G)
    return lukv_error_set(err, LUKV_ERR_RANGE, "exact dp: g_min %d outside [0, %d]", g_min, G);
  if (budget < (int64_t)n * g_min)
    return lukv_error_set(err, LUKV_ERR_INFEASIBLE, "exact dp: budget %lld below n_heads * g_min = %lld",
                          (long long)budget, (long long)n * g_min);
  if (bounds && (!isfinite(bounds->upper) || !isfinite(bounds->lambda) || bounds->lambda < 0.0))
    return lukv_error_set(err, LUKV_ERR_INVALID, "exact dp: bounds not finite or lambda < 0");

  lukv_dp_ctx c = {0};
  c.cs = cs, c.n = n, c.G = G, c.g_min = g_min, c.budget = budget;
  c.mem_limit = mem_limit ? mem_limit : LUKV_DP_DEFAULT_MEM;
  c.lo = malloc(sizeof(int) * (size_t)n);
  c.cstart = malloc(sizeof(int) * ((size_t)n + 1));
  c.multi = malloc(sizeof(int) * (size_t)n);
  c.cd = malloc(sizeof(uint16_t) * (size_t)n * S);
  c.cv = malloc(sizeof(double) * (size_t)n * S);
  double *m = bounds ? malloc(sizeof(double) * (size_t)n) : NULL;
  int32_t *pick = malloc(sizeof(int32_t) * (size_t)n);
  int32_t *best = malloc(sizeof(int32_t) * (size_t)n);
  int rc;
  if (!c.lo || !c.cstart || !c.multi || !c.cd || !c.cv || (bounds && !m) || !pick || !best) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "exact dp: out of memory");
    goto done;
  }

  if (!bounds) {
    double v;
    rc = lukv_dp_pass(&c, INFINITY, pick, &v, err);
    if (rc == LUKV_OK) {
      memcpy(alloc, pick, sizeof(int32_t) * (size_t)n);
      *loss = v;
    } else if (rc == LUKV_DP_EMPTY) { /* cannot happen: budget >= n * g_min */
      rc = lukv_error_set(err, LUKV_ERR_INFEASIBLE, "exact dp: no allocation within the budget");
    }
    goto done;
  }

  c.lambda = bounds->lambda;
  c.m = m;
  double lag = -c.lambda * (double)budget, scale = fabs(bounds->upper) + c.lambda * (double)budget;
  for (int h = 0; h < n; h++) {
    const double *y = cs->loss + (size_t)h * S;
    double mn = INFINITY;
    for (int g = g_min; g <= G; g++) {
      double v = y[g] + c.lambda * g;
      if (v < mn) mn = v;
    }
    m[h] = mn;
    lag += mn;
    scale += fabs(mn);
  }
  /* The tolerance only widens what is kept: rounding in rc or in the sums
   * must never drop a choice of the optimum. */
  const double tol = 1e-9 * scale + 1e-300;
  if (bounds->upper < lag - tol) {
    rc = lukv_error_set(err, LUKV_ERR_INVALID,
                        "exact dp: bounds inconsistent (upper %.17g below the Lagrangian bound %.17g)",
                        bounds->upper, lag);
    goto done;
  }
  const double upper = bounds->upper;
  double best_v = INFINITY;
  int have = 0;
  double gap = upper - lag; /* >= -tol */
  double t = gap / LUKV_DP_FIRST_SHRINK;
  for (;;) {
    int final = !(t < gap);
    double thr = (final ? gap : t) + tol, v;
    rc = lukv_dp_pass(&c, thr, pick, &v, err);
    if (rc == LUKV_OK && v < best_v) {
      best_v = v, have = 1;
      memcpy(best, pick, sizeof(int32_t) * (size_t)n);
    }
    if (rc != LUKV_OK && rc != LUKV_DP_EMPTY) goto done; /* memory: a wider pass needs more */
    if (final || (rc == LUKV_OK && v - lag <= thr)) break; /* exact, or proven optimal */
    if (rc == LUKV_OK && v - lag < gap) gap = v - lag;     /* a better upper bound */
    t *= LUKV_DP_GROWTH;
  }
  if (!have || best_v > upper + tol) {
    /* Nothing at or below upper exists in the space that must contain it:
     * upper was not a feasible loss, so the search proves nothing. */
    rc = lukv_error_set(err, LUKV_ERR_INVALID, "exact dp: no allocation reaches bounds->upper %.17g",
                        upper);
    goto done;
  }
  memcpy(alloc, best, sizeof(int32_t) * (size_t)n);
  *loss = best_v;
  rc = LUKV_OK;

done:
  free(c.lo), free(c.cstart), free(c.multi), free(c.cd), free(c.cv);
  free(m), free(pick), free(best);
  return rc;
}

/* Baseline allocations evaluated on the same curves as LU-KV (DESIGN §3),
 * and loss evaluation of any allocation. Parameters: docs/solver.md. */
#include <math.h>
#include <stdlib.h>

#include "solver.h"

static int lukv_baseline_check(int n_layers, int n_kv_heads, int grid, int g_min, const int32_t *alloc) {
  if (!alloc || n_layers <= 0 || n_kv_heads <= 0 || grid <= 0) return LUKV_ERR_INVALID;
  if (g_min < 0 || g_min > grid) return LUKV_ERR_RANGE;
  return LUKV_OK;
}

int lukv_alloc_uniform(int n_layers, int n_kv_heads, int grid, int g_min, int64_t budget,
                       int32_t *alloc) {
  int rc = lukv_baseline_check(n_layers, n_kv_heads, grid, g_min, alloc);
  if (rc != LUKV_OK) return rc;
  int n = n_layers * n_kv_heads;
  int64_t g = budget > 0 ? budget / n : 0;
  if (g < g_min) g = g_min;
  if (g > grid) g = grid;
  for (int h = 0; h < n; h++) alloc[h] = (int32_t)g;
  return LUKV_OK;
}

typedef struct {
  double frac;
  int head;
} lukv_frac_item;

static int lukv_frac_cmp(const void *a, const void *b) {
  const lukv_frac_item *x = a, *y = b;
  if (x->frac != y->frac) return x->frac > y->frac ? -1 : 1;
  return (x->head > y->head) - (x->head < y->head);
}

/* Total of the clamped line shifted by delta: sum_l H * clamp(t_l + delta). */
static double lukv_pyramid_total(const double *t, int L, int H, int g_min, int grid, double delta) {
  double s = 0.0;
  for (int l = 0; l < L; l++) {
    double v = t[l] + delta;
    v = v < g_min ? g_min : (v > grid ? grid : v);
    s += v * H;
  }
  return s;
}

/* PyramidKV (Cai et al. 2024): per-layer capacity falls linearly with depth,
 *   t_l = avg * (2 - 1/beta) - avg * (2 - 2/beta) * l / (L - 1),
 * so layer L-1 gets avg/beta, layer 0 gets 2 avg - avg/beta and the mean is
 * avg = budget / n_heads (grid units per head). Clamping to [g_min, G] breaks
 * the mean, so the whole line is shifted by the largest delta with
 * sum_h clamp(t_l + delta) <= budget (bisection; delta = 0 whenever nothing
 * clamps). Heads then get floor of their value, and the units left over go
 * one each to the heads with the largest fractional parts (lower head index
 * on ties), never above G. Every head of a layer shares t_l. */
int lukv_alloc_pyramid(int n_layers, int n_kv_heads, int grid, int g_min, int64_t budget, double beta,
                       int32_t *alloc) {
  int rc = lukv_baseline_check(n_layers, n_kv_heads, grid, g_min, alloc);
  if (rc != LUKV_OK) return rc;
  if (!(beta > 0.0) || !isfinite(beta)) return LUKV_ERR_RANGE;
  const int L = n_layers, H = n_kv_heads, n = L * H;
  if (budget < (int64_t)n * g_min || budget >= (int64_t)n * grid) {
    /* Infeasible (every head at the floor, as the greedy reports it) or
     * enough for everything. */
    int32_t g = budget < (int64_t)n * g_min ? g_min : grid;
    for (int h = 0; h < n; h++) alloc[h] = g;
    return LUKV_OK;
  }
  double *t = malloc(sizeof(double) * (size_t)L);
  double *frac = malloc(sizeof(double) * (size_t)n);
  if (!t || !frac) {
    free(t), free(frac);
    return LUKV_ERR_NOMEM;
  }
  const double avg = (double)budget / n;
  for (int l = 0; l < L; l++)
    t[l] = L == 1 ? avg : avg * (2.0 - 1.0 / beta) - avg * (2.0 - 2.0 / beta) * l / (L - 1);
  double tmin = t[0], tmax = t[0];
  for (int l = 1; l < L; l++) {
    if (t[l] < tmin) tmin = t[l];
    if (t[l] > tmax) tmax = t[l];
  }
  /* total(lo) = n g_min <= budget < n G = total(hi); keep total(lo) <= budget. */
  double lo = g_min - tmax, hi = grid - tmin;
  if (lukv_pyramid_total(t, L, H, g_min, grid, 0.0) <= (double)budget) lo = 0.0;
  for (int it = 0; it < 200 && hi - lo > 1e-12 * (1.0 + fabs(lo)); it++) {
    double mid = 0.5 * (lo + hi);
    if (lukv_pyramid_total(t, L, H, g_min, grid, mid) <= (double)budget)
      lo = mid;
    else
      hi = mid;
  }
  int64_t used = 0;
  for (int h = 0; h < n; h++) {
    double v = t[h / H] + lo;
    v = v < g_min ? g_min : (v > grid ? grid : v);
    double f = floor(v);
    alloc[h] = (int32_t)f;
    frac[h] = v - f;
    used += alloc[h];
  }
  /* Hand out the units the floors left, largest fraction first (each head
   * at most one, so one sort suffices). */
  int64_t left = budget - used;
  if (left > 0) {
    lukv_frac_item *order = malloc(sizeof(lukv_frac_item) * (size_t)n);
    if (!order) {
      free(t), free(frac);
      return LUKV_ERR_NOMEM;
    }
    for (int h = 0; h < n; h++) order[h].frac = frac[h], order[h].head = h;
    qsort(order, (size_t)n, sizeof *order, lukv_frac_cmp);
    for (int i = 0; i < n && left > 0; i++) {
      int h = order[i].head;
      if (!(frac[h] > 0.0)) break;
      if (alloc[h] < grid) alloc[h]++, left--;
    }
    free(order);
  }
  free(t), free(frac);
  return LUKV_OK;
}

double lukv_alloc_loss(const lukv_curve_set *cs, const int32_t *alloc) {
  const int n = lukv_curve_set_heads(cs), S = cs->grid + 1;
  double l = 0.0;
  for (int h = 0; h < n; h++) l += cs->loss[(size_t)h * S + alloc[h]];
  return l;
}

double lukv_alloc_loss_frac(const lukv_curve_set *cs, const double *g) {
  const int n = lukv_curve_set_heads(cs), G = cs->grid, S = G + 1;
  double l = 0.0;
  for (int h = 0; h < n; h++) {
    const double *y = cs->loss + (size_t)h * S;
    double x = g[h] < 0.0 ? 0.0 : (g[h] > G ? (double)G : g[h]);
    int i = (int)floor(x);
    if (i >= G) {
      l += y[G];
      continue;
    }
    double t = x - i;
    l += (1.0 - t) * y[i] + t * y[i + 1];
  }
  return l;
}

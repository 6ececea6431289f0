/* Baseline allocations evaluated on the same curves as LU-KV (DESIGN §3),
 * and loss evaluation of any allocation. Parameters: docs/solver.md. */
#include <math.h>

#include "pyramid.h"
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

/* PyramidKV (Cai et al. 2024): the shared linear-by-layer schedule
 * (common/pyramid.h) in grid units per head, clamped to [g_min, G]: layer
 * L-1 gets avg/beta, layer 0 gets 2 avg - avg/beta, avg = budget / n_heads;
 * the line is shifted so the clamped sum fits the budget, heads get the floor
 * of their value and the units left over go one each to the heads with the
 * largest fractional parts (lower head index on ties), never above G; what
 * those cannot take stays unspent (no fill_rest). A budget below every head
 * at g_min (infeasible, as the greedy reports it) gives every head g_min. */
int lukv_alloc_pyramid(int n_layers, int n_kv_heads, int grid, int g_min, int64_t budget, double beta,
                       int32_t *alloc) {
  int rc = lukv_baseline_check(n_layers, n_kv_heads, grid, g_min, alloc);
  if (rc != LUKV_OK) return rc;
  if (!(beta > 0.0) || !isfinite(beta)) return LUKV_ERR_RANGE;
  return lukv_pyramid_schedule(n_layers, n_kv_heads, g_min, grid, budget, beta, 0, alloc);
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

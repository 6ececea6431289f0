/* Lower convex hull of a loss curve, and the grid/budget arithmetic every
 * solver shares (DESIGN §3 "Allocation problem"). */
#include <math.h>

#include "solver.h"

int64_t lukv_budget_units(double rho, int grid, int n_heads) {
  if (!(rho == rho) || grid <= 0 || n_heads <= 0) return 0;
  double b = (1.0 - rho) * (double)grid * (double)n_heads;
  if (b <= 0.0) return 0;
  return (int64_t)llround(b);
}

int lukv_min_keep_index(int grid, int sink, int window, int context_len) {
  if (grid <= 0) return 0;
  if (context_len <= 0) return grid;
  int64_t G = grid, T = context_len;
  int64_t sw = (int64_t)(sink > 0 ? sink : 0) + (window > 0 ? window : 0);
  /* Integers so that exact fractions (e.g. G * 36 / 1024 = 9) are not pushed
   * up by one by a rounding error in double: ceil(G * max(1/100, sw / T)). */
  int64_t g;
  if (100 * sw >= T)
    g = (G * sw + T - 1) / T;
  else
    g = (G + 99) / 100;
  return g > G ? grid : (int)g;
}

/* Andrew's monotone chain, lower half only: the x are already sorted (grid
 * indices), so one left-to-right sweep suffices. A vertex is kept only on a
 * strict left turn, which drops collinear points: the greedy then sees one
 * segment per slope instead of many equal ones. */
int lukv_hull_lower(const double *y, int g_lo, int g_hi, int *idx_out) {
  if (!y || !idx_out || g_lo > g_hi) return 0;
  int k = 0;
  for (int g = g_lo; g <= g_hi; g++) {
    while (k >= 2) {
      int o = idx_out[k - 2], a = idx_out[k - 1];
      double cross = (double)(a - o) * (y[g] - y[o]) - (y[a] - y[o]) * (double)(g - o);
      if (cross > 0.0) break;
      k--;
    }
    idx_out[k++] = g;
  }
  return k;
}

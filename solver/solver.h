/* Budget allocation on loss curves: DESIGN §3 "Allocation problem".
 *
 * A curve set holds one loss curve per head, heads flattened layer-major
 * (head = l * H + h), each on the keep grid g = 0..G (keep fraction g/G).
 * Every allocation picks one g_h per head with g_min <= g_h <= G and
 * sum_h g_h <= budget (grid units). Budgets come from a compression ratio
 * rho as B = round((1 - rho) * G * n_heads).
 *
 * All functions return LUKV_OK or a negative status; outputs are caller-owned
 * arrays of the documented shape.
 */
#ifndef LUKV_SOLVER_H
#define LUKV_SOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "formats.h"
#include "status.h"

typedef struct lukv_curve_set {
  int n_layers;       /* L */
  int n_kv_heads;     /* H; n_heads = L * H */
  int grid;           /* G */
  const double *loss; /* [L * H, G + 1], borrowed */
} lukv_curve_set;

static inline int lukv_curve_set_heads(const lukv_curve_set *cs) { return cs->n_layers * cs->n_kv_heads; }

/* B = round((1 - rho) * G * n_heads). */
int64_t lukv_budget_units(double rho, int grid, int n_heads);
/* g_min = ceil(G * max(0.01, (sink + window) / T)), at most G. */
int lukv_min_keep_index(int grid, int sink, int window, int context_len);

/* ---- hull ---------------------------------------------------------------- */

/* Lower convex hull of the points (g, y[g]), g = g_lo..g_hi (monotone chain).
 * idx_out (room for g_hi - g_lo + 1) receives the vertex indices, increasing,
 * first g_lo and last g_hi. Returns the vertex count (>= 1). */
int lukv_hull_lower(const double *y, int g_lo, int g_hi, int *idx_out);

/* ---- greedy (LU-KV) ------------------------------------------------------ */

typedef struct lukv_alloc_info {
  int feasible;       /* 0 when budget < n_heads * g_min: every head at g_min */
  int64_t used;       /* sum_h g_h of the returned allocation (<= budget if feasible) */
  double loss;        /* sum_h loss_h(g_h) on the real curves, after the fill step */
  double loss_prefix; /* loss of the hull-vertex prefix alone (before the fill step) */
  double lp_bound;    /* LP relaxation optimum: prefix minus the fractional part of
                         the first segment that did not fit (= fractional greedy) */
  double lambda;      /* LP dual of the budget row: |slope| of that segment (0 if none) */
} lukv_alloc_info;

/* Hull + global greedy for several budgets in one pass.
 * budgets [n_budgets] ascending; alloc [n_budgets, n_heads] receives g_h;
 * info [n_budgets]. The greedy takes hull segments in order of decreasing
 * loss reduction per grid unit and stops at the first segment that does not
 * fit; the head of that segment then moves to the best real-curve point within
 * the leftover budget (ties to the smaller index). Allocations are nested:
 * a larger budget never lowers any g_h. */
int lukv_greedy_solve(const lukv_curve_set *cs, int g_min, const int64_t *budgets,
                      int n_budgets, int32_t *alloc, lukv_alloc_info *info, lukv_error *err);

/* ---- exact --------------------------------------------------------------- */

/* Known bounds that let the DP discard choices (reduced-cost fixing): a
 * feasible loss `upper` and the LP value `lp` with its dual `lambda`.
 * Pass NULL to solve without them. */
typedef struct lukv_bounds {
  double upper;
  double lp;
  double lambda;
} lukv_bounds;

/* Exact optimum by dynamic programming over heads x budget. Fails with
 * LUKV_ERR_TOO_LARGE (nothing written) when its tables would exceed
 * mem_limit bytes (0 = 2 GiB). alloc [n_heads]. */
int lukv_exact_dp(const lukv_curve_set *cs, int g_min, int64_t budget, const lukv_bounds *bounds,
                  size_t mem_limit, int32_t *alloc, double *loss, lukv_error *err);

/* GLPK simplex on the MCKP relaxation (x_hg in [0,1], sum_g x_hg = 1 per head,
 * sum x_hg * g <= budget), over every grid point g_min..G (not only hull
 * vertices, so it independently checks the hull). time_limit_s <= 0: none.
 * Returns LUKV_OK with *obj only when GLPK reports an optimal solution;
 * LUKV_ERR_TIMELIMIT or LUKV_ERR_SOLVER otherwise, with err->msg saying why. */
int lukv_glpk_lp(const lukv_curve_set *cs, int g_min, int64_t budget, double time_limit_s,
                 double *obj, lukv_error *err);

/* GLPK branch-and-cut on the binary MCKP. warm [n_heads] (may be NULL) is a
 * feasible allocation offered to GLPK as an incumbent. On LUKV_OK the solution
 * is proven optimal (*gap = 0). On LUKV_ERR_TIMELIMIT with a feasible
 * incumbent, alloc/obj hold it and *gap its relative MIP gap; without one,
 * *obj = NAN. alloc [n_heads]. */
int lukv_glpk_mip(const lukv_curve_set *cs, int g_min, int64_t budget, double time_limit_s,
                  const int32_t *warm, int32_t *alloc, double *obj, double *gap, lukv_error *err);

/* ---- baselines ----------------------------------------------------------- */

/* Uniform: every head the same g = clamp(floor(budget / n_heads), g_min, G). */
int lukv_alloc_uniform(int n_layers, int n_kv_heads, int grid, int g_min, int64_t budget,
                       int32_t *alloc);
/* PyramidKV's linear-by-layer schedule (parameters in docs/solver.md):
 * layer 0 gets the most, layer L-1 avg/beta, an arithmetic sequence of mean
 * avg = budget / n_heads, clamped to [g_min, G], sum kept <= budget. */
int lukv_alloc_pyramid(int n_layers, int n_kv_heads, int grid, int g_min, int64_t budget,
                       double beta, int32_t *alloc);

/* sum_h loss_h(alloc[h]). */
double lukv_alloc_loss(const lukv_curve_set *cs, const int32_t *alloc);
/* sum_h loss_h at fractional grid positions (linear interpolation), g [n_heads]. */
double lukv_alloc_loss_frac(const lukv_curve_set *cs, const double *g);

/* ---- aggregation and the whole solve ------------------------------------- */

/* The shortest sample context T of a profile (n_samples >= 1): what g_min and
 * a table's context_len are defined by. */
int32_t lukv_profile_min_context(const lukv_profile *p);

/* Mean over the listed samples of a [S, L, H, G+1] float curve array.
 * out [L * H, G + 1]. */
void lukv_curves_mean(const float *curves, int64_t n_samples, int n_layers, int n_kv_heads,
                      int grid, const int64_t *samples, int64_t n_pick, double *out);

enum { LUKV_AGG_MEAN_CURVE = 0, LUKV_AGG_MEAN_OF_SOLUTIONS = 1 };
enum { LUKV_EXACT_NONE = 0, LUKV_EXACT_DP = 1, LUKV_EXACT_MIP = 2 };

typedef struct lukv_solve_opts {
  const char *scorer;         /* curves to solve ("snapkv", ..., "oracle") */
  int aggregation;            /* LUKV_AGG_* */
  const double *ratios;       /* [n_ratios] strictly increasing, each in (0, 1) */
  int n_ratios;
  int exact;                  /* LUKV_EXACT_* */
  int lp;                     /* also run GLPK's LP for every ratio */
  double time_limit_s;        /* per GLPK call; <= 0: none */
  int folds;                  /* 0: none; >= 2: k-fold held-out loss of both aggregations */
  double pyramid_beta;        /* PyramidKV beta (default 20) */
  size_t dp_mem_limit;        /* bytes, 0 = default */
  /* Called after each ratio's work (may be NULL), for a progress line. */
  void (*progress)(void *user, const char *stage, int done, int total);
  void *progress_user;
} lukv_solve_opts;

/* Fills opts with the defaults: snapkv, mean-curve, rho = 0.01..0.99,
 * exact dp, no LP, 60 s, no folds, beta 20. */
void lukv_solve_opts_default(lukv_solve_opts *o);

/* Solves a profile. *out (caller-owned struct, zeroed by the caller) receives
 * the budgets table with /report filled, including the extra reports
 * "feasible", "lp_glpk", "exact_status", "mip_gap" and, with folds,
 * "heldout_mean_curve" and "heldout_mean_of_solutions" (NaN where not run).
 * A GLPK failure or time limit on one ratio is recorded in those reports,
 * never returned as an error. Release with lukv_budgets_free. */
int lukv_solve(const lukv_profile *p, const lukv_solve_opts *o, lukv_budgets *out,
               lukv_error *err);

/* ---- tables on other samples --------------------------------------------- */

/* Keeps samples [from, to) of a profile, in place (0 <= from < to <= S):
 * to calibrate on part of a profile and evaluate on the rest. first_sample
 * (when recorded) moves with the block; the shard attributes are dropped. */
int lukv_profile_slice(lukv_profile *p, int64_t from, int64_t to, lukv_error *err);

/* One ratio of a table read on a profile's curves (mean-curve aggregation of
 * the table's scorer over all of the profile's samples). Losses are summed
 * over heads, as in /report. */
typedef struct lukv_eval_row {
  double compression; /* rho of the table's row */
  double table;       /* loss of the table's keep fractions (interpolated on the grid) */
  double best;        /* loss of the greedy solved on these curves at the same budget:
                         what a table calibrated on these very samples gets */
  double uniform;     /* the baselines at that budget on these curves (NaN if not defined) */
  double pyramid;
  double total;       /* loss of keeping nothing: all the mid tokens' utility */
  double keep_l1;     /* mean over heads of |keep(table) - keep(best)|, fraction of the context */
} lukv_eval_row;

/* Reads table b on profile p. Refused (nothing written) when the model hash
 * (if both carry one), n_layers, n_kv_heads, grid, sink or window differ, or
 * when p lacks b's scorer. rows [b->n_ratios]. */
int lukv_evaluate_table(const lukv_profile *p, const lukv_budgets *b, double pyramid_beta,
                        lukv_eval_row *rows, lukv_error *err);

#endif

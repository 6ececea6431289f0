/* Keep-count allocation: how many tokens each KV head keeps (internal).
 *
 * Pure host functions of budgets and, for Ada-KV, of scores; no tensors are
 * touched here, and scoring lives in the backend, so the policy and the
 * ranking can be tested (and replaced) apart. All counts are for ONE sequence
 * with T prompt tokens, sink s and window w; every result lies in
 * [min(T, s+w), T]. Returns LUKV_OK, LUKV_ERR_NOMEM, or LUKV_ERR_INVALID for
 * arguments the front end should have refused.
 */
#ifndef LUKV_RT_ALLOC_H
#define LUKV_RT_ALLOC_H

#include <math.h>
#include <stdint.h>

/* Scores are compared as this key: NaN ranks below every number, so that a
 * poisoned input can reorder tokens but never break the sort's contract. */
static inline float lukv_rt_score_key(float x) { return isnan(x) ? -INFINITY : x; }

/* floor(x), except that x within 1e-9 (relative) below an integer counts as
 * that integer: 1 - 0.8 is 0.19999999999999996 in binary, and a user asking
 * for ratio 0.8 of 1000 tokens expects 200, not 199. */
static inline double lukv_rt_floor_tol(double x) {
  return floor(x + 1e-9 * (fabs(x) > 1.0 ? fabs(x) : 1.0));
}

/* The runtime rule on real-valued counts x [H] of one layer: floor each,
 * hand floor_tol(sum x) - sum floor(x) tokens to the largest fractional parts
 * (ties: lower index), clamp to [min(T, s+w), T]. keep: out [H]. */
int lukv_rt_round_layer(const double *x, int H, int T, int sink, int window, int32_t *keep);

/* Table rule for one layer: x_h = keep_fraction[h] * T. frac: [H]. */
int lukv_rt_keep_table(const float *frac, int H, int T, int sink, int window, int32_t *keep);

/* Layer budget of the baselines: floor(H * (1 - ratio) * T) (floor_tol). */
int64_t lukv_rt_layer_budget(int H, int T, double ratio);

/* Uniform: every head x = Bl / H, rounded as above (sum = Bl when feasible).
 * keep: out [H]. */
int lukv_rt_keep_uniform(int H, int T, double ratio, int sink, int window, int32_t *keep);

/* PyramidKV (Cai et al. 2024), per head t_l = avg (2 - 1/beta) -
 * avg (2 - 2/beta) l / (L - 1) with avg = Bl / H, shifted as a whole so the
 * clamped line sums to L * Bl, then floors plus the remainder by fractional
 * part (ties: lower layer, then head). keep: out [L * H]. */
int lukv_rt_keep_pyramid(int L, int H, int T, double ratio, int sink, int window, double beta,
                         int32_t *keep);

/* Ada-KV (Feng et al. 2024) with its safeguard, on the mid tokens:
 * M = Bl - H (s + w) mid tokens for the layer; each head first gets
 * g = min(n_mid, floor(alpha * M / H)) (its own top g); the remaining
 * M - H g go to the highest scores among all heads' other mid tokens
 * (ties: lower head, then lower position). keep_h = s + w + g + its share.
 * scores: [H, stride] for positions [0, T) of each head. keep: out [H]. */
int lukv_rt_keep_adakv(int H, int T, double ratio, int sink, int window, double alpha,
                       const float *scores, int64_t stride, int32_t *keep);

#endif

/* Helpers shared by the profiler's statistics files; not part of the API. */
#ifndef LUKV_PROFILER_STATS_INTERNAL_H
#define LUKV_PROFILER_STATS_INTERNAL_H

#include <stddef.h>

#include "stats.h"

/* Checks the view's sizes and scale and that the pointers named by `need`
 * (a string of letters from "qkvlog": q, k, v, lse, o_proj, and g: o_gram or
 * else o_proj) are set.
 * `who` names the calling function in the message. */
int lukv_stats_check_view(const lukv_layer_view *x, const char *need, const char *who,
                          lukv_error *err);

/* Rows of the q·k tiles; the key tile is LUKV_ATTN_TILE_KEYS wide. 64 x 256
 * floats (64 KiB) stays in L2 while each score is read back once. */
#define LUKV_ATTN_TILE_ROWS 64
#define LUKV_ATTN_TILE_KEYS 256

/* For query head q and rows i in [r0, r1), reduces the causal attention
 * probabilities A[q, i, j] = exp(scale·q_i·k_j − lse[q, i]) over i, for each
 * key j < n_keys with j <= i:
 *   use_max = 0: out[j] = Σ_i A[q, i, j]     use_max = 1: out[j] = max_i A[q, i, j]
 * (keys no row sees get 0). Recomputes A tile by tile, never T x T.
 * out: [n_keys] double (overwritten); tile: scratch of
 * LUKV_ATTN_TILE_ROWS * LUKV_ATTN_TILE_KEYS floats. The caller has validated
 * the view and the ranges. */
void lukv_attn_reduce_columns(const lukv_layer_view *x, int q, int r0, int r1, int n_keys,
                              int use_max, float *tile, double *out);

/* The parameter checks of lukv_layer_stats (sink, window, pool kernel, grid,
 * utility mode against the view); shared with the CUDA twin. */
int lukv_stats_check_params(const lukv_layer_view *x, const lukv_stats_params *p, const char *who,
                            lukv_error *err);

/* The rounding guards of lukv_layer_stats (see stats.c) on one scorer curve
 * c [G+1] against its head's oracle curve [G+1]; shared with the CUDA twin,
 * which applies them on the host to the curves it copies back. */
void lukv_stats_guard_curve(float *c, const float *oracle, int G, int T_ctx, int s, int w);

/* lukv_layer_stats' signature with a user pointer: the CPU path or the CUDA
 * twin (stats_cuda.h, where user is the context). */
typedef int (*lukv_layer_stats_fn)(void *user, const lukv_layer_view *x,
                                   const lukv_stats_params *p, int n_scorers,
                                   const lukv_scorer_id *scorers, int n_samples, int n_layers,
                                   int sample, int layer, float *const *curves, float *oracle,
                                   float *utility_total, lukv_error *err);

/* lukv_profile_add_layer with the per-layer statistics done by fn(user, ...):
 * the same checks of the view against the profile, the same parameters taken
 * from it, the same bookkeeping of sample_context_len. `who` names the
 * public caller in messages. */
int lukv_profile_add_layer_with(lukv_profile *prof, int sample, int layer,
                                const lukv_layer_view *x, lukv_layer_stats_fn fn, void *user,
                                const char *who, lukv_error *err);

/* Size of a [a, b] array, 0 on overflow, for malloc calls. */
size_t lukv_stats_nelem(size_t a, size_t b);

#endif

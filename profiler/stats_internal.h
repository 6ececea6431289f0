/* Helpers shared by the profiler's statistics files; not part of the API. */
#ifndef LUKV_PROFILER_STATS_INTERNAL_H
#define LUKV_PROFILER_STATS_INTERNAL_H

#include <stddef.h>

#include "stats.h"

/* Checks the view's sizes and scale and that the pointers named by `need`
 * (a string of letters from "qkvlo": q, k, v, lse, o_proj) are set.
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

/* Size of a [a, b] array, 0 on overflow, for malloc calls. */
size_t lukv_stats_nelem(size_t a, size_t b);

#endif

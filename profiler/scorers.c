/* Scorers: what the runtime can compute at compression time, right after
 * prefill, from the context alone (DESIGN §3 "Scorers"). Highest = keep first. */
#include <stdlib.h>
#include <string.h>

#include "keydiff.h"
#include "stats_internal.h"

int lukv_score_snapkv(const lukv_layer_view *x, int window, int pool_kernel, float *score,
                      lukv_error *err) {
  const char *who = "lukv_score_snapkv";
  int rc = lukv_stats_check_view(x, "qkl", who, err);
  if (rc != LUKV_OK) return rc;
  if (!score) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: score is NULL", who);
  if (window < 0 || window > x->T_ctx)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: window %d outside [0, T_ctx=%d]", who,
                          window, x->T_ctx);
  if (pool_kernel < 1 || pool_kernel % 2 == 0)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: pool kernel %d must be odd and >= 1 (same-size pooling)", who,
                          pool_kernel);

  const int T = x->T_ctx, Hkv = x->n_kv_heads, group = x->n_heads / x->n_kv_heads;
  const int radius = pool_kernel / 2;
  double *attn = malloc(sizeof(double) * (size_t)T);   /* [T_ctx] one query head */
  double *acc = malloc(sizeof(double) * (size_t)T);    /* [T_ctx] group sum of pooled */
  float *tile = malloc(sizeof(float) * LUKV_ATTN_TILE_ROWS * LUKV_ATTN_TILE_KEYS);
  if (!attn || !acc || !tile) {
    free(attn), free(acc), free(tile);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: T_ctx %d", who, T);
  }
  for (int h = 0; h < Hkv; h++) {
    memset(acc, 0, sizeof(double) * (size_t)T);
    for (int q = h * group; q < (h + 1) * group; q++) {
      /* The window rows are context rows: their forward LSE is already over
       * context keys only, exactly the softmax SnapKV sees at prefill. */
      lukv_attn_reduce_columns(x, q, T - window, T, T, 0, tile, attn);
      /* Pool per query head before averaging: each head keeps its own
       * neighbourhoods, as SnapKV pools per head. Positions outside the
       * context take no part (max_pool1d pads with -inf). Kernels are small
       * (7), so the direct O(T·kernel) loop is clearer than a deque. */
      for (int j = 0; j < T; j++) {
        int lo = j - radius < 0 ? 0 : j - radius;
        int hi = j + radius > T - 1 ? T - 1 : j + radius;
        double m = attn[lo];
        for (int i = lo + 1; i <= hi; i++)
          if (attn[i] > m || attn[i] != attn[i]) m = attn[i]; /* keep a NaN visible */
        acc[j] += m;
      }
    }
    for (int j = 0; j < T; j++) score[(size_t)h * T + j] = (float)(acc[j] / group);
  }
  free(attn), free(acc), free(tile);
  return LUKV_OK;
}

int lukv_score_keydiff(const lukv_layer_view *x, float *score, lukv_error *err) {
  const char *who = "lukv_score_keydiff";
  int rc = lukv_stats_check_view(x, "k", who, err);
  if (rc != LUKV_OK) return rc;
  if (!score) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: score is NULL", who);

  const int T = x->T_ctx, Hkv = x->n_kv_heads, d = x->head_dim;
  double *mean = malloc(sizeof(double) * (size_t)d); /* [d] */
  if (!mean) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: head_dim %d", who, d);
  /* Head h's keys are rows of stride Hkv * d in the [T_ctx, Hkv, d] view; the
   * same routine as the runtime's CPU backend (common/keydiff.h). */
  for (int h = 0; h < Hkv; h++)
    lukv_keydiff_head(x->k + (size_t)h * d, T, (size_t)Hkv * d, d, mean, score + (size_t)h * T);
  free(mean);
  return LUKV_OK;
}

int lukv_score(const lukv_layer_view *x, lukv_scorer_id id, int window, int pool_kernel,
               float *score, lukv_error *err) {
  switch (id) {
  case LUKV_SCORER_SNAPKV: return lukv_score_snapkv(x, window, pool_kernel, score, err);
  case LUKV_SCORER_KEYDIFF: return lukv_score_keydiff(x, score, err);
  }
  return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_score: unknown scorer id %d", (int)id);
}

/* On-the-fly attention probabilities, shared by the oracle utility and the
 * SnapKV scorer: the one place that turns q·k tiles into probabilities. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "stats_internal.h"

size_t lukv_stats_nelem(size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / sizeof(double) / a) return 0;
  return a * b;
}

int lukv_stats_check_view(const lukv_layer_view *x, const char *need, const char *who,
                          lukv_error *err) {
  if (!x) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: layer view is NULL", who);
  if (x->T_ctx < 1 || x->F < 0 || x->T_ctx > INT_MAX - x->F)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: T_ctx %d, F %d: need T_ctx >= 1, F >= 0",
                          who, x->T_ctx, x->F);
  if (x->n_heads < 1 || x->n_kv_heads < 1 || x->n_heads % x->n_kv_heads != 0)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: %d query heads is not a positive multiple of %d KV heads", who,
                          x->n_heads, x->n_kv_heads);
  /* BLAS leading dimensions are int: Hq·d must fit. */
  if (x->head_dim < 1 || x->n_heads > INT_MAX / x->head_dim)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: head_dim %d is out of range", who,
                          x->head_dim);
  if (!(x->scale > 0.0f) || !isfinite(x->scale))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: scale %g must be finite and > 0", who,
                          (double)x->scale);
  size_t T = (size_t)x->T_ctx + (size_t)x->F;
  if (lukv_stats_nelem(T, (size_t)x->n_heads * (size_t)x->head_dim) == 0)
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: %zu rows x %d heads is too large", who,
                          T, x->n_heads);
  for (const char *c = need; *c; c++) {
    const void *p = NULL;
    const char *name = "?";
    switch (*c) {
    case 'q': p = x->q, name = "q"; break;
    case 'k': p = x->k, name = "k"; break;
    case 'v': p = x->v, name = "v"; break;
    case 'l': p = x->lse, name = "lse"; break;
    case 'g': /* the Gram matrices, given or from o_proj */
      if (x->o_gram) {
        p = x->o_gram;
        break;
      }
      /* fall through */
    case 'o':
      p = x->o_proj, name = "o_proj";
      if (x->hidden_size < 1)
        return lukv_error_set(err, LUKV_ERR_INVALID, "%s: hidden_size %d must be >= 1", who,
                              x->hidden_size);
      break;
    }
    if (!p) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %s is NULL", who, name);
  }
  return LUKV_OK;
}

void lukv_attn_reduce_columns(const lukv_layer_view *x, int q, int r0, int r1, int n_keys,
                              int use_max, float *tile, double *out) {
  const int Hq = x->n_heads, Hkv = x->n_kv_heads, d = x->head_dim;
  const int h = q / (Hq / Hkv);
  const size_t T = (size_t)x->T_ctx + (size_t)x->F;
  const float *lse = x->lse + (size_t)q * T;
  /* Zero is the identity of both reductions because every A >= 0. */
  memset(out, 0, sizeof(double) * (size_t)n_keys);

  for (int i0 = r0; i0 < r1; i0 += LUKV_ATTN_TILE_ROWS) {
    int nr = r1 - i0 < LUKV_ATTN_TILE_ROWS ? r1 - i0 : LUKV_ATTN_TILE_ROWS;
    /* Causality: no row of this tile sees a key at or beyond i0 + nr. */
    int kend = i0 + nr < n_keys ? i0 + nr : n_keys;
    const float *qt = x->q + ((size_t)i0 * Hq + q) * d;
    for (int j0 = 0; j0 < kend; j0 += LUKV_ATTN_TILE_KEYS) {
      int nk = kend - j0 < LUKV_ATTN_TILE_KEYS ? kend - j0 : LUKV_ATTN_TILE_KEYS;
      const float *kt = x->k + ((size_t)j0 * Hkv + h) * d;
      /* tile [nr, nk] = scale · Q[i0.., q] · K[j0.., h]ᵀ; rows of one head
       * are Hq·d (Hkv·d) floats apart in the [T, H, d] layout. */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, d, x->scale, qt, Hq * d, kt,
                  Hkv * d, 0.0f, tile, nk);
      for (int r = 0; r < nr; r++) {
        int i = i0 + r;
        int jmax = i - j0 + 1 < nk ? i - j0 + 1 : nk; /* keys j <= i */
        const float *s = tile + (size_t)r * nk;
        double *o = out + j0;
        float l = lse[i];
        if (use_max) {
          for (int c = 0; c < jmax; c++) {
            double a = (double)expf(s[c] - l);
            /* `a != a`: a NaN from bad inputs must survive to the caller's
             * range check, and a plain `>` would drop it. */
            if (a > o[c] || a != a) o[c] = a;
          }
        } else {
          for (int c = 0; c < jmax; c++) o[c] += (double)expf(s[c] - l);
        }
      }
    }
  }
}

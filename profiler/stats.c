/* Value norms, the oracle utility and the per-layer driver that fills
 * profile-shaped arrays (DESIGN §3 "Oracle utility", "Curves"). */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stats_internal.h"

static const char *const scorer_names[LUKV_N_SCORERS] = {"snapkv", "keydiff"};

const char *lukv_scorer_name(lukv_scorer_id id) {
  if ((int)id < 0 || (int)id >= LUKV_N_SCORERS) return NULL;
  return scorer_names[id];
}

int lukv_scorer_parse(const char *name, lukv_scorer_id *out, lukv_error *err) {
  if (!name || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_scorer_parse: NULL argument");
  for (int i = 0; i < LUKV_N_SCORERS; i++)
    if (strcmp(name, scorer_names[i]) == 0) {
      *out = (lukv_scorer_id)i;
      return LUKV_OK;
    }
  return lukv_error_set(err, LUKV_ERR_NOTFOUND, "unknown scorer \"%s\" (known: snapkv, keydiff)",
                        name);
}

int lukv_utility_parse(const char *name, lukv_utility_mode *out, lukv_error *err) {
  if (!name || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_utility_parse: NULL argument");
  if (strcmp(name, "max") == 0) *out = LUKV_UTILITY_MAX;
  else if (strcmp(name, "sum") == 0) *out = LUKV_UTILITY_SUM;
  else return lukv_error_set(err, LUKV_ERR_INVALID, "unknown utility \"%s\" (known: max, sum)", name);
  return LUKV_OK;
}

/* Rows of v per vnorm tile: [256, d] floats of scratch, whatever T is. */
#define VNORM_TILE 256

/* M = W_Oqᵀ W_Oq, row-major [d, d]: one D·d² Gram per head instead of D·d
 * work per token (||W_Oq v||² = vᵀ M v); with T >> d that is ~T/d times less
 * work. W_Oq = columns q·d.. of the [D, Hq·d] weight, row stride Hq·d. */
static void gram_of_head(const lukv_layer_view *x, int q, float *M) {
  const int Hq = x->n_heads, d = x->head_dim;
  const float *W = x->o_proj + (size_t)q * d;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, x->hidden_size, 1.0f, W, Hq * d, W,
              Hq * d, 0.0f, M, d);
}

int lukv_stats_gram(const lukv_layer_view *x, float *gram, lukv_error *err) {
  const char *who = "lukv_stats_gram";
  int rc = lukv_stats_check_view(x, "o", who, err);
  if (rc != LUKV_OK) return rc;
  if (!gram) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: gram is NULL", who);
  const size_t dd = (size_t)x->head_dim * x->head_dim;
  for (int q = 0; q < x->n_heads; q++) gram_of_head(x, q, gram + (size_t)q * dd);
  return LUKV_OK;
}

int lukv_stats_vnorm(const lukv_layer_view *x, float *vnorm, lukv_error *err) {
  const char *who = "lukv_stats_vnorm";
  int rc = lukv_stats_check_view(x, "vg", who, err);
  if (rc != LUKV_OK) return rc;
  if (!vnorm) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: vnorm is NULL", who);

  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads, d = x->head_dim;
  const int group = Hq / Hkv;
  float *own = x->o_gram ? NULL : malloc(sizeof(float) * (size_t)d * d); /* [d, d] */
  float *vm = malloc(sizeof(float) * (size_t)VNORM_TILE * d); /* [tile, d] v·M */
  if ((!x->o_gram && !own) || !vm) {
    free(own), free(vm);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: head_dim %d", who, d);
  }
  double sum = 0.0;
  for (int q = 0; q < Hq; q++) {
    const int h = q / group;
    const float *M = x->o_gram ? x->o_gram + (size_t)q * d * d : own;
    if (own) gram_of_head(x, q, own);
    for (int j0 = 0; j0 < T; j0 += VNORM_TILE) {
      int nj = T - j0 < VNORM_TILE ? T - j0 : VNORM_TILE;
      const float *vt = x->v + ((size_t)j0 * Hkv + h) * d;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nj, d, d, 1.0f, vt, Hkv * d, M, d,
                  0.0f, vm, d);
      for (int r = 0; r < nj; r++) {
        const float *vj = vt + (size_t)r * Hkv * d, *a = vm + (size_t)r * d;
        double n2 = 0.0;
        for (int c = 0; c < d; c++) n2 += (double)a[c] * vj[c];
        /* M is PSD, so only rounding can make n2 negative; written so
         * that a NaN passes through to the finiteness check. */
        double n = n2 < 0.0 ? 0.0 : sqrt(n2);
        vnorm[(size_t)q * T + j0 + r] = (float)n;
        sum += n;
      }
    }
  }
  free(own), free(vm);
  if (!isfinite(sum))
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: value norms are not finite (check v, o_proj)", who);
  /* Normalising per layer makes losses comparable across the heads of a
   * layer. A layer whose values are all zero contributes nothing: keep zeros. */
  if (sum > 0.0) {
    size_t n = (size_t)Hq * T;
    for (size_t i = 0; i < n; i++) vnorm[i] = (float)(vnorm[i] / sum);
  }
  return LUKV_OK;
}

int lukv_stats_utility(const lukv_layer_view *x, const float *vnorm, lukv_utility_mode mode,
                       float *u, lukv_error *err) {
  const char *who = "lukv_stats_utility";
  int rc = lukv_stats_check_view(x, "qkl", who, err);
  if (rc != LUKV_OK) return rc;
  if (!vnorm || !u) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: vnorm or u is NULL", who);
  if (x->F < 1)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: F = %d future tokens; need >= 1", who, x->F);
  if (mode != LUKV_UTILITY_MAX && mode != LUKV_UTILITY_SUM)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: unknown utility mode %d", who, (int)mode);

  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads, group = Hq / Hkv;
  double *agg = malloc(sizeof(double) * (size_t)T); /* [T_ctx] one query head */
  float *tile = malloc(sizeof(float) * LUKV_ATTN_TILE_ROWS * LUKV_ATTN_TILE_KEYS);
  if (!agg || !tile) {
    free(agg), free(tile);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: T_ctx %d", who, T);
  }
  for (int h = 0; h < Hkv; h++) {
    float *uh = u + (size_t)h * T;
    memset(uh, 0, sizeof(float) * (size_t)T);
    for (int q = h * group; q < (h + 1) * group; q++) {
      /* vnorm[q, j] does not depend on k and is >= 0, so it factors out of
       * both max_k and Σ_k: reduce the attention first, scale once. The
       * future rows' LSE is over context and earlier future keys, which is
       * exactly the normalisation the method asks for. */
      lukv_attn_reduce_columns(x, q, T, T + x->F, T, mode == LUKV_UTILITY_MAX, tile, agg);
      const float *vq = vnorm + (size_t)q * T;
      for (int j = 0; j < T; j++) {
        float val = (float)(agg[j] * (double)vq[j]);
        /* A NaN (from bad inputs) must stick, so the check below sees it. */
        if (val > uh[j] || val != val) uh[j] = val;
      }
    }
    for (int j = 0; j < T; j++)
      if (!isfinite(uh[j]) || uh[j] < 0.0f) {
        free(agg), free(tile);
        return lukv_error_set(err, LUKV_ERR_RANGE,
                              "%s: utility %g at [head %d, token %d] (check q, k, lse, vnorm)", who,
                              (double)uh[j], h, j);
      }
  }
  free(agg), free(tile);
  return LUKV_OK;
}

int lukv_stats_check_params(const lukv_layer_view *x, const lukv_stats_params *p, const char *who,
                            lukv_error *err) {
  if (!p) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: params is NULL", who);
  if (p->sink < 0 || p->window < 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: sink %d and window %d must be >= 0", who,
                          p->sink, p->window);
  if ((int64_t)x->T_ctx <= (int64_t)p->sink + p->window)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: context of %d tokens leaves no mid tokens after sink %d + window %d",
                          who, x->T_ctx, p->sink, p->window);
  if (x->F < 1)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: F = %d future tokens; need >= 1", who, x->F);
  if (p->pool_kernel < 1 || p->pool_kernel % 2 == 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: pool kernel %d must be odd and >= 1", who,
                          p->pool_kernel);
  if (p->grid < 1) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: grid %d must be >= 1", who, p->grid);
  if (p->utility != LUKV_UTILITY_MAX && p->utility != LUKV_UTILITY_SUM)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: unknown utility mode %d", who, (int)p->utility);
  return LUKV_OK;
}

/* Rounding guards. In exact arithmetic every scorer curve already starts at
 * the mid total, is non-increasing, ends at 0 and lies on or above the
 * oracle. In floating point each curve sums the same utilities in its own
 * order, so the starts may differ by an ulp, and a scorer that ranks the same
 * set as the oracle in another order may land an ulp below it. Consumers
 * (docs/formats.md) may rely on these properties exactly, so each scorer
 * curve is (1) set to the oracle's total where nothing is kept, (2) made
 * non-increasing, (3) raised to the oracle. Each step moves a value by
 * rounding error only and keeps what the previous steps established (a max
 * of two non-increasing curves is non-increasing, both are `total` at the
 * start and 0 at the end). */
void lukv_stats_guard_curve(float *c, const float *oracle, int G, int T_ctx, int s, int w) {
  for (int g = 0; g <= G && lukv_keep_count(g, G, T_ctx, s, w) == 0; g++) c[g] = oracle[0];
  for (int g = 1; g <= G; g++)
    if (c[g] > c[g - 1]) c[g] = c[g - 1];
  for (int g = 0; g <= G; g++)
    if (c[g] < oracle[g]) c[g] = oracle[g];
}

int lukv_layer_stats(const lukv_layer_view *x, const lukv_stats_params *p, int n_scorers,
                     const lukv_scorer_id *scorers, int n_samples, int n_layers, int sample,
                     int layer, float *const *curves, float *oracle, float *utility_total,
                     lukv_error *err) {
  const char *who = "lukv_layer_stats";
  int rc = lukv_stats_check_view(x, "qkvlg", who, err);
  if (rc != LUKV_OK) return rc;
  if ((rc = lukv_stats_check_params(x, p, who, err)) != LUKV_OK) return rc;
  if (n_scorers < 0 || (n_scorers > 0 && (!scorers || !curves)))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %d scorers but no scorer list or curves", who,
                          n_scorers);
  for (int i = 0; i < n_scorers; i++) {
    if (!lukv_scorer_name(scorers[i]))
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: unknown scorer id %d", who, (int)scorers[i]);
    if (!curves[i])
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: curves for %s is NULL", who,
                            lukv_scorer_name(scorers[i]));
  }
  if (!oracle || !utility_total)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: oracle or utility_total is NULL", who);
  if (n_samples < 1 || n_layers < 1 || sample < 0 || sample >= n_samples || layer < 0 ||
      layer >= n_layers)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: sample %d of %d, layer %d of %d out of range",
                          who, sample, n_samples, layer, n_layers);

  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads, G = p->grid;
  const int s = p->sink, w = p->window;
  float *vnorm = malloc(sizeof(float) * (size_t)Hq * T); /* [Hq, T_ctx] */
  float *u = malloc(sizeof(float) * (size_t)Hkv * T);    /* [Hkv, T_ctx] */
  float *score = malloc(sizeof(float) * (size_t)Hkv * T);/* [Hkv, T_ctx] one scorer */
  if (!vnorm || !u || !score) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: T_ctx %d, %d query heads", who, T, Hq);
    goto done;
  }
  if ((rc = lukv_stats_vnorm(x, vnorm, err)) != LUKV_OK) goto done;
  if ((rc = lukv_stats_utility(x, vnorm, p->utility, u, err)) != LUKV_OK) goto done;

  /* Row (sample, layer, h) of an [S, L, H, G+1] array, and of [S, L, H]. */
  const size_t head0 = ((size_t)sample * n_layers + layer) * Hkv;
  for (int h = 0; h < Hkv; h++) {
    float *orow = oracle + (head0 + h) * (G + 1);
    rc = lukv_stats_curve(u + (size_t)h * T, NULL, T, s, w, G, orow, NULL, err);
    if (rc != LUKV_OK) goto done;
    /* m_0 = 0 always, so orow[0] is the mid total as stored. */
    utility_total[head0 + h] = orow[0];
  }
  for (int i = 0; i < n_scorers; i++) {
    if ((rc = lukv_score(x, scorers[i], w, p->pool_kernel, score, err)) != LUKV_OK) goto done;
    for (int h = 0; h < Hkv; h++) {
      float *crow = curves[i] + (head0 + h) * (G + 1);
      rc = lukv_stats_curve(u + (size_t)h * T, score + (size_t)h * T, T, s, w, G, crow, NULL, err);
      if (rc != LUKV_OK) goto done;
      lukv_stats_guard_curve(crow, oracle + (head0 + h) * (G + 1), G, T, s, w);
    }
  }
done:
  free(vnorm), free(u), free(score);
  return rc;
}

static int cpu_layer_stats(void *user, const lukv_layer_view *x, const lukv_stats_params *p,
                           int n_scorers, const lukv_scorer_id *scorers, int n_samples,
                           int n_layers, int sample, int layer, float *const *curves,
                           float *oracle, float *utility_total, lukv_error *err) {
  (void)user;
  return lukv_layer_stats(x, p, n_scorers, scorers, n_samples, n_layers, sample, layer, curves,
                          oracle, utility_total, err);
}

int lukv_profile_add_layer(lukv_profile *prof, int sample, int layer, const lukv_layer_view *x,
                           lukv_error *err) {
  return lukv_profile_add_layer_with(prof, sample, layer, x, cpu_layer_stats, NULL,
                                     "lukv_profile_add_layer", err);
}

int lukv_profile_add_layer_with(lukv_profile *prof, int sample, int layer,
                                const lukv_layer_view *x, lukv_layer_stats_fn fn, void *user,
                                const char *who, lukv_error *err) {
  if (!prof || !x) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: NULL argument", who);
  const lukv_model_id *m = &prof->model;
  if (m->n_kv_heads != x->n_kv_heads || m->n_q_heads != x->n_heads || m->head_dim != x->head_dim)
    return lukv_error_set(err, LUKV_ERR_SHAPE,
                          "%s: view has %d/%d heads of dim %d but the profile %d/%d of dim %d", who,
                          x->n_heads, x->n_kv_heads, x->head_dim, m->n_q_heads, m->n_kv_heads,
                          m->head_dim);
  if (prof->n_samples < 1 || prof->n_samples > INT32_MAX || sample < 0 || sample >= prof->n_samples)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: sample %d of %lld out of range", who, sample,
                          (long long)prof->n_samples);
  if (!prof->sample_context_len || !prof->utility || prof->n_scorers < 0 ||
      (prof->n_scorers > 0 && (!prof->scorer_names || !prof->curves)))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: profile arrays not allocated", who);
  /* A sample's rows across layers must agree: 0 marks "not yet set". */
  int32_t *tlen = &prof->sample_context_len[sample];
  if (*tlen != 0 && *tlen != x->T_ctx)
    return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: sample %d has context %d here but %d before",
                          who, sample, x->T_ctx, (int)*tlen);

  lukv_stats_params p = {.sink = prof->sink, .window = prof->window,
                         .pool_kernel = prof->pool_kernel, .grid = prof->grid};
  int rc = lukv_utility_parse(prof->utility, &p.utility, err);
  if (rc != LUKV_OK) return rc;
  lukv_scorer_id *ids = malloc(sizeof *ids * (size_t)(prof->n_scorers > 0 ? prof->n_scorers : 1));
  if (!ids) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: scorer list", who);
  for (int i = 0; i < prof->n_scorers && rc == LUKV_OK; i++)
    rc = lukv_scorer_parse(prof->scorer_names[i] ? prof->scorer_names[i] : "", &ids[i], err);
  if (rc == LUKV_OK)
    rc = fn(user, x, &p, prof->n_scorers, ids, (int)prof->n_samples, m->n_layers, sample, layer,
            prof->curves, prof->oracle, prof->utility_total, err);
  free(ids);
  if (rc == LUKV_OK) *tlen = x->T_ctx;
  return rc;
}

/* The whole solve of a profile: aggregation over samples, greedy for every
 * ratio, certificates (LP bound, exact optimum), baselines and held-out
 * folds (DESIGN §3 "Aggregation over calibration samples"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "solver.h"

static const double lukv_default_ratios[99] = {
    0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11,
    0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.20, 0.21, 0.22,
    0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.30, 0.31, 0.32, 0.33,
    0.34, 0.35, 0.36, 0.37, 0.38, 0.39, 0.40, 0.41, 0.42, 0.43, 0.44,
    0.45, 0.46, 0.47, 0.48, 0.49, 0.50, 0.51, 0.52, 0.53, 0.54, 0.55,
    0.56, 0.57, 0.58, 0.59, 0.60, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66,
    0.67, 0.68, 0.69, 0.70, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77,
    0.78, 0.79, 0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88,
    0.89, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99,
};

void lukv_solve_opts_default(lukv_solve_opts *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->scorer = "snapkv";
  o->aggregation = LUKV_AGG_MEAN_CURVE;
  o->ratios = lukv_default_ratios;
  o->n_ratios = 99;
  o->exact = LUKV_EXACT_DP;
  o->lp = 0;
  o->time_limit_s = 60.0;
  o->folds = 0;
  o->pyramid_beta = 20.0;
  o->dp_mem_limit = 0;
}

int32_t lukv_profile_min_context(const lukv_profile *p) {
  int32_t T = p->sample_context_len[0];
  for (int64_t s = 1; s < p->n_samples; s++)
    if (p->sample_context_len[s] < T) T = p->sample_context_len[s];
  return T;
}

/* samples == NULL picks samples 0..n_pick-1; indices outside [0, S) are
 * skipped (the mean is over the valid ones; all zeros if none). */
void lukv_curves_mean(const float *curves, int64_t n_samples, int n_layers, int n_kv_heads, int grid,
                      const int64_t *samples, int64_t n_pick, double *out) {
  const size_t per = (size_t)n_layers * n_kv_heads * ((size_t)grid + 1);
  memset(out, 0, sizeof(double) * per);
  int64_t used = 0;
  for (int64_t i = 0; i < n_pick; i++) {
    int64_t s = samples ? samples[i] : i;
    if (s < 0 || s >= n_samples) continue;
    const float *c = curves + (size_t)s * per;
    for (size_t j = 0; j < per; j++) out[j] += c[j];
    used++;
  }
  if (used > 1) {
    double inv = 1.0 / (double)used;
    for (size_t j = 0; j < per; j++) out[j] *= inv;
  }
}

static char *lukv_strdup0(const char *s) {
  return s ? strdup(s) : NULL;
}

static void lukv_progress(const lukv_solve_opts *o, const char *stage, int done, int total) {
  if (o->progress) o->progress(o->progress_user, stage, done, total);
}

/* Everything the solve allocates, released in one place. */
typedef struct {
  double *mean, *sbuf, *train, *test, *gfrac; /* curve sets [n, G+1]; gfrac [n] */
  int64_t *budgets;                            /* [R] ascending */
  int32_t *galloc, *salloc, *falloc, *tmp;     /* [R, n] x3, [n] */
  lukv_alloc_info *ginfo, *sinfo;              /* [R] */
  int64_t *tot, *fsum;                         /* [R, n], [k, R, n] sums of g */
  int64_t *list;                               /* [S] sample indices */
  float *compression, *keep;                   /* [R], [R, n] */
  double *rep[5];                              /* greedy, lp_bound, exact, uniform, pyramid */
  double *ext[6];                              /* feasible, lp_glpk, exact_status, mip_gap, heldout x2 */
} lukv_solve_work;

static void lukv_solve_work_free(lukv_solve_work *w) {
  free(w->mean), free(w->sbuf), free(w->train), free(w->test), free(w->gfrac);
  free(w->budgets), free(w->galloc), free(w->salloc), free(w->falloc), free(w->tmp);
  free(w->ginfo), free(w->sinfo), free(w->tot), free(w->fsum), free(w->list);
  free(w->compression), free(w->keep);
  for (int i = 0; i < 5; i++) free(w->rep[i]);
  for (int i = 0; i < 6; i++) free(w->ext[i]);
}

static int lukv_solve_check(const lukv_profile *p, const lukv_solve_opts *o, lukv_error *err) {
  if (o->n_ratios < 1 || !o->ratios)
    return lukv_error_set(err, LUKV_ERR_RANGE, "no compression ratios given");
  for (int r = 0; r < o->n_ratios; r++) {
    double x = o->ratios[r];
    if (!(x > 0.0 && x < 1.0))
      return lukv_error_set(err, LUKV_ERR_RANGE, "compression ratio %g (index %d) outside (0, 1)", x, r);
    if (r > 0 && !(x > o->ratios[r - 1]))
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "compression ratios not strictly increasing (%g after %g at index %d)", x,
                            o->ratios[r - 1], r);
  }
  if (o->aggregation != LUKV_AGG_MEAN_CURVE && o->aggregation != LUKV_AGG_MEAN_OF_SOLUTIONS)
    return lukv_error_set(err, LUKV_ERR_INVALID, "unknown aggregation %d", o->aggregation);
  if (o->exact != LUKV_EXACT_NONE && o->exact != LUKV_EXACT_DP && o->exact != LUKV_EXACT_MIP)
    return lukv_error_set(err, LUKV_ERR_INVALID, "unknown exact method %d", o->exact);
  if (!(o->pyramid_beta > 0.0) || !isfinite(o->pyramid_beta))
    return lukv_error_set(err, LUKV_ERR_RANGE, "PyramidKV beta %g must be positive", o->pyramid_beta);
  if (p->model.n_layers <= 0 || p->model.n_kv_heads <= 0 || p->grid <= 0 || p->n_samples < 1 ||
      !p->sample_context_len)
    return lukv_error_set(err, LUKV_ERR_INVALID, "profile: empty (L=%d, H=%d, G=%d, S=%lld)",
                          (int)p->model.n_layers, (int)p->model.n_kv_heads, (int)p->grid,
                          (long long)p->n_samples);
  if (o->folds != 0 && (o->folds < 2 || o->folds > p->n_samples))
    return lukv_error_set(err, LUKV_ERR_RANGE, "folds %d: need 0 or 2..%lld (the number of samples)",
                          o->folds, (long long)p->n_samples);
  return LUKV_OK;
}

static int lukv_unknown_scorer(const lukv_profile *p, const char *name, lukv_error *err) {
  char list[768];
  size_t len = 0;
  list[0] = '\0';
  for (int i = 0; i < p->n_scorers && p->scorer_names; i++) {
    int k = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "",
                     p->scorer_names[i] ? p->scorer_names[i] : "?");
    if (k < 0 || (size_t)k >= sizeof list - len) break;
    len += (size_t)k;
  }
  if (p->oracle && len + 10 < sizeof list)
    snprintf(list + len, sizeof list - len, "%soracle", len ? ", " : "");
  return lukv_error_set(err, LUKV_ERR_NOTFOUND, "unknown scorer '%s' (available: %s)", name, list);
}

/* One sample's curves as doubles. */
static void lukv_sample_curves(const float *curves, int64_t s, size_t per, double *out) {
  const float *c = curves + (size_t)s * per;
  for (size_t j = 0; j < per; j++) out[j] = c[j];
}

int lukv_solve(const lukv_profile *p, const lukv_solve_opts *o, lukv_budgets *out, lukv_error *err) {
  if (!p || !o || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "solve: NULL argument");
  int rc = lukv_solve_check(p, o, err);
  if (rc != LUKV_OK) return rc;
  const char *scorer = o->scorer ? o->scorer : "";
  const float *curves = lukv_profile_curves(p, scorer);
  if (!curves) return lukv_unknown_scorer(p, scorer, err);

  const int L = p->model.n_layers, H = p->model.n_kv_heads, G = p->grid, n = L * H;
  const int R = o->n_ratios, K = o->folds;
  const int64_t S = p->n_samples;
  const size_t per = (size_t)n * ((size_t)G + 1), rn = (size_t)R * n;
  const int32_t T = lukv_profile_min_context(p);
  const int g_min = lukv_min_keep_index(G, p->sink, p->window, T);
  const int mos = o->aggregation == LUKV_AGG_MEAN_OF_SOLUTIONS;
  const int need_samples = mos || K >= 2;

  lukv_solve_work w;
  memset(&w, 0, sizeof w);
  int nomem = 0;
#define LUKV_ALLOC(ptr, count)                                            \
  do {                                                                    \
    (ptr) = malloc(sizeof(*(ptr)) * ((size_t)(count) ? (size_t)(count) : 1)); \
    if (!(ptr)) nomem = 1;                                                \
  } while (0)
  LUKV_ALLOC(w.mean, per);
  LUKV_ALLOC(w.budgets, R);
  LUKV_ALLOC(w.galloc, rn);
  LUKV_ALLOC(w.ginfo, R);
  LUKV_ALLOC(w.tmp, n);
  LUKV_ALLOC(w.gfrac, n);
  LUKV_ALLOC(w.compression, R);
  LUKV_ALLOC(w.keep, rn);
  for (int i = 0; i < 5; i++) LUKV_ALLOC(w.rep[i], R);
  for (int i = 0; i < 6; i++) LUKV_ALLOC(w.ext[i], R);
  if (need_samples) {
    LUKV_ALLOC(w.sbuf, per);
    LUKV_ALLOC(w.salloc, rn);
    LUKV_ALLOC(w.sinfo, R);
    w.tot = calloc(rn, sizeof(int64_t));
    if (!w.tot) nomem = 1;
  }
  if (K >= 2) {
    LUKV_ALLOC(w.train, per);
    LUKV_ALLOC(w.test, per);
    LUKV_ALLOC(w.falloc, rn);
    LUKV_ALLOC(w.list, S);
    w.fsum = calloc(rn * (size_t)K, sizeof(int64_t));
    if (!w.fsum) nomem = 1;
  }
#undef LUKV_ALLOC
  if (nomem) {
    lukv_solve_work_free(&w);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "solve: out of memory (%d heads, G=%d, %d ratios)", n, G,
                          R);
  }
  double *rep_greedy = w.rep[0], *rep_lp = w.rep[1], *rep_exact = w.rep[2], *rep_uni = w.rep[3],
         *rep_pyr = w.rep[4];
  double *ex_feas = w.ext[0], *ex_lp = w.ext[1], *ex_status = w.ext[2], *ex_gap = w.ext[3],
         *ex_ho_mc = w.ext[4], *ex_ho_mos = w.ext[5];
  for (int r = 0; r < R; r++) {
    for (int i = 0; i < 5; i++) w.rep[i][r] = NAN;
    for (int i = 0; i < 6; i++) w.ext[i][r] = NAN;
  }

  /* Budgets ascending for the one-pass greedy: ratio r sits at k = R-1-r. */
  for (int r = 0; r < R; r++) w.budgets[R - 1 - r] = lukv_budget_units(o->ratios[r], G, n);
  lukv_curve_set mean_cs = {L, H, G, w.mean};
  lukv_curves_mean(curves, S, L, H, G, NULL, S, w.mean);
  rc = lukv_greedy_solve(&mean_cs, g_min, w.budgets, R, w.galloc, w.ginfo, err);
  if (rc != LUKV_OK) goto fail;
  lukv_progress(o, "greedy", R, R);

  /* Per-sample greedy: the mean-of-solutions table and the fold sums. */
  if (need_samples) {
    lukv_curve_set scs = {L, H, G, w.sbuf};
    for (int64_t s = 0; s < S; s++) {
      lukv_sample_curves(curves, s, per, w.sbuf);
      rc = lukv_greedy_solve(&scs, g_min, w.budgets, R, w.salloc, w.sinfo, err);
      if (rc != LUKV_OK) goto fail;
      int64_t *fs = K >= 2 ? w.fsum + (size_t)(s % K) * rn : NULL;
      for (size_t j = 0; j < rn; j++) {
        w.tot[j] += w.salloc[j];
        if (fs) fs[j] += w.salloc[j];
      }
      lukv_progress(o, "samples", (int)(s + 1), (int)S);
    }
  }

  for (int r = 0; r < R; r++) {
    const int k = R - 1 - r;
    const int64_t B = w.budgets[k];
    const lukv_alloc_info *gi = &w.ginfo[k];
    const int32_t *ga = w.galloc + (size_t)k * n;
    float *keep = w.keep + (size_t)r * n;
    w.compression[r] = (float)o->ratios[r];
    ex_feas[r] = gi->feasible ? 1.0 : 0.0;
    rep_lp[r] = gi->lp_bound;
    if (mos) {
      const int64_t *t = w.tot + (size_t)k * n;
      for (int h = 0; h < n; h++) {
        w.gfrac[h] = (double)t[h] / (double)S;
        keep[h] = (float)(w.gfrac[h] / G);
      }
      rep_greedy[r] = lukv_alloc_loss_frac(&mean_cs, w.gfrac);
    } else {
      for (int h = 0; h < n; h++) keep[h] = (float)((double)ga[h] / G);
      rep_greedy[r] = gi->loss;
    }
    if (lukv_alloc_uniform(L, H, G, g_min, B, w.tmp) == LUKV_OK)
      rep_uni[r] = lukv_alloc_loss(&mean_cs, w.tmp);
    int prc = lukv_alloc_pyramid(L, H, G, g_min, B, o->pyramid_beta, w.tmp);
    if (prc == LUKV_ERR_NOMEM) {
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "solve: out of memory (pyramid)");
      goto fail;
    }
    if (prc == LUKV_OK) rep_pyr[r] = lukv_alloc_loss(&mean_cs, w.tmp);

    /* Certificates: failures are recorded per ratio, only memory aborts. */
    if (o->exact != LUKV_EXACT_NONE) {
      lukv_error e;
      lukv_error_clear(&e);
      double v = NAN, gap = NAN;
      int st;
      if (!gi->feasible) {
        st = LUKV_ERR_INFEASIBLE;
      } else if (o->exact == LUKV_EXACT_DP) {
        lukv_bounds bd = {gi->loss, gi->lp_bound, gi->lambda};
        st = lukv_exact_dp(&mean_cs, g_min, B, &bd, o->dp_mem_limit, w.tmp, &v, &e);
      } else {
        st = lukv_glpk_mip(&mean_cs, g_min, B, o->time_limit_s, ga, w.tmp, &v, &gap, &e);
        ex_gap[r] = gap;
      }
      if (st == LUKV_ERR_NOMEM) {
        rc = lukv_error_set(err, st, "solve: ratio %g: %s", o->ratios[r], e.msg);
        goto fail;
      }
      ex_status[r] = (double)st;
      rep_exact[r] = st == LUKV_OK ? v : NAN;
    }
    if (o->lp && gi->feasible) {
      lukv_error e;
      lukv_error_clear(&e);
      double v = NAN;
      int st = lukv_glpk_lp(&mean_cs, g_min, B, o->time_limit_s, &v, &e);
      if (st == LUKV_ERR_NOMEM) {
        rc = lukv_error_set(err, st, "solve: ratio %g: %s", o->ratios[r], e.msg);
        goto fail;
      }
      ex_lp[r] = st == LUKV_OK ? v : NAN;
    }
    lukv_progress(o, "ratios", r + 1, R);
  }

  /* Folds: calibrate on k-1 folds with each aggregation, score on the rest. */
  if (K >= 2) {
    for (int r = 0; r < R; r++) ex_ho_mc[r] = ex_ho_mos[r] = 0.0;
    lukv_curve_set train_cs = {L, H, G, w.train}, test_cs = {L, H, G, w.test};
    for (int f = 0; f < K; f++) {
      int64_t nt = 0, nh = 0;
      for (int64_t s = 0; s < S; s++)
        if (s % K != f) w.list[nt++] = s;
      for (int64_t s = 0; s < S; s++)
        if (s % K == f) w.list[nt + nh++] = s;
      lukv_curves_mean(curves, S, L, H, G, w.list, nt, w.train);
      lukv_curves_mean(curves, S, L, H, G, w.list + nt, nh, w.test);
      rc = lukv_greedy_solve(&train_cs, g_min, w.budgets, R, w.falloc, w.sinfo, err);
      if (rc != LUKV_OK) goto fail;
      const int64_t *fs = w.fsum + (size_t)f * rn;
      for (int r = 0; r < R; r++) {
        const int k = R - 1 - r;
        ex_ho_mc[r] += lukv_alloc_loss(&test_cs, w.falloc + (size_t)k * n);
        for (int h = 0; h < n; h++) {
          size_t j = (size_t)k * n + h;
          w.gfrac[h] = (double)(w.tot[j] - fs[j]) / (double)nt;
        }
        ex_ho_mos[r] += lukv_alloc_loss_frac(&test_cs, w.gfrac);
      }
      lukv_progress(o, "folds", f + 1, K);
    }
    for (int r = 0; r < R; r++) ex_ho_mc[r] /= K, ex_ho_mos[r] /= K;
  }

  /* Hand over. */
  memset(out, 0, sizeof *out);
  out->model.model_name = lukv_strdup0(p->model.model_name);
  out->model.model_hash = lukv_strdup0(p->model.model_hash);
  out->model.n_layers = p->model.n_layers;
  out->model.n_kv_heads = p->model.n_kv_heads;
  out->model.n_q_heads = p->model.n_q_heads;
  out->model.head_dim = p->model.head_dim;
  out->scorer = strdup(scorer);
  out->aggregation = strdup(mos ? "mean-of-solutions" : "mean-curve");
  out->solver = strdup("hull-greedy");
  out->sink = p->sink;
  out->window = p->window;
  out->grid = G;
  out->min_keep_index = g_min;
  out->context_len = T;
  out->calibration_samples = S;
  out->n_ratios = R;
  out->compression = w.compression, w.compression = NULL;
  out->keep_fraction = w.keep, w.keep = NULL;
  out->report_greedy = w.rep[0], w.rep[0] = NULL;
  out->report_lp_bound = w.rep[1], w.rep[1] = NULL;
  out->report_exact = w.rep[2], w.rep[2] = NULL;
  out->report_uniform = w.rep[3], w.rep[3] = NULL;
  out->report_pyramid = w.rep[4], w.rep[4] = NULL;
  if ((p->model.model_name && !out->model.model_name) ||
      (p->model.model_hash && !out->model.model_hash) || !out->scorer || !out->aggregation ||
      !out->solver) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "solve: out of memory");
    goto fail_out;
  }
  static const char *const names[6] = {"feasible", "lp_glpk", "exact_status", "mip_gap",
                                       "heldout_mean_curve", "heldout_mean_of_solutions"};
  for (int i = 0; i < (K >= 2 ? 6 : 4); i++) {
    rc = lukv_budgets_add_extra(out, names[i], w.ext[i]);
    if (rc != LUKV_OK) {
      rc = lukv_error_set(err, rc, "solve: cannot add report %s", names[i]);
      goto fail_out;
    }
  }
  lukv_solve_work_free(&w);
  return LUKV_OK;

fail_out:
  lukv_budgets_free(out);
  memset(out, 0, sizeof *out);
fail:
  lukv_solve_work_free(&w);
  return rc;
}

int lukv_profile_slice(lukv_profile *p, int64_t from, int64_t to, lukv_error *err) {
  if (!p) return lukv_error_set(err, LUKV_ERR_INVALID, "slice: NULL profile");
  if (from < 0 || to > p->n_samples || from >= to)
    return lukv_error_set(err, LUKV_ERR_RANGE, "samples %lld:%lld: the profile has samples 0:%lld",
                          (long long)from, (long long)to, (long long)p->n_samples);
  const size_t heads = (size_t)p->model.n_layers * (size_t)p->model.n_kv_heads;
  const size_t per = heads * ((size_t)p->grid + 1), n = (size_t)(to - from);
  /* Every array is sample-major, so the kept block moves to the front. */
  for (int i = 0; i < p->n_scorers; i++)
    memmove(p->curves[i], p->curves[i] + (size_t)from * per, n * per * sizeof(float));
  memmove(p->oracle, p->oracle + (size_t)from * per, n * per * sizeof(float));
  memmove(p->utility_total, p->utility_total + (size_t)from * heads, n * heads * sizeof(float));
  memmove(p->sample_context_len, p->sample_context_len + from, n * sizeof(int32_t));
  p->n_samples = (int64_t)n;
  /* provenance follows: the block starts `from` samples later in the corpus,
   * and is no longer the shard it came from */
  p->first_sample += from;
  p->shard_index = p->shard_count = 0;
  return LUKV_OK;
}

/* Why a table cannot be read on a profile's curves, or LUKV_OK. */
static int lukv_evaluate_check(const lukv_profile *p, const lukv_budgets *b, lukv_error *err) {
  const lukv_model_id *pm = &p->model, *bm = &b->model;
  if (pm->model_hash && bm->model_hash && strcmp(pm->model_hash, bm->model_hash))
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "model_hash: the table is for %s (%.12s...), the profile for %s (%.12s...)",
                          bm->model_name ? bm->model_name : "?", bm->model_hash,
                          pm->model_name ? pm->model_name : "?", pm->model_hash);
#define LUKV_SAME(field, what)                                                                       \
  if (b->field != p->field)                                                                          \
    return lukv_error_set(err, LUKV_ERR_SHAPE, "%s is %lld but the profile's is %lld", what,      \
                          (long long)b->field, (long long)p->field);
  LUKV_SAME(model.n_layers, "n_layers")
  LUKV_SAME(model.n_kv_heads, "n_kv_heads")
  LUKV_SAME(grid, "grid")
  LUKV_SAME(sink, "sink")
  LUKV_SAME(window, "window")
#undef LUKV_SAME
  if (!lukv_profile_curves(p, b->scorer)) return lukv_unknown_scorer(p, b->scorer, err);
  return LUKV_OK;
}

int lukv_evaluate_table(const lukv_profile *p, const lukv_budgets *b, double pyramid_beta,
                        lukv_eval_row *rows, lukv_error *err) {
  if (!p || !b || !rows) return lukv_error_set(err, LUKV_ERR_INVALID, "evaluate: NULL argument");
  int rc = lukv_evaluate_check(p, b, err);
  if (rc != LUKV_OK) return rc;
  if (!(pyramid_beta > 0.0) || !isfinite(pyramid_beta))
    return lukv_error_set(err, LUKV_ERR_RANGE, "PyramidKV beta %g must be positive", pyramid_beta);
  const int L = p->model.n_layers, H = p->model.n_kv_heads, G = p->grid, n = L * H;
  const int64_t R = b->n_ratios, S = p->n_samples;
  if (R < 1 || S < 1) return lukv_error_set(err, LUKV_ERR_INVALID, "evaluate: empty table or profile");
  const int g_min = lukv_min_keep_index(G, p->sink, p->window, lukv_profile_min_context(p));

  double *mean = malloc(sizeof(double) * (size_t)n * ((size_t)G + 1));
  double *g = malloc(sizeof(double) * (size_t)n);
  int64_t *budgets = malloc(sizeof(int64_t) * (size_t)R);
  int32_t *alloc = malloc(sizeof(int32_t) * (size_t)R * (size_t)n);
  int32_t *tmp = malloc(sizeof(int32_t) * (size_t)n);
  lukv_alloc_info *info = malloc(sizeof(lukv_alloc_info) * (size_t)R);
  if (!mean || !g || !budgets || !alloc || !tmp || !info) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "evaluate: out of memory (%d heads, G=%d, %lld ratios)", n, G,
                        (long long)R);
    goto done;
  }
  lukv_curves_mean(lukv_profile_curves(p, b->scorer), S, L, H, G, NULL, S, mean);
  lukv_curve_set cs = {L, H, G, mean};
  /* The best table for these curves: the greedy solved on them (budgets ascending). */
  for (int64_t r = 0; r < R; r++) budgets[R - 1 - r] = lukv_budget_units(b->compression[r], G, n);
  rc = lukv_greedy_solve(&cs, g_min, budgets, (int)R, alloc, info, err);
  if (rc != LUKV_OK) goto done;
  for (int64_t r = 0; r < R; r++) {
    const int64_t k = R - 1 - r, B = budgets[k];
    const float *keep = b->keep_fraction + (size_t)r * n;
    const int32_t *best = alloc + (size_t)k * n;
    lukv_eval_row *row = &rows[r];
    double l1 = 0.0, total = 0.0;
    for (int h = 0; h < n; h++) {
      g[h] = (double)keep[h] * G;
      l1 += fabs((double)keep[h] - (double)best[h] / G);
      total += mean[(size_t)h * (G + 1)];
    }
    row->compression = b->compression[r];
    row->table = lukv_alloc_loss_frac(&cs, g);
    row->best = info[k].loss;
    row->keep_l1 = l1 / n;
    row->total = total;
    row->uniform = row->pyramid = NAN;
    if (lukv_alloc_uniform(L, H, G, g_min, B, tmp) == LUKV_OK) row->uniform = lukv_alloc_loss(&cs, tmp);
    int prc = lukv_alloc_pyramid(L, H, G, g_min, B, pyramid_beta, tmp);
    if (prc == LUKV_ERR_NOMEM) {
      rc = lukv_error_set(err, prc, "evaluate: out of memory (pyramid)");
      goto done;
    }
    if (prc == LUKV_OK) row->pyramid = lukv_alloc_loss(&cs, tmp);
  }
  rc = LUKV_OK;
done:
  free(mean), free(g), free(budgets), free(alloc), free(tmp), free(info);
  return rc;
}

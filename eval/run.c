/* The query-agnostic protocol on one sample (run.h). */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

const char *const lukv_eval_alloc_names[LUKV_EVAL_N_ALLOC] = {"full", "uniform", "pyramid", "adakv", "lukv"};

/* ---- prefill ------------------------------------------------------------- */

static int prefill_tap(void *user, const lukv_tap_info *ti) {
  lukv_eval_prefill *p = user;
  if (ti->device != LUKV_DEVICE_CPU) return LUKV_ERR_UNSUPPORTED;
  const int T = p->T, d = p->d, Hkv = p->Hkv, Hq = p->Hq, w = p->w;
  size_t lk = (size_t)ti->layer * Hkv * T * d, lq = (size_t)ti->layer * Hq * w * d;
  /* k, v [T, Hkv, d] f32 -> [Hkv, T, d] bf16 */
  for (int t = 0; t < T; t++)
    for (int h = 0; h < Hkv; h++) {
      const float *ks = ti->k + ((size_t)t * Hkv + h) * d, *vs = ti->v + ((size_t)t * Hkv + h) * d;
      uint16_t *kd = p->k + lk + ((size_t)h * T + t) * d, *vd = p->v + lk + ((size_t)h * T + t) * d;
      for (int c = 0; c < d; c++) kd[c] = lukv_bf16_from_float(ks[c]), vd[c] = lukv_bf16_from_float(vs[c]);
    }
  /* q rows T-w .. T-1 of [T, Hq, d] -> [Hq, w, d] */
  for (int i = 0; i < w; i++)
    for (int h = 0; h < Hq; h++) {
      const float *qs = ti->q + ((size_t)(T - w + i) * Hq + h) * d;
      uint16_t *qd = p->qw + lq + ((size_t)h * w + i) * d;
      for (int c = 0; c < d; c++) qd[c] = lukv_bf16_from_float(qs[c]);
    }
  return LUKV_OK;
}

void lukv_eval_prefill_free(lukv_eval_prefill *p) {
  if (!p) return;
  free(p->k), free(p->v), free(p->qw), free(p->last_logits);
  memset(p, 0, sizeof *p);
}

int lukv_eval_do_prefill(lukv_model *m, const int32_t *context, int T, int w, lukv_eval_prefill *out,
                         lukv_error *err) {
  memset(out, 0, sizeof *out);
  const lukv_model_config *c = lukv_model_get_config(m);
  if (T < 1 || w < 0 || w > T)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: prefill: context %d tokens, window %d", lukv_model_source(m),
                          T, w);
  out->T = T, out->L = c->n_layers, out->Hq = c->n_heads, out->Hkv = c->n_kv_heads, out->d = c->head_dim;
  out->w = w;
  size_t nkv = (size_t)c->n_layers * c->n_kv_heads * T * c->head_dim;
  size_t nq = (size_t)c->n_layers * c->n_heads * (w ? w : 1) * c->head_dim;
  out->k = malloc(nkv * 2);
  out->v = malloc(nkv * 2);
  out->qw = malloc(nq * 2);
  out->last_logits = malloc(sizeof(float) * (size_t)c->vocab_size);
  if (!out->k || !out->v || !out->qw || !out->last_logits) {
    lukv_eval_prefill_free(out);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: prefill: cannot hold K/V of %d tokens (%.1f MiB)",
                          lukv_model_source(m), T, (double)nkv * 4 / (1 << 20));
  }
  lukv_forward_opts o = {.tap = prefill_tap, .tap_user = out, .last_logits_only = 1};
  double t0 = lukv_now();
  int rc = lukv_model_forward(m, NULL, context, T, &o, out->last_logits, err);
  out->seconds = lukv_now() - t0;
  if (rc != LUKV_OK) lukv_eval_prefill_free(out);
  return rc;
}

/* ---- decode through liblukv ------------------------------------------------ */

typedef struct cb_ctx {
  lukv_cache *cache;
  uint16_t *kb, *vb, *qb, *ob; /* [Hkv*d], [Hkv*d], [Hq*d], [Hq*d] */
  char msg[320];
} cb_ctx;

static int attn_cb(void *user, const lukv_attn_call *a) {
  cb_ctx *x = user;
  size_t nk = (size_t)a->n_kv_heads * a->head_dim, nq = (size_t)a->n_heads * a->head_dim;
  for (size_t i = 0; i < nk; i++) x->kb[i] = lukv_bf16_from_float(a->k[i]), x->vb[i] = lukv_bf16_from_float(a->v[i]);
  for (size_t i = 0; i < nq; i++) x->qb[i] = lukv_bf16_from_float(a->q[i]);
  int rc = lukv_append(x->cache, a->layer, x->kb, x->vb);
  if (rc == LUKV_OK) rc = lukv_decode_attention(x->cache, a->layer, x->qb, x->ob, 0.0f);
  if (rc != LUKV_OK) {
    snprintf(x->msg, sizeof x->msg, "liblukv: layer %d: %s", a->layer, lukv_cache_errmsg(x->cache));
    return rc;
  }
  for (size_t i = 0; i < nq; i++) a->out[i] = lukv_bf16_to_float(x->ob[i]);
  return LUKV_OK;
}

/* Creates the cache and compresses every layer. */
static int compress_all(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, int reserve,
                        cb_ctx *x, double *seconds, lukv_error *err) {
  const char *src = lukv_model_source(m);
  lukv_cache_config cc;
  lukv_cache_config_init(&cc);
  cc.n_layers = p->L, cc.n_kv_heads = p->Hkv, cc.n_q_heads = p->Hq, cc.head_dim = p->d;
  cc.batch = 1, cc.max_context = p->T, cc.decode_reserve = reserve;
  cc.backend = LUKV_BACKEND_CPU;
  cc.model_hash = cfg->model_hash;
  int rc = lukv_cache_create(&cc, &x->cache);
  if (rc != LUKV_OK) return lukv_error_set(err, rc, "%s: liblukv: %s", src, lukv_cache_errmsg(NULL));
  x->kb = malloc(sizeof(uint16_t) * (size_t)p->Hkv * p->d * 2);
  x->qb = malloc(sizeof(uint16_t) * (size_t)p->Hq * p->d * 2);
  if (!x->kb || !x->qb) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", src);
  x->vb = x->kb + (size_t)p->Hkv * p->d;
  x->ob = x->qb + (size_t)p->Hq * p->d;
  int32_t *keep = malloc(sizeof(int32_t) * (size_t)p->Hkv);
  if (!keep) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", src);
  for (int h = 0; h < p->Hkv; h++) keep[h] = p->T;
  double t0 = lukv_now();
  for (int l = 0; l < p->L && rc == LUKV_OK; l++) {
    lukv_compress_args a;
    lukv_compress_args_init(&a);
    size_t lk = (size_t)l * p->Hkv * p->T * p->d, lq = (size_t)l * p->Hq * p->w * p->d;
    a.layer = l;
    a.k = p->k + lk;
    a.v = p->v + lk;
    a.q_window = p->w ? p->qw + lq : NULL;
    a.t_max = p->T;
    a.scorer = cfg->scorer;
    a.pool_kernel = cfg->pool_kernel > 0 ? cfg->pool_kernel : 7;
    a.ratio = cfg->ratio;
    if (cfg->alloc == LUKV_EVAL_LUKV) {
      a.policy = LUKV_KEEP_TABLE;
      a.table = cfg->table;
      a.sink = a.window = LUKV_FROM_TABLE;
    } else {
      a.sink = cfg->sink, a.window = cfg->window;
      a.policy = cfg->alloc == LUKV_EVAL_UNIFORM   ? LUKV_KEEP_UNIFORM
                 : cfg->alloc == LUKV_EVAL_PYRAMID ? LUKV_KEEP_PYRAMID
                 : cfg->alloc == LUKV_EVAL_ADAKV   ? LUKV_KEEP_ADAKV
                                                   : LUKV_KEEP_EXPLICIT;
      if (cfg->alloc == LUKV_EVAL_FULL) a.keep = keep, a.ratio = 0;
    }
    rc = lukv_compress(x->cache, &a);
    if (rc != LUKV_OK)
      lukv_error_set(err, rc, "%s: liblukv: compress layer %d (%s, %s, ratio %g): %s", src, l,
                     lukv_eval_alloc_names[cfg->alloc], cfg->scorer, cfg->ratio, lukv_cache_errmsg(x->cache));
  }
  *seconds = lukv_now() - t0;
  free(keep);
  return rc;
}

static void ctx_free(cb_ctx *x) {
  lukv_cache_destroy(x->cache);
  free(x->kb);
  free(x->qb);
}

static int step(lukv_model *m, cb_ctx *x, int32_t tok, int pos, float *logits, lukv_error *err) {
  x->msg[0] = 0;
  int rc = lukv_model_decode_external(m, tok, pos, attn_cb, x, logits, err);
  if (rc != LUKV_OK && x->msg[0]) {
    lukv_error_clear(err); /* the callback's own text says more than the engine's */
    lukv_error_set(err, rc, "%s: %s", lukv_model_source(m), x->msg);
  }
  return rc;
}

int lukv_eval_run(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, const int32_t *question,
                  int nq, const int32_t *answer, int na, lukv_eval_result *out, lukv_error *err) {
  memset(out, 0, sizeof *out);
  const int V = lukv_model_get_config(m)->vocab_size;
  if (na < 1) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: eval: empty answer", lukv_model_source(m));
  cb_ctx x = {0};
  float *logits = malloc(sizeof(float) * (size_t)V);
  out->greedy = malloc(sizeof(int32_t) * (size_t)na);
  int rc = logits && out->greedy ? LUKV_OK
                                 : lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", lukv_model_source(m));
  if (rc == LUKV_OK) rc = compress_all(m, p, cfg, nq + na, &x, &out->compress_s, err);
  if (rc == LUKV_OK) memcpy(logits, p->last_logits, sizeof(float) * (size_t)V);
  int pos = p->T, exact = 1;
  double t0 = lukv_now();
  for (int i = 0; i < nq && rc == LUKV_OK; i++, out->decode_steps++) rc = step(m, &x, question[i], pos++, logits, err);
  for (int j = 0; j < na && rc == LUKV_OK; j++) {
    /* -log softmax(logits)[answer[j]] in double */
    int am = lukv_argmax(logits, V);
    double mx = logits[am], z = 0;
    for (int t = 0; t < V; t++) z += exp((double)logits[t] - mx);
    out->nll_sum += log(z) + mx - (double)logits[answer[j]];
    out->greedy[j] = am;
    exact &= am == answer[j];
    out->n_answer++;
    if (j + 1 < na) {
      rc = step(m, &x, answer[j], pos++, logits, err);
      out->decode_steps++;
    }
  }
  out->decode_s = lukv_now() - t0;
  out->exact = exact;
  if (rc == LUKV_OK) lukv_cache_memory(x.cache, &out->held_bytes, &out->full_bytes);
  ctx_free(&x);
  free(logits);
  if (rc != LUKV_OK) {
    free(out->greedy);
    out->greedy = NULL;
  }
  return rc;
}

int lukv_eval_greedy(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, int n_new,
                     int32_t *out, float *logits_out, lukv_error *err) {
  const int V = lukv_model_get_config(m)->vocab_size;
  if (n_new < 1) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: eval: n_new %d", lukv_model_source(m), n_new);
  cb_ctx x = {0};
  double cs;
  float *logits = malloc(sizeof(float) * (size_t)V);
  int rc = logits ? LUKV_OK : lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", lukv_model_source(m));
  if (rc == LUKV_OK) rc = compress_all(m, p, cfg, n_new, &x, &cs, err);
  if (rc == LUKV_OK) memcpy(logits, p->last_logits, sizeof(float) * (size_t)V);
  for (int i = 0; i < n_new && rc == LUKV_OK; i++) {
    if (i > 0) rc = step(m, &x, out[i - 1], p->T + i - 1, logits, err);
    if (rc != LUKV_OK) break;
    out[i] = lukv_argmax(logits, V);
    if (logits_out) memcpy(logits_out + (size_t)i * V, logits, sizeof(float) * (size_t)V);
  }
  ctx_free(&x);
  free(logits);
  return rc;
}

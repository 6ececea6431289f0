/* The query-agnostic protocol on one sample (run.h). */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lukv_config.h"
#include "progress.h"

#if LUKV_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

const char *const lukv_eval_alloc_names[LUKV_EVAL_N_ALLOC] = {"full", "uniform", "pyramid", "adakv", "lukv"};

/* ---- prefill ------------------------------------------------------------- */

/* Keeps one layer in liblukv's layout (host): k, v [T, Hkv, d] f32 ->
 * [Hkv, T, d] bf16; q_rows [w, Hq, d] f32, the queries at positions
 * T-w .. T-1 -> [Hq, w, d] bf16. */
static void keep_layer(lukv_eval_prefill *p, int layer, const float *q_rows, const float *k, const float *v) {
  const int T = p->T, d = p->d, Hkv = p->Hkv, Hq = p->Hq, w = p->w;
  size_t lk = (size_t)layer * Hkv * T * d, lq = (size_t)layer * Hq * w * d;
  for (int t = 0; t < T; t++)
    for (int h = 0; h < Hkv; h++) {
      const float *ks = k + ((size_t)t * Hkv + h) * d, *vs = v + ((size_t)t * Hkv + h) * d;
      uint16_t *kd = p->k + lk + ((size_t)h * T + t) * d, *vd = p->v + lk + ((size_t)h * T + t) * d;
      for (int c = 0; c < d; c++) kd[c] = lukv_bf16_from_float(ks[c]), vd[c] = lukv_bf16_from_float(vs[c]);
    }
  for (int i = 0; i < w; i++)
    for (int h = 0; h < Hq; h++) {
      const float *qs = q_rows + ((size_t)i * Hq + h) * d;
      uint16_t *qd = p->qw + lq + ((size_t)h * w + i) * d;
      for (int c = 0; c < d; c++) qd[c] = lukv_bf16_from_float(qs[c]);
    }
}

typedef struct tap_ctx {
  lukv_eval_prefill *p;
  float *stage;   /* CUDA: host [2 T KD + w QD] f32, one layer's k | v | q rows */
  char msg[320];  /* why the tap failed, when it did */
} tap_ctx;

static int prefill_tap(void *user, const lukv_tap_info *ti) {
  tap_ctx *x = user;
  lukv_eval_prefill *p = x->p;
  const size_t T = (size_t)p->T, w = (size_t)p->w, QD = (size_t)p->Hq * p->d;
  if (ti->device == LUKV_DEVICE_CPU) {
    keep_layer(p, ti->layer, ti->q + (T - w) * QD, ti->k, ti->v);
    return LUKV_OK;
  }
#if LUKV_HAVE_CUDA
  /* Device f32 (backend.h): the backend synchronised its stream before the
   * call, so plain copies read the layer's values; converted on the host. */
  const size_t KD = (size_t)p->Hkv * p->d;
  float *k = x->stage, *v = k + T * KD, *q = v + T * KD;
  cudaError_t e = cudaMemcpy(k, ti->k, sizeof(float) * T * KD, cudaMemcpyDeviceToHost);
  if (e == cudaSuccess) e = cudaMemcpy(v, ti->v, sizeof(float) * T * KD, cudaMemcpyDeviceToHost);
  if (e == cudaSuccess && w > 0)
    e = cudaMemcpy(q, ti->q + (T - w) * QD, sizeof(float) * w * QD, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) {
    snprintf(x->msg, sizeof x->msg, "prefill: layer %d: copying K, V, q to the host: cudaMemcpy failed: %s",
             ti->layer, cudaGetErrorString(e));
    return LUKV_ERR_CUDA;
  }
  keep_layer(p, ti->layer, q, k, v);
  return LUKV_OK;
#else
  snprintf(x->msg, sizeof x->msg, "prefill: a tap on device %d in a build without CUDA", (int)ti->device);
  return LUKV_ERR_UNSUPPORTED;
#endif
}

void lukv_eval_prefill_free(lukv_eval_prefill *p) {
  if (!p) return;
  free(p->k), free(p->v), free(p->qw), free(p->last_logits);
#if LUKV_HAVE_CUDA
  if (p->k_dev) cudaFree(p->k_dev);
  if (p->v_dev) cudaFree(p->v_dev);
  if (p->qw_dev) cudaFree(p->qw_dev);
#endif
  memset(p, 0, sizeof *p);
}

/* CUDA: device copies of k, v [L, Hkv, T, d] and qw [L, Hq, w, d] (none when
 * w == 0) for liblukv's CUDA backend, which compresses from device memory. */
static int upload_prefill(lukv_model *m, lukv_eval_prefill *p, lukv_error *err) {
#if LUKV_HAVE_CUDA
  const size_t nkv = (size_t)p->L * p->Hkv * p->T * p->d, nq = (size_t)p->L * p->Hq * p->w * p->d;
  void **dst[3] = {&p->k_dev, &p->v_dev, &p->qw_dev};
  const void *src[3] = {p->k, p->v, p->qw};
  const size_t bytes[3] = {nkv * 2, nkv * 2, nq * 2};
  static const char *const name[3] = {"K", "V", "window queries"};
  for (int i = 0; i < 3; i++) {
    if (bytes[i] == 0) continue;
    cudaError_t e = cudaMalloc(dst[i], bytes[i]);
    if (e != cudaSuccess) {
      *dst[i] = NULL;
      return lukv_error_set(err, LUKV_ERR_CUDA, "%s: prefill: %s: cudaMalloc of %.1f MiB failed: %s",
                            lukv_model_source(m), name[i], (double)bytes[i] / (1 << 20), cudaGetErrorString(e));
    }
    e = cudaMemcpy(*dst[i], src[i], bytes[i], cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
      return lukv_error_set(err, LUKV_ERR_CUDA, "%s: prefill: %s: cudaMemcpy to the device failed: %s",
                            lukv_model_source(m), name[i], cudaGetErrorString(e));
  }
  return LUKV_OK;
#else
  (void)p;
  return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: prefill: this build has no CUDA", lukv_model_source(m));
#endif
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
  out->device = lukv_model_device(m);
  size_t nkv = (size_t)c->n_layers * c->n_kv_heads * T * c->head_dim;
  size_t nq = (size_t)c->n_layers * c->n_heads * (w ? w : 1) * c->head_dim;
  tap_ctx x = {.p = out};
  if (out->device == LUKV_DEVICE_CUDA) {
    size_t KD = (size_t)c->n_kv_heads * c->head_dim, QD = (size_t)c->n_heads * c->head_dim;
    x.stage = malloc(sizeof(float) * (2 * (size_t)T * KD + (size_t)w * QD + 1));
  }
  out->k = malloc(nkv * 2);
  out->v = malloc(nkv * 2);
  out->qw = malloc(nq * 2);
  out->last_logits = malloc(sizeof(float) * (size_t)c->vocab_size);
  if (!out->k || !out->v || !out->qw || !out->last_logits || (out->device == LUKV_DEVICE_CUDA && !x.stage)) {
    free(x.stage);
    lukv_eval_prefill_free(out);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: prefill: cannot hold K/V of %d tokens (%.1f MiB)",
                          lukv_model_source(m), T, (double)nkv * 4 / (1 << 20));
  }
  lukv_forward_opts o = {.tap = prefill_tap, .tap_user = &x, .last_logits_only = 1};
  double t0 = lukv_now();
  int rc = lukv_model_forward(m, NULL, context, T, &o, out->last_logits, err);
  out->seconds = lukv_now() - t0;
  free(x.stage);
  if (rc != LUKV_OK && x.msg[0]) {
    lukv_error_clear(err); /* the tap's own text says more than the engine's */
    lukv_error_set(err, rc, "%s: %s", lukv_model_source(m), x.msg);
  }
  if (rc == LUKV_OK && out->device == LUKV_DEVICE_CUDA) rc = upload_prefill(m, out, err);
  if (rc != LUKV_OK) lukv_eval_prefill_free(out);
  return rc;
}

/* ---- decode through liblukv ------------------------------------------------ */

typedef struct cb_ctx {
  lukv_cache *cache;
  uint16_t *kb, *vb, *qb, *ob; /* CPU: host [Hkv*d], [Hkv*d], [Hq*d], [Hq*d] */
  void *stream;                /* CUDA: the stream the cache queues on (NULL: not set yet, legacy) */
  char msg[320];
} cb_ctx;

static int attn_cb(void *user, const lukv_attn_call *a) {
  cb_ctx *x = user;
  int rc;
  if (a->device == LUKV_DEVICE_CUDA) {
    /* bf16 device tensors in and out: no copies, no wait; append and
     * attention are queued on the engine's stream, before its o_proj */
    rc = a->stream == x->stream ? LUKV_OK : lukv_cache_set_stream(x->cache, a->stream);
    if (rc == LUKV_OK) x->stream = a->stream;
    if (rc == LUKV_OK) rc = lukv_append(x->cache, a->layer, a->k_bf16, a->v_bf16);
    if (rc == LUKV_OK) rc = lukv_decode_attention(x->cache, a->layer, a->q_bf16, a->out_bf16, 0.0f);
  } else {
    size_t nk = (size_t)a->n_kv_heads * a->head_dim, nq = (size_t)a->n_heads * a->head_dim;
    for (size_t i = 0; i < nk; i++)
      x->kb[i] = lukv_bf16_from_float(a->k[i]), x->vb[i] = lukv_bf16_from_float(a->v[i]);
    for (size_t i = 0; i < nq; i++) x->qb[i] = lukv_bf16_from_float(a->q[i]);
    rc = lukv_append(x->cache, a->layer, x->kb, x->vb);
    if (rc == LUKV_OK) rc = lukv_decode_attention(x->cache, a->layer, x->qb, x->ob, 0.0f);
    if (rc == LUKV_OK)
      for (size_t i = 0; i < nq; i++) a->out[i] = lukv_bf16_to_float(x->ob[i]);
  }
  if (rc != LUKV_OK) snprintf(x->msg, sizeof x->msg, "liblukv: layer %d: %s", a->layer, lukv_cache_errmsg(x->cache));
  return rc;
}

/* Creates the cache and compresses every layer. */
static int compress_all(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, int reserve,
                        cb_ctx *x, double *seconds, lukv_error *err) {
  const char *src = lukv_model_source(m);
  const int cuda = p->device == LUKV_DEVICE_CUDA;
  if (p->device != lukv_model_device(m))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: eval: the prefill ran on another device than the model",
                          src);
  lukv_cache_config cc;
  lukv_cache_config_init(&cc);
  cc.n_layers = p->L, cc.n_kv_heads = p->Hkv, cc.n_q_heads = p->Hq, cc.head_dim = p->d;
  cc.batch = 1, cc.max_context = p->T, cc.decode_reserve = reserve;
  cc.backend = cuda ? LUKV_BACKEND_CUDA : LUKV_BACKEND_CPU;
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
  /* liblukv takes tensors where its backend computes: device copies on CUDA */
  const uint16_t *K = cuda ? p->k_dev : p->k, *V = cuda ? p->v_dev : p->v, *QW = cuda ? p->qw_dev : p->qw;
  double t0 = lukv_now();
  for (int l = 0; l < p->L && rc == LUKV_OK; l++) {
    lukv_compress_args a;
    lukv_compress_args_init(&a);
    size_t lk = (size_t)l * p->Hkv * p->T * p->d, lq = (size_t)l * p->Hq * p->w * p->d;
    a.layer = l;
    a.k = K + lk;
    a.v = V + lk;
    a.q_window = p->w ? QW + lq : NULL;
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

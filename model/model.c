/* Front end of the engine: configuration, weights, checks on everything a
 * caller passes, KV-cache bookkeeping and generation. All arithmetic is the
 * backend's. */
#include "model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "gguf.h"
#include "lukv_config.h"
#include "weights.h"

struct lukv_model {
  char *source;               /* directory or config path, for messages */
  lukv_model_config cfg;
  lukv_weights w;
  const lukv_backend *be;
  void *state;                /* backend's */
};

struct lukv_kv_cache {
  lukv_model *m;              /* borrowed: the cache must die first */
  int capacity, len;
  void *state;                /* backend's */
};

int lukv_device_parse(const char *name, lukv_device *out) {
  static const lukv_device all[] = {LUKV_DEVICE_CPU, LUKV_DEVICE_CUDA, LUKV_DEVICE_CUDA_F32};
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(name, lukv_device_name(all[i]))) {
      *out = all[i];
      return LUKV_OK;
    }
  return LUKV_ERR_INVALID;
}

const char *lukv_device_name(lukv_device d) {
  switch (d) {
    case LUKV_DEVICE_CPU: return "cpu";
    case LUKV_DEVICE_CUDA: return "cuda";
    case LUKV_DEVICE_CUDA_F32: return "cuda-f32";
  }
  return "?";
}

static int pick_backend(const char *src, lukv_device dev, const lukv_backend **be, lukv_error *err) {
  if (dev == LUKV_DEVICE_CPU) {
    *be = &lukv_backend_cpu;
    return LUKV_OK;
  }
  if (dev == LUKV_DEVICE_CUDA || dev == LUKV_DEVICE_CUDA_F32) {
#if LUKV_HAVE_CUDA
    *be = dev == LUKV_DEVICE_CUDA ? &lukv_backend_cuda : &lukv_backend_cuda_f32;
    return LUKV_OK;
#else
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: device: this build has no CUDA backend (-Dcuda=enabled)",
                          src);
#endif
  }
  return lukv_error_set(err, LUKV_ERR_INVALID, "%s: device: unknown device %d", src, (int)dev);
}

/* Shared tail of open / random: backend init, then drop the mapping unless
 * the backend computes straight from it. */
static int finish(lukv_model *m, lukv_model **out, lukv_error *err) {
  int keep = 0;
  int rc = m->be->init(&m->cfg, &m->w, m->source, &m->state, &keep, err);
  if (rc == LUKV_OK && !keep) lukv_weights_release_files(&m->w);
  if (rc != LUKV_OK) {
    lukv_model_destroy(m);
    return rc;
  }
  *out = m;
  return LUKV_OK;
}

static lukv_model *model_new(const char *source, lukv_device dev, lukv_error *err, int *rc) {
  lukv_model *m = calloc(1, sizeof *m);
  if (!m || !(m->source = strdup(source))) {
    free(m);
    *rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", source);
    return NULL;
  }
  *rc = pick_backend(source, dev, &m->be, err);
  if (*rc != LUKV_OK) {
    lukv_model_destroy(m);
    return NULL;
  }
  return m;
}

int lukv_model_open(const char *dir, lukv_device device, lukv_model **out, lukv_error *err) {
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_open: out is NULL");
  *out = NULL;
  if (!dir) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_open: dir is NULL");
  int rc;
  lukv_model *m = model_new(dir, device, err, &rc);
  if (!m) return rc;
  if (lukv_is_gguf_path(dir)) { /* a llama.cpp file: config and weights from it */
    rc = lukv_weights_from_gguf(dir, &m->cfg, &m->w, err);
    if (rc != LUKV_OK) {
      lukv_model_destroy(m);
      return rc;
    }
    return finish(m, out, err);
  }
  size_t n = strlen(dir) + sizeof "/config.json";
  char *cpath = malloc(n);
  if (!cpath) {
    lukv_model_destroy(m);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", dir);
  }
  snprintf(cpath, n, "%s/config.json", dir);
  rc = lukv_config_read(cpath, &m->cfg, err);
  free(cpath);
  if (rc == LUKV_OK) rc = lukv_weights_load(dir, &m->cfg, &m->w, err);
  if (rc != LUKV_OK) {
    lukv_model_destroy(m);
    return rc;
  }
  return finish(m, out, err);
}

int lukv_model_random(const char *config_path, uint64_t seed, lukv_device device, lukv_model **out,
                      lukv_error *err) {
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_random: out is NULL");
  *out = NULL;
  if (!config_path) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_random: config_path is NULL");
  int rc;
  lukv_model *m = model_new(config_path, device, err, &rc);
  if (!m) return rc;
  rc = lukv_config_read(config_path, &m->cfg, err);
  if (rc == LUKV_OK) rc = lukv_weights_random(&m->cfg, seed, &m->w, err);
  if (rc != LUKV_OK) {
    lukv_model_destroy(m);
    return rc;
  }
  return finish(m, out, err);
}

void lukv_model_destroy(lukv_model *m) {
  if (!m) return;
  if (m->state) m->be->free(m->state);
  lukv_weights_free(&m->w);
  free(m->source);
  free(m);
}

const lukv_model_config *lukv_model_get_config(const lukv_model *m) { return &m->cfg; }
const char *lukv_model_source(const lukv_model *m) { return m->source; }
lukv_device lukv_model_device(const lukv_model *m) { return m->be->device; }

int lukv_model_forward(lukv_model *m, lukv_kv_cache *cache, const int32_t *tokens, int T,
                       const lukv_forward_opts *opts, float *logits, lukv_error *err) {
  if (!m) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_forward: model is NULL");
  if (T < 1 || !tokens)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: tokens: need at least one token (T = %d)", m->source, T);
  if (cache && cache->m != m)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: kv_cache: belongs to another model", m->source);
  for (int t = 0; t < T; t++)
    if (tokens[t] < 0 || tokens[t] >= m->cfg.vocab_size)
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: tokens[%d]: id %ld outside [0, vocab_size %d)", m->source, t,
                            (long)tokens[t], m->cfg.vocab_size);
  int pos0 = cache ? cache->len : 0;
  if (cache && T > cache->capacity - pos0)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: kv_cache: %d cached + %d new tokens exceed capacity %d",
                          m->source, pos0, T, cache->capacity);
  lukv_forward_opts none = {0};
  lukv_fwd_call call = {.tokens = tokens, .T = T, .cache = cache ? cache->state : NULL, .pos0 = pos0,
                        .opts = opts ? opts : &none, .logits = logits, .where = m->source};
  int rc = m->be->forward(m->state, &call, err);
  if (rc == LUKV_OK && cache) cache->len += T;
  return rc;
}

int lukv_kv_cache_create(lukv_model *m, int capacity, lukv_kv_cache **out, lukv_error *err) {
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_kv_cache_create: out is NULL");
  *out = NULL;
  if (!m) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_kv_cache_create: model is NULL");
  if (capacity < 1) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: kv_cache: capacity %d < 1", m->source, capacity);
  lukv_kv_cache *c = calloc(1, sizeof *c);
  if (!c) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: kv_cache: out of memory", m->source);
  int rc = m->be->cache_init(m->state, capacity, &c->state, err);
  if (rc != LUKV_OK) {
    free(c);
    return rc;
  }
  c->m = m;
  c->capacity = capacity;
  *out = c;
  return LUKV_OK;
}

void lukv_kv_cache_destroy(lukv_kv_cache *c) {
  if (!c) return;
  c->m->be->cache_free(c->state);
  free(c);
}

int lukv_kv_cache_len(const lukv_kv_cache *c) { return c->len; }
int lukv_kv_cache_capacity(const lukv_kv_cache *c) { return c->capacity; }
void lukv_kv_cache_reset(lukv_kv_cache *c) { c->len = 0; }

int lukv_model_decode(lukv_model *m, lukv_kv_cache *c, int32_t token, float *logits, lukv_error *err) {
  if (!c) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_decode: cache is NULL");
  return lukv_model_forward(m, c, &token, 1, NULL, logits, err);
}

int lukv_model_decode_external(lukv_model *m, int32_t token, int pos, lukv_attn_fn attn, void *user,
                               float *logits, lukv_error *err) {
  if (!m) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_decode_external: model is NULL");
  if (!attn) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: decode_external: attn is NULL", m->source);
  if (pos < 0) return lukv_error_set(err, LUKV_ERR_RANGE, "%s: decode_external: position %d < 0", m->source, pos);
  if (token < 0 || token >= m->cfg.vocab_size)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: token: id %ld outside [0, vocab_size %d)", m->source,
                          (long)token, m->cfg.vocab_size);
  lukv_forward_opts none = {0};
  lukv_fwd_call call = {.tokens = &token, .T = 1, .cache = NULL, .pos0 = pos, .opts = &none, .logits = logits,
                        .where = m->source, .attn = attn, .attn_user = user};
  return m->be->forward(m->state, &call, err);
}

int lukv_argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lukv_model_generate(lukv_model *m, const int32_t *prompt, int T, int n_new, int32_t *out,
                        lukv_gen_stats *stats, lukv_error *err) {
  if (!m) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_model_generate: model is NULL");
  if (n_new < 0 || (n_new > 0 && !out) || T > INT_MAX - n_new)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: generate: bad n_new %d", m->source, n_new);
  if (stats) stats->prefill_s = stats->decode_s = 0;
  if (n_new == 0) return LUKV_OK;
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
  if (!logits) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: generate: out of memory", m->source);
  lukv_kv_cache *c = NULL;
  int rc = lukv_kv_cache_create(m, T + n_new, &c, err);
  lukv_forward_opts last = {.last_logits_only = 1};
  double t0 = now_s();
  if (rc == LUKV_OK) rc = lukv_model_forward(m, c, prompt, T, &last, logits, err);
  double t1 = now_s();
  if (rc == LUKV_OK) out[0] = lukv_argmax(logits, m->cfg.vocab_size);
  for (int i = 1; i < n_new && rc == LUKV_OK; i++) {
    rc = lukv_model_decode(m, c, out[i - 1], logits, err);
    if (rc == LUKV_OK) out[i] = lukv_argmax(logits, m->cfg.vocab_size);
  }
  if (stats) {
    stats->prefill_s = t1 - t0;
    stats->decode_s = now_s() - t1;
  }
  lukv_kv_cache_destroy(c);
  free(logits);
  return rc;
}

/* The cache front end (lukv.h): argument checks, keep counts, segment
 * layout and accounting. Tensors are only touched through the backend
 * (rt_backend.h); keep counts only through rt_alloc.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lukv_config.h"
#include "rt_alloc.h"
#include "rt_backend.h"
#include "rt_bf16.h"
#include "rt_internal.h"

struct lukv_cache {
  lukv_cache_config cfg;   /* copy; cfg.model_hash points at model_hash */
  char *model_hash;        /* owned copy or NULL */
  lukv_rt_dims dims;
  const lukv_rt_backend *be;
  void *be_ctx;            /* the backend's per-cache state (NULL on CPU) */
  lukv_rt_layer *layers;   /* [L] */
  char msg[LUKV_RT_MSG];   /* last failure, "" if none */
};

/* Text of this thread's last failed lukv_cache_create (no handle holds it). */
static _Thread_local char create_msg[LUKV_RT_MSG];

#define BF16 ((int64_t)sizeof(uint16_t))

uint16_t lukv_bf16_from_float(float x) { return lukv_rt_f32_to_bf16(x); }
float lukv_bf16_to_float(uint16_t x) { return lukv_rt_bf16_to_f32(x); }

void lukv_cache_config_init(lukv_cache_config *cfg) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->backend = LUKV_BACKEND_CPU;
  cfg->dtype = LUKV_KV_BF16;
}

void lukv_compress_args_init(lukv_compress_args *a) {
  if (!a) return;
  memset(a, 0, sizeof *a);
  a->policy = LUKV_KEEP_TABLE;
  a->sink = LUKV_FROM_TABLE;
  a->window = LUKV_FROM_TABLE;
  a->pool_kernel = 7;
  a->adakv_alpha = 0.2;
  a->pyramid_beta = 20.0;
}

const char *lukv_cache_errmsg(const lukv_cache *cache) { return cache ? cache->msg : create_msg; }

/* ---- create / destroy ---------------------------------------------------- */

static void layer_free(const lukv_cache *c, lukv_rt_layer *ly) {
  const lukv_rt_backend *be = c->be;
  if (ly->dev && be->layer_fini) be->layer_fini(c->be_ctx, ly);
  if (ly->k) be->free(c->be_ctx, ly->k);
  if (ly->v) be->free(c->be_ctx, ly->v);
  free(ly->seg);
  free(ly->pos);
  memset(ly, 0, sizeof *ly);
}

static int check_config(const lukv_cache_config *c, lukv_error *e) {
  const char *who = "lukv_cache_create";
  struct {
    const char *name;
    int v, lo;
  } f[] = {{"n_layers", c->n_layers, 1},       {"n_kv_heads", c->n_kv_heads, 1},
           {"n_q_heads", c->n_q_heads, 1},     {"head_dim", c->head_dim, 1},
           {"batch", c->batch, 1},             {"max_context", c->max_context, 1},
           {"decode_reserve", c->decode_reserve, 0}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].v < f[i].lo)
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: %s is %d but must be >= %d", who, f[i].name,
                            f[i].v, f[i].lo);
  if (c->n_q_heads % c->n_kv_heads != 0)
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "%s: n_q_heads %d is not a multiple of n_kv_heads %d", who,
                          c->n_q_heads, c->n_kv_heads);
  if (c->dtype != LUKV_KV_BF16)
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: unknown dtype %d (bf16 is %d)", who,
                          (int)c->dtype, (int)LUKV_KV_BF16);
#if !LUKV_HAVE_CUDA
  if (c->backend == LUKV_BACKEND_CUDA)
    return lukv_error_set(e, LUKV_ERR_UNSUPPORTED,
                          "%s: this build of liblukv has no CUDA backend (configured without "
                          "CUDA: meson -Dcuda=enabled needs nvcc); use LUKV_BACKEND_CPU",
                          who);
#else
  /* The CUDA kernels move rows as 16-byte vectors, 8 bf16 per thread, at
   * most 32 threads per row. */
  if (c->backend == LUKV_BACKEND_CUDA && (c->head_dim % 8 != 0 || c->head_dim > 256))
    return lukv_error_set(e, LUKV_ERR_UNSUPPORTED,
                          "%s: the CUDA backend needs head_dim a multiple of 8 and <= 256, "
                          "not %d; use LUKV_BACKEND_CPU",
                          who, c->head_dim);
  /* Its kernels put the B * Hkv segments of a layer on grid y. */
  if (c->backend == LUKV_BACKEND_CUDA && (int64_t)c->batch * c->n_kv_heads > 65535)
    return lukv_error_set(e, LUKV_ERR_UNSUPPORTED,
                          "%s: the CUDA backend serves at most 65535 segments per layer, not "
                          "batch %d x n_kv_heads %d = %lld; use a smaller batch",
                          who, c->batch, c->n_kv_heads, (long long)c->batch * c->n_kv_heads);
#endif
  if (c->backend != LUKV_BACKEND_CPU && c->backend != LUKV_BACKEND_CUDA)
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: unknown backend %d", who, (int)c->backend);
  /* Capacities are int32 and the worst layer must be addressable in bytes:
   * B * Hkv * (max_context + reserve) rows of d bf16, twice (K and V). Every
   * other size the cache computes is smaller. */
  const int64_t cap = (int64_t)c->max_context + c->decode_reserve;
  const int64_t segs = (int64_t)c->batch * c->n_kv_heads;
  if (cap > INT32_MAX || segs > INT32_MAX / 2 || (int64_t)c->batch * c->n_q_heads > INT32_MAX ||
      (int64_t)c->n_layers * c->n_kv_heads > INT32_MAX ||
      segs > INT64_MAX / cap / c->head_dim / (2 * BF16) ||
      (uint64_t)(segs * cap * c->head_dim * 2 * BF16) > SIZE_MAX)
    return lukv_error_set(e, LUKV_ERR_TOO_LARGE,
                          "%s: batch %d x n_kv_heads %d x (max_context %d + decode_reserve %d) x "
                          "head_dim %d exceeds what one layer buffer can address",
                          who, c->batch, c->n_kv_heads, c->max_context, c->decode_reserve,
                          c->head_dim);
  return LUKV_OK;
}

int lukv_cache_create(const lukv_cache_config *cfg, lukv_cache **out) {
  lukv_error e;
  lukv_error_clear(&e);
  if (out) *out = NULL;
  if (!cfg || !out) {
    lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_cache_create: %s is NULL", !cfg ? "cfg" : "out");
    return lukv_rt_keep_msg(create_msg, e.status, &e);
  }
  int rc = check_config(cfg, &e);
  if (rc != LUKV_OK) return lukv_rt_keep_msg(create_msg, rc, &e);
  lukv_cache *c = calloc(1, sizeof *c);
  if (c) c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
  if (c && cfg->model_hash) c->model_hash = strdup(cfg->model_hash);
  if (!c || !c->layers || (cfg->model_hash && !c->model_hash)) {
    if (c) free(c->layers), free(c->model_hash);
    free(c);
    lukv_error_set(&e, LUKV_ERR_NOMEM, "lukv_cache_create: out of memory");
    return lukv_rt_keep_msg(create_msg, e.status, &e);
  }
  c->cfg = *cfg;
  c->cfg.model_hash = c->model_hash;
  c->dims = (lukv_rt_dims){.L = cfg->n_layers, .Hkv = cfg->n_kv_heads, .Hq = cfg->n_q_heads,
                           .d = cfg->head_dim, .B = cfg->batch};
  c->be = &lukv_rt_backend_cpu;
#if LUKV_HAVE_CUDA
  if (cfg->backend == LUKV_BACKEND_CUDA) c->be = &lukv_rt_backend_cuda;
#endif
  if (c->be->init && (rc = c->be->init(&c->dims, cfg->decode_reserve, &c->be_ctx, &e)) != LUKV_OK) {
    free(c->layers), free(c->model_hash), free(c);
    return lukv_rt_keep_msg(create_msg, rc, &e);
  }
  *out = c;
  return LUKV_OK;
}

void lukv_cache_destroy(lukv_cache *cache) {
  if (!cache) return;
  for (int l = 0; l < cache->dims.L; l++) layer_free(cache, &cache->layers[l]);
  if (cache->be->fini) cache->be->fini(cache->be_ctx);
  free(cache->layers);
  free(cache->model_hash);
  free(cache);
}

int lukv_cache_reset(lukv_cache *cache) {
  if (!cache) return LUKV_ERR_INVALID;
  for (int l = 0; l < cache->dims.L; l++) layer_free(cache, &cache->layers[l]);
  return LUKV_OK;
}

/* ---- tables -------------------------------------------------------------- */

static int check_table(const lukv_cache *c, const lukv_table *t, lukv_error *e) {
  const lukv_model_id *m = &t->b.model;
  struct {
    const char *name;
    int table, cache;
  } f[] = {{"n_layers", m->n_layers, c->dims.L},
           {"n_kv_heads", m->n_kv_heads, c->dims.Hkv},
           {"n_q_heads", m->n_q_heads, c->dims.Hq},
           {"head_dim", m->head_dim, c->dims.d}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (f[i].table != f[i].cache)
      return lukv_error_set(e, LUKV_ERR_SHAPE,
                            "table for model \"%s\" has %s %d but the cache has %d",
                            m->model_name ? m->model_name : "?", f[i].name, f[i].table,
                            f[i].cache);
  if (c->model_hash && (!m->model_hash || strcmp(c->model_hash, m->model_hash) != 0))
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "table was calibrated for model_hash \"%s\" but the cache serves \"%s\"",
                          m->model_hash ? m->model_hash : "", c->model_hash);
  return LUKV_OK;
}

int lukv_cache_check_table(lukv_cache *cache, lukv_table *table) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  int rc = table ? check_table(cache, table, &e)
                 : lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_cache_check_table: table is NULL");
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

/* ---- compress ------------------------------------------------------------ */

/* The arguments after defaults and checks, shared by compress and scores. */
typedef struct resolved {
  lukv_rt_scorer scorer;
  int sink, window, pool_kernel, t_max;
  float scale;
  int32_t *T; /* [B] owned */
} resolved;

static int parse_scorer(const char *name, lukv_rt_scorer *out) {
  if (strcmp(name, "snapkv") == 0) return *out = LUKV_RT_SNAPKV, LUKV_OK;
  if (strcmp(name, "keydiff") == 0) return *out = LUKV_RT_KEYDIFF, LUKV_OK;
  return LUKV_ERR_NOTFOUND;
}

/* sink or window: LUKV_FROM_TABLE -> the table's (or the default); an
 * explicit value must agree with the table, which was calibrated with it. */
static int resolve_sw(const char *who, const char *name, int given, const lukv_table *t,
                      int table_v, int dflt, int *out, lukv_error *e) {
  if (given == LUKV_FROM_TABLE) {
    *out = t ? table_v : dflt;
    return LUKV_OK;
  }
  if (given < 0)
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: %s %d must be >= 0 or LUKV_FROM_TABLE", who,
                          name, given);
  if (t && given != table_v)
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "%s: %s %d but the table was calibrated with %s %d", who, name, given,
                          name, table_v);
  *out = given;
  return LUKV_OK;
}

static int resolve(const lukv_cache *c, const lukv_compress_args *a, const char *who,
                   resolved *r, lukv_error *e) {
  memset(r, 0, sizeof *r);
  if (!a) return lukv_error_set(e, LUKV_ERR_INVALID, "%s: args is NULL", who);
  if (a->layer < 0 || a->layer >= c->dims.L)
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: layer %d outside [0, %d)", who, a->layer,
                          c->dims.L);
  if (!a->k) return lukv_error_set(e, LUKV_ERR_INVALID, "%s: k is NULL", who);
  if (a->t_max < 1)
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: t_max %d must be >= 1", who, a->t_max);
  const lukv_table *t = a->table;
  int rc;
  if (t && (rc = check_table(c, t, e))) return rc;
  const char *name = a->scorer ? a->scorer : (t ? t->b.scorer : "snapkv");
  if (parse_scorer(name, &r->scorer) != LUKV_OK)
    return lukv_error_set(e, LUKV_ERR_NOTFOUND,
                          "%s: scorer \"%s\"%s is not one the runtime has (snapkv, keydiff)", who,
                          name, a->scorer ? "" : " of the table");
  if (t && strcmp(name, t->b.scorer) != 0)
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "%s: scorer \"%s\" but the table was solved for \"%s\" curves", who,
                          name, t->b.scorer);
  if ((rc = resolve_sw(who, "sink", a->sink, t, t ? t->b.sink : 0, 4, &r->sink, e)) ||
      (rc = resolve_sw(who, "window", a->window, t, t ? t->b.window : 0, 32, &r->window, e)))
    return rc;
  if (a->pool_kernel < 1 || a->pool_kernel % 2 == 0)
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "%s: pool_kernel %d must be odd and >= 1 (same-size pooling)", who,
                          a->pool_kernel);
  r->pool_kernel = a->pool_kernel;
  if (!(a->scale >= 0.0f) || isinf(a->scale))
    return lukv_error_set(e, LUKV_ERR_INVALID, "%s: scale %g must be finite and >= 0", who,
                          (double)a->scale);
  r->scale = a->scale > 0.0f ? a->scale : (float)(1.0 / sqrt((double)c->dims.d));
  if (r->scorer == LUKV_RT_SNAPKV && r->window > 0 && !a->q_window)
    return lukv_error_set(e, LUKV_ERR_INVALID,
                          "%s: scorer snapkv needs q_window [B, Hq, w=%d, d]", who, r->window);
  r->t_max = a->t_max;
  r->T = malloc(sizeof *r->T * (size_t)c->dims.B);
  if (!r->T) return lukv_error_set(e, LUKV_ERR_NOMEM, "%s: out of memory", who);
  for (int b = 0; b < c->dims.B; b++) {
    int32_t T = a->context_len ? a->context_len[b] : a->t_max;
    if (T < 1 || T > a->t_max || T > c->cfg.max_context)
      return lukv_error_set(e, LUKV_ERR_RANGE,
                            "%s: context_len[%d] = %d outside [1, min(t_max %d, max_context %d)]",
                            who, b, (int)T, a->t_max, c->cfg.max_context);
    r->T[b] = T;
  }
  return LUKV_OK;
}

/* Scores of every (b, h) into fresh backend memory [B, Hkv, t_max]. */
static int run_score(const lukv_cache *c, const lukv_compress_args *a, const resolved *r,
                     float **scores, lukv_error *e) {
  const size_t n = (size_t)c->dims.B * c->dims.Hkv * (size_t)r->t_max;
  int rc = c->be->alloc(c->be_ctx, n * sizeof(float), (void **)scores, e);
  if (rc != LUKV_OK) return rc;
  lukv_rt_score_job job = {.dims = c->dims, .k = a->k, .q_window = a->q_window,
                           .t_max = r->t_max, .context_len = r->T, .scorer = r->scorer,
                           .window = r->window, .pool_kernel = r->pool_kernel, .scale = r->scale};
  rc = c->be->score(c->be_ctx, &job, *scores, e);
  if (rc != LUKV_OK) {
    c->be->free(c->be_ctx, *scores);
    *scores = NULL;
  }
  return rc;
}

static int check_policy(const lukv_cache *c, const lukv_compress_args *a, const resolved *r,
                        int64_t *table_row, lukv_error *e) {
  const char *who = "lukv_compress";
  switch (a->policy) {
  case LUKV_KEEP_TABLE:
    if (!a->table)
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: policy LUKV_KEEP_TABLE needs a table", who);
    {
      int rc = lukv_rt_table_find(a->table, a->ratio, table_row, e);
      if (rc != LUKV_OK) return rc;
    }
    return LUKV_OK;
  case LUKV_KEEP_UNIFORM:
  case LUKV_KEEP_PYRAMID:
  case LUKV_KEEP_ADAKV:
    if (!(a->ratio >= 0.0 && a->ratio <= 1.0))
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: ratio %g outside [0, 1]", who, a->ratio);
    if (a->policy == LUKV_KEEP_PYRAMID && (!(a->pyramid_beta > 0.0) || isinf(a->pyramid_beta)))
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: pyramid_beta %g must be finite and > 0",
                            who, a->pyramid_beta);
    if (a->policy == LUKV_KEEP_ADAKV && !(a->adakv_alpha >= 0.0 && a->adakv_alpha <= 1.0))
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: adakv_alpha %g outside [0, 1]", who,
                            a->adakv_alpha);
    return LUKV_OK;
  case LUKV_KEEP_EXPLICIT:
    if (!a->keep)
      return lukv_error_set(e, LUKV_ERR_INVALID, "%s: policy LUKV_KEEP_EXPLICIT needs keep [B, Hkv]",
                            who);
    for (int i = 0; i < c->dims.B * c->dims.Hkv; i++) {
      const int T = r->T[i / c->dims.Hkv];
      const int64_t lo = (int64_t)r->sink + r->window < T ? (int64_t)r->sink + r->window : T;
      if (a->keep[i] < lo || a->keep[i] > T)
        return lukv_error_set(e, LUKV_ERR_RANGE,
                              "%s: keep[%d, %d] = %d outside [min(T, s+w) = %lld, T = %d]", who,
                              i / c->dims.Hkv, i % c->dims.Hkv, (int)a->keep[i], (long long)lo, T);
    }
    return LUKV_OK;
  }
  return lukv_error_set(e, LUKV_ERR_INVALID, "%s: unknown policy %d", who, (int)a->policy);
}

/* keep [B, Hkv] for every policy but Ada-KV (which waits for the scores). */
static int keep_counts(const lukv_cache *c, const lukv_compress_args *a, const resolved *r,
                       int64_t table_row, int32_t *keep, lukv_error *e) {
  const int B = c->dims.B, H = c->dims.Hkv, L = c->dims.L;
  int rc = LUKV_OK;
  int32_t *all = NULL; /* [L, H] pyramid spans the layers */
  if (a->policy == LUKV_KEEP_PYRAMID && !(all = malloc(sizeof *all * (size_t)L * H)))
    return lukv_error_set(e, LUKV_ERR_NOMEM, "lukv_compress: out of memory");
  for (int b = 0; b < B && rc == LUKV_OK; b++) {
    int32_t *kb = keep + (size_t)b * H;
    switch (a->policy) {
    case LUKV_KEEP_TABLE:
      rc = lukv_rt_keep_table(lukv_rt_table_layer(a->table, table_row, a->layer), H, r->T[b],
                              r->sink, r->window, kb);
      break;
    case LUKV_KEEP_UNIFORM:
      rc = lukv_rt_keep_uniform(H, r->T[b], a->ratio, r->sink, r->window, kb);
      break;
    case LUKV_KEEP_PYRAMID:
      rc = lukv_rt_keep_pyramid(L, H, r->T[b], a->ratio, r->sink, r->window, a->pyramid_beta, all);
      if (rc == LUKV_OK) memcpy(kb, all + (size_t)a->layer * H, sizeof *kb * (size_t)H);
      break;
    case LUKV_KEEP_EXPLICIT:
      memcpy(kb, a->keep + (size_t)b * H, sizeof *kb * (size_t)H);
      break;
    case LUKV_KEEP_ADAKV:
      break;
    }
  }
  free(all);
  if (rc != LUKV_OK) return lukv_error_set(e, rc, "lukv_compress: keep counts: %s", lukv_strerror(rc));
  return LUKV_OK;
}

static int adakv_counts(const lukv_cache *c, const lukv_compress_args *a, const resolved *r,
                        const float *scores, int32_t *keep, lukv_error *e) {
  const int B = c->dims.B, H = c->dims.Hkv;
  const size_t n = (size_t)B * H * (size_t)r->t_max;
  float *host = malloc(n * sizeof *host); /* the allocator runs on the host */
  if (!host) return lukv_error_set(e, LUKV_ERR_NOMEM, "lukv_compress: out of memory");
  int rc = c->be->to_host(c->be_ctx, host, scores, n * sizeof *host, e);
  for (int b = 0; b < B && rc == LUKV_OK; b++) {
    rc = lukv_rt_keep_adakv(H, r->T[b], a->ratio, r->sink, r->window, a->adakv_alpha,
                            host + (size_t)b * H * r->t_max, r->t_max, keep + (size_t)b * H);
    if (rc != LUKV_OK)
      lukv_error_set(e, rc, "lukv_compress: adakv keep counts: %s", lukv_strerror(rc));
  }
  free(host);
  return rc;
}

static int compress_impl(lukv_cache *c, const lukv_compress_args *a, lukv_error *e) {
  const char *who = "lukv_compress";
  const int B = c->dims.B, H = c->dims.Hkv, d = c->dims.d;
  resolved r;
  int64_t table_row = -1;
  int32_t *keep = NULL;
  float *scores = NULL;
  lukv_rt_layer ly = {0};
  int rc = resolve(c, a, who, &r, e);
  if (rc == LUKV_OK && !a->v) rc = lukv_error_set(e, LUKV_ERR_INVALID, "%s: v is NULL", who);
  if (rc == LUKV_OK) rc = check_policy(c, a, &r, &table_row, e);
  if (rc != LUKV_OK) goto done;
  if (!(keep = malloc(sizeof *keep * (size_t)B * H))) {
    rc = lukv_error_set(e, LUKV_ERR_NOMEM, "%s: out of memory", who);
    goto done;
  }
  if ((rc = keep_counts(c, a, &r, table_row, keep, e))) goto done;

  /* Score only when some head evicts: ratio 0 or short prompts cost nothing. */
  int evicts = 0;
  for (int i = 0; i < B * H; i++) {
    const int T = r.T[i / H];
    if (a->policy == LUKV_KEEP_ADAKV ? T > (int64_t)r.sink + r.window : keep[i] < T) evicts = 1;
  }
  if (evicts && (rc = run_score(c, a, &r, &scores, e))) goto done;
  if (a->policy == LUKV_KEEP_ADAKV && evicts && (rc = adakv_counts(c, a, &r, scores, keep, e)))
    goto done;
  if (a->policy == LUKV_KEEP_ADAKV && !evicts)
    for (int i = 0; i < B * H; i++) keep[i] = r.T[i / H];

  /* The old segments go first: a new prompt replaces them, and the peak
   * memory is then one layer's new buffers, not old + new. */
  layer_free(c, &c->layers[a->layer]);
  if (!(ly.seg = calloc((size_t)B * H, sizeof *ly.seg))) {
    rc = lukv_error_set(e, LUKV_ERR_NOMEM, "%s: out of memory", who);
    goto done;
  }
  for (int i = 0; i < B * H; i++) {
    lukv_segment *sg = &ly.seg[i];
    sg->offset = ly.rows;
    sg->keep = sg->length = keep[i];
    sg->capacity = keep[i] + c->cfg.decode_reserve; /* <= max_context + reserve: checked */
    sg->context_len = r.T[i / H];
    ly.rows += sg->capacity;
  }
  const size_t bytes = (size_t)ly.rows * (size_t)d * sizeof(uint16_t);
  if (!(ly.pos = malloc(sizeof *ly.pos * (size_t)(ly.rows ? ly.rows : 1))) ||
      (rc = c->be->alloc(c->be_ctx, bytes, &ly.k, e)) ||
      (rc = c->be->alloc(c->be_ctx, bytes, &ly.v, e))) {
    if (rc == LUKV_OK) rc = lukv_error_set(e, LUKV_ERR_NOMEM, "%s: out of memory", who);
    goto done;
  }
  if (c->be->layer_init && (rc = c->be->layer_init(c->be_ctx, &ly, e))) goto done;
  lukv_rt_select_job sj = {.dims = c->dims, .scores = scores, .t_max = r.t_max,
                           .context_len = r.T, .sink = r.sink, .window = r.window, .layer = &ly};
  if ((rc = c->be->select(c->be_ctx, &sj, e)) ||
      (rc = c->be->gather(c->be_ctx, &c->dims, &ly, a->k, a->v, r.t_max, e)))
    goto done;
  ly.compressed = 1;
  c->layers[a->layer] = ly;
  memset(&ly, 0, sizeof ly);
done:
  if (ly.seg || ly.pos || ly.k || ly.v || ly.dev) layer_free(c, &ly);
  if (scores) c->be->free(c->be_ctx, scores);
  free(keep);
  free(r.T);
  return rc;
}

int lukv_compress(lukv_cache *cache, const lukv_compress_args *a) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  return lukv_rt_keep_msg(cache->msg, compress_impl(cache, a, &e), &e);
}

int lukv_compress_scores(lukv_cache *cache, const lukv_compress_args *a, float *scores) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  resolved r;
  float *dev = NULL;
  int rc = resolve(cache, a, "lukv_compress_scores", &r, &e);
  if (rc == LUKV_OK && !scores)
    rc = lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_compress_scores: scores is NULL");
  if (rc == LUKV_OK) rc = run_score(cache, a, &r, &dev, &e);
  if (rc == LUKV_OK)
    rc = cache->be->to_host(cache->be_ctx, scores, dev,
                            sizeof *scores * (size_t)cache->dims.B * cache->dims.Hkv * r.t_max, &e);
  if (dev) cache->be->free(cache->be_ctx, dev);
  free(r.T);
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

/* ---- decode -------------------------------------------------------------- */

/* The compressed layer `layer`, or NULL with the reason in e. */
static lukv_rt_layer *get_layer(lukv_cache *c, int layer, const char *who, lukv_error *e) {
  if (layer < 0 || layer >= c->dims.L) {
    lukv_error_set(e, LUKV_ERR_INVALID, "%s: layer %d outside [0, %d)", who, layer, c->dims.L);
    return NULL;
  }
  if (!c->layers[layer].compressed) {
    lukv_error_set(e, LUKV_ERR_INVALID, "%s: layer %d has not been compressed", who, layer);
    return NULL;
  }
  return &c->layers[layer];
}

int lukv_append(lukv_cache *cache, int layer, const void *k_new, const void *v_new) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  const char *who = "lukv_append";
  lukv_rt_layer *ly = get_layer(cache, layer, who, &e);
  if (!ly) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  if (!k_new || !v_new) {
    lukv_error_set(&e, LUKV_ERR_INVALID, "%s: %s is NULL", who, !k_new ? "k_new" : "v_new");
    return lukv_rt_keep_msg(cache->msg, e.status, &e);
  }
  const int H = cache->dims.Hkv;
  /* All or nothing: check every segment before any row is written. */
  for (int i = 0; i < cache->dims.B * H; i++)
    if (ly->seg[i].length >= ly->seg[i].capacity) {
      lukv_error_set(&e, LUKV_ERR_RANGE,
                     "%s: layer %d segment (seq %d, head %d) is full: %d rows (keep %d + "
                     "decode_reserve %d)",
                     who, layer, i / H, i % H, (int)ly->seg[i].capacity, (int)ly->seg[i].keep,
                     cache->cfg.decode_reserve);
      return lukv_rt_keep_msg(cache->msg, e.status, &e);
    }
  int rc = cache->be->append(cache->be_ctx, &cache->dims, ly, k_new, v_new, &e);
  if (rc != LUKV_OK) return lukv_rt_keep_msg(cache->msg, rc, &e);
  /* Recorded into a CUDA graph, not run: the rows land when the graph is
   * replayed, and lukv_cache_sync brings the host lengths up to date. */
  if (cache->be->capturing && cache->be->capturing(cache->be_ctx)) return LUKV_OK;
  for (int i = 0; i < cache->dims.B * H; i++) {
    lukv_segment *sg = &ly->seg[i];
    ly->pos[sg->offset + sg->length] = sg->context_len + (sg->length - sg->keep);
    sg->length++;
  }
  return LUKV_OK;
}

int lukv_decode_attention(lukv_cache *cache, int layer, const void *q, void *out, float scale) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  const char *who = "lukv_decode_attention";
  lukv_rt_layer *ly = get_layer(cache, layer, who, &e);
  if (!ly) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  if (!q || !out)
    lukv_error_set(&e, LUKV_ERR_INVALID, "%s: %s is NULL", who, !q ? "q" : "out");
  else if (!(scale >= 0.0f) || isinf(scale))
    lukv_error_set(&e, LUKV_ERR_INVALID, "%s: scale %g must be finite and >= 0", who,
                   (double)scale);
  if (e.status != LUKV_OK) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  if (scale == 0.0f) scale = (float)(1.0 / sqrt((double)cache->dims.d));
  int rc = cache->be->decode(cache->be_ctx, &cache->dims, ly, q, out, scale, &e);
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

/* ---- inspection ---------------------------------------------------------- */

int lukv_cache_memory(lukv_cache *cache, uint64_t *held_bytes, uint64_t *full_bytes) {
  if (!cache) return LUKV_ERR_INVALID;
  /* Per row: K and V, d bf16 each. */
  const uint64_t row = 2u * (uint64_t)cache->dims.d * sizeof(uint16_t);
  uint64_t held = 0, full = 0;
  for (int l = 0; l < cache->dims.L; l++) {
    const lukv_rt_layer *ly = &cache->layers[l];
    if (!ly->compressed) continue;
    for (int i = 0; i < cache->dims.B * cache->dims.Hkv; i++) {
      held += (uint64_t)ly->seg[i].capacity * row;
      full += ((uint64_t)ly->seg[i].context_len + (uint64_t)cache->cfg.decode_reserve) * row;
    }
  }
  if (held_bytes) *held_bytes = held;
  if (full_bytes) *full_bytes = full;
  return LUKV_OK;
}

/* The segment (layer, seq, head), or NULL with the reason in e. */
static lukv_segment *get_segment(lukv_cache *c, int layer, int seq, int head, const char *who,
                                 lukv_error *e) {
  lukv_rt_layer *ly = get_layer(c, layer, who, e);
  if (!ly) return NULL;
  if (seq < 0 || seq >= c->dims.B || head < 0 || head >= c->dims.Hkv) {
    lukv_error_set(e, LUKV_ERR_INVALID, "%s: (seq %d, head %d) outside [0, %d) x [0, %d)", who,
                   seq, head, c->dims.B, c->dims.Hkv);
    return NULL;
  }
  return &ly->seg[seq * c->dims.Hkv + head];
}

int lukv_cache_segment(lukv_cache *cache, int layer, int seq, int head, lukv_segment *out) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  lukv_segment *sg = get_segment(cache, layer, seq, head, "lukv_cache_segment", &e);
  if (sg && !out) lukv_error_set(&e, LUKV_ERR_INVALID, "lukv_cache_segment: out is NULL");
  if (e.status != LUKV_OK) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  *out = *sg;
  return LUKV_OK;
}

int lukv_cache_read_segment(lukv_cache *cache, int layer, int seq, int head, void *k, void *v,
                            int32_t *positions, int max_rows) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  const char *who = "lukv_cache_read_segment";
  lukv_segment *sg = get_segment(cache, layer, seq, head, who, &e);
  if (sg && max_rows < sg->length)
    lukv_error_set(&e, LUKV_ERR_RANGE, "%s: max_rows %d < segment length %d", who, max_rows,
                   (int)sg->length);
  if (e.status != LUKV_OK) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  const lukv_rt_layer *ly = &cache->layers[layer];
  const size_t row = sizeof(uint16_t) * (size_t)cache->dims.d;
  const size_t at = (size_t)sg->offset * row, n = (size_t)sg->length * row;
  int rc = LUKV_OK;
  if (k) rc = cache->be->to_host(cache->be_ctx, k, (const char *)ly->k + at, n, &e);
  if (v && rc == LUKV_OK) rc = cache->be->to_host(cache->be_ctx, v, (const char *)ly->v + at, n, &e);
  if (positions && rc == LUKV_OK && sg->length)
    memcpy(positions, ly->pos + sg->offset, sizeof *positions * (size_t)sg->length);
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

int lukv_cache_layer_buffers(lukv_cache *cache, int layer, void **k, void **v, int64_t *rows) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  lukv_rt_layer *ly = get_layer(cache, layer, "lukv_cache_layer_buffers", &e);
  if (!ly) return lukv_rt_keep_msg(cache->msg, e.status, &e);
  if (k) *k = ly->k;
  if (v) *v = ly->v;
  if (rows) *rows = ly->rows;
  return LUKV_OK;
}

/* ---- streams and graphs (CUDA) ------------------------------------------- */

int lukv_cache_set_stream(lukv_cache *cache, void *stream) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  int rc = LUKV_OK;
  if (cache->be->set_stream)
    rc = cache->be->set_stream(cache->be_ctx, stream, &e);
  else if (stream)
    rc = lukv_error_set(&e, LUKV_ERR_UNSUPPORTED,
                        "lukv_cache_set_stream: the %s backend has no streams (pass NULL)",
                        cache->be->name);
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

int lukv_cache_sync(lukv_cache *cache) {
  if (!cache) return LUKV_ERR_INVALID;
  lukv_error e;
  lukv_error_clear(&e);
  if (!cache->be->sync_layer) return LUKV_OK;
  if (cache->be->capturing && cache->be->capturing(cache->be_ctx)) {
    lukv_error_set(&e, LUKV_ERR_INVALID,
                   "lukv_cache_sync: the cache's stream is being captured; call it after "
                   "cudaStreamEndCapture");
    return lukv_rt_keep_msg(cache->msg, e.status, &e);
  }
  const int H = cache->dims.Hkv;
  int rc = LUKV_OK, first_overflow = -1;
  for (int l = 0; l < cache->dims.L && rc == LUKV_OK; l++) {
    lukv_rt_layer *ly = &cache->layers[l];
    if (!ly->compressed) continue;
    int32_t appended = 0;
    int overflow = 0;
    rc = cache->be->sync_layer(cache->be_ctx, ly, &appended, &overflow, &e);
    if (rc != LUKV_OK) break;
    if (overflow && first_overflow < 0) first_overflow = l;
    for (int i = 0; i < cache->dims.B * H; i++) {
      lukv_segment *sg = &ly->seg[i];
      /* The device never counts past decode_reserve, so keep + appended <= capacity. */
      const int32_t len = sg->keep + appended;
      for (int32_t r = sg->length; r < len; r++)
        ly->pos[sg->offset + r] = sg->context_len + (r - sg->keep);
      sg->length = len;
    }
  }
  if (rc == LUKV_OK && first_overflow >= 0)
    rc = lukv_error_set(&e, LUKV_ERR_RANGE,
                        "lukv_cache_sync: a replayed append found layer %d full (decode_reserve "
                        "%d used up); its rows were dropped",
                        first_overflow, cache->cfg.decode_reserve);
  return lukv_rt_keep_msg(cache->msg, rc, &e);
}

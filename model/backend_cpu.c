/* CPU reference backend: f32 everywhere, GEMMs in OpenBLAS, one function per
 * operation (cpu_ops.c), the forward pass below read top to bottom like
 * transformers' LlamaDecoderLayer. Speed is secondary to being an oracle, but
 * nothing in it grows as T x T: attention is blocked (online softmax) and the
 * MLP runs over row chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"

typedef struct cpu_layer {
  const float *attn_norm;               /* [D] */
  const float *wq, *wk, *wv;            /* [QD, D], [KD, D], [KD, D] */
  const float *bq, *bk, *bv;            /* [QD], [KD], [KD] or NULL */
  const float *wo, *bo;                 /* [D, QD], [D] or NULL */
  const float *mlp_norm;                /* [D] */
  const float *w_gate, *w_up, *w_down;  /* [I, D], [I, D], [D, I] */
  const float *b_gate, *b_up, *b_down;  /* [I], [I], [D] or NULL */
} cpu_layer;

typedef struct cpu_state {
  lukv_model_config cfg;
  float *inv_freq;                      /* [d/2] */
  const float *embed, *final_norm, *lm_head; /* [V, D], [D], [V, D] */
  cpu_layer *layers;                    /* [L] */
  float **owned;                        /* converted tensors, freed with the state */
  int n_owned, cap_owned;
} cpu_state;

typedef struct cpu_cache {
  int capacity;
  size_t layer_stride;                  /* capacity * KD */
  float *k, *v;                         /* [L, capacity, Hkv, d] each */
} cpu_cache;

/* Rows processed together in the MLP: bounds its [rows, I] buffers. */
enum { MLP_ROWS = 256 };

static void cpu_free(void *vs) {
  cpu_state *s = vs;
  if (!s) return;
  for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
  free(s->owned);
  free(s->layers);
  free(s->inv_freq);
  free(s);
}

/* f32 view of t: the stored data itself when already aligned f32 (the one
 * copy is the mapping), else a converted copy owned by s. */
static int as_f32(cpu_state *s, const lukv_tensor_ref *t, const float **out, int *uses_data, lukv_error *err,
                  const char *where) {
  *out = NULL;
  if (!t->data) return LUKV_OK;
  if (t->dtype == LUKV_DT_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
    *out = t->data;
    *uses_data = 1;
    return LUKV_OK;
  }
  if (s->n_owned == s->cap_owned) {
    int cap = s->cap_owned ? 2 * s->cap_owned : 64;
    float **o = realloc(s->owned, (size_t)cap * sizeof *o);
    if (!o) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
    s->owned = o;
    s->cap_owned = cap;
  }
  uint64_t n = (uint64_t)lukv_tensor_numel(t);
  float *buf = malloc((size_t)n * sizeof(float));
  if (!buf)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: cannot allocate %.1f MiB for f32 conversion", where,
                          (double)n * 4 / (1 << 20));
  s->owned[s->n_owned++] = buf;
  if (lukv_convert_to_f32(t->dtype, t->data, n, buf) != LUKV_OK)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: weights: dtype %s not supported", where,
                          lukv_dtype_name(t->dtype));
  *out = buf;
  return LUKV_OK;
}

static int cpu_init(const lukv_model_config *cfg, const lukv_weights *w, const char *where, void **state,
                    int *keep_files, lukv_error *err) {
  *state = NULL;
  *keep_files = 0;
  cpu_state *s = calloc(1, sizeof *s);
  if (!s) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
  s->cfg = *cfg;
  s->inv_freq = malloc(sizeof(float) * (size_t)(cfg->head_dim / 2));
  s->layers = calloc((size_t)cfg->n_layers, sizeof *s->layers);
  int rc = LUKV_OK;
  if (!s->inv_freq || !s->layers) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
  int uses = 0;
  if (rc == LUKV_OK) {
    lukv_config_rope_inv_freq(cfg, s->inv_freq);
    rc = as_f32(s, &w->embed, &s->embed, &uses, err, where);
  }
  if (rc == LUKV_OK) rc = as_f32(s, &w->final_norm, &s->final_norm, &uses, err, where);
  if (rc == LUKV_OK) {
    if (w->lm_head.data == w->embed.data) s->lm_head = s->embed; /* tied: convert once */
    else rc = as_f32(s, &w->lm_head, &s->lm_head, &uses, err, where);
  }
  for (int l = 0; l < cfg->n_layers && rc == LUKV_OK; l++) {
    const lukv_layer_weights *W = &w->layers[l];
    cpu_layer *C = &s->layers[l];
    const struct {
      const lukv_tensor_ref *src;
      const float **dst;
    } m[] = {{&W->attn_norm, &C->attn_norm}, {&W->wq, &C->wq},         {&W->wk, &C->wk},
             {&W->wv, &C->wv},               {&W->bq, &C->bq},         {&W->bk, &C->bk},
             {&W->bv, &C->bv},               {&W->wo, &C->wo},         {&W->bo, &C->bo},
             {&W->mlp_norm, &C->mlp_norm},   {&W->w_gate, &C->w_gate}, {&W->w_up, &C->w_up},
             {&W->w_down, &C->w_down},       {&W->b_gate, &C->b_gate}, {&W->b_up, &C->b_up},
             {&W->b_down, &C->b_down}};
    for (size_t i = 0; i < sizeof m / sizeof m[0] && rc == LUKV_OK; i++)
      rc = as_f32(s, m[i].src, m[i].dst, &uses, err, where);
  }
  if (rc != LUKV_OK) {
    cpu_free(s);
    return rc;
  }
  *keep_files = uses;
  *state = s;
  return LUKV_OK;
}

static int cpu_cache_init(void *vs, int capacity, void **out, lukv_error *err) {
  cpu_state *s = vs;
  *out = NULL;
  cpu_cache *c = calloc(1, sizeof *c);
  if (!c) return lukv_error_set(err, LUKV_ERR_NOMEM, "kv_cache: out of memory");
  c->capacity = capacity;
  c->layer_stride = (size_t)capacity * s->cfg.n_kv_heads * s->cfg.head_dim;
  size_t n = c->layer_stride * (size_t)s->cfg.n_layers;
  c->k = malloc(n * sizeof(float));
  c->v = malloc(n * sizeof(float));
  if (!c->k || !c->v) {
    free(c->k);
    free(c->v);
    free(c);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "kv_cache: cannot allocate 2 x %.1f MiB for %d tokens",
                          (double)n * 4 / (1 << 20), capacity);
  }
  *out = c;
  return LUKV_OK;
}

static void cpu_cache_free(void *vc) {
  cpu_cache *c = vc;
  if (!c) return;
  free(c->k);
  free(c->v);
  free(c);
}

/* Activations of one forward call. */
typedef struct cpu_acts {
  float *x;      /* [T, D] residual stream */
  float *h;      /* [T, D] normed */
  float *q;      /* [T, QD] */
  float *k, *v;  /* [T, KD] when there is no cache */
  float *att;    /* [T, QD] attention output, heads concatenated */
  float *lse;    /* [Hq, T] */
  float *gate;   /* [MLP_ROWS, I] */
  float *up;     /* [MLP_ROWS, I] */
} cpu_acts;

static void acts_free(cpu_acts *a) {
  free(a->x), free(a->h), free(a->q), free(a->k), free(a->v);
  free(a->att), free(a->lse), free(a->gate), free(a->up);
}

static int acts_alloc(const lukv_model_config *c, int T, int with_kv, cpu_acts *a) {
  size_t D = (size_t)c->hidden_size, QD = (size_t)c->n_heads * c->head_dim;
  size_t KD = (size_t)c->n_kv_heads * c->head_dim, rows = T < MLP_ROWS ? (size_t)T : MLP_ROWS;
  memset(a, 0, sizeof *a);
  a->x = malloc(sizeof(float) * T * D);
  a->h = malloc(sizeof(float) * T * D);
  a->q = malloc(sizeof(float) * T * QD);
  a->att = malloc(sizeof(float) * T * QD);
  a->lse = malloc(sizeof(float) * T * (size_t)c->n_heads);
  a->gate = malloc(sizeof(float) * rows * c->intermediate_size);
  a->up = malloc(sizeof(float) * rows * c->intermediate_size);
  if (with_kv) {
    a->k = malloc(sizeof(float) * T * KD);
    a->v = malloc(sizeof(float) * T * KD);
  }
  if (!a->x || !a->h || !a->q || !a->att || !a->lse || !a->gate || !a->up || (with_kv && (!a->k || !a->v))) {
    acts_free(a);
    return -1;
  }
  return 0;
}

/* x [T, D] += Attention(RMSNorm(x)), K/V rows written to kdst/vdst [T, KD]
 * which sit at row pos0 of kall/vall [pos0 + T, KD]. */
static int attention_block(const cpu_state *s, int l, const lukv_fwd_call *call, cpu_acts *a, float *kdst,
                           float *vdst, const float *kall, const float *vall, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const cpu_layer *W = &s->layers[l];
  const int T = call->T, D = c->hidden_size, d = c->head_dim;
  const int QD = c->n_heads * d, KD = c->n_kv_heads * d;
  lukv_cpu_rmsnorm(a->x, W->attn_norm, T, D, (float)c->rms_norm_eps, a->h);
  lukv_cpu_linear(a->h, W->wq, W->bq, T, D, QD, 0, a->q);  /* q [T, Hq, d] */
  lukv_cpu_linear(a->h, W->wk, W->bk, T, D, KD, 0, kdst);  /* k [T, Hkv, d] */
  lukv_cpu_linear(a->h, W->wv, W->bv, T, D, KD, 0, vdst);  /* v [T, Hkv, d] */
  lukv_cpu_rope(a->q, T, c->n_heads, d, call->pos0, s->inv_freq);
  lukv_cpu_rope(kdst, T, c->n_kv_heads, d, call->pos0, s->inv_freq);
  if (call->attn) { /* the caller's attention over its own cache (T == 1, no engine cache) */
    lukv_attn_call ac = {.layer = l, .pos = call->pos0, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                         .head_dim = d, .device = LUKV_DEVICE_CPU, .q = a->q, .k = kdst, .v = vdst,
                         .out = a->att};
    int rc = call->attn(call->attn_user, &ac);
    if (rc != LUKV_OK)
      return lukv_error_set(err, rc, "%s: attention callback: layer %d: returned %d (%s)", call->where, l, rc,
                            lukv_strerror(rc));
    lukv_cpu_linear(a->att, W->wo, W->bo, T, QD, D, 1, a->x);
    return LUKV_OK;
  }
  lukv_attn_shape sh = {.T = T, .S = call->pos0 + T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                        .head_dim = d, .window = lukv_config_layer_window(c, l)};
  if (lukv_cpu_attention(a->q, kall, vall, &sh, a->att, a->lse) != 0)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: attention: out of memory", call->where);
  if (call->opts->tap) {
    lukv_tap_info ti = {.layer = l, .T = T, .pos0 = call->pos0, .n_heads = c->n_heads,
                        .n_kv_heads = c->n_kv_heads, .head_dim = d, .hidden_size = D, .window = sh.window,
                        .device = LUKV_DEVICE_CPU, .q = a->q, .k = kdst, .v = vdst, .lse = a->lse,
                        .o_proj = W->wo};
    int rc = call->opts->tap(call->opts->tap_user, &ti);
    if (rc != LUKV_OK)
      return lukv_error_set(err, rc, "%s: tap: layer %d: callback returned %d (%s)", call->where, l, rc,
                            lukv_strerror(rc));
  }
  lukv_cpu_linear(a->att, W->wo, W->bo, T, QD, D, 1, a->x); /* x [T, D] += att . Wo^T */
  return LUKV_OK;
}

/* x [T, D] += MLP(RMSNorm(x)) = down(silu(gate(h)) * up(h)), MLP_ROWS rows at a time. */
static void mlp_block(const cpu_state *s, int l, int T, cpu_acts *a) {
  const lukv_model_config *c = &s->cfg;
  const cpu_layer *W = &s->layers[l];
  const int D = c->hidden_size, I = c->intermediate_size;
  lukv_cpu_rmsnorm(a->x, W->mlp_norm, T, D, (float)c->rms_norm_eps, a->h);
  for (int r0 = 0; r0 < T; r0 += MLP_ROWS) {
    int n = T - r0 < MLP_ROWS ? T - r0 : MLP_ROWS;
    const float *h = a->h + (size_t)r0 * D;
    lukv_cpu_linear(h, W->w_gate, W->b_gate, n, D, I, 0, a->gate); /* [n, I] */
    lukv_cpu_linear(h, W->w_up, W->b_up, n, D, I, 0, a->up);       /* [n, I] */
    lukv_cpu_swiglu(a->gate, a->up, (size_t)n * I);
    lukv_cpu_linear(a->gate, W->w_down, W->b_down, n, I, D, 1, a->x + (size_t)r0 * D); /* += [n, D] */
  }
}

static int cpu_forward(void *vs, const lukv_fwd_call *call, lukv_error *err) {
  const cpu_state *s = vs;
  const lukv_model_config *c = &s->cfg;
  cpu_cache *cache = call->cache;
  const int T = call->T, D = c->hidden_size;
  const size_t KD = (size_t)c->n_kv_heads * c->head_dim;
  cpu_acts a;
  if (acts_alloc(c, T, cache == NULL, &a) != 0)
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: forward: cannot allocate activations for %d tokens",
                          call->where, T);
  lukv_cpu_embed(s->embed, call->tokens, T, D, a.x); /* x [T, D] */
  int rc = LUKV_OK;
  for (int l = 0; l < c->n_layers && rc == LUKV_OK; l++) {
    float *kall = a.k, *vall = a.v; /* [pos0 + T, KD]: this call's rows, after the cached ones */
    if (cache) {
      kall = cache->k + (size_t)l * cache->layer_stride;
      vall = cache->v + (size_t)l * cache->layer_stride;
    }
    size_t row0 = call->attn ? 0 : (size_t)call->pos0; /* external attention: no cache, this row only */
    float *kdst = kall + row0 * KD, *vdst = vall + row0 * KD;
    rc = attention_block(s, l, call, &a, kdst, vdst, kall, vall, err);
    if (rc == LUKV_OK) mlp_block(s, l, T, &a);
  }
  if (rc == LUKV_OK && call->logits) {
    int first = call->opts->last_logits_only ? T - 1 : 0, n = T - first;
    const float *xr = a.x + (size_t)first * D;
    lukv_cpu_rmsnorm(xr, s->final_norm, n, D, (float)c->rms_norm_eps, a.h);
    lukv_cpu_linear(a.h, s->lm_head, NULL, n, D, c->vocab_size, 0, call->logits); /* [n, V] */
  }
  acts_free(&a);
  return rc;
}

const lukv_backend lukv_backend_cpu = {
    .name = "cpu",
    .device = LUKV_DEVICE_CPU,
    .init = cpu_init,
    .free = cpu_free,
    .cache_init = cpu_cache_init,
    .cache_free = cpu_cache_free,
    .forward = cpu_forward,
};

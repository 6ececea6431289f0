#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds NAME, checks dtype and shape [rows] (cols == 0) or [rows, cols]. */
static int find(const lukv_st_set *set, const char *name, int64_t rows, int64_t cols, lukv_tensor_ref *out,
                lukv_error *err) {
  const char *path = NULL;
  const lukv_st_tensor *t = lukv_st_set_find(set, name, &path);
  if (!t) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: tensor missing", lukv_st_set_where(set, name), name);
  if (t->dtype != LUKV_DT_F32 && t->dtype != LUKV_DT_F16 && t->dtype != LUKV_DT_BF16)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: %s: dtype %s not supported (F32, F16, BF16)", path, name,
                          lukv_dtype_name(t->dtype));
  int want_nd = cols ? 2 : 1;
  if (t->ndim != want_nd || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
    char got[160] = "[", want[64];
    for (int i = 0; i < t->ndim; i++) {
      size_t n = strlen(got);
      snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    }
    strncat(got, "]", sizeof got - strlen(got) - 1);
    if (cols) snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
    else snprintf(want, sizeof want, "[%lld]", (long long)rows);
    return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: %s: shape %s, expected %s", path, name, got, want);
  }
  out->data = t->data;
  out->dtype = t->dtype;
  out->rows = rows;
  out->cols = cols ? cols : 1;
  return LUKV_OK;
}

int lukv_weights_for_each_slot(const lukv_model_config *c, lukv_weights *w, lukv_slot_fn fn, void *ctx,
                               lukv_error *err) {
  const int64_t D = c->hidden_size, V = c->vocab_size, I = c->intermediate_size;
  const int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
  int rc = fn(ctx, "model.embed_tokens.weight", V, D, 1, &w->embed, err);
  if (rc == LUKV_OK) rc = fn(ctx, "model.norm.weight", D, 0, 1, &w->final_norm, err);
  if (rc == LUKV_OK && !c->tie_word_embeddings) rc = fn(ctx, "lm_head.weight", V, D, 1, &w->lm_head, err);
  for (int l = 0; l < c->n_layers && rc == LUKV_OK; l++) {
    lukv_layer_weights *L = &w->layers[l];
    struct {
      const char *suffix;
      int64_t rows, cols;
      int present;
      lukv_tensor_ref *slot;
    } s[] = {
        {"input_layernorm.weight", D, 0, 1, &L->attn_norm},
        {"self_attn.q_proj.weight", QD, D, 1, &L->wq},
        {"self_attn.k_proj.weight", KD, D, 1, &L->wk},
        {"self_attn.v_proj.weight", KD, D, 1, &L->wv},
        {"self_attn.q_proj.bias", QD, 0, c->qkv_bias, &L->bq},
        {"self_attn.k_proj.bias", KD, 0, c->qkv_bias, &L->bk},
        {"self_attn.v_proj.bias", KD, 0, c->qkv_bias, &L->bv},
        {"self_attn.o_proj.weight", D, QD, 1, &L->wo},
        {"self_attn.o_proj.bias", D, 0, c->o_bias, &L->bo},
        {"post_attention_layernorm.weight", D, 0, 1, &L->mlp_norm},
        {"mlp.gate_proj.weight", I, D, 1, &L->w_gate},
        {"mlp.up_proj.weight", I, D, 1, &L->w_up},
        {"mlp.down_proj.weight", D, I, 1, &L->w_down},
        {"mlp.gate_proj.bias", I, 0, c->mlp_bias, &L->b_gate},
        {"mlp.up_proj.bias", I, 0, c->mlp_bias, &L->b_up},
        {"mlp.down_proj.bias", D, 0, c->mlp_bias, &L->b_down},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0] && rc == LUKV_OK; i++) {
      char name[128];
      snprintf(name, sizeof name, "model.layers.%d.%s", l, s[i].suffix);
      rc = fn(ctx, name, s[i].rows, s[i].cols, s[i].present, s[i].slot, err);
    }
  }
  if (rc == LUKV_OK && c->tie_word_embeddings) w->lm_head = w->embed;
  return rc;
}

static int load_slot(void *ctx, const char *name, int64_t rows, int64_t cols, int present, lukv_tensor_ref *slot,
                     lukv_error *err) {
  if (!present) return LUKV_OK;
  return find(ctx, name, rows, cols, slot, err);
}

int lukv_weights_load(const char *dir, const lukv_model_config *cfg, lukv_weights *w, lukv_error *err) {
  memset(w, 0, sizeof *w);
  int rc = lukv_st_set_open(dir, &w->files, err);
  if (rc != LUKV_OK) return rc;
  w->layers = calloc((size_t)cfg->n_layers, sizeof *w->layers);
  if (!w->layers) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", dir);
  if (rc == LUKV_OK) rc = lukv_weights_for_each_slot(cfg, w, load_slot, w->files, err);
  if (rc != LUKV_OK) lukv_weights_free(w);
  return rc;
}

/* ---- random weights -------------------------------------------------------- */

typedef struct rand_ctx {
  int64_t total;    /* pass 1: elements counted */
  float *block;     /* pass 2: next free element */
  uint64_t seed;
  int index;        /* tensor counter, one independent stream per tensor */
  float amp;        /* half-width of the uniform distribution */
} rand_ctx;

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int count_slot(void *vctx, const char *name, int64_t rows, int64_t cols, int present,
                      lukv_tensor_ref *slot, lukv_error *err) {
  (void)name, (void)slot, (void)err;
  rand_ctx *r = vctx;
  if (present) r->total += rows * (cols ? cols : 1);
  return LUKV_OK;
}

static int fill_slot(void *vctx, const char *name, int64_t rows, int64_t cols, int present, lukv_tensor_ref *slot,
                     lukv_error *err) {
  (void)err;
  rand_ctx *r = vctx;
  if (!present) return LUKV_OK;
  int64_t n = rows * (cols ? cols : 1);
  float *p = r->block;
  r->block += n;
  const char *tail = strrchr(name, '.');
  int is_norm = strstr(name, "norm.weight") != NULL, is_bias = tail && strcmp(tail, ".bias") == 0;
  uint64_t s = r->seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(++r->index));
  for (int64_t i = 0; i < n; i++) {
    if (is_norm) p[i] = 1.0f;
    else if (is_bias) p[i] = 0.0f;
    else p[i] = r->amp * (float)((double)(splitmix64(&s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  slot->data = p;
  slot->dtype = LUKV_DT_F32;
  slot->rows = rows;
  slot->cols = cols ? cols : 1;
  return LUKV_OK;
}

int lukv_weights_random(const lukv_model_config *cfg, uint64_t seed, lukv_weights *w, lukv_error *err) {
  memset(w, 0, sizeof *w);
  w->layers = calloc((size_t)cfg->n_layers, sizeof *w->layers);
  if (!w->layers) return lukv_error_set(err, LUKV_ERR_NOMEM, "random-init: weights: out of memory");
  rand_ctx r = {.seed = seed, .amp = (float)(cfg->initializer_range * 1.7320508075688772)}; /* std * sqrt(3) */
  lukv_weights_for_each_slot(cfg, w, count_slot, &r, err);
  w->random_block = malloc((size_t)r.total * sizeof(float));
  if (!w->random_block) {
    lukv_weights_free(w);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "random-init: weights: cannot allocate %lld f32 values (%.1f GiB)",
                          (long long)r.total, (double)r.total * 4 / (1 << 30));
  }
  r.block = w->random_block;
  return lukv_weights_for_each_slot(cfg, w, fill_slot, &r, err);
}

void lukv_weights_release_files(lukv_weights *w) {
  lukv_st_set_close(w->files);
  w->files = NULL;
}

void lukv_weights_free(lukv_weights *w) {
  if (!w) return;
  lukv_st_set_close(w->files);
  free(w->layers);
  free(w->random_block);
  memset(w, 0, sizeof *w);
}

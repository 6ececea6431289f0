/* GGUF reader (model/gguf.c): logits and greedy tokens of tiny random Llama
 * GGUFs against HF transformers loading the same files (tests/golden/gguf_*,
 * tools/make_gguf_golden.py), dequantisation of every supported type against
 * the gguf package (tests/golden/gguf_dequant), the Q/K un-permutation
 * against a safetensors copy of the same weights, and every corrupt or
 * unsupported file the loader must refuse with a clear one-line message.
 *
 * Synthetic files come from a small GGUF writer below, into a per-test
 * mkdtemp directory.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "model.h"
#include "testutil.h"

/* ---- temp dir ----------------------------------------------------------------- */

static void setup(void) { lukv_test_tmpdir_setup("lukv-gguf"); }

/* ---- a tiny GGUF writer --------------------------------------------------------- */

typedef struct gbuf {
  uint8_t *p;
  size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    ck_assert_ptr_nonnull(b->p);
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void put_u8(gbuf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(gbuf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(b, x, 4);
}
static void put_u64(gbuf *b, uint64_t v) {
  put_u32(b, (uint32_t)v);
  put_u32(b, (uint32_t)(v >> 32));
}
static void put_f32(gbuf *b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put_u32(b, u);
}
static void put_str(gbuf *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}

enum { K_U32, K_I32, K_F32, K_STR, K_BOOL, K_TOKENS, K_U64, K_RAW };

typedef struct tkv {
  char key[64];
  int kind;
  uint64_t u;
  double f;
  const char *s;
  const uint8_t *raw; /* K_RAW: type + value bytes as they are */
  size_t raw_n;
} tkv;

typedef struct tten {
  char name[64];
  uint32_t type;
  int nd;
  uint64_t ne[4];
  const float *vals;     /* F32 values (or NULL: a pattern of bytes) */
  int64_t offset;        /* -1: next aligned offset */
} tten;

#define MAX_TKV 48
#define MAX_TT 64
typedef struct gspec {
  char magic[5];
  uint32_t version;
  uint32_t align;        /* alignment used for layout (general.alignment written separately) */
  int n_kv, n_t;
  tkv kv[MAX_TKV];
  tten t[MAX_TT];
  int64_t force_n_t, force_n_kv; /* -1: real counts */
} gspec;

static tkv *add_kv(gspec *s, const char *key, int kind) {
  ck_assert_int_lt(s->n_kv, MAX_TKV);
  tkv *k = &s->kv[s->n_kv++];
  memset(k, 0, sizeof *k);
  snprintf(k->key, sizeof k->key, "%s", key);
  k->kind = kind;
  return k;
}
static void kv_u32(gspec *s, const char *key, uint32_t v) { add_kv(s, key, K_U32)->u = v; }
static void kv_f32(gspec *s, const char *key, double v) { add_kv(s, key, K_F32)->f = v; }
static void kv_str(gspec *s, const char *key, const char *v) { add_kv(s, key, K_STR)->s = v; }

static tkv *find_kv(gspec *s, const char *key) {
  for (int i = 0; i < s->n_kv; i++)
    if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
  return NULL;
}
static void del_kv(gspec *s, const char *key) {
  tkv *k = find_kv(s, key);
  ck_assert_ptr_nonnull(k);
  int i = (int)(k - s->kv);
  memmove(&s->kv[i], &s->kv[i + 1], sizeof *k * (size_t)(s->n_kv - i - 1));
  s->n_kv--;
}

static tten *find_t(gspec *s, const char *name) {
  for (int i = 0; i < s->n_t; i++)
    if (!strcmp(s->t[i].name, name)) return &s->t[i];
  return NULL;
}
static void del_t(gspec *s, const char *name) {
  tten *t = find_t(s, name);
  ck_assert_ptr_nonnull(t);
  int i = (int)(t - s->t);
  memmove(&s->t[i], &s->t[i + 1], sizeof *t * (size_t)(s->n_t - i - 1));
  s->n_t--;
}

static tten *add_t(gspec *s, const char *name, uint32_t type, int nd, uint64_t ne0, uint64_t ne1, const float *vals) {
  ck_assert_int_lt(s->n_t, MAX_TT);
  tten *t = &s->t[s->n_t++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->type = type;
  t->nd = nd;
  t->ne[0] = ne0;
  t->ne[1] = ne1;
  t->ne[2] = t->ne[3] = 1;
  t->vals = vals;
  t->offset = -1;
  return t;
}

static uint64_t t_bytes(const tten *t) {
  uint64_t blck = 1, bb = 4, n = 1;
  for (int d = 0; d < t->nd && d < 4; d++) n *= t->ne[d];
  if (!lukv_ggml_type_size(t->type, &blck, &bb)) return n * 4;
  return n / blck * bb;
}

static void put_kv_value(gbuf *b, const tkv *k) {
  switch (k->kind) {
  case K_U32: put_u32(b, LUKV_GGUF_U32); put_u32(b, (uint32_t)k->u); break;
  case K_U64: put_u32(b, LUKV_GGUF_U64); put_u64(b, k->u); break;
  case K_I32: put_u32(b, LUKV_GGUF_I32); put_u32(b, (uint32_t)k->u); break;
  case K_F32: put_u32(b, LUKV_GGUF_F32); put_f32(b, (float)k->f); break;
  case K_BOOL: put_u32(b, LUKV_GGUF_BOOL); put_u8(b, (uint8_t)k->u); break;
  case K_STR: put_u32(b, LUKV_GGUF_STRING); put_str(b, k->s); break;
  case K_TOKENS:
    put_u32(b, LUKV_GGUF_ARRAY);
    put_u32(b, LUKV_GGUF_STRING);
    put_u64(b, k->u);
    for (uint64_t i = 0; i < k->u; i++) {
      char tok[32];
      snprintf(tok, sizeof tok, "<t%llu>", (unsigned long long)i);
      put_str(b, tok);
    }
    break;
  case K_RAW: put(b, k->raw, k->raw_n); break;
  }
}

/* Serialises s; tensor data are the given f32 values, else a byte pattern. */
static gbuf serialize(const gspec *s) {
  gbuf b = {0};
  put(&b, s->magic, 4);
  put_u32(&b, s->version);
  put_u64(&b, s->force_n_t >= 0 ? (uint64_t)s->force_n_t : (uint64_t)s->n_t);
  put_u64(&b, s->force_n_kv >= 0 ? (uint64_t)s->force_n_kv : (uint64_t)s->n_kv);
  for (int i = 0; i < s->n_kv; i++) {
    put_str(&b, s->kv[i].key);
    put_kv_value(&b, &s->kv[i]);
  }
  uint64_t off = 0, offs[MAX_TT];
  for (int i = 0; i < s->n_t; i++) {
    const tten *t = &s->t[i];
    offs[i] = t->offset >= 0 ? (uint64_t)t->offset : off;
    if (t->offset < 0) off = (off + t_bytes(t) + s->align - 1) / s->align * s->align;
    put_str(&b, t->name);
    put_u32(&b, (uint32_t)t->nd);
    for (int d = 0; d < t->nd; d++) put_u64(&b, d < 4 ? t->ne[d] : 1);
    put_u32(&b, t->type);
    put_u64(&b, offs[i]);
  }
  while (b.n % s->align) put_u8(&b, 0);
  size_t base = b.n;
  for (int i = 0; i < s->n_t; i++) {
    const tten *t = &s->t[i];
    if (t->offset >= 0) continue; /* hand-placed: data written by the layout of the others */
    while (b.n < base + offs[i]) put_u8(&b, 0);
    uint64_t nb = t_bytes(t);
    if (t->vals && t->type == LUKV_GGML_F32) {
      for (uint64_t j = 0; j < nb / 4; j++) put_f32(&b, t->vals[j]);
    } else {
      for (uint64_t j = 0; j < nb; j++) put_u8(&b, (uint8_t)(j * 7 + 3) & 0x3f); /* small f16 values */
    }
  }
  while (b.n % s->align) put_u8(&b, 0);
  return b;
}

/* ---- the tiny Llama --------------------------------------------------------------- */

/* V 16, D 32, one layer, Hq 2, Hkv 1, d 16 (or key_length), I 32. Values
 * are seeded uniform in [-0.5, 0.5), norms around 1. */
typedef struct tiny {
  int V, D, I, Hq, Hkv, d, L, tied, bias;
  float *hf[64];          /* HF-layout values per tensor slot */
  float *gg[64];          /* what goes into the file (q/k permuted) */
  int n;
} tiny;

static uint64_t rng_state = 1;
static float frand(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(rng_state >> 40) / (double)(1ULL << 24)) - 0.5f;
}

/* llama.cpp's permute, as numpy writes it:
 * w.reshape(H, 2, R/H/2, C).swapaxes(1, 2).reshape(R, C) */
static void llama_permute(const float *w, float *out, int rows, int cols, int heads) {
  int half = rows / heads / 2;
  for (int h = 0; h < heads; h++)
    for (int a = 0; a < half; a++)     /* output index (h, a, j) */
      for (int j = 0; j < 2; j++) {
        const float *src = w + ((size_t)h * 2 * half + (size_t)j * half + a) * cols; /* input (h, j, a) */
        memcpy(out + ((size_t)h * 2 * half + (size_t)a * 2 + j) * cols, src, sizeof(float) * (size_t)cols);
      }
}

/* Fills s with a valid tiny model; t gets the HF-layout weights. */
static void tiny_model(gspec *s, tiny *t) {
  memset(s, 0, sizeof *s);
  memcpy(s->magic, "GGUF", 5);
  s->version = 3;
  s->align = 32;
  s->force_n_t = s->force_n_kv = -1;
  if (!t->V) *t = (tiny){.V = 16, .D = 32, .I = 32, .Hq = 2, .Hkv = 1, .d = 16, .L = 1};
  kv_str(s, "general.architecture", "llama");
  kv_str(s, "general.name", "tiny");
  kv_u32(s, "llama.block_count", (uint32_t)t->L);
  kv_u32(s, "llama.context_length", 64);
  kv_u32(s, "llama.embedding_length", (uint32_t)t->D);
  kv_u32(s, "llama.feed_forward_length", (uint32_t)t->I);
  kv_u32(s, "llama.attention.head_count", (uint32_t)t->Hq);
  kv_u32(s, "llama.attention.head_count_kv", (uint32_t)t->Hkv);
  if (t->d != t->D / t->Hq) {
    kv_u32(s, "llama.attention.key_length", (uint32_t)t->d);
    kv_u32(s, "llama.attention.value_length", (uint32_t)t->d);
  }
  kv_u32(s, "llama.rope.dimension_count", (uint32_t)t->d);
  kv_f32(s, "llama.rope.freq_base", 10000.0);
  kv_f32(s, "llama.attention.layer_norm_rms_epsilon", 1e-5);
  kv_str(s, "tokenizer.ggml.model", "gpt2");
  add_kv(s, "tokenizer.ggml.tokens", K_TOKENS)->u = (uint64_t)t->V;
  typedef struct slot {
    const char *name;
    int rows, cols, perm_heads, norm;
  } slot;
  slot slots[64];
  int n = 0;
  int QD = t->Hq * t->d, KD = t->Hkv * t->d;
  slots[n++] = (slot){"token_embd.weight", t->V, t->D, 0, 0};
  slots[n++] = (slot){"output_norm.weight", t->D, 0, 0, 1};
  if (!t->tied) slots[n++] = (slot){"output.weight", t->V, t->D, 0, 0};
  for (int l = 0; l < t->L; l++) {
    static char names[8][16][48];
    const char *suf[] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",     "attn_v.weight",
                         "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
                         "ffn_down.weight",  "attn_q.bias",    "attn_k.bias",       "attn_v.bias",
                         "attn_output.bias"};
    int rows[] = {t->D, QD, KD, KD, t->D, t->D, t->I, t->I, t->D, QD, KD, KD, t->D};
    int cols[] = {0, t->D, t->D, t->D, QD, 0, t->D, t->D, t->I, 0, 0, 0, 0};
    int ph[] = {0, t->Hq, t->Hkv, 0, 0, 0, 0, 0, 0, t->Hq, t->Hkv, 0, 0};
    int nsuf = t->bias ? 13 : 9;
    for (int k = 0; k < nsuf; k++) {
      snprintf(names[l][k], sizeof names[l][k], "blk.%d.%s", l, suf[k]);
      slots[n++] = (slot){names[l][k], rows[k], cols[k], ph[k], strstr(suf[k], "norm") != NULL};
    }
  }
  ck_assert_int_le(n, 64);
  t->n = n;
  for (int i = 0; i < n; i++) {
    size_t cnt = (size_t)slots[i].rows * (size_t)(slots[i].cols ? slots[i].cols : 1);
    t->hf[i] = malloc(cnt * sizeof(float));
    t->gg[i] = malloc(cnt * sizeof(float));
    for (size_t j = 0; j < cnt; j++) t->hf[i][j] = slots[i].norm ? 1.0f + 0.5f * frand() : frand();
    if (slots[i].perm_heads)
      llama_permute(t->hf[i], t->gg[i], slots[i].rows, slots[i].cols ? slots[i].cols : 1, slots[i].perm_heads);
    else memcpy(t->gg[i], t->hf[i], cnt * sizeof(float));
    add_t(s, slots[i].name, LUKV_GGML_F32, slots[i].cols ? 2 : 1, (uint64_t)(slots[i].cols ? slots[i].cols : slots[i].rows),
          (uint64_t)(slots[i].cols ? slots[i].rows : 1), t->gg[i]);
  }
}

static void tiny_free(tiny *t) {
  for (int i = 0; i < t->n; i++) free(t->hf[i]), free(t->gg[i]);
}

static const char *write_spec(const gspec *s, const char *name) {
  gbuf b = serialize(s);
  const char *p = lukv_test_path(name);
  lukv_test_write_bytes(p, b.p, b.n);
  free(b.p);
  return p;
}

static int open_model(const char *path, lukv_model **m, lukv_error *err) {
  memset(err, 0, sizeof *err);
  *m = NULL;
  return lukv_model_open(path, LUKV_DEVICE_CPU, m, err);
}

/* ---- golden: transformers on the same GGUF -------------------------------------- */

static const char *variants[] = {"gguf_f16", "gguf_q8_0", "gguf_q4_0", "gguf_q4_1"};

START_TEST(golden_logits_and_greedy) {
  const char *name = variants[_i];
  lukv_test_golden g;
  lukv_test_golden_load(name, &g);
  char path[1100];
  snprintf(path, sizeof path, "%s/model.gguf", lukv_test_golden_path(name));
  lukv_model *m;
  lukv_error err;
  int rc = open_model(path, &m, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_int_eq(lukv_model_get_config(m)->vocab_size, g.V);
  float *lg = malloc(sizeof(float) * (size_t)g.T * g.V);
  double worst = 0;
  for (int p = 0; p < g.n_prompts; p++) {
    rc = lukv_model_forward(m, NULL, g.prompt[p], g.T, NULL, lg, &err);
    ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
    const float *ref = g.logits + (size_t)p * g.T * g.V;
    for (size_t i = 0; i < (size_t)g.T * g.V; i++) {
      double d = fabs((double)lg[i] - ref[i]);
      if (!(d <= worst)) worst = d;
    }
    int32_t out[LUKV_TEST_MAXT];
    rc = lukv_model_generate(m, g.prompt[p], g.T, g.n_gen, out, NULL, &err);
    ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
    for (int i = 0; i < g.n_gen; i++)
      ck_assert_msg(out[i] == g.greedy[p][i], "%s prompt %d: greedy token %d is %d, transformers %d", name, p, i,
                    out[i], g.greedy[p][i]);
  }
  printf("%-10s max |logit - HF| %.3g = %.3g of max|logit| %.3g; greedy %d x %d identical\n", name, worst,
         worst / g.scale, g.scale, g.n_prompts, g.n_gen);
  ck_assert_msg(worst <= 1e-3 * g.scale, "%s: max error %g > 1e-3 x %g", name, worst, g.scale);
  free(lg);
  free(g.logits);
  lukv_model_destroy(m);
}
END_TEST

START_TEST(golden_config) {
  /* gguf_q4_1: tied embeddings (no output.weight), GQA 2, BF16 norms */
  lukv_error err = {0};
  lukv_gguf_file *f = NULL;
  char path[1100];
  snprintf(path, sizeof path, "%s/model.gguf", lukv_test_golden_path("gguf_q4_1"));
  int rc = lukv_gguf_open(path, &f, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  lukv_model_config c;
  ck_assert_int_eq(lukv_gguf_config(f, &c, &err), LUKV_OK);
  ck_assert_int_eq(c.arch, LUKV_ARCH_LLAMA);
  ck_assert_int_eq(c.vocab_size, 256);
  ck_assert_int_eq(c.hidden_size, 64);
  ck_assert_int_eq(c.intermediate_size, 128);
  ck_assert_int_eq(c.n_layers, 2);
  ck_assert_int_eq(c.n_heads, 4);
  ck_assert_int_eq(c.n_kv_heads, 2);
  ck_assert_int_eq(c.head_dim, 16);
  ck_assert_int_eq(c.max_position_embeddings, 256);
  ck_assert(c.rms_norm_eps == (double)1e-5f);
  ck_assert(c.rope_theta == 10000.0);
  ck_assert_int_eq(c.rope_type, LUKV_ROPE_DEFAULT);
  ck_assert_int_eq(c.tie_word_embeddings, 1);
  ck_assert_int_eq(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
  const lukv_gguf_tensor *t = lukv_gguf_find_tensor(f, "blk.1.attn_q.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->type, LUKV_GGML_Q4_1);
  ck_assert_int_eq(t->ne[0], 64);
  ck_assert_int_eq(t->ne[1], 64);
  ck_assert_int_eq(lukv_gguf_find_tensor(f, "blk.0.attn_norm.weight")->type, LUKV_GGML_BF16);
  ck_assert_int_eq(lukv_gguf_find_tensor(f, "token_embd.weight")->type, LUKV_GGML_Q8_0);
  ck_assert_ptr_null(lukv_gguf_find_tensor(f, "output.weight"));
  ck_assert_int_eq(lukv_gguf_alignment(f), 32);
  ck_assert_uint_eq(lukv_gguf_data_offset(f) % 32, 0);
  lukv_gguf_close(f);
  snprintf(path, sizeof path, "%s/model.gguf", lukv_test_golden_path("gguf_q4_0"));
  ck_assert_int_eq(lukv_gguf_open(path, &f, &err), LUKV_OK);
  ck_assert_int_eq(lukv_gguf_alignment(f), 64);
  ck_assert_uint_eq(lukv_gguf_data_offset(f) % 64, 0);
  lukv_gguf_close(f);
}
END_TEST

/* ---- dequantisation against gguf.dequantize ------------------------------------- */

START_TEST(dequant_matches_gguf_package) {
  lukv_error err = {0};
  lukv_gguf_file *f = NULL;
  const char *path = lukv_test_golden_path("gguf_dequant/blocks.gguf");
  int rc = lukv_gguf_open(path, &f, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"};
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
    char rn[32], en[32];
    snprintf(rn, sizeof rn, "raw.%s", types[k]);
    snprintf(en, sizeof en, "expect.%s", types[k]);
    const lukv_gguf_tensor *raw = lukv_gguf_find_tensor(f, rn), *exp = lukv_gguf_find_tensor(f, en);
    ck_assert_msg(raw && exp, "%s / %s missing", rn, en);
    ck_assert_str_eq(lukv_ggml_type_name(raw->type), types[k]);
    ck_assert_uint_eq(raw->n_elem, exp->n_elem);
    float *got = malloc(sizeof(float) * raw->n_elem), *want = malloc(sizeof(float) * raw->n_elem);
    ck_assert_int_eq(lukv_ggml_dequant(raw->type, raw->data, raw->n_elem, got), LUKV_OK);
    ck_assert_int_eq(lukv_ggml_dequant(LUKV_GGML_F32, exp->data, exp->n_elem, want), LUKV_OK);
    int nan = 0, finite = 0;
    for (uint64_t i = 0; i < raw->n_elem; i++) {
      if (isnan(want[i])) {
        ck_assert_msg(isnan(got[i]), "%s[%llu]: %g, expected NaN", types[k], (unsigned long long)i, got[i]);
        nan++;
        continue;
      }
      uint32_t a, b;
      memcpy(&a, &got[i], 4);
      memcpy(&b, &want[i], 4);
      ck_assert_msg(a == b, "%s[%llu]: %.9g (0x%08x), gguf.dequantize %.9g (0x%08x)", types[k],
                    (unsigned long long)i, got[i], a, want[i], b);
      finite += isfinite(want[i]) != 0;
    }
    ck_assert_int_gt(finite, (int)raw->n_elem / 2); /* the fixture is not all NaN */
    (void)nan;
    free(got);
    free(want);
  }
  lukv_gguf_close(f);
}
END_TEST

/* Hand-made blocks: the documented layouts, element by element. */
START_TEST(dequant_block_layouts) {
  uint8_t q8[34], q40[18], q41[20];
  /* d = 0.5 (f16 0x3800), m = -1 (0xbc00) */
  q8[0] = 0x00, q8[1] = 0x38;
  for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
  q40[0] = 0x00, q40[1] = 0x38;
  q41[0] = 0x00, q41[1] = 0x38, q41[2] = 0x00, q41[3] = 0xbc;
  for (int j = 0; j < 16; j++) {
    q40[2 + j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    q41[4 + j] = q40[2 + j];
  }
  float o[32];
  ck_assert_int_eq(lukv_ggml_dequant(LUKV_GGML_Q8_0, q8, 32, o), LUKV_OK);
  for (int j = 0; j < 32; j++) ck_assert(o[j] == 0.5f * (float)(j - 16));
  ck_assert_int_eq(lukv_ggml_dequant(LUKV_GGML_Q4_0, q40, 32, o), LUKV_OK);
  for (int j = 0; j < 16; j++) {
    ck_assert(o[j] == 0.5f * (float)(j - 8));             /* low nibbles: elements 0..15 */
    ck_assert(o[16 + j] == 0.5f * (float)((15 - j) - 8)); /* high nibbles: 16..31 */
  }
  ck_assert_int_eq(lukv_ggml_dequant(LUKV_GGML_Q4_1, q41, 32, o), LUKV_OK);
  for (int j = 0; j < 16; j++) {
    ck_assert(o[j] == 0.5f * (float)j - 1.0f);
    ck_assert(o[16 + j] == 0.5f * (float)(15 - j) - 1.0f);
  }
  ck_assert_int_eq(lukv_ggml_dequant(LUKV_GGML_Q4_1, q41, 16, o), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_ggml_dequant(12 /* Q4_K */, q41, 256, o), LUKV_ERR_UNSUPPORTED);
  uint64_t be, bb;
  ck_assert(lukv_ggml_type_size(LUKV_GGML_Q4_1, &be, &bb) && be == 32 && bb == 20);
  ck_assert(lukv_ggml_type_size(LUKV_GGML_Q8_0, &be, &bb) && be == 32 && bb == 34);
  ck_assert(lukv_ggml_type_size(14, &be, &bb) && be == 256 && bb == 210); /* Q6_K */
  ck_assert(!lukv_ggml_type_size(4, &be, &bb));                          /* removed Q4_2 */
  ck_assert_str_eq(lukv_ggml_type_name(30), "BF16");
}
END_TEST

START_TEST(tensor_names) {
  char b[128];
  struct {
    const char *hf, *gg;
  } ok[] = {{"model.embed_tokens.weight", "token_embd.weight"},
            {"model.norm.weight", "output_norm.weight"},
            {"lm_head.weight", "output.weight"},
            {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
            {"model.layers.12.self_attn.q_proj.weight", "blk.12.attn_q.weight"},
            {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
            {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
            {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
            {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
            {"model.layers.29.mlp.gate_proj.weight", "blk.29.ffn_gate.weight"},
            {"model.layers.29.mlp.up_proj.weight", "blk.29.ffn_up.weight"},
            {"model.layers.29.mlp.down_proj.bias", "blk.29.ffn_down.bias"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    ck_assert_msg(lukv_gguf_tensor_name(ok[i].hf, b, sizeof b), "%s", ok[i].hf);
    ck_assert_str_eq(b, ok[i].gg);
  }
  ck_assert(!lukv_gguf_tensor_name("model.layers.1.mlp.gate_proj.scales", b, sizeof b));
  ck_assert(!lukv_gguf_tensor_name("model.layers.x.mlp.gate_proj.weight", b, sizeof b));
  ck_assert(!lukv_gguf_tensor_name("model.layers.1.input_layernorm.weightX", b, sizeof b));
  ck_assert(lukv_is_gguf_path("a/b.gguf") && lukv_is_gguf_path("B.GGUF") && !lukv_is_gguf_path("dir") &&
            !lukv_is_gguf_path(".gguf/x") && !lukv_is_gguf_path(NULL));
}
END_TEST

/* ---- the permutation, against a safetensors copy ---------------------------------- */

/* Writes t's HF-layout weights as DIR/model.safetensors + config.json. */
static void write_hf_dir(const char *dir, const tiny *t, const gspec *s) {
  mkdir(dir, 0755);
  char path[1100];
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f,
          "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": %d, \"hidden_size\": %d, "
          "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
          "\"num_key_value_heads\": %d, \"head_dim\": %d, \"max_position_embeddings\": 64, "
          "\"rms_norm_eps\": %.17g, \"rope_theta\": 10000.0, \"tie_word_embeddings\": %s, "
          "\"attention_bias\": %s}",
          t->V, t->D, t->I, t->L, t->Hq, t->Hkv, t->d, (double)1e-5f, t->tied ? "true" : "false",
          t->bias ? "true" : "false");
  fclose(f);
  /* safetensors: same tensors under their HF names, F32, tiled in order */
  char hdr[16384];
  size_t h = (size_t)snprintf(hdr, sizeof hdr, "{");
  uint64_t off = 0;
  for (int i = 0; i < t->n; i++) {
    const tten *tt = &s->t[i];
    char hf[128] = "";
    /* reverse of lukv_gguf_tensor_name, by trying the slot names */
    const char *cands[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (size_t c = 0; c < 3 && !hf[0]; c++) {
      char g[128];
      if (lukv_gguf_tensor_name(cands[c], g, sizeof g) && !strcmp(g, tt->name)) snprintf(hf, sizeof hf, "%s", cands[c]);
    }
    if (!hf[0]) {
      const char *sub[] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                           "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                           "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                           "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                           "self_attn.o_proj.bias"};
      for (int l = 0; l < t->L && !hf[0]; l++)
        for (size_t c = 0; c < sizeof sub / sizeof sub[0] && !hf[0]; c++) {
          char cand[128], g[128];
          snprintf(cand, sizeof cand, "model.layers.%d.%s", l, sub[c]);
          if (lukv_gguf_tensor_name(cand, g, sizeof g) && !strcmp(g, tt->name)) snprintf(hf, sizeof hf, "%s", cand);
        }
    }
    ck_assert_msg(hf[0], "no HF name for %s", tt->name);
    uint64_t n = tt->ne[0] * tt->ne[1];
    if (tt->nd == 2)
      h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%llu, %llu], "
                            "\"data_offsets\": [%llu, %llu]}", i ? ", " : "", hf, (unsigned long long)tt->ne[1],
                            (unsigned long long)tt->ne[0], (unsigned long long)off, (unsigned long long)(off + 4 * n));
    else
      h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%llu], "
                            "\"data_offsets\": [%llu, %llu]}", i ? ", " : "", hf, (unsigned long long)tt->ne[0],
                            (unsigned long long)off, (unsigned long long)(off + 4 * n));
    off += 4 * n;
  }
  h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
  ck_assert_uint_lt(h, sizeof hdr - 8);
  while (h % 8) hdr[h++] = ' ';
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  f = fopen(path, "wb");
  uint64_t hl = h;
  fwrite(&hl, 8, 1, f); /* little-endian host */
  fwrite(hdr, 1, h, f);
  for (int i = 0; i < t->n; i++) fwrite(t->hf[i], 4, s->t[i].ne[0] * s->t[i].ne[1], f);
  fclose(f);
}

/* The same weights as GGUF (Q/K permuted the llama.cpp way) and as HF
 * safetensors give bit-identical logits: the un-permutation is exact. */
static void same_as_safetensors(tiny shape) {
  gspec *s = calloc(1, sizeof *s);
  tiny t = shape;
  rng_state = 12345;
  tiny_model(s, &t);
  const char *gp = write_spec(s, "m.gguf");
  write_hf_dir(lukv_test_path("hf"), &t, s);
  lukv_model *a, *b;
  lukv_error err;
  ck_assert_msg(open_model(gp, &a, &err) == LUKV_OK, "%s", err.msg);
  ck_assert_msg(open_model(lukv_test_path("hf"), &b, &err) == LUKV_OK, "%s", err.msg);
  const lukv_model_config *ca = lukv_model_get_config(a), *cb = lukv_model_get_config(b);
  ck_assert_int_eq(ca->head_dim, cb->head_dim);
  ck_assert_int_eq(ca->tie_word_embeddings, cb->tie_word_embeddings);
  ck_assert_int_eq(ca->qkv_bias, cb->qkv_bias);
  ck_assert(ca->rms_norm_eps == cb->rms_norm_eps);
  int32_t tok[20];
  for (int i = 0; i < 20; i++) tok[i] = (i * 7 + 3) % t.V;
  float *la = malloc(sizeof(float) * 20 * (size_t)t.V), *lb = malloc(sizeof(float) * 20 * (size_t)t.V);
  ck_assert_int_eq(lukv_model_forward(a, NULL, tok, 20, NULL, la, &err), LUKV_OK);
  ck_assert_int_eq(lukv_model_forward(b, NULL, tok, 20, NULL, lb, &err), LUKV_OK);
  for (int i = 0; i < 20 * t.V; i++) ck_assert_msg(la[i] == lb[i], "logit %d: gguf %g, safetensors %g", i, la[i], lb[i]);
  /* and the loader's f32 Wq is exactly HF's */
  lukv_model_config c;
  lukv_weights w;
  ck_assert_int_eq(lukv_weights_from_gguf(gp, &c, &w, &err), LUKV_OK);
  int q = t.tied ? 3 : 4; /* slot index of blk.0.attn_q.weight in tiny_model */
  ck_assert(memcmp(w.layers[0].wq.data, t.hf[q], sizeof(float) * (size_t)(t.Hq * t.d * t.D)) == 0);
  ck_assert(memcmp(w.layers[0].wk.data, t.hf[q + 1], sizeof(float) * (size_t)(t.Hkv * t.d * t.D)) == 0);
  if (t.bias) {
    ck_assert(memcmp(w.layers[0].bq.data, t.hf[q + 8], sizeof(float) * (size_t)(t.Hq * t.d)) == 0);
    ck_assert(memcmp(w.layers[0].bk.data, t.hf[q + 9], sizeof(float) * (size_t)(t.Hkv * t.d)) == 0);
  }
  lukv_weights_free(&w);
  free(la);
  free(lb);
  lukv_model_destroy(a);
  lukv_model_destroy(b);
  tiny_free(&t);
  free(s);
}

START_TEST(unpermute_plain) { same_as_safetensors((tiny){.V = 16, .D = 32, .I = 32, .Hq = 2, .Hkv = 1, .d = 16, .L = 1}); }
END_TEST
START_TEST(unpermute_gqa_bias_tied_2layers) {
  same_as_safetensors((tiny){.V = 24, .D = 32, .I = 48, .Hq = 4, .Hkv = 2, .d = 8, .L = 2, .tied = 1, .bias = 1});
}
END_TEST
START_TEST(unpermute_head_dim_not_d_over_h) {
  /* key_length 16 with D 32 and 4 heads: Hq * d = 64 != D */
  same_as_safetensors((tiny){.V = 16, .D = 32, .I = 32, .Hq = 4, .Hkv = 2, .d = 16, .L = 1});
}
END_TEST

START_TEST(rope_linear_and_defaults) {
  gspec *s = calloc(1, sizeof *s);
  tiny t = {0};
  tiny_model(s, &t);
  kv_str(s, "llama.rope.scaling.type", "linear");
  kv_f32(s, "llama.rope.scaling.factor", 4.0);
  del_kv(s, "llama.rope.freq_base");           /* default 10000 */
  del_kv(s, "llama.attention.head_count_kv");  /* default head_count */
  tkv *hc = find_kv(s, "llama.attention.head_count");
  hc->u = 2;
  del_t(s, "blk.0.attn_k.weight");
  del_t(s, "blk.0.attn_v.weight");
  add_t(s, "blk.0.attn_k.weight", LUKV_GGML_F32, 2, 32, 32, NULL);
  add_t(s, "blk.0.attn_v.weight", LUKV_GGML_F16, 2, 32, 32, NULL);
  const char *p = write_spec(s, "lin.gguf");
  lukv_model *m;
  lukv_error err;
  ck_assert_msg(open_model(p, &m, &err) == LUKV_OK, "%s", err.msg);
  const lukv_model_config *c = lukv_model_get_config(m);
  ck_assert_int_eq(c->rope_type, LUKV_ROPE_LINEAR);
  ck_assert(c->rope_factor == 4.0);
  ck_assert(c->rope_theta == 10000.0);
  ck_assert_int_eq(c->n_kv_heads, 2);
  ck_assert_int_eq(c->tie_word_embeddings, 0);
  int32_t tok[3] = {1, 2, 3};
  float lg[3 * 16];
  ck_assert_int_eq(lukv_model_forward(m, NULL, tok, 3, NULL, lg, &err), LUKV_OK);
  for (int i = 0; i < 48; i++) ck_assert(isfinite(lg[i]));
  lukv_model_destroy(m);
  tiny_free(&t);
  free(s);
}
END_TEST

/* ---- corrupt and unsupported files --------------------------------------------------- */

typedef void (*mutator)(gspec *s);
typedef struct bad_case {
  const char *what;
  mutator mutate;
  int status;
  const char *needle1, *needle2;
} bad_case;

static void m_magic(gspec *s) { memcpy(s->magic, "GGUX", 5); }
static void m_version2(gspec *s) { s->version = 2; }
static void m_version_be(gspec *s) { s->version = 0x03000000u; }
static void m_absurd_tensors(gspec *s) { s->force_n_t = (int64_t)1 << 40; }
static void m_absurd_kvs(gspec *s) { s->force_n_kv = (int64_t)1 << 40; }
static void m_too_many_tensors(gspec *s) { s->force_n_t = s->n_t + 1; }
static void m_offset_outside(gspec *s) { find_t(s, "blk.0.ffn_up.weight")->offset = (int64_t)1 << 40; }
static void m_offset_unaligned(gspec *s) { find_t(s, "blk.0.ffn_up.weight")->offset = 4; }
static void m_overlap(gspec *s) { find_t(s, "blk.0.ffn_up.weight")->offset = 0; }
static void m_dup_key(gspec *s) { kv_u32(s, "llama.block_count", 1); }
static void m_dup_tensor(gspec *s) { add_t(s, "output_norm.weight", LUKV_GGML_F32, 1, 32, 1, NULL); }
static void m_unknown_vtype(gspec *s) {
  static const uint8_t raw[] = {13, 0, 0, 0, 1, 2, 3, 4};
  tkv *k = add_kv(s, "general.weird", K_RAW);
  k->raw = raw, k->raw_n = sizeof raw;
}
static void m_bool2(gspec *s) { add_kv(s, "general.flag", K_BOOL)->u = 2; }
static void m_nested(gspec *s) {
  /* value type array; arrays of arrays 4 levels down; the 5th level (depth 4)
   * holds one u8 */
  static uint8_t raw[4 + 5 * 12 + 1];
  size_t n = 0;
  raw[n++] = 9, raw[n++] = 0, raw[n++] = 0, raw[n++] = 0;
  for (int level = 0; level < 5; level++) {
    raw[n++] = level < 4 ? 9 : 0, raw[n++] = 0, raw[n++] = 0, raw[n++] = 0; /* element type */
    raw[n++] = 1;                                                          /* count 1 */
    for (int j = 0; j < 7; j++) raw[n++] = 0;
  }
  raw[n++] = 7;
  tkv *k = add_kv(s, "general.nested", K_RAW);
  k->raw = raw, k->raw_n = n;
}
static void m_array_huge(gspec *s) {
  static const uint8_t raw[] = {9, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}; /* 2^60 u32 */
  tkv *k = add_kv(s, "general.big", K_RAW);
  k->raw = raw, k->raw_n = sizeof raw;
}
static void m_strlen_huge(gspec *s) {
  static const uint8_t raw[] = {8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'x'};
  tkv *k = add_kv(s, "general.url", K_RAW);
  k->raw = raw, k->raw_n = sizeof raw;
}
static void m_key_ctrl(gspec *s) { kv_u32(s, "general.a\nb", 1); }
static void m_unknown_type(gspec *s) { find_t(s, "blk.0.ffn_up.weight")->type = 4; }
static void m_ndims5(gspec *s) {
  tten *t = find_t(s, "blk.0.ffn_norm.weight");
  t->nd = 5;
}
static void m_dim0(gspec *s) { find_t(s, "blk.0.ffn_up.weight")->ne[1] = 0; }
static void m_dim_overflow(gspec *s) {
  tten *t = find_t(s, "blk.0.ffn_up.weight");
  t->ne[0] = (uint64_t)1 << 40, t->ne[1] = (uint64_t)1 << 40;
  t->offset = 0;
}
static void m_block_row(gspec *s) {
  tten *t = find_t(s, "blk.0.ffn_up.weight");
  t->type = LUKV_GGML_Q8_0, t->ne[0] = 16, t->ne[1] = 64;
}
static void m_align_bad(gspec *s) { kv_u32(s, "general.alignment", 48); }
static void m_align_type(gspec *s) { add_kv(s, "general.alignment", K_U64)->u = 32; }
static void m_type_unsupported(gspec *s) { find_t(s, "blk.0.attn_v.weight")->type = 26; /* I32, same bytes */ }
static void m_missing(gspec *s) { del_t(s, "blk.0.ffn_up.weight"); }
static void m_shape(gspec *s) {
  tten *t = find_t(s, "blk.0.attn_k.weight");
  t->ne[1] = 32, t->vals = NULL;
}
static void m_vocab_shape(gspec *s) { find_kv(s, "tokenizer.ggml.tokens")->u = 20; }
static void m_arch(gspec *s) { find_kv(s, "general.architecture")->s = "gpt2"; }
static void m_no_arch(gspec *s) { del_kv(s, "general.architecture"); }
static void m_no_layers(gspec *s) { del_kv(s, "llama.block_count"); }
static void m_layers_range(gspec *s) { find_kv(s, "llama.block_count")->u = 100000; }
static void m_kv_heads(gspec *s) { find_kv(s, "llama.attention.head_count_kv")->u = 3; }
static void m_yarn(gspec *s) { kv_str(s, "llama.rope.scaling.type", "yarn"); }
static void m_rope_freqs(gspec *s) { add_t(s, "rope_freqs.weight", LUKV_GGML_F32, 1, 8, 1, NULL); }
static void m_partial_rotary(gspec *s) { find_kv(s, "llama.rope.dimension_count")->u = 8; }
static void m_eps_type(gspec *s) {
  tkv *k = find_kv(s, "llama.attention.layer_norm_rms_epsilon");
  k->kind = K_STR, k->s = "1e-5";
}
static void m_tokens_type(gspec *s) {
  static const uint8_t raw[] = {9, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0};
  tkv *k = find_kv(s, "tokenizer.ggml.tokens");
  k->kind = K_RAW, k->raw = raw, k->raw_n = sizeof raw;
}

static const bad_case bad_cases[] = {
    {"bad magic", m_magic, LUKV_ERR_FORMAT, "header", "not a GGUF file"},
    {"version 2", m_version2, LUKV_ERR_VERSION, "header", "version 2"},
    {"big-endian", m_version_be, LUKV_ERR_UNSUPPORTED, "header", "big-endian"},
    {"absurd tensor count", m_absurd_tensors, LUKV_ERR_RANGE, "header", "tensor_count 1099511627776"},
    {"absurd kv count", m_absurd_kvs, LUKV_ERR_RANGE, "header", "kv_count 1099511627776"},
    {"one tensor too many", m_too_many_tensors, LUKV_ERR_FORMAT, "tensor 12 name", NULL},
    {"data beyond the file", m_offset_outside, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "outside the data section"},
    {"unaligned offset", m_offset_unaligned, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "not a multiple of the alignment"},
    {"overlapping tensors", m_overlap, LUKV_ERR_FORMAT, "overlaps", NULL},
    {"duplicate key", m_dup_key, LUKV_ERR_FORMAT, "llama.block_count", "twice"},
    {"duplicate tensor", m_dup_tensor, LUKV_ERR_FORMAT, "output_norm.weight", "twice"},
    {"unknown value type", m_unknown_vtype, LUKV_ERR_FORMAT, "general.weird", "unknown value type 13"},
    {"bool 2", m_bool2, LUKV_ERR_FORMAT, "general.flag", "neither 0 nor 1"},
    {"arrays 5 deep", m_nested, LUKV_ERR_FORMAT, "general.nested", "nested deeper"},
    {"array count beyond file", m_array_huge, LUKV_ERR_FORMAT, "general.big", "cannot fit"},
    {"string length beyond file", m_strlen_huge, LUKV_ERR_FORMAT, "general.url", "beyond the end of the file"},
    {"control char in key", m_key_ctrl, LUKV_ERR_FORMAT, "key", "not printable"},
    {"unknown ggml type", m_unknown_type, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "unknown ggml type 4"},
    {"5 dims", m_ndims5, LUKV_ERR_FORMAT, "blk.0.ffn_norm.weight", "n_dims 5"},
    {"zero dim", m_dim0, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "dimension 1 is 0"},
    {"element count overflow", m_dim_overflow, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "2^62"},
    {"row not whole blocks", m_block_row, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "not a multiple of the Q8_0 block"},
    {"alignment 48", m_align_bad, LUKV_ERR_RANGE, "general.alignment", "power of two"},
    {"alignment u64", m_align_type, LUKV_ERR_FORMAT, "general.alignment", "expected u32"},
    {"unsupported tensor type", m_type_unsupported, LUKV_ERR_UNSUPPORTED, "blk.0.attn_v.weight", "type I32 not supported"},
    {"missing tensor", m_missing, LUKV_ERR_FORMAT, "blk.0.ffn_up.weight", "tensor missing"},
    {"misshapen tensor", m_shape, LUKV_ERR_SHAPE, "blk.0.attn_k.weight", "shape [32, 32], expected [32, 16]"},
    {"embeddings vs vocab", m_vocab_shape, LUKV_ERR_SHAPE, "token_embd.weight", "expected [32, 20]"},
    {"another architecture", m_arch, LUKV_ERR_UNSUPPORTED, "general.architecture", "\"gpt2\""},
    {"no architecture", m_no_arch, LUKV_ERR_FORMAT, "general.architecture", "missing"},
    {"no block_count", m_no_layers, LUKV_ERR_FORMAT, "llama.block_count", "missing"},
    {"block_count range", m_layers_range, LUKV_ERR_RANGE, "llama.block_count", "100000 outside"},
    {"kv heads not dividing", m_kv_heads, LUKV_ERR_SHAPE, "llama.attention.head_count_kv", "does not divide"},
    {"yarn", m_yarn, LUKV_ERR_UNSUPPORTED, "llama.rope.scaling.type", "\"yarn\""},
    {"rope_freqs", m_rope_freqs, LUKV_ERR_UNSUPPORTED, "rope_freqs.weight", "Llama 3.1"},
    {"partial rotary", m_partial_rotary, LUKV_ERR_UNSUPPORTED, "llama.rope.dimension_count", "partial rotary"},
    {"eps a string", m_eps_type, LUKV_ERR_FORMAT, "llama.attention.layer_norm_rms_epsilon", "type string"},
    {"tokens not strings", m_tokens_type, LUKV_ERR_FORMAT, "tokenizer.ggml.tokens", "not an array of strings"},
};

START_TEST(bad_file) {
  const bad_case *bc = &bad_cases[_i];
  gspec *s = calloc(1, sizeof *s);
  tiny t = {0};
  tiny_model(s, &t);
  bc->mutate(s);
  const char *p = write_spec(s, "bad.gguf");
  lukv_model *m;
  lukv_error err;
  int rc = open_model(p, &m, &err);
  ck_assert_ptr_null(m);
  if (bc->needle2) lukv_test_expect_err(&err, rc, bc->status, p, bc->needle1, bc->needle2, NULL);
  else lukv_test_expect_err(&err, rc, bc->status, p, bc->needle1, NULL);
  tiny_free(&t);
  free(s);
}
END_TEST

START_TEST(bad_paths) {
  lukv_model *m;
  lukv_error err;
  const char *p = lukv_test_path("none.gguf");
  lukv_test_expect_err(&err, open_model(p, &m, &err), LUKV_ERR_IO, p, "cannot open", NULL);
  p = lukv_test_path("dir.gguf");
  mkdir(p, 0755);
  lukv_test_expect_err(&err, open_model(p, &m, &err), LUKV_ERR_IO, p, "not a regular file", NULL);
  p = lukv_test_path("empty.gguf");
  lukv_test_write_bytes(p, "", 0);
  lukv_test_expect_err(&err, open_model(p, &m, &err), LUKV_ERR_FORMAT, p, "empty", NULL);
  p = lukv_test_path("short.gguf");
  lukv_test_write_bytes(p, "GGUF\3\0", 6);
  lukv_test_expect_err(&err, open_model(p, &m, &err), LUKV_ERR_FORMAT, p, "header", "truncated", NULL);
}
END_TEST

/* Every prefix of a real file up to past its header, and some inside the
 * data: always a FORMAT error (parsed from an exactly-sized heap copy, so
 * ASan sees any read past the end). */
START_TEST(truncated_everywhere) {
  size_t n;
  char path[1100];
  snprintf(path, sizeof path, "%s/model.gguf", lukv_test_golden_path("gguf_q4_1"));
  uint8_t *full = lukv_test_read_file(path, &n);
  lukv_gguf_file *f;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_gguf_parse("x.gguf", full, n, &f, &err), LUKV_OK);
  size_t hdr = (size_t)lukv_gguf_data_offset(f), end = hdr;
  for (int i = 0; i < lukv_gguf_tensor_count(f); i++) {
    const lukv_gguf_tensor *t = lukv_gguf_tensor_at(f, i);
    if (hdr + t->offset + t->nbytes > end) end = hdr + t->offset + t->nbytes;
  }
  lukv_gguf_close(f);
  int checked = 0;
  for (size_t len = 0; len < end; len += len < hdr + 64 ? 1 : 997) {
    uint8_t *b = malloc(len ? len : 1);
    memcpy(b, full, len);
    memset(&err, 0, sizeof err);
    int rc = lukv_gguf_parse("x.gguf", b, len, &f, &err);
    ck_assert_msg(rc == LUKV_ERR_FORMAT, "length %zu of %zu: status %d (%s)", len, n, rc, err.msg);
    ck_assert_ptr_null(f);
    ck_assert(strstr(err.msg, "x.gguf: ") == err.msg && !strchr(err.msg, '\n'));
    free(b);
    checked++;
  }
  ck_assert_int_gt(checked, (int)hdr);
  free(full);
}
END_TEST

/* Random byte mutations of the header region of a real file: parse, config
 * and weights either succeed or fail with one line; never crash. */
START_TEST(fuzz_header) {
  size_t n;
  char path[1100];
  snprintf(path, sizeof path, "%s/model.gguf", lukv_test_golden_path("gguf_q4_1"));
  uint8_t *full = lukv_test_read_file(path, &n);
  lukv_gguf_file *f;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_gguf_parse("x.gguf", full, n, &f, &err), LUKV_OK);
  size_t hdr = (size_t)lukv_gguf_data_offset(f);
  lukv_gguf_close(f);
  uint64_t st = 99;
  int ok = 0, bad = 0;
  uint8_t *b = malloc(n);
  for (int it = 0; it < 3000; it++) {
    memcpy(b, full, n);
    int k = 1 + (int)(st % 4);
    for (int j = 0; j < k; j++) {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      size_t at = (size_t)((st >> 33) % hdr);
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      uint8_t v = (uint8_t)(st >> 56);
      /* favour values that make lengths and counts large */
      b[at] = (st >> 20) & 1 ? v : (uint8_t)(v | 0xf0);
    }
    memset(&err, 0, sizeof err);
    int rc = lukv_gguf_parse("x.gguf", b, n, &f, &err);
    if (rc == LUKV_OK) {
      lukv_model_config c;
      lukv_weights w;
      rc = lukv_gguf_weights(f, &c, &w, &err);
      if (rc == LUKV_OK) lukv_weights_free(&w);
      lukv_gguf_close(f);
    }
    if (rc == LUKV_OK) ok++;
    else {
      bad++;
      ck_assert_msg(err.msg[0] && !strchr(err.msg, '\n'), "iteration %d: message \"%s\"", it, err.msg);
    }
  }
  printf("fuzz: 3000 mutated headers, %d still load, %d refused with one line\n", ok, bad);
  ck_assert_int_gt(bad, 1000);
  free(b);
  free(full);
}
END_TEST

START_TEST(metadata_getters) {
  gspec *s = calloc(1, sizeof *s);
  tiny t = {0};
  tiny_model(s, &t);
  add_kv(s, "general.neg", K_I32)->u = (uint32_t)-5;
  const char *p = write_spec(s, "meta.gguf");
  lukv_gguf_file *f;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_gguf_open(p, &f, &err), LUKV_OK);
  int64_t v;
  double d;
  char buf[8];
  ck_assert_int_eq(lukv_gguf_get_int(f, "general.neg", 1, 0, -10, 10, &v, &err), LUKV_OK);
  ck_assert_int_eq(v, -5);
  ck_assert_int_eq(lukv_gguf_get_int(f, "general.neg", 1, 0, 0, 10, &v, &err), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_gguf_get_int(f, "general.nope", 0, 42, 0, 100, &v, &err), LUKV_OK);
  ck_assert_int_eq(v, 42);
  ck_assert_int_eq(lukv_gguf_get_float(f, "llama.block_count", 1, 0, &d, &err), LUKV_OK);
  ck_assert(d == 1.0);
  ck_assert_int_eq(lukv_gguf_get_string(f, "general.name", 1, NULL, buf, sizeof buf, &err), LUKV_OK);
  ck_assert_str_eq(buf, "tiny");
  ck_assert_int_eq(lukv_gguf_get_string(f, "general.architecture", 1, NULL, buf, 4, &err), LUKV_ERR_RANGE);
  ck_assert_int_eq(lukv_gguf_get_string(f, "llama.block_count", 1, NULL, buf, sizeof buf, &err), LUKV_ERR_FORMAT);
  const lukv_gguf_kv *kt = lukv_gguf_find_kv(f, "tokenizer.ggml.tokens");
  ck_assert_ptr_nonnull(kt);
  ck_assert_int_eq(kt->type, LUKV_GGUF_ARRAY);
  ck_assert_int_eq(kt->arr_type, LUKV_GGUF_STRING);
  ck_assert_uint_eq(kt->arr_n, 16);
  ck_assert_int_eq(lukv_gguf_kv_count(f), s->n_kv);
  ck_assert_int_eq(lukv_gguf_tensor_count(f), s->n_t);
  ck_assert_str_eq(lukv_gguf_kv_at(f, 0)->key, "general.architecture");
  ck_assert_ptr_null(lukv_gguf_kv_at(f, -1));
  lukv_gguf_close(f);
  lukv_gguf_close(NULL);
  tiny_free(&t);
  free(s);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("gguf");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, golden_logits_and_greedy, 0, (int)(sizeof variants / sizeof variants[0]));
  tcase_add_test(tc, golden_config);
  tcase_add_test(tc, dequant_matches_gguf_package);
  tcase_add_test(tc, dequant_block_layouts);
  tcase_add_test(tc, tensor_names);
  suite_add_tcase(s, tc);
  tc = tcase_create("files");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, lukv_test_tmpdir_teardown);
  tcase_add_test(tc, unpermute_plain);
  tcase_add_test(tc, unpermute_gqa_bias_tied_2layers);
  tcase_add_test(tc, unpermute_head_dim_not_d_over_h);
  tcase_add_test(tc, rope_linear_and_defaults);
  tcase_add_test(tc, metadata_getters);
  tcase_add_loop_test(tc, bad_file, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
  tcase_add_test(tc, bad_paths);
  tcase_add_test(tc, truncated_everywhere);
  tcase_add_test(tc, fuzz_header);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return lukv_test_run(suite(), CK_NORMAL);
}

/* Engine (model/) CPU reference: golden logits and greedy tokens from HF
 * transformers, the tap, blocked vs naive attention, and every bad input the
 * loader must refuse with a clear message instead of crashing.
 *
 * Golden fixtures: tests/golden/<name>/ (tools/make_golden.py). Bad inputs
 * are written into a per-test mkdtemp directory.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lukv_config.h"

#include "config.h"
#include "cpu_ops.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------- */

static void setup(void) { lukv_test_tmpdir_setup("lukv-model"); }

/* ---- golden fixtures ---------------------------------------------------------- */

static const char *const golden_models[] = {"llama_plain", "llama3_rope", "llama_linear_sharded",
                                            "mistral_gqa", "qwen2_bias",  "qwen2_tied"};
enum { N_GOLDEN = sizeof golden_models / sizeof golden_models[0] };

static lukv_model *open_ok(const char *dir) {
  lukv_error err = {0};
  lukv_model *m = NULL;
  int rc = lukv_model_open(dir, LUKV_DEVICE_CPU, &m, &err);
  ck_assert_msg(rc == LUKV_OK, "open %s: %s", dir, err.msg);
  return m;
}

/* CPU logits vs transformers f32 logits: max |err| <= 1e-4 * max |logit|,
 * both as one forward pass and as two passes through a KV cache. */
START_TEST(golden_logits) {
  const char *name = golden_models[_i];
  lukv_test_golden g;
  lukv_test_golden_load(name, &g);
  lukv_model *m = open_ok(lukv_test_golden_path(name));
  const lukv_model_config *cfg = lukv_model_get_config(m);
  ck_assert_int_eq(cfg->vocab_size, g.V);
  float *lg = malloc(sizeof(float) * (size_t)g.T * g.V);
  lukv_error err = {0};
  double worst = 0, worst_cache = 0;
  for (int p = 0; p < g.n_prompts; p++) {
    const float *ref = g.logits + (size_t)p * g.T * g.V;
    ck_assert_msg(lukv_model_forward(m, NULL, g.prompt[p], g.T, NULL, lg, &err) == LUKV_OK, "%s", err.msg);
    double e = lukv_test_max_abs_diff(lg, ref, (size_t)g.T * g.V);
    if (e > worst) worst = e;
    /* split prefill: 25 tokens, then the rest continuing from the cache */
    lukv_kv_cache *c = NULL;
    ck_assert_int_eq(lukv_kv_cache_create(m, g.T, &c, &err), LUKV_OK);
    int a = 25;
    ck_assert_int_eq(lukv_model_forward(m, c, g.prompt[p], a, NULL, lg, &err), LUKV_OK);
    ck_assert_int_eq(lukv_model_forward(m, c, g.prompt[p] + a, g.T - a, NULL, lg + (size_t)a * g.V, &err),
                     LUKV_OK);
    ck_assert_int_eq(lukv_kv_cache_len(c), g.T);
    e = lukv_test_max_abs_diff(lg, ref, (size_t)g.T * g.V);
    if (e > worst_cache) worst_cache = e;
    /* last_logits_only gives the last row */
    lukv_forward_opts last = {.last_logits_only = 1};
    ck_assert_int_eq(lukv_model_forward(m, NULL, g.prompt[p], g.T, &last, lg, &err), LUKV_OK);
    e = lukv_test_max_abs_diff(lg, ref + (size_t)(g.T - 1) * g.V, (size_t)g.V);
    ck_assert_msg(e <= 1e-4 * g.scale, "%s: last row err %g", name, e);
    lukv_kv_cache_destroy(c);
  }
  printf("golden %-22s max|err| %.3g (rel %.3g of max|logit| %.3g); via cache %.3g\n", name, worst,
         worst / g.scale, g.scale, worst_cache);
  ck_assert_msg(worst <= 1e-4 * g.scale, "%s: max err %g > 1e-4 * %g", name, worst, g.scale);
  ck_assert_msg(worst_cache <= 1e-4 * g.scale, "%s: cached max err %g", name, worst_cache);
  free(lg);
  free(g.logits);
  lukv_model_destroy(m);
}
END_TEST

START_TEST(golden_greedy) {
  const char *name = golden_models[_i];
  lukv_test_golden g;
  lukv_test_golden_load(name, &g);
  lukv_model *m = open_ok(lukv_test_golden_path(name));
  lukv_error err = {0};
  int32_t out[LUKV_TEST_MAXT];
  for (int p = 0; p < g.n_prompts; p++) {
    lukv_gen_stats st;
    ck_assert_msg(lukv_model_generate(m, g.prompt[p], g.T, g.n_gen, out, &st, &err) == LUKV_OK, "%s", err.msg);
    for (int i = 0; i < g.n_gen; i++)
      ck_assert_msg(out[i] == g.greedy[p][i], "%s prompt %d: token %d is %d, HF %d", name, p, i, out[i],
                    g.greedy[p][i]);
    ck_assert(st.prefill_s >= 0 && st.decode_s >= 0);
  }
  free(g.logits);
  lukv_model_destroy(m);
}
END_TEST

/* ---- the tap ---------------------------------------------------------------------- */

typedef struct tap_rec {
  int calls, fail_layer, fail_status;
  lukv_tap_info info[8];
  float *q, *k, *v, *lse, *o; /* copies of layer 0 */
} tap_rec;

static int tap_cb(void *user, const lukv_tap_info *ti) {
  tap_rec *r = user;
  if (r->calls < 8) r->info[r->calls] = ti[0];
  r->calls++;
  if (ti->layer == r->fail_layer) return r->fail_status;
  if (ti->layer == 0) {
    size_t nq = (size_t)ti->T * ti->n_heads * ti->head_dim, nk = (size_t)ti->T * ti->n_kv_heads * ti->head_dim;
    size_t no = (size_t)ti->hidden_size * ti->n_heads * ti->head_dim;
    r->q = realloc(r->q, nq * sizeof(float));
    r->k = realloc(r->k, nk * sizeof(float));
    r->v = realloc(r->v, nk * sizeof(float));
    r->lse = realloc(r->lse, (size_t)ti->n_heads * ti->T * sizeof(float));
    r->o = realloc(r->o, no * sizeof(float));
    memcpy(r->q, ti->q, nq * sizeof(float));
    memcpy(r->k, ti->k, nk * sizeof(float));
    memcpy(r->v, ti->v, nk * sizeof(float));
    memcpy(r->lse, ti->lse, (size_t)ti->n_heads * ti->T * sizeof(float));
    memcpy(r->o, ti->o_proj, no * sizeof(float));
  }
  return LUKV_OK;
}

static void tap_free(tap_rec *r) { free(r->q), free(r->k), free(r->v), free(r->lse), free(r->o); }

START_TEST(tap_shapes) {
  /* mistral_gqa: 8 query heads over 2 KV heads, d 16 (Hq*d != D), window 24 < T */
  const char *dir = lukv_test_golden_path("mistral_gqa");
  lukv_test_golden g;
  lukv_test_golden_load("mistral_gqa", &g);
  lukv_model *m = open_ok(dir);
  const lukv_model_config *cfg = lukv_model_get_config(m);
  lukv_error err = {0};
  tap_rec r = {.fail_layer = -1};
  lukv_forward_opts o = {.tap = tap_cb, .tap_user = &r};
  int T = g.T;
  ck_assert_int_eq(lukv_model_forward(m, NULL, g.prompt[0], T, &o, NULL, &err), LUKV_OK);
  ck_assert_int_eq(r.calls, cfg->n_layers);
  for (int l = 0; l < cfg->n_layers; l++) {
    const lukv_tap_info *ti = &r.info[l];
    ck_assert_int_eq(ti->layer, l);
    ck_assert_int_eq(ti->T, T);
    ck_assert_int_eq(ti->pos0, 0);
    ck_assert_int_eq(ti->n_heads, 8);
    ck_assert_int_eq(ti->n_kv_heads, 2);
    ck_assert_int_eq(ti->head_dim, 16);
    ck_assert_int_eq(ti->hidden_size, 64);
    ck_assert_int_eq(ti->window, 24);
    ck_assert_int_eq(ti->device, LUKV_DEVICE_CPU);
  }
  /* LSE [Hq, T] is the log-sum-exp of q.k/sqrt(d) over the visible keys:
   * recompute it from the tapped Q, K, V with the naive formula */
  lukv_attn_shape sh = {.T = T, .S = T, .n_heads = 8, .n_kv_heads = 2, .head_dim = 16, .window = 24};
  float *out = malloc(sizeof(float) * (size_t)T * 8 * 16), *lse = malloc(sizeof(float) * 8 * (size_t)T);
  ck_assert_int_eq(lukv_cpu_attention_naive(r.q, r.k, r.v, &sh, out, lse), 0);
  double e = lukv_test_max_abs_diff(lse, r.lse, (size_t)8 * T), lmax = 0;
  for (int i = 0; i < 8 * T; i++) lmax = fmax(lmax, fabs(lse[i]));
  ck_assert_msg(e <= 1e-5 * fmax(1, lmax), "tap lse vs naive: %g", e);
  /* o_proj is layer 0's o_proj.weight [D, Hq*d] */
  lukv_st_set *set = NULL;
  ck_assert_int_eq(lukv_st_set_open(dir, &set, &err), LUKV_OK);
  const lukv_st_tensor *wo = lukv_st_set_find(set, "model.layers.0.self_attn.o_proj.weight", NULL);
  ck_assert_ptr_nonnull(wo);
  ck_assert(wo->ndim == 2 && wo->shape[0] == 64 && wo->shape[1] == 128);
  float *ow = malloc(sizeof(float) * 64 * 128);
  ck_assert_int_eq(lukv_st_to_f32(wo, ow), LUKV_OK);
  ck_assert(lukv_test_max_abs_diff(ow, r.o, 64 * 128) == 0);
  lukv_st_set_close(set);

  /* decode through a cache: the tap sees the one new row at its position */
  lukv_kv_cache *c = NULL;
  ck_assert_int_eq(lukv_kv_cache_create(m, T + 1, &c, &err), LUKV_OK);
  ck_assert_int_eq(lukv_model_forward(m, c, g.prompt[0], T, NULL, NULL, &err), LUKV_OK);
  r.calls = 0;
  ck_assert_int_eq(lukv_model_forward(m, c, &g.greedy[0][0], 1, &o, NULL, &err), LUKV_OK);
  ck_assert_int_eq(r.calls, cfg->n_layers);
  ck_assert_int_eq(r.info[0].T, 1);
  ck_assert_int_eq(r.info[0].pos0, T);
  /* full: cache now at capacity */
  lukv_error e2 = {0};
  lukv_test_expect_err(&e2, lukv_model_decode(m, c, 1, NULL, &e2), LUKV_ERR_RANGE, dir, "kv_cache", "capacity", NULL);

  /* a tap that fails stops the pass with its status */
  r.calls = 0;
  r.fail_layer = 1;
  r.fail_status = LUKV_ERR_INFEASIBLE;
  lukv_error e3 = {0};
  lukv_test_expect_err(&e3, lukv_model_forward(m, NULL, g.prompt[0], T, &o, NULL, &e3), LUKV_ERR_INFEASIBLE, "tap",
                       "layer 1", NULL);
  ck_assert_int_eq(r.calls, 2);

  lukv_kv_cache_destroy(c);
  free(out);
  free(lse);
  free(ow);
  tap_free(&r);
  free(g.logits);
  lukv_model_destroy(m);
}
END_TEST

/* ---- attention: blocked online softmax == direct formula --------------------------- */

static uint64_t rng_state = 88172645463325252ULL;
static float frand(void) { /* uniform [-1, 1) */
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (float)((double)(rng_state >> 11) / 4503599627370496.0 - 1.0);
}

START_TEST(attention_chunked_vs_naive) {
  /* T, S, Hq, Hkv, d, window: single rows, block edges (64 / 128), a cache
   * prefix (S > T), decode, GQA groups 1..8, windows narrower than a block */
  static const int cases[][6] = {
      {1, 1, 1, 1, 8, 0},      {5, 5, 2, 1, 8, 0},       {64, 64, 4, 2, 16, 0},   {65, 65, 4, 4, 16, 0},
      {129, 129, 2, 1, 32, 0}, {200, 200, 8, 1, 16, 0},  {130, 300, 2, 2, 16, 0}, {1, 257, 4, 2, 64, 0},
      {150, 150, 4, 2, 16, 24}, {1, 300, 2, 1, 16, 100}, {100, 400, 8, 2, 128, 129}, {300, 300, 2, 2, 8, 1},
      {70, 70, 6, 3, 16, 200},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    lukv_attn_shape s = {.T = cases[c][0], .S = cases[c][1], .n_heads = cases[c][2], .n_kv_heads = cases[c][3],
                         .head_dim = cases[c][4], .window = cases[c][5]};
    size_t nq = (size_t)s.T * s.n_heads * s.head_dim, nk = (size_t)s.S * s.n_kv_heads * s.head_dim;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o1 = malloc(nq * 4), *o2 = malloc(nq * 4);
    float *l1 = malloc((size_t)s.T * s.n_heads * 4), *l2 = malloc((size_t)s.T * s.n_heads * 4);
    /* scores of std ~2.5: peaked softmax, where rescaling bugs show */
    for (size_t i = 0; i < nq; i++) q[i] = 3.0f * frand();
    for (size_t i = 0; i < nk; i++) k[i] = frand(), v[i] = frand();
    ck_assert_int_eq(lukv_cpu_attention(q, k, v, &s, o1, l1), 0);
    ck_assert_int_eq(lukv_cpu_attention_naive(q, k, v, &s, o2, l2), 0);
    double eo = lukv_test_max_abs_diff(o1, o2, nq), el = lukv_test_max_abs_diff(l1, l2, (size_t)s.T * s.n_heads);
    ck_assert_msg(eo <= 2e-5 && el <= 2e-5, "case %zu (T %d S %d Hq %d Hkv %d d %d w %d): out err %g, lse err %g",
                  c, s.T, s.S, s.n_heads, s.n_kv_heads, s.head_dim, s.window, eo, el);
    free(q), free(k), free(v), free(o1), free(o2), free(l1), free(l2);
  }
}
END_TEST

/* A window of 1 attends to itself only: out = v of its own position, lse = own score. */
START_TEST(attention_window_one) {
  lukv_attn_shape s = {.T = 3, .S = 3, .n_heads = 1, .n_kv_heads = 1, .head_dim = 2, .window = 1};
  float q[6] = {1, 0, 0, 1, 1, 1}, k[6] = {2, 0, 0, 2, 1, -1}, v[6] = {1, 2, 3, 4, 5, 6}, o[6], l[3];
  ck_assert_int_eq(lukv_cpu_attention(q, k, v, &s, o, l), 0);
  for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(o[i], v[i], 1e-6);
  ck_assert_float_eq_tol(l[0], 2 / sqrtf(2), 1e-6);
  ck_assert_float_eq_tol(l[1], 2 / sqrtf(2), 1e-6);
  ck_assert_float_eq_tol(l[2], 0, 1e-6);
}
END_TEST

/* ---- a tiny valid model written by hand, then broken on purpose --------------------- */

static const char tiny_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 16, \"hidden_size\": 8,"
    " \"intermediate_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
    " \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false}";

static const struct {
  const char *name;
  int rows, cols; /* cols 0: vector */
} tiny_tensors[] = {
    {"lm_head.weight", 16, 8},
    {"model.embed_tokens.weight", 16, 8},
    {"model.layers.0.input_layernorm.weight", 8, 0},
    {"model.layers.0.mlp.down_proj.weight", 8, 16},
    {"model.layers.0.mlp.gate_proj.weight", 16, 8},
    {"model.layers.0.mlp.up_proj.weight", 16, 8},
    {"model.layers.0.post_attention_layernorm.weight", 8, 0},
    {"model.layers.0.self_attn.k_proj.weight", 4, 8},
    {"model.layers.0.self_attn.o_proj.weight", 8, 8},
    {"model.layers.0.self_attn.q_proj.weight", 8, 8},
    {"model.layers.0.self_attn.v_proj.weight", 4, 8},
    {"model.norm.weight", 8, 0},
};
enum { N_TINY = sizeof tiny_tensors / sizeof tiny_tensors[0] };

/* Tamper instructions for write_tiny. */
typedef struct tamper {
  const char *tensor;  /* entry whose text is edited (NULL: none) */
  const char *from, *to;
  const char *skip;    /* tensor left out of the header and data */
  long truncate;       /* bytes cut from the end of the file */
  int64_t hlen_delta;  /* added to the header length field */
  const char *header;  /* replaces the whole header text */
  int misalign;        /* extra header bytes: data no longer 4-byte aligned */
} tamper;

/* Writes DIR/config.json (config text) and DIR/FILE with tiny_tensors in f32,
 * edited as t says. Returns the file's path. */
static const char *write_tiny(const char *dir, const char *file, const char *config, const tamper *t) {
  static char path[1100];
  char cpath[1100];
  mkdir(dir, 0700);
  snprintf(cpath, sizeof cpath, "%s/config.json", dir);
  lukv_test_write_text(cpath, config);
  char hdr[8192] = "{\"__metadata__\":{\"format\":\"pt\"}";
  size_t off = 0, total = 0;
  for (int i = 0; i < N_TINY; i++) total += (size_t)tiny_tensors[i].rows * (tiny_tensors[i].cols ? tiny_tensors[i].cols : 1);
  float *data = malloc(total * sizeof(float));
  for (size_t i = 0; i < total; i++) data[i] = 0.1f * sinf((float)i);
  size_t used = 0; /* floats written */
  for (int i = 0; i < N_TINY; i++) {
    int n = tiny_tensors[i].rows * (tiny_tensors[i].cols ? tiny_tensors[i].cols : 1);
    if (t && t->skip && !strcmp(t->skip, tiny_tensors[i].name)) continue;
    char e[512], shape[64];
    if (tiny_tensors[i].cols) snprintf(shape, sizeof shape, "[%d,%d]", tiny_tensors[i].rows, tiny_tensors[i].cols);
    else snprintf(shape, sizeof shape, "[%d]", tiny_tensors[i].rows);
    snprintf(e, sizeof e, ",\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
             tiny_tensors[i].name, shape, off, off + (size_t)n * 4);
    if (t && t->tensor && !strcmp(t->tensor, tiny_tensors[i].name)) {
      char *at = strstr(e, t->from);
      ck_assert_ptr_nonnull(at);
      char edited[512];
      snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - e), e, t->to, at + strlen(t->from));
      strcpy(e, edited);
    }
    strcat(hdr, e);
    off += (size_t)n * 4;
    used += (size_t)n;
  }
  strcat(hdr, "}");
  const char *h = t && t->header ? t->header : hdr;
  size_t hl = strlen(h), padded = (hl + 7) / 8 * 8 + (size_t)(t ? t->misalign : 0);
  size_t size = 8 + padded + used * 4;
  unsigned char *buf = malloc(size);
  uint64_t field = (uint64_t)((int64_t)padded + (t ? t->hlen_delta : 0));
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(field >> (8 * i));
  memcpy(buf + 8, h, hl);
  memset(buf + 8 + hl, ' ', padded - hl);
  memcpy(buf + 8 + padded, data, used * 4);
  snprintf(path, sizeof path, "%s/%s", dir, file);
  lukv_test_write_bytes(path, buf, size - (size_t)(t ? t->truncate : 0));
  free(buf);
  free(data);
  return path;
}

static int try_open(const char *dir, lukv_error *err) {
  lukv_model *m = NULL;
  lukv_error_clear(err);
  int rc = lukv_model_open(dir, LUKV_DEVICE_CPU, &m, err);
  if (rc == LUKV_OK) ck_assert_ptr_nonnull(m);
  else ck_assert_ptr_null(m);
  lukv_model_destroy(m);
  return rc;
}

START_TEST(tiny_valid_runs) {
  const char *dir = lukv_test_path("ok");
  write_tiny(dir, "model.safetensors", tiny_config, NULL);
  lukv_error err = {0};
  lukv_model *m = NULL;
  ck_assert_msg(lukv_model_open(dir, LUKV_DEVICE_CPU, &m, &err) == LUKV_OK, "%s", err.msg);
  int32_t tok[5] = {1, 2, 3, 15, 0};
  float lg[5 * 16];
  ck_assert_int_eq(lukv_model_forward(m, NULL, tok, 5, NULL, lg, &err), LUKV_OK);
  for (int i = 0; i < 5 * 16; i++) ck_assert(isfinite(lg[i]));
  /* token >= vocab, negative token, empty input */
  int32_t bad[3] = {1, 16, 2};
  lukv_test_expect_err(&err, lukv_model_forward(m, NULL, bad, 3, NULL, lg, &err), LUKV_ERR_RANGE, dir, "tokens[1]",
                       "16", "vocab_size", NULL);
  lukv_error_clear(&err);
  bad[1] = -1;
  lukv_test_expect_err(&err, lukv_model_forward(m, NULL, bad, 3, NULL, lg, &err), LUKV_ERR_RANGE, "tokens[1]", NULL);
  lukv_error_clear(&err);
  lukv_test_expect_err(&err, lukv_model_forward(m, NULL, bad, 0, NULL, lg, &err), LUKV_ERR_INVALID, "tokens", NULL);
  lukv_error_clear(&err);
  lukv_kv_cache *c = NULL;
  lukv_test_expect_err(&err, lukv_kv_cache_create(m, 0, &c, &err), LUKV_ERR_INVALID, "kv_cache", NULL);
  ck_assert_ptr_null(c);
  lukv_error_clear(&err);
  /* f32 data at an odd offset (legal, if unusual) is copied, same result */
  lukv_error_clear(&err);
  const char *dir2 = lukv_test_path("odd");
  tamper odd = {.misalign = 1};
  write_tiny(dir2, "model.safetensors", tiny_config, &odd);
  lukv_model *m2 = NULL;
  ck_assert_msg(lukv_model_open(dir2, LUKV_DEVICE_CPU, &m2, &err) == LUKV_OK, "%s", err.msg);
  float lg2[5 * 16];
  ck_assert_int_eq(lukv_model_forward(m2, NULL, tok, 5, NULL, lg2, &err), LUKV_OK);
  lukv_model_forward(m, NULL, tok, 5, NULL, lg, &err);
  ck_assert(memcmp(lg, lg2, sizeof lg) == 0);
  lukv_model_destroy(m2);
#if !LUKV_HAVE_CUDA
  /* Only a build without the CUDA backend can promise this; a CUDA build's
   * answer depends on the machine (tests/test_model_gpu.c covers it). */
  lukv_model *mc = NULL;
  lukv_test_expect_err(&err, lukv_model_open(dir, LUKV_DEVICE_CUDA, &mc, &err), LUKV_ERR_UNSUPPORTED, "CUDA", NULL);
  ck_assert_ptr_null(mc);
  lukv_test_expect_err(&err, lukv_model_open(dir, LUKV_DEVICE_CUDA_F32, &mc, &err), LUKV_ERR_UNSUPPORTED, "CUDA",
                       NULL);
  ck_assert_ptr_null(mc);
#endif
  lukv_test_expect_err(&err, lukv_model_open(dir, (lukv_device)7, &m2, &err), LUKV_ERR_INVALID, "device", NULL);
  ck_assert_ptr_null(m2);
  /* the CLIs' --device names, both ways */
  const lukv_device devs[] = {LUKV_DEVICE_CPU, LUKV_DEVICE_CUDA, LUKV_DEVICE_CUDA_F32};
  for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
    lukv_device d = (lukv_device)-1;
    ck_assert_int_eq(lukv_device_parse(lukv_device_name(devs[i]), &d), LUKV_OK);
    ck_assert_int_eq(d, devs[i]);
  }
  ck_assert_str_eq(lukv_device_name(LUKV_DEVICE_CUDA_F32), "cuda-f32");
  lukv_device d = LUKV_DEVICE_CPU;
  ck_assert_int_eq(lukv_device_parse("gpu", &d), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_device_parse("CUDA", &d), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_device_parse(NULL, &d), LUKV_ERR_INVALID);
  ck_assert_int_eq(d, LUKV_DEVICE_CPU);
  ck_assert_str_eq(lukv_device_name((lukv_device)7), "?");
  lukv_model_destroy(m);
  lukv_model_destroy(NULL);
  lukv_kv_cache_destroy(NULL);
}
END_TEST

/* Each corruption of the safetensors file: status, file and object named. */
START_TEST(safetensors_corrupt) {
  static const struct {
    tamper t;
    int status;
    const char *object; /* substring the message must hold */
  } cases[] = {
      /* truncated: the last tensor's bytes are gone */
      {{.truncate = 20}, LUKV_ERR_FORMAT, "model.norm.weight"},
      /* header length field points beyond the end of the file */
      {{.hlen_delta = 1 << 20}, LUKV_ERR_FORMAT, "header"},
      /* header length that leaves the JSON cut in half */
      {{.hlen_delta = -16}, LUKV_ERR_FORMAT, "header"},
      /* offsets outside the data section */
      {{.tensor = "model.norm.weight", .from = "\"data_offsets\":[", .to = "\"data_offsets\":[99999999,"},
       LUKV_ERR_FORMAT, "model.norm.weight"},
      {{.tensor = "lm_head.weight", .from = "[0,512]", .to = "[0,100000000000]"}, LUKV_ERR_FORMAT, "lm_head.weight"},
      /* begin > end */
      {{.tensor = "lm_head.weight", .from = "[0,512]", .to = "[512,0]"}, LUKV_ERR_FORMAT, "lm_head.weight"},
      /* overlapping tensors */
      {{.tensor = "model.embed_tokens.weight", .from = "[512,1024]", .to = "[0,512]"}, LUKV_ERR_FORMAT, "overlap"},
      /* unknown dtype */
      {{.tensor = "model.layers.0.self_attn.q_proj.weight", .from = "F32", .to = "Q7"}, LUKV_ERR_FORMAT,
       "model.layers.0.self_attn.q_proj.weight"},
      /* shape x dtype size disagrees with the offsets */
      {{.tensor = "model.layers.0.self_attn.k_proj.weight", .from = "[4,8]", .to = "[5,8]"}, LUKV_ERR_SHAPE,
       "model.layers.0.self_attn.k_proj.weight"},
      {{.tensor = "model.layers.0.self_attn.k_proj.weight", .from = "F32", .to = "BF16"}, LUKV_ERR_SHAPE,
       "model.layers.0.self_attn.k_proj.weight"},
      /* shape product overflowing 64 bits */
      {{.tensor = "model.norm.weight", .from = "[8]", .to = "[4294967296,4294967296,16]"}, LUKV_ERR_FORMAT,
       "overflow"},
      /* negative / fractional / huge numbers */
      {{.tensor = "model.norm.weight", .from = "[8]", .to = "[-8]"}, LUKV_ERR_FORMAT, "shape"},
      {{.tensor = "model.norm.weight", .from = "[8]", .to = "[8.5]"}, LUKV_ERR_FORMAT, "shape"},
      {{.tensor = "model.norm.weight", .from = "[8]", .to = "[1e300]"}, LUKV_ERR_FORMAT, "shape"},
      {{.tensor = "model.norm.weight", .from = "\"dtype\":\"F32\"", .to = "\"dtype\":7"}, LUKV_ERR_FORMAT, "dtype"},
      {{.tensor = "model.norm.weight", .from = "\"shape\":", .to = "\"shap\":"}, LUKV_ERR_FORMAT, "shape"},
      {{.tensor = "model.norm.weight", .from = "{\"dtype\"", .to = "[{\"dtype\""}, LUKV_ERR_FORMAT, "header"},
      /* non-JSON header, JSON that is not an object, trailing garbage */
      {{.header = "this is not json"}, LUKV_ERR_FORMAT, "header"},
      {{.header = "[1, 2, 3]"}, LUKV_ERR_FORMAT, "header"},
      {{.header = "{} {}"}, LUKV_ERR_FORMAT, "header"},
      {{.header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"},
       LUKV_ERR_FORMAT, "twice"},
      /* a tensor the model needs is absent */
      {{.skip = "model.layers.0.mlp.up_proj.weight"}, LUKV_ERR_FORMAT, "model.layers.0.mlp.up_proj.weight"},
      /* valid file, tensor of the wrong shape for the config */
      {{.header = NULL, .tensor = "model.layers.0.self_attn.o_proj.weight", .from = "[8,8]", .to = "[4,16]"},
       LUKV_ERR_SHAPE, "model.layers.0.self_attn.o_proj.weight"},
      /* a dtype the engine does not compute with */
      {{.tensor = "model.norm.weight", .from = "F32", .to = "I32"}, LUKV_ERR_UNSUPPORTED, "model.norm.weight"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "case%zu", i);
    const char *dir = lukv_test_path(name);
    const char *file = write_tiny(dir, "model.safetensors", tiny_config, &cases[i].t);
    lukv_error err = {0};
    int rc = try_open(dir, &err);
    ck_assert_msg(rc == cases[i].status, "case %zu: status %d, expected %d: %s", i, rc, cases[i].status, err.msg);
    lukv_test_expect_err(&err, rc, cases[i].status, file, cases[i].object, NULL);
  }
  /* files too short to hold a header */
  const char *dir = lukv_test_path("short");
  write_tiny(dir, "model.safetensors", tiny_config, NULL);
  char path[1100];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  lukv_test_write_bytes(path, "\x10\0\0", 3);
  lukv_error err = {0};
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, path, "header", NULL);
  lukv_test_write_bytes(path, "", 0);
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, path, "header", NULL);
}
END_TEST

START_TEST(config_errors) {
  static const struct {
    const char *from, *to;
    int status;
    const char *object;
  } cases[] = {
      {"LlamaForCausalLM", "GPT2LMHeadModel", LUKV_ERR_UNSUPPORTED, "architectures"},
      {"\"rope_theta\": 10000.0", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}", LUKV_ERR_UNSUPPORTED,
       "rope_scaling.rope_type"},
      {"\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_type\": \"dynamic\", \"rope_theta\": 1e4}",
       LUKV_ERR_UNSUPPORTED, "rope_parameters.rope_type"},
      {"\"rope_theta\": 10000.0", "\"rope_scaling\": {\"type\": \"linear\"}", LUKV_ERR_FORMAT, "factor"},
      {"\"rope_theta\": 10000.0", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}", LUKV_ERR_FORMAT,
       "low_freq_factor"},
      {"\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3", LUKV_ERR_SHAPE, "num_key_value_heads"},
      {"\"hidden_size\": 8", "\"hidden_size\": -8", LUKV_ERR_RANGE, "hidden_size"},
      {"\"hidden_size\": 8", "\"hidden_size\": 8.5", LUKV_ERR_FORMAT, "hidden_size"},
      {"\"vocab_size\": 16,", "", LUKV_ERR_FORMAT, "vocab_size"},
      {"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 1e-5, \"hidden_act\": \"gelu\"", LUKV_ERR_UNSUPPORTED,
       "hidden_act"},
      {"{", "[", LUKV_ERR_FORMAT, "config"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char cfg[2048], name[32];
    const char *at = strstr(tiny_config, cases[i].from);
    ck_assert_ptr_nonnull(at);
    snprintf(cfg, sizeof cfg, "%.*s%s%s", (int)(at - tiny_config), tiny_config, cases[i].to,
             at + strlen(cases[i].from));
    snprintf(name, sizeof name, "cfg%zu", i);
    const char *dir = lukv_test_path(name);
    write_tiny(dir, "model.safetensors", cfg, NULL);
    lukv_error err = {0};
    int rc = try_open(dir, &err);
    ck_assert_msg(rc == cases[i].status, "case %zu: status %d: %s", i, rc, err.msg);
    lukv_test_expect_err(&err, rc, cases[i].status, "config.json", cases[i].object, NULL);
  }
  lukv_error err = {0};
  lukv_test_expect_err(&err, try_open(lukv_test_path("nowhere"), &err), LUKV_ERR_IO, "nowhere/config.json", NULL);
  /* config fine, no weights at all */
  mkdir(lukv_test_path("noweights"), 0700);
  char p[1100];
  snprintf(p, sizeof p, "%s/config.json", lukv_test_path("noweights"));
  lukv_test_write_text(p, tiny_config);
  lukv_test_expect_err(&err, try_open(lukv_test_path("noweights"), &err), LUKV_ERR_IO, "noweights", "model.safetensors",
                       NULL);
}
END_TEST

/* transformers 4.x (`rope_scaling` + `rope_theta`, key "type") and 5.x
 * (`rope_parameters`) spellings of the same RoPE give the same config. */
START_TEST(config_rope_spellings) {
  const char *v4 = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":64,"
                   "\"intermediate_size\":16,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"rope_theta\":500000.0,\"rope_scaling\":{\"type\":\"llama3\",\"factor\":8.0,"
                   "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}}";
  const char *v5 = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":16,\"hidden_size\":64,"
                   "\"intermediate_size\":16,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":8.0,"
                   "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64}}";
  lukv_model_config a, b;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_config_parse("v4", v4, strlen(v4), &a, &err), LUKV_OK);
  ck_assert_int_eq(lukv_config_parse("v5", v5, strlen(v5), &b, &err), LUKV_OK);
  ck_assert_int_eq(a.rope_type, LUKV_ROPE_LLAMA3);
  ck_assert(a.rope_theta == 500000.0 && b.rope_theta == 500000.0);
  ck_assert_int_eq(a.head_dim, 16);
  ck_assert_int_eq(a.n_kv_heads, 4); /* Llama default: MHA */
  float fa[8], fb[8];
  lukv_config_rope_inv_freq(&a, fa);
  lukv_config_rope_inv_freq(&b, fb);
  ck_assert(memcmp(fa, fb, sizeof fa) == 0);
  /* bands: short wavelengths kept, long ones divided by 8 */
  ck_assert_float_eq(fa[0], 1.0f);
  float plain7 = (float)(1.0 / pow(500000.0, 14.0 / 16));
  ck_assert_float_eq_tol(fa[7], plain7 / 8, plain7 * 1e-6);
  /* Mistral without sliding_window: HF default 4096 on every layer; null: none */
  const char *mi = "{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":16,\"hidden_size\":64,"
                   "\"intermediate_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":8}";
  ck_assert_int_eq(lukv_config_parse("mi", mi, strlen(mi), &a, &err), LUKV_OK);
  ck_assert_int_eq(lukv_config_layer_window(&a, 1), 4096);
  ck_assert_int_eq(a.n_kv_heads, 8); /* MistralConfig default */
}
END_TEST

START_TEST(sharded_index_errors) {
  /* a valid shard named by an index */
  const char *dir = lukv_test_path("sh");
  write_tiny(dir, "part-1.safetensors", tiny_config, NULL);
  char idx[4096] = "{\"metadata\":{},\"weight_map\":{";
  for (int i = 0; i < N_TINY; i++) {
    char e[256];
    snprintf(e, sizeof e, "%s\"%s\":\"part-1.safetensors\"", i ? "," : "", tiny_tensors[i].name);
    strcat(idx, e);
  }
  strcat(idx, "}}");
  char ipath[1100];
  snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
  lukv_test_write_text(ipath, idx);
  lukv_error err = {0};
  ck_assert_msg(try_open(dir, &err) == LUKV_OK, "%s", err.msg);
  /* the index names a shard outside the directory */
  char bad[4200];
  const char *at = strstr(idx, "part-1");
  snprintf(bad, sizeof bad, "%.*s../../etc/passwd%s", (int)(at - idx), idx, at + strlen("part-1.safetensors"));
  lukv_test_write_text(ipath, bad);
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, ipath, "lm_head.weight", "plain file name", NULL);
  /* the index promises a tensor the shard lacks */
  snprintf(bad, sizeof bad, "%.*s\"ghost\":\"part-1.safetensors\",%s", (int)(strstr(idx, "{\"lm") + 1 - idx), idx,
           strstr(idx, "{\"lm") + 1);
  lukv_test_write_text(ipath, bad);
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, "part-1.safetensors", "ghost", NULL);
  /* a shard that does not exist */
  snprintf(bad, sizeof bad, "%.*spart-9%s", (int)(at - idx), idx, at + strlen("part-1"));
  lukv_test_write_text(ipath, bad);
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_IO, "part-9.safetensors", NULL);
  /* not JSON; weight_map missing */
  lukv_test_write_text(ipath, "{\"weight_map\": ");
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, ipath, NULL);
  lukv_test_write_text(ipath, "{\"metadata\": {}}");
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, ipath, "weight_map", NULL);
  /* the index lists nothing: the first needed tensor is reported missing */
  lukv_test_write_text(ipath, "{\"weight_map\": {}}");
  lukv_test_expect_err(&err, try_open(dir, &err), LUKV_ERR_FORMAT, ipath, "model.embed_tokens.weight", "missing", NULL);
}
END_TEST

/* Random byte edits of a valid header must give a status, never a crash (the
 * sanitizer build watches the reads). */
START_TEST(safetensors_fuzz) {
  const char *dir = lukv_test_path("fz");
  const char *file = write_tiny(dir, "model.safetensors", tiny_config, NULL);
  FILE *f = fopen(file, "rb");
  ck_assert_ptr_nonnull(f);
  unsigned char orig[16384];
  size_t n = fread(orig, 1, sizeof orig, f);
  fclose(f);
  ck_assert(n > 8 && n < sizeof orig);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | orig[i];
  int ok = 0;
  for (int it = 0; it < 3000; it++) {
    /* exact-size copy so that any over-read is an ASan error */
    size_t len = it % 7 == 0 ? (size_t)((frand() * 0.5 + 0.5) * (double)n) : n;
    unsigned char *buf = malloc(len ? len : 1);
    memcpy(buf, orig, len);
    int edits = 1 + (int)((frand() + 1) * 2);
    for (int e = 0; e < edits; e++) {
      size_t pos = (size_t)((frand() + 1) * 0.5 * (double)(it % 5 == 0 ? 8 : 8 + hl));
      if (pos < len) buf[pos] = (unsigned char)((frand() + 1) * 128);
    }
    lukv_st_file *sf = NULL;
    lukv_error err = {0};
    int rc = lukv_st_parse("fuzz", buf, len, &sf, &err);
    if (rc == LUKV_OK) {
      ok++;
      for (int i = 0; i < lukv_st_count(sf); i++) { /* every tensor it accepts is readable */
        const lukv_st_tensor *t = lukv_st_at(sf, i);
        ck_assert((const unsigned char *)t->data + (t->end - t->begin) <= buf + len);
        volatile unsigned char sink = 0;
        for (uint64_t b = 0; b < t->end - t->begin; b++) sink ^= ((const unsigned char *)t->data)[b];
        (void)sink;
      }
    } else {
      ck_assert_ptr_null(sf);
      ck_assert(err.msg[0] && strncmp(err.msg, "fuzz: ", 6) == 0);
    }
    lukv_st_close(sf);
    free(buf);
  }
  ck_assert_int_lt(ok, 3000);
}
END_TEST

START_TEST(f16_bf16_conversion) {
  ck_assert(lukv_f16_to_f32(0x3c00) == 1.0f);
  ck_assert(lukv_f16_to_f32(0xc000) == -2.0f);
  ck_assert(lukv_f16_to_f32(0x7bff) == 65504.0f);
  ck_assert(lukv_f16_to_f32(0x0001) == 5.9604644775390625e-8f); /* smallest subnormal */
  ck_assert(lukv_f16_to_f32(0x03ff) == 6.097555160522461e-5f);  /* largest subnormal */
  ck_assert(lukv_f16_to_f32(0x8000) == 0.0f && signbit(lukv_f16_to_f32(0x8000)));
  ck_assert(isinf(lukv_f16_to_f32(0x7c00)) && isnan(lukv_f16_to_f32(0x7e00)));
  ck_assert(lukv_bf16_to_f32(0x3f80) == 1.0f);
  ck_assert(lukv_bf16_to_f32(0xc0a0) == -5.0f);
  /* every finite f16 round-trips through float exactly (checked via ldexp) */
  for (uint32_t h = 0; h < 0x7c00; h++) {
    int e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double want = e ? ldexp(1024 + mant, e - 25) : ldexp(mant, -24);
    ck_assert((double)lukv_f16_to_f32((uint16_t)h) == want);
  }
}
END_TEST

/* --random-init: same seed same model, other seed other model, finite output. */
START_TEST(random_init) {
  const char *cfgp = lukv_test_path("big.json");
  lukv_test_write_text(cfgp, "{\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":300,\"hidden_size\":32,"
                             "\"intermediate_size\":48,\"num_hidden_layers\":3,\"num_attention_heads\":4,"
                             "\"num_key_value_heads\":2,\"tie_word_embeddings\":true}");
  lukv_error err = {0};
  lukv_model *a = NULL, *b = NULL, *c = NULL;
  ck_assert_msg(lukv_model_random(cfgp, 7, LUKV_DEVICE_CPU, &a, &err) == LUKV_OK, "%s", err.msg);
  ck_assert_int_eq(lukv_model_random(cfgp, 7, LUKV_DEVICE_CPU, &b, &err), LUKV_OK);
  ck_assert_int_eq(lukv_model_random(cfgp, 8, LUKV_DEVICE_CPU, &c, &err), LUKV_OK);
  int32_t tok[20];
  for (int i = 0; i < 20; i++) tok[i] = (i * 37) % 300;
  float *la = malloc(sizeof(float) * 20 * 300), *lb = malloc(sizeof(float) * 20 * 300),
        *lc = malloc(sizeof(float) * 20 * 300);
  ck_assert_int_eq(lukv_model_forward(a, NULL, tok, 20, NULL, la, &err), LUKV_OK);
  ck_assert_int_eq(lukv_model_forward(b, NULL, tok, 20, NULL, lb, &err), LUKV_OK);
  ck_assert_int_eq(lukv_model_forward(c, NULL, tok, 20, NULL, lc, &err), LUKV_OK);
  for (int i = 0; i < 20 * 300; i++) ck_assert(isfinite(la[i]));
  ck_assert(memcmp(la, lb, sizeof(float) * 20 * 300) == 0);
  ck_assert(lukv_test_max_abs_diff(la, lc, 20 * 300) > 0);
  lukv_error e2 = {0};
  lukv_model *d = NULL;
  lukv_test_expect_err(&e2, lukv_model_random(lukv_test_path("none.json"), 1, LUKV_DEVICE_CPU, &d, &e2), LUKV_ERR_IO,
                       "none.json", NULL);
  free(la), free(lb), free(lc);
  lukv_model_destroy(a), lukv_model_destroy(b), lukv_model_destroy(c);
}
END_TEST

static Suite *model_suite(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, golden_logits, 0, N_GOLDEN);
  tcase_add_loop_test(tc, golden_greedy, 0, N_GOLDEN);
  tcase_add_test(tc, tap_shapes);
  suite_add_tcase(s, tc);
  const lukv_test_case groups[] = {
      {"attention_chunked_vs_naive", attention_chunked_vs_naive},
      {"attention_window_one", attention_window_one},
      {"tiny_valid_runs", tiny_valid_runs},
      {"safetensors_corrupt", safetensors_corrupt},
      {"safetensors_fuzz", safetensors_fuzz},
      {"config_errors", config_errors},
      {"config_rope_spellings", config_rope_spellings},
      {"sharded_index_errors", sharded_index_errors},
      {"f16_bf16_conversion", f16_bf16_conversion},
      {"random_init", random_init},
  };
  lukv_test_add_cases(s, groups, sizeof groups / sizeof groups[0], 120, setup, lukv_test_tmpdir_teardown);
  return s;
}

int main(void) {
  return lukv_test_run(model_suite(), CK_NORMAL);
}

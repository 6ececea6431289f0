/* lukv engine: a Llama-family decoder (Llama 2/3/3.1, Mistral, Qwen2) run from
 * a Hugging Face model directory (DESIGN §5).
 *
 *   lukv_model *m;  lukv_error e = {0};
 *   if (lukv_model_open("models/llama", LUKV_DEVICE_CPU, &m, &e)) puts(e.msg);
 *   lukv_model_forward(m, NULL, tokens, T, NULL, logits, &e);   // logits [T, V]
 *   lukv_model_destroy(m);
 *
 * The front end (this header, model.c) owns configuration, weight loading,
 * argument and token checks and generation; the arithmetic sits behind a
 * backend (backend.h): CPU reference (f32, OpenBLAS) and CUDA (bf16, or f32), with
 * the same calls and results within tolerance.
 *
 * Conventions: functions return LUKV_OK or a negative status and, when err is
 * not NULL, one line "PATH: OBJECT: problem" (PATH is the model directory or
 * file, OBJECT the tensor, key or argument). Nothing here exits or prints.
 * Ownership: handles are created and destroyed in pairs (destroy(NULL) is a
 * no-op); pointers the caller passes in are borrowed for the call only;
 * pointers handed out are borrowed from the handle and live as long as it.
 * A model and its caches are not safe to use from two threads at once.
 */
#ifndef LUKV_MODEL_H
#define LUKV_MODEL_H

#include <stdint.h>

#include "config.h"
#include "status.h"

/* LUKV_DEVICE_CUDA_F32 is a way to open a model, not a device of its own: the
 * CUDA backend with f32 weights, activations and KV cache instead of bf16
 * (cuBLAS f32 GEMMs without TF32, attention on SIMT f32 kernels). It
 * matches the f32 CPU reference to f32 rounding where bf16 deviates by
 * ~1e-2, at twice the memory and without tensor cores: for calibration profiles
 * that must agree with the reference to 1e-3. A model opened so reports
 * LUKV_DEVICE_CUDA (lukv_model_device, the tap) and does not take
 * lukv_model_decode_external (LUKV_ERR_UNSUPPORTED). */
typedef enum lukv_device { LUKV_DEVICE_CPU = 0, LUKV_DEVICE_CUDA = 1, LUKV_DEVICE_CUDA_F32 = 2 } lukv_device;

/* "cpu", "cuda", "cuda-f32" -> *out (LUKV_ERR_INVALID for anything else; the
 * CLIs' --device). lukv_device_name is the inverse ("?" for no device). */
int lukv_device_parse(const char *name, lukv_device *out);
const char *lukv_device_name(lukv_device d);

typedef struct lukv_model lukv_model;
typedef struct lukv_kv_cache lukv_kv_cache;

/* Opens DIR (config.json + model.safetensors or model.safetensors.index.json;
 * tensors F32, F16 or BF16). Weights are mmapped and converted once to the
 * backend's format (on CPU, f32 tensors whose data is 4-byte aligned are used
 * in place, others converted once). A path ending in ".gguf" is read as a
 * llama.cpp GGUF file instead (gguf.h: config from its metadata, tensors
 * F32/F16/BF16/Q8_0/Q4_0/Q4_1 dequantised to f32 at load).
 * *out: caller-owned, lukv_model_destroy. */
int lukv_model_open(const char *dir, lukv_device device, lukv_model **out, lukv_error *err);

/* A model of the shape in config_path (a config.json) with seeded uniform
 * random weights (std = initializer_range, norms 1, biases 0): benchmarks of
 * big shapes without downloading them. Same seed, same weights. */
int lukv_model_random(const char *config_path, uint64_t seed, lukv_device device, lukv_model **out,
                      lukv_error *err);

void lukv_model_destroy(lukv_model *m);

/* Borrowed; lives as long as m. */
const lukv_model_config *lukv_model_get_config(const lukv_model *m);
/* The directory or config file it came from (borrowed), used in messages. */
const char *lukv_model_source(const lukv_model *m);
lukv_device lukv_model_device(const lukv_model *m);

/* ---- the per-layer tap ------------------------------------------------------
 * Called once per layer during a forward pass, after attention, with the
 * layer's attention inputs and statistics: how the profiler sees attention
 * without a T x S matrix ever existing. The pointers are the engine's own
 * buffers, valid only during the call (copy what you keep), on the model's
 * device (host memory on CPU), f32, row-major. Rows are this call's T tokens;
 * with a KV cache the earlier keys are in the cache, not here. */
typedef struct lukv_tap_info {
  int layer;          /* 0 .. L-1 */
  int T;              /* rows in this forward call */
  int pos0;           /* absolute position of row 0 (cache length before the call) */
  int n_heads;        /* Hq */
  int n_kv_heads;     /* Hkv */
  int head_dim;       /* d */
  int hidden_size;    /* D */
  int window;         /* sliding window of this layer, 0 = full causal */
  lukv_device device;
  const float *q;     /* [T, Hq, d]  post-RoPE queries */
  const float *k;     /* [T, Hkv, d] post-RoPE keys */
  const float *v;     /* [T, Hkv, d] values */
  const float *lse;   /* [Hq, T]     log-sum-exp of each query's scaled scores (natural log) */
  const float *o_proj;/* [D, Hq * d] o_proj.weight as nn.Linear stores it (out, in) */
} lukv_tap_info;

/* Return LUKV_OK to continue; any other value stops the forward pass, which
 * then returns that status. */
typedef int (*lukv_tap_fn)(void *user, const lukv_tap_info *info);

typedef struct lukv_forward_opts {
  lukv_tap_fn tap;      /* NULL: no tap */
  void *tap_user;       /* passed to tap, borrowed */
  int last_logits_only; /* logits for the last row only: [1, V] instead of [T, V] */
} lukv_forward_opts;

/* ---- forward ------------------------------------------------------------ */

/* Runs tokens [T] (0 <= id < V, else LUKV_ERR_RANGE) through the model.
 * cache NULL: positions 0..T-1, nothing kept. cache given: positions continue
 * after its current length and the call's K/V are appended (LUKV_ERR_RANGE if
 * they do not fit). logits: caller-owned host buffer [T, V] (or [1, V] with
 * last_logits_only), or NULL when only the tap is wanted. opts may be NULL. */
int lukv_model_forward(lukv_model *m, lukv_kv_cache *cache, const int32_t *tokens, int T,
                       const lukv_forward_opts *opts, float *logits, lukv_error *err);

/* ---- external attention (lukv-eval: decode over someone else's cache) ----
 * One decode step whose attention is the caller's: per layer the engine
 * computes the new token's post-RoPE q, k and v at position `pos` and calls
 * attn, which stores k/v wherever it keeps its cache (e.g. liblukv's
 * compacted segments) and writes the attention output; the engine then goes
 * on with o_proj and the MLP. The callback owns everything about the keys
 * it attends over, including any sliding window.
 *
 * Where the tensors live depends on the model's device (the call's `device`):
 *   CPU   q, k, v, out: the engine's host f32 buffers; the *_bf16 pointers
 *         and stream are NULL. out is read when the callback returns.
 *   CUDA  q_bf16, k_bf16, v_bf16, out_bf16: the engine's DEVICE buffers, bf16
 *         (uint16_t bit patterns, the values the engine's own attention
 *         would use), 16-byte aligned; the f32 pointers are NULL. stream is
 *         the engine's cudaStream_t: the engine does not synchronise around
 *         the call and enqueues o_proj on that stream right after it returns,
 *         so the callback enqueues its work on `stream` (for liblukv:
 *         lukv_cache_set_stream(cache, c->stream), then lukv_append and
 *         lukv_decode_attention) and may return before it has run; work on
 *         any other stream must be complete before it returns. The engine
 *         reuses the buffers for the next layer, in stream order.
 * Pointers are valid during the call only (device ones: for work enqueued
 * on `stream` during the call). */
typedef struct lukv_attn_call {
  int layer;        /* 0 .. L-1 */
  int pos;          /* absolute position of the token (RoPE already applied at it) */
  int n_heads;      /* Hq */
  int n_kv_heads;   /* Hkv */
  int head_dim;     /* d */
  lukv_device device;          /* the model's: which pointers below are set */
  /* CPU */
  const float *q;   /* [Hq, d]  post-RoPE query */
  const float *k;   /* [Hkv, d] post-RoPE key */
  const float *v;   /* [Hkv, d] value */
  float *out;       /* [Hq, d]  written by the callback: attention output of each query head */
  /* CUDA (device memory, bf16) */
  const uint16_t *q_bf16;      /* [Hq, d] */
  const uint16_t *k_bf16;      /* [Hkv, d] */
  const uint16_t *v_bf16;      /* [Hkv, d] */
  uint16_t *out_bf16;          /* [Hq, d] written by the callback (in stream order) */
  void *stream;                /* cudaStream_t of the engine */
} lukv_attn_call;

/* Return LUKV_OK to continue; any other value stops the step, which returns it. */
typedef int (*lukv_attn_fn)(void *user, const lukv_attn_call *c);

/* Runs token (0 <= id < V) at position pos (>= 0) with the caller's attention;
 * logits [V] caller-owned host memory (or NULL). No engine KV cache is
 * involved. CPU and CUDA models. */
int lukv_model_decode_external(lukv_model *m, int32_t token, int pos, lukv_attn_fn attn, void *user,
                               float *logits, lukv_error *err);

/* ---- KV cache and generation ---------------------------------------------- */

/* A cache for up to capacity tokens of one sequence. Caller-owned; destroy it
 * before its model. */
int lukv_kv_cache_create(lukv_model *m, int capacity, lukv_kv_cache **out, lukv_error *err);
void lukv_kv_cache_destroy(lukv_kv_cache *c);
int lukv_kv_cache_len(const lukv_kv_cache *c);
int lukv_kv_cache_capacity(const lukv_kv_cache *c);
void lukv_kv_cache_reset(lukv_kv_cache *c);  /* length back to 0 */

/* One decode step: forward of a single token on the cache. logits [V]. */
int lukv_model_decode(lukv_model *m, lukv_kv_cache *c, int32_t token, float *logits, lukv_error *err);

typedef struct lukv_gen_stats {
  double prefill_s; /* wall time of the prompt's forward pass */
  double decode_s;  /* wall time of the decode steps (n_new - 1 of them) */
} lukv_gen_stats;

/* Greedy continuation: prefill prompt [T] (T >= 1), then n_new tokens by
 * argmax (lowest id on ties, as torch.argmax), out [n_new] caller-owned.
 * stats may be NULL. */
int lukv_model_generate(lukv_model *m, const int32_t *prompt, int T, int n_new, int32_t *out,
                        lukv_gen_stats *stats, lukv_error *err);

/* Index of the largest of x [n] (first on ties). */
int lukv_argmax(const float *x, int n);

#endif

/* CUDA backend: bf16 weights and activations, f32 accumulation (DESIGN §5);
 * and, as a second backend object from the same code, its f32 variant
 * (lukv_backend_cuda_f32, LUKV_DEVICE_CUDA_F32): everything that is bf16
 * below is f32 there, prefill attention is the SIMT f32 flash kernel (decode
 * the f32 rows kernel), GEMMs are f32 cuBLAS without TF32. It exists for results
 * that must match the f32 CPU reference closely (a profile to 1e-3), at
 * twice the memory and a fraction of the speed.
 *
 * The forward pass is the CPU reference's (backend_cpu.c), op for op:
 *   x [T, D] f32 = embed[tokens]                          (residual stream in f32)
 *   per layer: h = RMSNorm(x) bf16
 *              qkv [T, QD + 2 KD] f32 = h W_qkv^T          (one GEMM, q|k|v weights stacked)
 *              q, k, v bf16 = RoPE(qkv + b)                 (k, v straight into the cache)
 *              att bf16, lse f32 = flash attention (decode: split-KV rows kernel;
 *                lukv_model_decode_external: the caller's callback, enqueued on our stream)
 *              tap;  x += att Wo^T (+ bo)                   (GEMM accumulates into f32 x)
 *              h = RMSNorm(x);  per 4096 rows: gu f32 = h W_gu^T (gate|up stacked),
 *              a bf16 = silu(gate) * up;  x += a Wdown^T (+ bd)
 *   logits f32 = RMSNorm(x) lm_head^T, 1024 rows at a time, copied to the host.
 * Matrices are bf16 on the device, norms and biases f32. GEMMs are cuBLAS
 * (cublasGemmEx, bf16 inputs, CUBLAS_COMPUTE_32F); kernels are in
 * cuda_kernels.cu. Scratch buffers live in the state and only grow, so decode
 * steps allocate nothing.
 *
 * Every CUDA and cuBLAS call is checked: LUKV_ERR_CUDA with "WHERE: OBJECT:
 * CALL failed: cudaGetErrorString". Work runs on one stream of the backend's
 * own (a blocking stream, so it is ordered with the legacy default stream). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

extern "C" {
#include "backend.h"
#include "safetensors.h"
}
#include "cuda_kernels.h"

namespace {

/* Rows of the MLP processed together (bounds gu [rows, 2I] f32) and of the
 * logits (bounds [rows, V] f32 on the device). */
const int MLP_ROWS = 4096, LOGIT_ROWS = 1024;
/* Elements converted per chunk when an f32/f16 tensor is uploaded. */
const size_t STAGE_ELEMS = (size_t)16 << 20;

typedef lukv_bf16 bf16;

int cuda_fail(lukv_error *err, const char *where, const char *what, const char *call, cudaError_t e) {
  return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s: %s failed: %s (%s)", where, what, call, cudaGetErrorString(e),
                        cudaGetErrorName(e));
}

int blas_fail(lukv_error *err, const char *where, const char *what, const char *call, cublasStatus_t e) {
  return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s: %s failed: %s", where, what, call, cublasGetStatusString(e));
}

/* Checks a CUDA call inside a function with `err`, `where` and a `what`
 * string in scope; returns the status on failure. */
#define CU(what, call)                                                    \
  do {                                                                    \
    cudaError_t e_ = (call);                                              \
    if (e_ != cudaSuccess) return cuda_fail(err, where, what, #call, e_); \
  } while (0)
#define BLAS(what, call)                                                            \
  do {                                                                              \
    cublasStatus_t e_ = (call);                                                     \
    if (e_ != CUBLAS_STATUS_SUCCESS) return blas_fail(err, where, what, #call, e_); \
  } while (0)

/* Matrices, activations and caches are `void *` of the state's element type
 * (bf16, or f32 in the f32 backend; `es` bytes each): at() offsets them. */
struct cu_layer {
  void *w_qkv;                 /* [QD + 2 KD, D]  q | k | v rows */
  float *b_qkv;                /* [QD + 2 KD] or NULL */
  void *wo;                    /* [D, QD] */
  float *bo;                   /* [D] or NULL */
  float *attn_norm, *mlp_norm; /* [D] */
  void *w_gu;                  /* [2I, D]  gate | up rows */
  float *b_gu;                 /* [2I] or NULL */
  void *w_down;                /* [D, I] */
  float *b_down;               /* [D] or NULL */
};

/* A device buffer that only grows. */
struct cu_buf {
  void *p;
  size_t cap;
};

struct cu_state {
  lukv_model_config cfg;
  int dev;
  int f32;                /* element type: 0 bf16, 1 f32 */
  size_t es;              /* its size in bytes */
  cudaStream_t st;
  cublasHandle_t blas;
  void *embed, *lm_head;  /* [V, D] (the same buffer when tied) */
  float *final_norm;      /* [D] */
  float *inv_freq;        /* [d/2] */
  cu_layer *layers;       /* [L] host array of device pointers */
  void **allocs;          /* every weight allocation, freed with the state */
  int n_allocs, cap_allocs;
  /* scratch of a forward call */
  cu_buf tok, x, h, qkv, q, k, v, att, lse, cos_t, sin_t, gu, act, attn_ws, logits;
  cu_buf tap_q, tap_k, tap_v, tap_wo; /* f32 copies handed to a tap (bf16 backend only) */
};

struct cu_cache {
  int dev, capacity;
  size_t es;           /* element size, the state's */
  size_t layer_stride; /* capacity * KD elements */
  void *k, *v;         /* [L, capacity, Hkv, d] each */
};

/* Element `i` of a buffer of element size es. */
inline void *at(size_t es, const void *p, size_t i) { return (char *)p + i * es; }

/* Makes dev current for the scope and restores the caller's device after. */
struct dev_scope {
  int prev, ok;
  explicit dev_scope(int dev) : prev(-1), ok(1) {
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    if (prev != dev && cudaSetDevice(dev) != cudaSuccess) ok = 0;
  }
  ~dev_scope() {
    int cur = -1;
    if (prev >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev) cudaSetDevice(prev);
  }
};

int dalloc(cu_state *s, void **p, size_t bytes, const char *what, const char *where, lukv_error *err) {
  *p = NULL;
  if (s->n_allocs == s->cap_allocs) {
    int cap = s->cap_allocs ? 2 * s->cap_allocs : 256;
    void **a = (void **)realloc(s->allocs, (size_t)cap * sizeof *a);
    if (!a) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
    s->allocs = a;
    s->cap_allocs = cap;
  }
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    *p = NULL;
    return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s: cudaMalloc of %.1f MiB failed: %s", where, what,
                          (double)bytes / (1 << 20), cudaGetErrorString(e));
  }
  s->allocs[s->n_allocs++] = *p;
  return LUKV_OK;
}

int ensure(cu_buf *b, size_t bytes, const char *what, const char *where, lukv_error *err) {
  if (b->cap >= bytes && b->p) return LUKV_OK;
  if (b->p) cudaFree(b->p);
  b->p = NULL;
  b->cap = 0;
  cudaError_t e = cudaMalloc(&b->p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    b->p = NULL;
    return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s: cudaMalloc of %.1f MiB failed: %s", where, what,
                          (double)bytes / (1 << 20), cudaGetErrorString(e));
  }
  b->cap = bytes;
  return LUKV_OK;
}

void buf_free(cu_buf *b) {
  if (b->p) cudaFree(b->p);
  b->p = NULL;
  b->cap = 0;
}

void cu_free_state(cu_state *s) {
  if (!s) return;
  dev_scope ds(s->dev);
  if (s->st) cudaStreamSynchronize(s->st);
  for (int i = 0; i < s->n_allocs; i++) cudaFree(s->allocs[i]);
  free(s->allocs);
  cu_buf *bufs[] = {&s->tok, &s->x,     &s->h,      &s->qkv,   &s->q,     &s->k,     &s->v,     &s->att,
                    &s->lse, &s->cos_t, &s->sin_t,  &s->gu,    &s->act,   &s->attn_ws, &s->logits,
                    &s->tap_q, &s->tap_k, &s->tap_v, &s->tap_wo};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) buf_free(bufs[i]);
  if (s->blas) cublasDestroy(s->blas);
  if (s->st) cudaStreamDestroy(s->st);
  free(s->layers);
  free(s);
}

/* ---- upload ------------------------------------------------------------------ */

/* Matrix t -> dst (numel elements of the state's type), chunk by chunk
 * through stage (device, STAGE_ELEMS f32). bf16: bf16 copied as stored, f32
 * and f16 converted on the device. f32: f32 copied, f16 and bf16 widened on
 * the host (exact). */
int upload_mat(cu_state *s, const lukv_tensor_ref *t, void *dst, void *stage, const char *name, const char *where,
               lukv_error *err) {
  const char *what = name;
  const size_t n = (size_t)lukv_tensor_numel(t);
  if (s->f32) {
    if (t->dtype == LUKV_DT_F32) {
      CU(what, cudaMemcpy(dst, t->data, n * sizeof(float), cudaMemcpyHostToDevice));
      return LUKV_OK;
    }
    const size_t esz = lukv_dtype_size(t->dtype);
    float *h = (float *)malloc(STAGE_ELEMS * sizeof(float));
    if (!h) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", where, name);
    int rc = LUKV_OK;
    for (size_t off = 0; off < n && rc == LUKV_OK; off += STAGE_ELEMS) {
      const size_t m = n - off < STAGE_ELEMS ? n - off : STAGE_ELEMS;
      if (lukv_convert_to_f32(t->dtype, (const char *)t->data + off * esz, m, h) != LUKV_OK) {
        rc = lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: %s: dtype %s not supported (F32, F16, BF16)", where,
                            name, lukv_dtype_name(t->dtype));
        break;
      }
      cudaError_t e = cudaMemcpy((float *)dst + off, h, m * sizeof(float), cudaMemcpyHostToDevice);
      if (e != cudaSuccess) rc = cuda_fail(err, where, what, "cudaMemcpy", e);
    }
    free(h);
    return rc;
  }
  if (t->dtype == LUKV_DT_BF16) {
    CU(what, cudaMemcpy(dst, t->data, n * sizeof(bf16), cudaMemcpyHostToDevice));
    return LUKV_OK;
  }
  if (t->dtype != LUKV_DT_F32 && t->dtype != LUKV_DT_F16)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: %s: dtype %s not supported (F32, F16, BF16)", where, name,
                          lukv_dtype_name(t->dtype));
  const size_t esz = t->dtype == LUKV_DT_F32 ? 4 : 2;
  for (size_t off = 0; off < n; off += STAGE_ELEMS) {
    const size_t m = n - off < STAGE_ELEMS ? n - off : STAGE_ELEMS;
    CU(what, cudaMemcpyAsync(stage, (const char *)t->data + off * esz, m * esz, cudaMemcpyHostToDevice, s->st));
    if (t->dtype == LUKV_DT_F32) CU(what, lukv_cuda_f32_to_bf16((const float *)stage, m, (bf16 *)dst + off, s->st));
    else CU(what, lukv_cuda_f16_to_bf16((const uint16_t *)stage, m, (bf16 *)dst + off, s->st));
    CU(what, cudaStreamSynchronize(s->st)); /* stage is reused */
  }
  return LUKV_OK;
}

/* Vector t -> dst (f32, numel elements), converted on the host (small). */
int upload_vec(const lukv_tensor_ref *t, float *dst, const char *name, const char *where, lukv_error *err) {
  const char *what = name;
  const size_t n = (size_t)lukv_tensor_numel(t);
  float *h = (float *)malloc(n * sizeof(float));
  if (!h) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", where, name);
  if (lukv_convert_to_f32(t->dtype, t->data, n, h) != LUKV_OK) {
    free(h);
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: %s: dtype %s not supported (F32, F16, BF16)", where, name,
                          lukv_dtype_name(t->dtype));
  }
  cudaError_t e = cudaMemcpy(dst, h, n * sizeof(float), cudaMemcpyHostToDevice);
  free(h);
  if (e != cudaSuccess) return cuda_fail(err, where, what, "cudaMemcpy", e);
  return LUKV_OK;
}

/* Stacks matrices with the same column count into one [sum rows, cols]
 * buffer of the state's type, and their biases (any present) into one f32 vector (zeros where a
 * part has none). */
int upload_stack(cu_state *s, const lukv_tensor_ref *const *mats, const lukv_tensor_ref *const *biases, int n,
                 const char *name, void *stage, void **w, float **b, const char *where, lukv_error *err) {
  size_t rows = 0, off = 0;
  int any_bias = 0;
  for (int i = 0; i < n; i++) {
    rows += (size_t)mats[i]->rows;
    if (biases && biases[i]->data) any_bias = 1;
  }
  const size_t cols = (size_t)mats[0]->cols;
  int rc = dalloc(s, w, rows * cols * s->es, name, where, err);
  for (int i = 0; i < n && rc == LUKV_OK; i++) {
    rc = upload_mat(s, mats[i], at(s->es, *w, off * cols), stage, name, where, err);
    off += (size_t)mats[i]->rows;
  }
  if (b) *b = NULL;
  if (rc != LUKV_OK || !any_bias) return rc;
  rc = dalloc(s, (void **)b, rows * sizeof(float), name, where, err);
  if (rc != LUKV_OK) return rc;
  const char *what = name;
  CU(what, cudaMemset(*b, 0, rows * sizeof(float)));
  off = 0;
  for (int i = 0; i < n && rc == LUKV_OK; i++) {
    if (biases[i]->data) rc = upload_vec(biases[i], *b + off, name, where, err);
    off += (size_t)mats[i]->rows;
  }
  return rc;
}

int vec(cu_state *s, const lukv_tensor_ref *t, float **dst, const char *name, const char *where, lukv_error *err) {
  *dst = NULL;
  if (!t->data) return LUKV_OK;
  int rc = dalloc(s, (void **)dst, (size_t)lukv_tensor_numel(t) * sizeof(float), name, where, err);
  return rc == LUKV_OK ? upload_vec(t, *dst, name, where, err) : rc;
}

int mat(cu_state *s, const lukv_tensor_ref *t, void **dst, void *stage, const char *name, const char *where,
        lukv_error *err) {
  int rc = dalloc(s, dst, (size_t)lukv_tensor_numel(t) * s->es, name, where, err);
  return rc == LUKV_OK ? upload_mat(s, t, *dst, stage, name, where, err) : rc;
}

int cu_init_weights(cu_state *s, const lukv_weights *w, const char *where, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const char *what = "weights";
  void *stage = NULL;
  CU(what, cudaMalloc(&stage, STAGE_ELEMS * sizeof(float)));
  int rc = mat(s, &w->embed, &s->embed, stage, "model.embed_tokens.weight", where, err);
  if (rc == LUKV_OK) {
    if (w->lm_head.data == w->embed.data) s->lm_head = s->embed; /* tied: one copy */
    else rc = mat(s, &w->lm_head, &s->lm_head, stage, "lm_head.weight", where, err);
  }
  if (rc == LUKV_OK) rc = vec(s, &w->final_norm, &s->final_norm, "model.norm.weight", where, err);
  for (int l = 0; l < c->n_layers && rc == LUKV_OK; l++) {
    const lukv_layer_weights *W = &w->layers[l];
    cu_layer *C = &s->layers[l];
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.self_attn.{q,k,v}_proj", l);
    const lukv_tensor_ref *qkv[] = {&W->wq, &W->wk, &W->wv}, *qkv_b[] = {&W->bq, &W->bk, &W->bv};
    rc = upload_stack(s, qkv, qkv_b, 3, name, stage, &C->w_qkv, &C->b_qkv, where, err);
    if (rc != LUKV_OK) break;
    snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj", l);
    rc = mat(s, &W->wo, &C->wo, stage, name, where, err);
    if (rc == LUKV_OK) rc = vec(s, &W->bo, &C->bo, name, where, err);
    snprintf(name, sizeof name, "model.layers.%d.mlp.{gate,up}_proj", l);
    const lukv_tensor_ref *gu[] = {&W->w_gate, &W->w_up}, *gu_b[] = {&W->b_gate, &W->b_up};
    if (rc == LUKV_OK) rc = upload_stack(s, gu, gu_b, 2, name, stage, &C->w_gu, &C->b_gu, where, err);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj", l);
    if (rc == LUKV_OK) rc = mat(s, &W->w_down, &C->w_down, stage, name, where, err);
    if (rc == LUKV_OK) rc = vec(s, &W->b_down, &C->b_down, name, where, err);
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    if (rc == LUKV_OK) rc = vec(s, &W->attn_norm, &C->attn_norm, name, where, err);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (rc == LUKV_OK) rc = vec(s, &W->mlp_norm, &C->mlp_norm, name, where, err);
  }
  cudaError_t e = cudaFree(stage);
  if (rc == LUKV_OK && e != cudaSuccess) rc = cuda_fail(err, where, what, "cudaFree", e);
  return rc;
}

int cu_init(const lukv_model_config *cfg, const lukv_weights *w, int f32, const char *where, void **state,
            int *keep_files, lukv_error *err) {
  *state = NULL;
  *keep_files = 0; /* everything is copied to the device */
  const char *what = "device";
  int n_dev = 0;
  CU(what, cudaGetDeviceCount(&n_dev));
  if (n_dev < 1) return lukv_error_set(err, LUKV_ERR_CUDA, "%s: device: no CUDA device", where);
  if (cfg->head_dim > LUKV_CUDA_MAX_HEAD_DIM)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: head_dim: %d is above %d, the largest the CUDA kernels take",
                          where, cfg->head_dim, LUKV_CUDA_MAX_HEAD_DIM);
  int dev = 0;
  CU(what, cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CU(what, cudaGetDeviceProperties(&prop, dev));
  if (prop.major < 9)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: device: %s has compute capability %d.%d; this build has code for sm_90 (Hopper) and "
                          "later only",
                          where, prop.name, prop.major, prop.minor);
  cu_state *s = (cu_state *)calloc(1, sizeof *s);
  if (!s) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
  s->cfg = *cfg;
  s->dev = dev;
  s->f32 = f32;
  s->es = f32 ? sizeof(float) : sizeof(bf16);
  s->layers = (cu_layer *)calloc((size_t)cfg->n_layers, sizeof *s->layers);
  float *inv = (float *)malloc(sizeof(float) * (size_t)(cfg->head_dim / 2));
  int rc = LUKV_OK;
  if (!s->layers || !inv) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: weights: out of memory", where);
  cudaError_t e = cudaSuccess;
  if (rc == LUKV_OK && (e = cudaStreamCreate(&s->st)) != cudaSuccess) {
    s->st = NULL;
    rc = cuda_fail(err, where, what, "cudaStreamCreate", e);
  }
  cublasStatus_t be = CUBLAS_STATUS_SUCCESS;
  if (rc == LUKV_OK && (be = cublasCreate(&s->blas)) != CUBLAS_STATUS_SUCCESS) {
    s->blas = NULL;
    rc = blas_fail(err, where, what, "cublasCreate", be);
  }
  if (rc == LUKV_OK && (be = cublasSetStream(s->blas, s->st)) != CUBLAS_STATUS_SUCCESS)
    rc = blas_fail(err, where, what, "cublasSetStream", be);
  if (rc == LUKV_OK) {
    lukv_config_rope_inv_freq(cfg, inv); /* on the host, the CPU path's exact values */
    rc = dalloc(s, (void **)&s->inv_freq, sizeof(float) * (size_t)(cfg->head_dim / 2), "rope", where, err);
  }
  if (rc == LUKV_OK &&
      (e = cudaMemcpy(s->inv_freq, inv, sizeof(float) * (size_t)(cfg->head_dim / 2), cudaMemcpyHostToDevice)) !=
          cudaSuccess)
    rc = cuda_fail(err, where, "rope", "cudaMemcpy", e);
  free(inv);
  if (rc == LUKV_OK) rc = cu_init_weights(s, w, where, err);
  if (rc != LUKV_OK) {
    cu_free_state(s);
    return rc;
  }
  *state = s;
  return LUKV_OK;
}

int cu_init_bf16(const lukv_model_config *cfg, const lukv_weights *w, const char *where, void **state,
                 int *keep_files, lukv_error *err) {
  return cu_init(cfg, w, 0, where, state, keep_files, err);
}

int cu_init_f32(const lukv_model_config *cfg, const lukv_weights *w, const char *where, void **state,
                int *keep_files, lukv_error *err) {
  return cu_init(cfg, w, 1, where, state, keep_files, err);
}

void cu_free(void *vs) { cu_free_state((cu_state *)vs); }

int cu_cache_init(void *vs, int capacity, void **out, lukv_error *err) {
  cu_state *s = (cu_state *)vs;
  *out = NULL;
  const char *where = "kv_cache";
  dev_scope ds(s->dev);
  if (!ds.ok) return lukv_error_set(err, LUKV_ERR_CUDA, "kv_cache: cudaSetDevice(%d) failed", s->dev);
  cu_cache *c = (cu_cache *)calloc(1, sizeof *c);
  if (!c) return lukv_error_set(err, LUKV_ERR_NOMEM, "kv_cache: out of memory");
  c->dev = s->dev;
  c->capacity = capacity;
  c->es = s->es;
  c->layer_stride = (size_t)capacity * s->cfg.n_kv_heads * s->cfg.head_dim;
  const size_t bytes = c->layer_stride * (size_t)s->cfg.n_layers * c->es;
  cudaError_t e = cudaMalloc((void **)&c->k, bytes);
  if (e == cudaSuccess) e = cudaMalloc((void **)&c->v, bytes);
  if (e != cudaSuccess) {
    if (c->k) cudaFree(c->k);
    if (c->v) cudaFree(c->v);
    free(c);
    return lukv_error_set(err, LUKV_ERR_CUDA, "%s: cudaMalloc of 2 x %.1f MiB for %d tokens failed: %s", where,
                          (double)bytes / (1 << 20), capacity, cudaGetErrorString(e));
  }
  *out = c;
  return LUKV_OK;
}

void cu_cache_free(void *vc) {
  cu_cache *c = (cu_cache *)vc;
  if (!c) return;
  dev_scope ds(c->dev);
  cudaFree(c->k);
  cudaFree(c->v);
  free(c);
}

/* ---- forward ----------------------------------------------------------------- */

int ensure_scratch(cu_state *s, int T, int with_kv, const char *where, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const size_t D = (size_t)c->hidden_size, d = (size_t)c->head_dim, QD = (size_t)c->n_heads * d;
  const size_t KD = (size_t)c->n_kv_heads * d, I = (size_t)c->intermediate_size, t = (size_t)T;
  const size_t rows = T < MLP_ROWS ? t : (size_t)MLP_ROWS, es = s->es;
  struct {
    cu_buf *b;
    size_t bytes;
    const char *what;
  } need[] = {{&s->tok, t * sizeof(int32_t), "tokens"},
              {&s->x, t * D * sizeof(float), "activations"},
              {&s->h, t * D * es, "activations"},
              {&s->qkv, t * (QD + 2 * KD) * sizeof(float), "activations"},
              {&s->q, t * QD * es, "activations"},
              {&s->att, t * QD * es, "activations"},
              {&s->lse, t * (size_t)c->n_heads * sizeof(float), "activations"},
              {&s->cos_t, t * (d / 2) * sizeof(float), "rope"},
              {&s->sin_t, t * (d / 2) * sizeof(float), "rope"},
              {&s->gu, rows * 2 * I * sizeof(float), "mlp"},
              {&s->act, rows * I * es, "mlp"},
              {&s->k, with_kv ? t * KD * es : 0, "activations"},
              {&s->v, with_kv ? t * KD * es : 0, "activations"}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
    if (need[i].bytes == 0) continue;
    int rc = ensure(need[i].b, need[i].bytes, need[i].what, where, err);
    if (rc != LUKV_OK) return rc;
  }
  return LUKV_OK;
}

/* y [T, out] f32 (=|+=) x [T, in] . W^T, x and W of the state's type. */
int gemm(cu_state *s, const void *x, const void *W, int T, int in, int out, float beta, float *y, const char *what,
         const char *where, lukv_error *err) {
  if (s->f32) BLAS(what, lukv_cuda_linear_f32(s->blas, (const float *)x, (const float *)W, T, in, out, beta, y));
  else BLAS(what, lukv_cuda_linear(s->blas, (const bf16 *)x, (const bf16 *)W, T, in, out, beta, y, 1));
  return LUKV_OK;
}

/* The kernels whose storage type is the state's: one call site each. */
cudaError_t k_rmsnorm(const cu_state *s, const float *x, const float *w, int T, void *out) {
  const int D = s->cfg.hidden_size;
  const float eps = (float)s->cfg.rms_norm_eps;
  return s->f32 ? lukv_cuda_rmsnorm_f32(x, w, T, D, eps, (float *)out, s->st)
                : lukv_cuda_rmsnorm(x, w, T, D, eps, (bf16 *)out, s->st);
}

cudaError_t k_qkv_rope(const cu_state *s, const float *qkv, const float *bias, int T, void *q, void *k, void *v) {
  const lukv_model_config *c = &s->cfg;
  const float *cs = (const float *)s->cos_t.p, *sn = (const float *)s->sin_t.p;
  return s->f32 ? lukv_cuda_qkv_rope_f32(qkv, bias, cs, sn, T, c->n_heads, c->n_kv_heads, c->head_dim, (float *)q,
                                         (float *)k, (float *)v, s->st)
                : lukv_cuda_qkv_rope(qkv, bias, cs, sn, T, c->n_heads, c->n_kv_heads, c->head_dim, (bf16 *)q,
                                     (bf16 *)k, (bf16 *)v, s->st);
}

cudaError_t k_swiglu(const cu_state *s, const float *gu, const float *bias, int n, void *out) {
  const int I = s->cfg.intermediate_size;
  return s->f32 ? lukv_cuda_swiglu_f32(gu, bias, n, I, (float *)out, s->st)
                : lukv_cuda_swiglu(gu, bias, n, I, (bf16 *)out, s->st);
}

/* Hands the layer's attention inputs to the tap: f32 device copies in the
 * bf16 backend, the engine's own buffers in the f32 one. */
int run_tap(cu_state *s, int l, const lukv_fwd_call *call, const void *kdst, const void *vdst, int window,
            lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const char *where = call->where, *what = "tap";
  const int T = call->T, d = c->head_dim, D = c->hidden_size;
  const size_t QD = (size_t)c->n_heads * d, KD = (size_t)c->n_kv_heads * d;
  const void *tq = s->q.p, *tk = kdst, *tv = vdst, *two = s->layers[l].wo;
  if (!s->f32) {
    int rc = ensure(&s->tap_q, (size_t)T * QD * sizeof(float), what, where, err);
    if (rc == LUKV_OK) rc = ensure(&s->tap_k, (size_t)T * KD * sizeof(float), what, where, err);
    if (rc == LUKV_OK) rc = ensure(&s->tap_v, (size_t)T * KD * sizeof(float), what, where, err);
    if (rc == LUKV_OK) rc = ensure(&s->tap_wo, (size_t)D * QD * sizeof(float), what, where, err);
    if (rc != LUKV_OK) return rc;
    CU(what, lukv_cuda_bf16_to_f32((const bf16 *)s->q.p, (size_t)T * QD, (float *)s->tap_q.p, s->st));
    CU(what, lukv_cuda_bf16_to_f32((const bf16 *)kdst, (size_t)T * KD, (float *)s->tap_k.p, s->st));
    CU(what, lukv_cuda_bf16_to_f32((const bf16 *)vdst, (size_t)T * KD, (float *)s->tap_v.p, s->st));
    CU(what, lukv_cuda_bf16_to_f32((const bf16 *)s->layers[l].wo, (size_t)D * QD, (float *)s->tap_wo.p, s->st));
    tq = s->tap_q.p, tk = s->tap_k.p, tv = s->tap_v.p, two = s->tap_wo.p;
  }
  CU(what, cudaStreamSynchronize(s->st));
  lukv_tap_info ti;
  memset(&ti, 0, sizeof ti);
  ti.layer = l;
  ti.T = T;
  ti.pos0 = call->pos0;
  ti.n_heads = c->n_heads;
  ti.n_kv_heads = c->n_kv_heads;
  ti.head_dim = d;
  ti.hidden_size = D;
  ti.window = window;
  ti.device = LUKV_DEVICE_CUDA;
  ti.q = (const float *)tq;
  ti.k = (const float *)tk;
  ti.v = (const float *)tv;
  ti.lse = (const float *)s->lse.p;
  ti.o_proj = (const float *)two;
  int rc = call->opts->tap(call->opts->tap_user, &ti);
  /* whatever the tap enqueued on any stream must be done before the buffers change */
  cudaError_t e = cudaDeviceSynchronize();
  if (rc != LUKV_OK)
    return lukv_error_set(err, rc, "%s: tap: layer %d: callback returned %d (%s)", where, l, rc, lukv_strerror(rc));
  if (e != cudaSuccess) return cuda_fail(err, where, what, "cudaDeviceSynchronize after the tap", e);
  return LUKV_OK;
}

/* The engine's own attention of layer l over kall/vall [pos0 + T, KD] (the
 * cache's rows, then this call's), then the tap if any. */
int own_attention(cu_state *s, int l, const lukv_fwd_call *call, const void *q, const void *kall,
                  const void *vall, const void *kdst, const void *vdst, void *att, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const char *where = call->where;
  const int T = call->T;
  int rc;
  lukv_attn_shape sh;
  sh.T = T;
  sh.S = call->pos0 + T;
  sh.n_heads = c->n_heads;
  sh.n_kv_heads = c->n_kv_heads;
  sh.head_dim = c->head_dim;
  sh.window = lukv_config_layer_window(c, l);
  float *lse = (float *)s->lse.p;
  if (s->f32 && T > 1) {
    CU("attention", lukv_cuda_flash_attention_f32((const float *)q, (const float *)kall, (const float *)vall, &sh,
                                                  (float *)att, lse, s->st));
  } else if (!s->f32 && T > 1 && lukv_cuda_flash_supported(&sh)) {
    CU("attention", lukv_cuda_flash_attention((const bf16 *)q, (const bf16 *)kall, (const bf16 *)vall, &sh,
                                              (bf16 *)att, lse, s->st));
  } else {
    size_t ws = lukv_cuda_attention_rows_ws(&sh);
    if ((rc = ensure(&s->attn_ws, ws, "attention", where, err)) != LUKV_OK) return rc;
    if (s->f32)
      CU("attention", lukv_cuda_attention_rows_f32((const float *)q, (const float *)kall, (const float *)vall, &sh,
                                                   (float *)att, lse, s->attn_ws.p, s->attn_ws.cap, s->st));
    else
      CU("attention", lukv_cuda_attention_rows((const bf16 *)q, (const bf16 *)kall, (const bf16 *)vall, &sh,
                                               (bf16 *)att, lse, s->attn_ws.p, s->attn_ws.cap, s->st));
  }
  if (call->opts->tap && (rc = run_tap(s, l, call, kdst, vdst, sh.window, err)) != LUKV_OK) return rc;
  return LUKV_OK;
}

/* lukv_model_decode_external: the caller's attention on this layer's row
 * (T == 1). Everything stays on the device and in stream order: the
 * callback enqueues on s->st, and o_proj follows on s->st without a wait. */
int run_attn_callback(cu_state *s, int l, const lukv_fwd_call *call, const void *q, const void *k, const void *v,
                      void *att, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  lukv_attn_call ac;
  memset(&ac, 0, sizeof ac);
  ac.layer = l;
  ac.pos = call->pos0;
  ac.n_heads = c->n_heads;
  ac.n_kv_heads = c->n_kv_heads;
  ac.head_dim = c->head_dim;
  ac.device = LUKV_DEVICE_CUDA;
  ac.q_bf16 = (const uint16_t *)q;
  ac.k_bf16 = (const uint16_t *)k;
  ac.v_bf16 = (const uint16_t *)v;
  ac.out_bf16 = (uint16_t *)att;
  ac.stream = (void *)s->st;
  int rc = call->attn(call->attn_user, &ac);
  if (rc != LUKV_OK)
    return lukv_error_set(err, rc, "%s: attention callback: layer %d: returned %d (%s)", call->where, l, rc,
                          lukv_strerror(rc));
  return LUKV_OK;
}

int layer_fwd(cu_state *s, int l, const lukv_fwd_call *call, void *kall, void *vall, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const cu_layer *W = &s->layers[l];
  const char *where = call->where;
  const int T = call->T, D = c->hidden_size, d = c->head_dim, I = c->intermediate_size;
  const int QD = c->n_heads * d, KD = c->n_kv_heads * d;
  const size_t es = s->es;
  float *x = (float *)s->x.p, *qkv = (float *)s->qkv.p;
  void *h = s->h.p, *q = s->q.p, *att = s->att.p;
  /* external attention: no cache, this call's row only (RoPE still at pos0) */
  const size_t row0 = call->attn ? 0 : (size_t)call->pos0;
  void *kdst = at(es, kall, row0 * KD), *vdst = at(es, vall, row0 * KD);
  int rc;

  /* attention */
  CU("attention", k_rmsnorm(s, x, W->attn_norm, T, h));
  if ((rc = gemm(s, h, W->w_qkv, T, D, QD + 2 * KD, 0.f, qkv, "qkv_proj", where, err)) != LUKV_OK) return rc;
  CU("attention", k_qkv_rope(s, qkv, W->b_qkv, T, q, kdst, vdst));
  if (call->attn) {
    if ((rc = run_attn_callback(s, l, call, q, kdst, vdst, att, err)) != LUKV_OK) return rc;
  } else if ((rc = own_attention(s, l, call, q, kall, vall, kdst, vdst, att, err)) != LUKV_OK) {
    return rc;
  }
  if ((rc = gemm(s, att, W->wo, T, QD, D, 1.f, x, "o_proj", where, err)) != LUKV_OK) return rc;
  if (W->bo) CU("o_proj", lukv_cuda_add_bias(x, W->bo, T, D, s->st));

  /* MLP */
  CU("mlp", k_rmsnorm(s, x, W->mlp_norm, T, h));
  for (int r0 = 0; r0 < T; r0 += MLP_ROWS) {
    const int n = T - r0 < MLP_ROWS ? T - r0 : MLP_ROWS;
    float *gu = (float *)s->gu.p, *xr = x + (size_t)r0 * D;
    void *a = s->act.p;
    if ((rc = gemm(s, at(es, h, (size_t)r0 * D), W->w_gu, n, D, 2 * I, 0.f, gu, "gate_up_proj", where, err)) !=
        LUKV_OK)
      return rc;
    CU("mlp", k_swiglu(s, gu, W->b_gu, n, a));
    if ((rc = gemm(s, a, W->w_down, n, I, D, 1.f, xr, "down_proj", where, err)) != LUKV_OK) return rc;
    if (W->b_down) CU("down_proj", lukv_cuda_add_bias(xr, W->b_down, n, D, s->st));
  }
  return LUKV_OK;
}

int logits_fwd(cu_state *s, const lukv_fwd_call *call, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  const char *where = call->where, *what = "logits";
  const int T = call->T, D = c->hidden_size, V = c->vocab_size;
  const int first = call->opts->last_logits_only ? T - 1 : 0, n = T - first;
  const int rows = n < LOGIT_ROWS ? n : LOGIT_ROWS;
  int rc = ensure(&s->logits, (size_t)rows * V * sizeof(float), what, where, err);
  if (rc != LUKV_OK) return rc;
  void *h = s->h.p;
  CU(what, k_rmsnorm(s, (float *)s->x.p + (size_t)first * D, s->final_norm, n, h));
  for (int r0 = 0; r0 < n; r0 += rows) {
    const int m = n - r0 < rows ? n - r0 : rows;
    if ((rc = gemm(s, at(s->es, h, (size_t)r0 * D), s->lm_head, m, D, V, 0.f, (float *)s->logits.p, "lm_head", where, err)) !=
        LUKV_OK)
      return rc;
    CU(what, cudaMemcpyAsync(call->logits + (size_t)r0 * V, s->logits.p, (size_t)m * V * sizeof(float),
                             cudaMemcpyDeviceToHost, s->st));
    CU(what, cudaStreamSynchronize(s->st)); /* the device buffer is reused, the host one must be complete */
  }
  return LUKV_OK;
}

int cu_forward_in(cu_state *s, const lukv_fwd_call *call, lukv_error *err) {
  const lukv_model_config *c = &s->cfg;
  cu_cache *cache = (cu_cache *)call->cache;
  const char *where = call->where, *what = "forward";
  const int T = call->T;
  int rc = ensure_scratch(s, T, cache == NULL, where, err);
  if (rc != LUKV_OK) return rc;
  CU(what, cudaMemcpyAsync(s->tok.p, call->tokens, (size_t)T * sizeof(int32_t), cudaMemcpyHostToDevice, s->st));
  const int32_t *tok = (const int32_t *)s->tok.p;
  if (s->f32) CU(what, lukv_cuda_embed_f32((const float *)s->embed, tok, T, c->hidden_size, (float *)s->x.p, s->st));
  else CU(what, lukv_cuda_embed((const bf16 *)s->embed, tok, T, c->hidden_size, (float *)s->x.p, s->st));
  CU(what, lukv_cuda_rope_table(s->inv_freq, c->head_dim / 2, T, call->pos0, (float *)s->cos_t.p,
                                (float *)s->sin_t.p, s->st));
  for (int l = 0; l < c->n_layers && rc == LUKV_OK; l++) {
    /* K/V of positions [0, pos0 + T): the cache's layer, or this call's rows */
    void *kall = s->k.p, *vall = s->v.p;
    if (cache) {
      kall = at(cache->es, cache->k, (size_t)l * cache->layer_stride);
      vall = at(cache->es, cache->v, (size_t)l * cache->layer_stride);
    }
    rc = layer_fwd(s, l, call, kall, vall, err);
  }
  if (rc == LUKV_OK && call->logits) rc = logits_fwd(s, call, err);
  if (rc == LUKV_OK) CU(what, cudaStreamSynchronize(s->st)); /* reports any asynchronous kernel fault */
  return rc;
}

int cu_forward(void *vs, const lukv_fwd_call *call, lukv_error *err) {
  cu_state *s = (cu_state *)vs;
  if (call->attn && s->f32) /* the interface hands out bf16 buffers (liblukv's cache is bf16) */
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: device: external attention takes bf16 tensors; use the bf16 CUDA backend (cuda), not "
                          "cuda-f32",
                          call->where);
  dev_scope ds(s->dev);
  if (!ds.ok) return lukv_error_set(err, LUKV_ERR_CUDA, "%s: device: cudaSetDevice(%d) failed", call->where, s->dev);
  int rc = cu_forward_in(s, call, err);
  if (rc != LUKV_OK) cudaStreamSynchronize(s->st); /* leave nothing running on buffers the caller may free */
  return rc;
}

} /* namespace */

/* Positional: C++ before 20 has no designated initialisers; order as in backend.h. */
extern "C" const lukv_backend lukv_backend_cuda = {
    "cuda", LUKV_DEVICE_CUDA, cu_init_bf16, cu_free, cu_cache_init, cu_cache_free, cu_forward,
};
/* Pointers on the device as above (device LUKV_DEVICE_CUDA), f32 storage. */
extern "C" const lukv_backend lukv_backend_cuda_f32 = {
    "cuda-f32", LUKV_DEVICE_CUDA, cu_init_f32, cu_free, cu_cache_init, cu_cache_free, cu_forward,
};

/* The CUDA engine's kernels (cuda_kernels.cu), each behind a host launcher so
 * that a test can run it alone against its plain-C twin in cpu_ops.h
 * (DESIGN §2: every kernel has a twin and a test on random inputs).
 *
 * Precision: bf16 storage (lukv_bf16 = raw bits), f32 arithmetic and
 * accumulation. The launchers ending in _f32 are the same kernels with f32
 * storage (the f32 backend, LUKV_DEVICE_CUDA_F32): their outputs equal the
 * twins' up to f32 rounding and summation order instead of bf16 rounding. Every buffer is device memory, row-major, caller-owned; no
 * launcher keeps a pointer or allocates. Launchers only enqueue work on
 * `stream` and return the launch status (cudaGetLastError); errors of the
 * kernel itself surface at the caller's next synchronisation.
 *
 * Twins (what each output equals, up to bf16 rounding of the output):
 *   lukv_cuda_embed        lukv_cpu_embed on the bf16 table widened to f32
 *   lukv_cuda_rmsnorm      lukv_cpu_rmsnorm
 *   lukv_cuda_qkv_rope     bias add + lukv_cpu_rope on the q and k parts
 *   lukv_cuda_swiglu       bias add + lukv_cpu_swiglu
 *   lukv_cuda_add_bias     the bias term of lukv_cpu_linear
 *   lukv_cuda_linear       lukv_cpu_linear (cuBLAS, bf16 in, f32 accumulate;
 *                          _f32: f32 in, CUBLAS_COMPUTE_32F, never TF32)
 *   lukv_cuda_flash_attention, lukv_cuda_attention_rows
 *                          lukv_cpu_attention (out in bf16, lse in f32;
 *                          lukv_cuda_flash_attention_f32 and _rows_f32: f32)
 */
#ifndef LUKV_CUDA_KERNELS_H
#define LUKV_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cpu_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t lukv_bf16; /* bf16 bit pattern (the upper half of an f32) */

/* Largest head_dim any attention kernel handles. */
#define LUKV_CUDA_MAX_HEAD_DIM 256

/* x [T, D] f32 = table [V, D] bf16 rows tok [T] (device ids, already checked). */
cudaError_t lukv_cuda_embed(const lukv_bf16 *table, const int32_t *tok, int T, int D, float *x,
                            cudaStream_t stream);
cudaError_t lukv_cuda_embed_f32(const float *table, const int32_t *tok, int T, int D, float *x, cudaStream_t stream);

/* out [T, D] bf16 = x / sqrt(mean(x^2) + eps) * w  (x [T, D] f32, w [D] f32). */
cudaError_t lukv_cuda_rmsnorm(const float *x, const float *w, int T, int D, float eps, lukv_bf16 *out,
                              cudaStream_t stream);
cudaError_t lukv_cuda_rmsnorm_f32(const float *x, const float *w, int T, int D, float eps, float *out,
                                  cudaStream_t stream);

/* cos_t, sin_t [T, half] f32 of the angle (float)(pos0 + t) * inv_freq[i]
 * (f32 product, as transformers), cos/sin taken in double and rounded to f32
 * as lukv_cpu_rope does. inv_freq [half] is device memory. */
cudaError_t lukv_cuda_rope_table(const float *inv_freq, int half, int T, int pos0, float *cos_t, float *sin_t,
                                 cudaStream_t stream);

/* The fused q/k/v projection's epilogue. qkv [T, QD + 2 KD] f32 is the GEMM
 * output (QD = Hq d, KD = Hkv d: q | k | v per row); bias [QD + 2 KD] f32 or
 * NULL. Writes q [T, Hq, d] and k [T, Hkv, d] rotated by HF rotate-half RoPE
 * with the table above, and v [T, Hkv, d], all bf16. k and v may point into a
 * KV cache (rows contiguous). */
cudaError_t lukv_cuda_qkv_rope(const float *qkv, const float *bias, const float *cos_t, const float *sin_t,
                               int T, int Hq, int Hkv, int d, lukv_bf16 *q, lukv_bf16 *k, lukv_bf16 *v,
                               cudaStream_t stream);
cudaError_t lukv_cuda_qkv_rope_f32(const float *qkv, const float *bias, const float *cos_t, const float *sin_t,
                                   int T, int Hq, int Hkv, int d, float *q, float *k, float *v, cudaStream_t stream);

/* gu [n, 2I] f32 = gate | up GEMM output, bias [2I] f32 or NULL;
 * out [n, I] bf16 = silu(gate) * up. */
cudaError_t lukv_cuda_swiglu(const float *gu, const float *bias, int n, int I, lukv_bf16 *out,
                             cudaStream_t stream);
cudaError_t lukv_cuda_swiglu_f32(const float *gu, const float *bias, int n, int I, float *out, cudaStream_t stream);

/* y [T, N] f32 += b [N]. */
cudaError_t lukv_cuda_add_bias(float *y, const float *b, int T, int N, cudaStream_t stream);

/* Element conversions (n elements). f32 and f16 to bf16 round to nearest even;
 * f16 input is raw IEEE half bits. */
cudaError_t lukv_cuda_f32_to_bf16(const float *src, size_t n, lukv_bf16 *dst, cudaStream_t stream);
cudaError_t lukv_cuda_f16_to_bf16(const uint16_t *src, size_t n, lukv_bf16 *dst, cudaStream_t stream);
cudaError_t lukv_cuda_bf16_to_f32(const lukv_bf16 *src, size_t n, float *dst, cudaStream_t stream);

/* y [T, out] (=|+=) x [T, in] . W^T with W [out, in] (nn.Linear), x and W
 * bf16, f32 accumulation (CUBLAS_COMPUTE_32F). y is f32 when y_f32, else
 * bf16; beta 0 writes, beta 1 accumulates (f32 y only). Runs on the handle's
 * stream. Returns the cuBLAS status. */
cublasStatus_t lukv_cuda_linear(cublasHandle_t h, const lukv_bf16 *x, const lukv_bf16 *W, int T, int in, int out,
                                float beta, void *y, int y_f32);
/* The same with x, W and y f32. */
cublasStatus_t lukv_cuda_linear_f32(cublasHandle_t h, const float *x, const float *W, int T, int in, int out,
                                    float beta, float *y);

/* ---- attention -------------------------------------------------------------
 * Shapes and masking exactly as lukv_cpu_attention (cpu_ops.h): T queries at
 * positions S - T .. S - 1 over S keys, causal, optional sliding window,
 * query head h reads KV head h / (Hq / Hkv), scores scaled by 1/sqrt(d).
 *   q [T, Hq, d] bf16, k, v [S, Hkv, d] bf16  ->  out [T, Hq, d] bf16,
 *   lse [Hq, T] f32 (natural log of sum_j exp(score)).
 */

/* 1 if the tensor-core flash kernel takes this shape: head_dim a multiple of
 * 16 and at most LUKV_CUDA_MAX_HEAD_DIM. (Buffers must be 16-byte aligned,
 * which cudaMalloc'd buffers and row offsets of them are for such d.) */
int lukv_cuda_flash_supported(const lukv_attn_shape *s);

/* Flash-attention forward (FA2 style): one block per (64-query tile, query
 * head), 64-key tiles in shared memory, QK^T and PV on tensor cores (WMMA
 * bf16, f32 accumulate), online softmax in f32, nothing of size T x S.
 * cudaErrorInvalidValue for a shape it does not take. */
cudaError_t lukv_cuda_flash_attention(const lukv_bf16 *q, const lukv_bf16 *k, const lukv_bf16 *v,
                                      const lukv_attn_shape *s, lukv_bf16 *out, float *lse, cudaStream_t stream);

/* The f32 backend's prefill attention: the same tiling on f32 q, k, v and out
 * with SIMT FMAs (32 query rows x 32-key tiles of one head per block, K/V
 * tiles shared by the block's rows; no tensor cores, no rounding below f32).
 * Any head_dim lukv_cuda_attention_rows takes; no alignment needed. */
cudaError_t lukv_cuda_flash_attention_f32(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                                          float *out, float *lse, cudaStream_t stream);

/* Split-KV attention, one query row at a time: the decode step (T = 1 against
 * a long cache: the keys are split over many blocks, partial softmax states
 * merged by a second kernel) and the fallback for head dims the flash kernel
 * does not take (any d <= LUKV_CUDA_MAX_HEAD_DIM). ws: device scratch of
 * ws_bytes; lukv_cuda_attention_rows_ws says how much it would like (fewer
 * bytes mean fewer splits; cudaErrorInvalidValue when not even one fits). */
size_t lukv_cuda_attention_rows_ws(const lukv_attn_shape *s);
cudaError_t lukv_cuda_attention_rows(const lukv_bf16 *q, const lukv_bf16 *k, const lukv_bf16 *v,
                                     const lukv_attn_shape *s, lukv_bf16 *out, float *lse, void *ws,
                                     size_t ws_bytes, cudaStream_t stream);
/* The same over f32 q, k, v and out (the f32 backend's decode). Same
 * workspace size. */
cudaError_t lukv_cuda_attention_rows_f32(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                                         float *out, float *lse, void *ws, size_t ws_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

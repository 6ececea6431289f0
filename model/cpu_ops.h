/* The CPU reference's operations, one function each, f32, row-major.
 *
 * These are the plain-C twins the CUDA kernels are tested against (DESIGN §2),
 * so each one states its shapes and follows the transformers formula it
 * reproduces. Buffers are caller-owned; no function keeps a pointer.
 */
#ifndef LUKV_CPU_OPS_H
#define LUKV_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* x [T, D] = table [V, D] rows tok [T] (ids already range-checked). */
void lukv_cpu_embed(const float *table, const int32_t *tok, int T, int D, float *x);

/* out [T, D] = x / sqrt(mean(x^2) + eps) * w [D]  (LlamaRMSNorm). out may be x. */
void lukv_cpu_rmsnorm(const float *x, const float *w, int T, int D, float eps, float *out);

/* y [T, out] (=|+=) x [T, in] . W^T + b, with W [out, in] as nn.Linear stores
 * it and b [out] or NULL. accumulate: add to y (residual) instead of writing. */
void lukv_cpu_linear(const float *x, const float *W, const float *b, int T, int in, int out,
                     int accumulate, float *y);

/* In-place HF rotate-half RoPE on x [T, H, d] at positions pos0 .. pos0+T-1:
 *   x1 = x[:d/2], x2 = x[d/2:];  x <- (x1 cos - x2 sin, x2 cos + x1 sin)
 * with angle (float)pos * inv_freq[i] rounded to f32 as transformers does. */
void lukv_cpu_rope(float *x, int T, int H, int d, int pos0, const float *inv_freq);

/* gate [n] <- silu(gate) * up [n]   (LlamaMLP act_fn(gate_proj) * up_proj). */
void lukv_cpu_swiglu(float *gate, const float *up, size_t n);

/* Causal GQA attention of T queries over S keys (S >= T): query row i sits at
 * position S - T + i and sees keys j <= S - T + i (and j > pos - window when
 * window > 0). Query head h reads KV head h / (Hq / Hkv). Scores are scaled
 * by 1/sqrt(d).
 *   q   [T, Hq, d]     k, v [S, Hkv, d]
 *   out [T, Hq, d]     lse [Hq, T]: log sum_j exp(score_ij), natural log
 */
typedef struct lukv_attn_shape {
  int T, S;
  int n_heads, n_kv_heads, head_dim;
  int window;
} lukv_attn_shape;

/* Blocked online softmax: memory O(block^2 + block * d) whatever T and S;
 * no T x S buffer. Returns 0, or -1 if its small scratch cannot be allocated. */
int lukv_cpu_attention(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                       float *out, float *lse);

/* Direct formula, a full score row per query: the test oracle for the above. */
int lukv_cpu_attention_naive(const float *q, const float *k, const float *v, const lukv_attn_shape *s,
                             float *out, float *lse);

#endif

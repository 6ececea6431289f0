/* The profiler's statistics on the GPU (CUDA builds only): fused kernels that
 * never hold a T x T matrix, each the twin of a CPU function in stats.h and
 * tested against it (tests/test_profiler_stats_gpu.c, suite gpu).
 *
 *   lukv_stats_cuda_gram       lukv_stats_gram      Gram matrices (cuBLAS f32)
 *   lukv_stats_cuda_vnorm      lukv_stats_vnorm     Gram matrices unless given,
 *                                                   v·M_q and the row norms in
 *                                                   one tensor-core kernel (d 64,
 *                                                   128; else cuBLAS f32), norms
 *                                                   in double, a deterministic
 *                                                   normalising reduction
 *   lukv_stats_cuda_utility    lukv_stats_utility   key-stationary recomputation
 *                                                   of exp(scale·q·k − lse)
 *   lukv_score_cuda_snapkv     lukv_score_snapkv    the same over the window rows,
 *                                                   then max-pool and group mean
 *   lukv_score_cuda_keydiff    lukv_score_keydiff
 *   lukv_stats_cuda_curves     lukv_stats_curve     CUB segmented radix sort on a
 *                                                   composite key, sequential
 *                                                   double suffix sums
 *   lukv_layer_stats_cuda      lukv_layer_stats
 *   lukv_profile_add_layer_cuda lukv_profile_add_layer
 *
 * Every pointer inside the lukv_layer_view is DEVICE memory (f32, the layouts
 * of stats.h) — what the CUDA engine's tap hands over (model/backend.h). The
 * scalar fields are the same as on the CPU. Functions named *_dev write device
 * arrays; the layer functions write the same host arrays as their CPU twins.
 *
 * Precision: q·k dot products in f32 (FMA, head dims in order), exp in f32
 * (expf), every reduction over rows, tokens or heads in double — as the CPU
 * twin, whose results these match up to the f32 rounding of the dot products
 * (~1e-6 relative). Results are deterministic: no floating-point atomics.
 *
 * Work runs on the context's own stream; every function synchronises it
 * before returning (the layer functions need their results on the host), so
 * the caller's pointers may change afterwards. CUDA failures are
 * LUKV_ERR_CUDA naming the call; argument errors are those of the CPU twin.
 * A context is not safe to use from two threads at once.
 */
#ifndef LUKV_PROFILER_STATS_CUDA_H
#define LUKV_PROFILER_STATS_CUDA_H

#include "formats.h"
#include "stats.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch (device buffers that only grow, a stream, a cuBLAS handle) reused
 * across layers and samples, on the device current at creation. */
typedef struct lukv_stats_cuda lukv_stats_cuda;

int lukv_stats_cuda_create(lukv_stats_cuda **out, lukv_error *err);
void lukv_stats_cuda_destroy(lukv_stats_cuda *c); /* NULL: no-op */

/* vnorm_dev: device [Hq, T_ctx]. Uses v, and o_gram if set, else o_proj. */
int lukv_stats_cuda_vnorm(lukv_stats_cuda *c, const lukv_layer_view *x, float *vnorm_dev,
                          lukv_error *err);

/* The Gram matrices W_Oqᵀ W_Oq of x's o_proj (lukv_stats_gram's [Hq, d, d]),
 * computed into c's slot `slot` (>= 0; a profile run uses the layer index)
 * and returned in *gram_dev: device memory owned by c, valid until c is
 * destroyed or the slot is computed again. Put it in the o_gram of every
 * later view of that layer: the value norms are then the same bit for bit,
 * without the Hq·D·d² multiply-adds per call. Uses o_proj. */
int lukv_stats_cuda_gram(lukv_stats_cuda *c, int slot, const lukv_layer_view *x,
                         const float **gram_dev, lukv_error *err);

/* vnorm_dev: device [Hq, T_ctx] (from lukv_stats_cuda_vnorm); u_dev: device
 * [Hkv, T_ctx]. Uses q, k, lse; F >= 1. */
int lukv_stats_cuda_utility(lukv_stats_cuda *c, const lukv_layer_view *x, const float *vnorm_dev,
                            lukv_utility_mode mode, float *u_dev, lukv_error *err);

/* score_dev: device [Hkv, T_ctx]. */
int lukv_score_cuda_snapkv(lukv_stats_cuda *c, const lukv_layer_view *x, int window,
                           int pool_kernel, float *score_dev, lukv_error *err);
int lukv_score_cuda_keydiff(lukv_stats_cuda *c, const lukv_layer_view *x, float *score_dev,
                            lukv_error *err);

/* The loss curves of n_heads heads at once, unguarded (as lukv_stats_curve):
 * u_dev device [n_heads, T_ctx]; score_dev[i] device [n_heads, T_ctx] for
 * i < n_scores (n_scores >= 0). curves: HOST [(1 + n_scores) · n_heads, G+1]:
 * block 0 the oracle (ranked by u itself), block 1 + i scorer i; row h of a
 * block is head h. Each row equals lukv_stats_curve on that head's rows,
 * bit for bit. */
int lukv_stats_cuda_curves(lukv_stats_cuda *c, const float *u_dev, int n_scores,
                           const float *const *score_dev, int n_heads, int T_ctx, int sink,
                           int window, int grid, float *curves, lukv_error *err);

/* Which kernel did the last column reduction (utility or snapkv) of c: 1
 * the tensor-core one (q and k held bf16 values, head dim a multiple of 16),
 * 0 the f32 one, -1 none yet or a CUDA error. Synchronises c's stream. */
int lukv_stats_cuda_last_used_tensor_cores(lukv_stats_cuda *c);

/* The value norms' kernels from now on: 0 (the default) tensor cores where
 * the head dim allows (64, 128; else cuBLAS f32), 1 cuBLAS f32 for every
 * head dim, for comparisons (bench-profile, the gpu tests). Both meet
 * lukv_stats_vnorm's 1e-5. LUKV_ERR_INVALID for another value or NULL c. */
int lukv_stats_cuda_set_vnorm_f32(lukv_stats_cuda *c, int f32_only, lukv_error *err);

/* lukv_layer_stats with a device view; the outputs are the same host arrays. */
int lukv_layer_stats_cuda(lukv_stats_cuda *c, const lukv_layer_view *x,
                          const lukv_stats_params *p, int n_scorers,
                          const lukv_scorer_id *scorers, int n_samples, int n_layers, int sample,
                          int layer, float *const *curves, float *oracle, float *utility_total,
                          lukv_error *err);

/* lukv_profile_add_layer with a device view. */
int lukv_profile_add_layer_cuda(lukv_stats_cuda *c, lukv_profile *prof, int sample, int layer,
                                const lukv_layer_view *x, lukv_error *err);

#ifdef __cplusplus
}
#endif

#endif

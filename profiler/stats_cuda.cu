/* The profiler's statistics on the GPU: the twins of attention.c, stats.c,
 * scorers.c and curves.c (see stats_cuda.h for the API, docs/profiling.md
 * "GPU path" for the design).
 *
 * Data flow of one layer (all on the context's stream, one synchronisation
 * at the end):
 *
 *   vnorm    gram[q] = W_Oqᵀ W_Oq (cuBLAS strided batch, f32) unless the view
 *            brings it (o_gram). d = 64, 128: k_gram_split (each M_q as three
 *            bf16 matrices), k_vnorm_mma: v·M_q on tensor cores and ||·|| in
 *            double per (q, j), one double partial sum per block. Other d:
 *            per chunk of context tokens vm = v · [gram of the group] (cuBLAS
 *            strided batch over KV heads), k_vnorm_rows: ||·|| in double and
 *            the partial sums. Then k_vnorm_sum: the layer sum in a fixed
 *            order, k_vnorm_scale: divide.
 *   utility  k_colreduce over the future rows → red [Hq, T_ctx] double
 *            (max or sum over rows of exp(scale·q·k − lse), per query head),
 *            k_utility_final: u[h, j] = max_q (float)(red · vnorm).
 *            When q and k hold bf16 values (what the CUDA engine's tap hands
 *            over: f32 copies of its bf16 tensors), k_colreduce_tc does the
 *            same with q·k on tensor cores (bf16 products are exact in f32).
 *            k_bf16_exact decides on the device; both kernels are launched
 *            and the one not chosen returns at once (no host round trip).
 *   snapkv   k_colreduce (sum) over the window rows → red, k_snapkv_final:
 *            max-pool per query head, mean over the group.
 *   keydiff  k_keydiff_partial (unit keys summed per chunk of 256 tokens),
 *            k_keydiff_mean (the mean direction), k_keydiff_score.
 *   curves   k_curve_keys: a 64-bit key (score descending, index ascending)
 *            per mid token and curve; cub::DeviceSegmentedRadixSort::SortKeys
 *            with one segment per (curve, head), on the score half only (the
 *            sort is stable and the keys start in index order, so ties keep
 *            the lower index first); k_curve_suffix: gather the
 *            utilities in that order, suffix sums in double from the end
 *            (sequential, the CPU's order), sampled at the grid.
 *   host     the small [(1 + n_scorers)·Hkv, G+1] curves come back and get
 *            the CPU's rounding guards (lukv_stats_guard_curve).
 */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cub/device/device_segmented_radix_sort.cuh>

#include <type_traits>

#include "mma_ptx.cuh"
#include <cuda_bf16.h>
#include <mma.h>

extern "C" {
#include "stats_internal.h"
}
#include "stats_cuda.h"

namespace {

/* ---- tiles ------------------------------------------------------------------
 * k_colreduce: a block owns CR_BJ keys of one KV head and walks the rows in
 * tiles of CR_BR, 256 threads, each a 4 x 4 sub-tile of the CR_BR x CR_BJ
 * scores (rows ty·4.., keys tx·4..). Q and K tiles live transposed in shared
 * memory ([e][row] / [e][key], row stride CR_PAD floats, a multiple of 4 so
 * that a thread reads its 4 rows / 4 keys as one float4). */
const int CR_BJ = 64, CR_BR = 64, CR_PAD = 68, CR_THREADS = 256;
/* Largest head dim k_colreduce takes (its shared memory grows with d). */
const int MAX_HEAD_DIM = 256;
/* Floats of the vm chunk [Hq, chunk, d]: 64 MiB whatever T is. */
const size_t VM_FLOATS = (size_t)1 << 24;
/* Tokens per block of k_keydiff_partial; elements per chunk of k_curve_suffix. */
const int KD_CHUNK = 256, SUFFIX_CHUNK = 2048;
/* Scorer curves one call of the curves kernels takes. */
const int MAX_SCORES = 8;
/* "No bad index" in the flag arrays (cudaMemset 0xff). */
const unsigned NONE = 0xffffffffu;

int cuda_fail(lukv_error *err, const char *who, const char *call, cudaError_t e) {
  return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s failed: %s (%s)", who, call, cudaGetErrorString(e),
                        cudaGetErrorName(e));
}

int blas_fail(lukv_error *err, const char *who, const char *call, cublasStatus_t e) {
  return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s failed: %s", who, call, cublasGetStatusString(e));
}

#define CU(call)                                                      \
  do {                                                                \
    cudaError_t e_ = (call);                                          \
    if (e_ != cudaSuccess) return cuda_fail(err, who, #call, e_);     \
  } while (0)
#define LAUNCHED(name)                                                \
  do {                                                                \
    cudaError_t e_ = cudaGetLastError();                              \
    if (e_ != cudaSuccess) return cuda_fail(err, who, name, e_);      \
  } while (0)
#define BLAS(call)                                                             \
  do {                                                                         \
    cublasStatus_t e_ = (call);                                                \
    if (e_ != CUBLAS_STATUS_SUCCESS) return blas_fail(err, who, #call, e_);    \
  } while (0)

/* ---- device helpers ---------------------------------------------------------- */

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* The CPU's max that keeps a NaN visible: `if (a > m || a != a) m = a`. */
__device__ __forceinline__ double max_nan(double m, double a) { return (a > m || a != a) ? a : m; }
__device__ __forceinline__ float max_nan(float m, float a) { return (a > m || a != a) ? a : m; }

/* ---- vnorm ---------------------------------------------------------------------
 * One warp per (q, j) of the chunk [j0, j0 + nc): ||W_Oq v_j||² = v_jᵀ M_q v_j
 * = Σ_c vm[c]·v_j[c] in double (the CPU's formula; only the order of that sum
 * differs). Writes the f32 norm and one double partial sum per block (its 8
 * pairs in order) at partial[blockIdx.x]. */
__global__ void __launch_bounds__(256) k_vnorm_rows(const float *__restrict__ vm, const float *__restrict__ v,
                                                    int nc, int j0, int T_ctx, int Hq, int Hkv, int d,
                                                    float *__restrict__ vn, double *__restrict__ partial) {
  __shared__ double wsum[8];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int group = Hq / Hkv;
  const long long pair = (long long)blockIdx.x * 8 + w;
  double n = 0.0;
  if (pair < (long long)Hq * nc) {
    const int q = (int)(pair / nc), jj = (int)(pair - (long long)q * nc);
    const int h = q / group, qq = q - h * group;
    const float *a = vm + ((size_t)h * nc + jj) * (size_t)group * d + (size_t)qq * d;
    const float *vj = v + ((size_t)(j0 + jj) * Hkv + h) * d;
    double n2 = 0.0;
    for (int c = lane; c < d; c += 32) n2 += (double)a[c] * (double)vj[c];
    n2 = warp_sum(n2);
    /* M is PSD: only rounding makes n2 negative; a NaN passes through. */
    n = n2 < 0.0 ? 0.0 : sqrt(n2);
    if (lane == 0) vn[(size_t)q * T_ctx + j0 + jj] = (float)n;
  }
  if (lane == 0) wsum[w] = n;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < 8; i++) s += wsum[i];
    partial[blockIdx.x] = s;
  }
}

/* One block: sum of partial[0, n) in a fixed order (strided per thread, then
 * a tree), so the layer sum is the same on every run. */
__global__ void __launch_bounds__(256) k_vnorm_sum(const double *__restrict__ partial, long long n,
                                                   double *__restrict__ sum) {
  __shared__ double buf[256];
  double s = 0.0;
  for (long long i = threadIdx.x; i < n; i += 256) s += partial[i];
  buf[threadIdx.x] = s;
  __syncthreads();
  for (int o = 128; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) buf[threadIdx.x] += buf[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *sum = buf[0];
}

/* vn /= sum, as the CPU: (float)((double)vn / sum), only when sum > 0. */
__global__ void k_vnorm_scale(float *__restrict__ vn, size_t n, const double *__restrict__ sum) {
  const double s = *sum;
  if (!(s > 0.0)) return;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    vn[i] = (float)((double)vn[i] / s);
}

/* ---- attention columns ----------------------------------------------------------
 * For KV head h = blockIdx.y, keys j ∈ [j0, j0 + CR_BJ) with j0 = blockIdx.x ·
 * CR_BJ, every query head qh of the group and rows i ∈ [r0, r1):
 *   out[qh, j] = Σ_i (USE_MAX: max_i) A[qh, i, j],  A = exp(scale·q_i·k_j − lse[qh, i])
 * over the rows with j <= i (0 when none), as lukv_attn_reduce_columns:
 * q·k in f32 (one FMA chain over the head dim), then (float)(s·scale) − lse
 * (no contraction, the CPU's sgemm scales its f32 result), expf, and the
 * reduction in double. T: rows of the view (lse row stride); n_keys: T_ctx.
 * The K tile stays in shared memory for the whole group. */
template <bool USE_MAX>
__global__ void __launch_bounds__(256) k_colreduce(const float *__restrict__ q, const float *__restrict__ k,
                                                   const float *__restrict__ lse, int T, int n_keys, int Hq,
                                                   int Hkv, int d, float scale, int r0, int r1,
                                                   const unsigned *__restrict__ not_bf16,
                                                   double *__restrict__ out) {
  if (!*not_bf16) return; /* uniform: k_colreduce_tc does this launch's work */
  extern __shared__ float4 smem4[];
  float *Ks = reinterpret_cast<float *>(smem4);      /* [d][CR_PAD] */
  float *Qs = Ks + (size_t)d * CR_PAD;               /* [d][CR_PAD]; reused as Rs */
  double *Rs = reinterpret_cast<double *>(Qs);       /* [16][CR_BJ] cross-row partials */
  const int qs_floats = d * CR_PAD > 2 * 16 * CR_BJ ? d * CR_PAD : 2 * 16 * CR_BJ;
  float *Ls = Qs + qs_floats;                        /* [CR_BR] lse of the tile's rows */

  const int h = blockIdx.y, j0 = blockIdx.x * CR_BJ, group = Hq / Hkv;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;

  for (int idx = tid; idx < CR_BJ * d; idx += CR_THREADS) {
    const int c = idx / d, e = idx - c * d, j = j0 + c;
    Ks[e * CR_PAD + c] = j < n_keys ? k[((size_t)j * Hkv + h) * d + e] : 0.0f;
  }

  for (int qh = h * group; qh < (h + 1) * group; qh++) {
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    const float *lq = lse + (size_t)qh * T;
    for (int i0 = r0; i0 < r1; i0 += CR_BR) {
      const int i_end = i0 + CR_BR < r1 ? i0 + CR_BR : r1;
      /* Causality: no row of this tile sees a key of this block. Uniform
       * over the block, so skipping the barriers below is safe. */
      if (i_end - 1 < j0) continue;
      __syncthreads(); /* the previous tile's (or group member's) reads of Qs/Rs are done */
      for (int idx = tid; idx < CR_BR * d; idx += CR_THREADS) {
        const int r = idx / d, e = idx - r * d, i = i0 + r;
        Qs[e * CR_PAD + r] = i < i_end ? q[((size_t)i * Hq + qh) * d + e] : 0.0f;
      }
      if (tid < CR_BR) Ls[tid] = i0 + tid < i_end ? lq[i0 + tid] : 0.0f;
      __syncthreads(); /* Ks (first time), Qs and Ls are written */

      float s[4][4];
#pragma unroll
      for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) s[a][b] = 0.0f;
#pragma unroll 4
      for (int e = 0; e < d; e++) {
        const float4 qa = *reinterpret_cast<const float4 *>(&Qs[e * CR_PAD + ty * 4]);
        const float4 kb = *reinterpret_cast<const float4 *>(&Ks[e * CR_PAD + tx * 4]);
        const float qv[4] = {qa.x, qa.y, qa.z, qa.w}, kv[4] = {kb.x, kb.y, kb.z, kb.w};
#pragma unroll
        for (int a = 0; a < 4; a++)
#pragma unroll
          for (int b = 0; b < 4; b++) s[a][b] = fmaf(qv[a], kv[b], s[a][b]);
      }
#pragma unroll
      for (int a = 0; a < 4; a++) {
        const int i = i0 + ty * 4 + a;
        if (i >= i_end) continue;
        const float l = Ls[ty * 4 + a];
#pragma unroll
        for (int b = 0; b < 4; b++) {
          const int j = j0 + tx * 4 + b;
          if (j > i || j >= n_keys) continue;
          const double p = (double)expf(__fsub_rn(__fmul_rn(s[a][b], scale), l));
          if (USE_MAX)
            acc[b] = max_nan(acc[b], p);
          else
            acc[b] += p;
        }
      }
    }
    /* Reduce the 16 row groups of each key in a fixed order. */
    __syncthreads(); /* every read of Qs (aliased by Rs) is done */
#pragma unroll
    for (int b = 0; b < 4; b++) Rs[ty * CR_BJ + tx * 4 + b] = acc[b];
    __syncthreads();
    if (tid < CR_BJ) {
      double r = Rs[tid];
      for (int t = 1; t < 16; t++) {
        const double v = Rs[t * CR_BJ + tid];
        if (USE_MAX)
          r = max_nan(r, v);
        else
          r += v;
      }
      const int j = j0 + tid;
      if (j < n_keys) out[(size_t)qh * n_keys + j] = r;
    }
  }
}

/* ---- the tensor-core column reduction ------------------------------------------------
 * k_colreduce for q and k that are bf16 values stored as f32: the same
 * output, with q·k as bf16 x bf16 -> f32 wmma tiles (the products are exact;
 * only the order of the f32 sum over the head dim differs from the FMA
 * chain). Block: 64 keys of KV head blockIdx.y, 4 warps; per query head of
 * the group and tile of 64 rows, warp w computes S rows 16w.. for the 64
 * keys into shared memory, then thread t takes key column t % 64 over row
 * half t / 64 and reduces exp((float)(s·scale) − lse) in double, exactly as
 * k_colreduce. The two halves meet in shared memory at the end. Launched
 * only for head dims that are multiples of 16; returns at once when
 * *not_bf16 (then k_colreduce runs). */
namespace wm = nvcuda::wmma;
typedef __nv_bfloat16 bf16_t;
const int TC_BJ = 64, TC_BR = 64, TC_THREADS = 128, TC_SLD = TC_BJ + 4;

struct TcLayout {
  size_t k, q, s, l, r, total;
};

__host__ __device__ inline size_t tc_round(size_t b) { return (b + 127) / 128 * 128; }

__host__ __device__ inline TcLayout tc_layout(int d) {
  TcLayout L;
  const size_t tile = tc_round((size_t)64 * (d + 8) * sizeof(bf16_t));
  L.k = 0;
  L.q = tile;
  L.s = 2 * tile;
  L.l = L.s + tc_round((size_t)TC_BR * TC_SLD * sizeof(float));
  L.r = L.l + tc_round((size_t)TC_BR * sizeof(float));
  L.total = L.r + (size_t)2 * TC_BJ * sizeof(double);
  return L;
}

template <bool USE_MAX>
__global__ void __launch_bounds__(TC_THREADS) k_colreduce_tc(const float *__restrict__ q, const float *__restrict__ k,
                                                          const float *__restrict__ lse, int T, int n_keys, int Hq,
                                                          int Hkv, int d, float scale, int r0, int r1,
                                                          const unsigned *__restrict__ not_bf16,
                                                          double *__restrict__ out) {
  if (*not_bf16) return; /* uniform: k_colreduce does this launch's work */
  extern __shared__ __align__(128) unsigned char smem[];
  const TcLayout L = tc_layout(d);
  bf16_t *Ks = reinterpret_cast<bf16_t *>(smem + L.k); /* [64 keys][d + 8] */
  bf16_t *Qs = reinterpret_cast<bf16_t *>(smem + L.q); /* [64 rows][d + 8] */
  float *Ss = reinterpret_cast<float *>(smem + L.s);   /* [64 rows][TC_SLD] */
  float *Ls = reinterpret_cast<float *>(smem + L.l);   /* [64] lse of the tile's rows */
  double *Rs = reinterpret_cast<double *>(smem + L.r); /* [2][64] row-half partials */
  const int ld = d + 8;
  const int h = blockIdx.y, j0 = blockIdx.x * TC_BJ, group = Hq / Hkv;
  const int tid = threadIdx.x, warp = tid >> 5, col = tid & (TC_BJ - 1), half = tid / TC_BJ;
  const int j = j0 + col;

  for (int idx = tid; idx < TC_BJ * d; idx += TC_THREADS) {
    const int c = idx / d, e = idx - c * d, jj = j0 + c;
    Ks[c * ld + e] = __float2bfloat16(jj < n_keys ? k[((size_t)jj * Hkv + h) * d + e] : 0.0f);
  }

  for (int qh = h * group; qh < (h + 1) * group; qh++) {
    double acc = 0.0;
    const float *lq = lse + (size_t)qh * T;
    for (int i0 = r0; i0 < r1; i0 += TC_BR) {
      const int i_end = i0 + TC_BR < r1 ? i0 + TC_BR : r1;
      if (i_end - 1 < j0) continue; /* causality, block-uniform: no row sees a key of the block */
      __syncthreads();              /* the previous tile's reads of Qs and Ss are done */
      for (int idx = tid; idx < TC_BR * d; idx += TC_THREADS) {
        const int r = idx / d, e = idx - r * d, i = i0 + r;
        Qs[r * ld + e] = __float2bfloat16(i < i_end ? q[((size_t)i * Hq + qh) * d + e] : 0.0f);
      }
      if (tid < TC_BR) Ls[tid] = i0 + tid < i_end ? lq[i0 + tid] : 0.0f;
      __syncthreads(); /* Ks (first time), Qs and Ls are written */
      for (int n = 0; n < TC_BJ / 16; n++) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> sacc;
        wm::fill_fragment(sacc, 0.0f);
        for (int kk = 0; kk < d; kk += 16) {
          wm::fragment<wm::matrix_a, 16, 16, 16, bf16_t, wm::row_major> a;
          wm::fragment<wm::matrix_b, 16, 16, 16, bf16_t, wm::col_major> b; /* Kᵀ: K read column-major */
          wm::load_matrix_sync(a, Qs + warp * 16 * ld + kk, ld);
          wm::load_matrix_sync(b, Ks + n * 16 * ld + kk, ld);
          wm::mma_sync(sacc, a, b, sacc);
        }
        wm::store_matrix_sync(Ss + warp * 16 * TC_SLD + n * 16, sacc, TC_SLD, wm::mem_row_major);
      }
      __syncthreads(); /* all 64 rows of S are in shared memory */
      for (int rr = 0; rr < TC_BR / 2; rr++) {
        const int r = half * (TC_BR / 2) + rr, i = i0 + r;
        if (i >= i_end) break;
        if (j > i || j >= n_keys) continue;
        const double p = (double)expf(__fsub_rn(__fmul_rn(Ss[r * TC_SLD + col], scale), Ls[r]));
        if (USE_MAX)
          acc = max_nan(acc, p);
        else
          acc += p;
      }
    }
    __syncthreads(); /* the previous query head's reads of Rs are done */
    Rs[half * TC_BJ + col] = acc;
    __syncthreads();
    if (tid < TC_BJ && j < n_keys) {
      const double a = Rs[tid], b = Rs[TC_BJ + tid];
      out[(size_t)qh * n_keys + j] = USE_MAX ? max_nan(a, b) : a + b;
    }
  }
}

/* ---- the column reduction on mma.sync (head_dim 64 and 128) ------------------------
 * k_colreduce_tc's output for d = 64 and 128 with the flash kernel's machinery
 * (common/mma_ptx.cuh): q and k first packed to bf16 copies (k_bf16_exact,
 * which also decides whether they are bf16 values at all), then a block owns
 * MR_BJ = 64 keys of KV head blockIdx.y (K in shared memory for the whole
 * launch) and streams tiles of 128 rows of every query head of the group
 * through a cp.async double buffer. Per warp (32 rows, two m-tiles) and tile:
 *   S [32, 64] = Q K^T       ldmatrix + mma.m16n8k16, f32 accumulators
 *   log2 p = s·scale·log2(e) − lse·log2(e)   one FMA (the CPU rounds
 *                            (float)(s·scale) − lse first: ~1e-7 apart)
 *   max or sum over rows     per lane in registers: for max the exponents
 *                            (exp is monotone; ex2.approx once per column at
 *                            the end), for sum ex2.approx of each, in double;
 *                            the 8 lanes of a column pair combined by shuffles
 *                            and the 4 warps through shared memory once per
 *                            query head.
 * Rows past r1 and keys after a row (j > i) count 0; keys past n_keys are
 * zeros in shared memory and never written. */
const int MR_BJ = 64, MR_WARPS = 4, MR_MT = 2, MR_BR = 16 * MR_MT * MR_WARPS;

template <int D>
__host__ __device__ inline size_t mr_smem() {
  return (size_t)(MR_BJ + 2 * MR_BR) * (D + 8) * sizeof(bf16_t) + (size_t)MR_WARPS * MR_BJ * sizeof(double);
}

template <bool USE_MAX, int D>
__global__ void __launch_bounds__(MR_WARPS * 32)
    k_colreduce_mma(const bf16_t *__restrict__ qb, const bf16_t *__restrict__ kb, const float *__restrict__ lse,
                    int T, int n_keys, int Hq, int Hkv, float scale, int r0, int r1,
                    const unsigned *__restrict__ not_bf16, double *__restrict__ out) {
  if (*not_bf16) return; /* uniform: k_colreduce does this launch's work */
  typedef typename std::conditional<USE_MAX, float, double>::type acc_t;
  constexpr int LD = D + 8, CH = D / 8, NT = MR_WARPS * 32, RW = 16 * MR_MT;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t *sK = (bf16_t *)smem;                         /* [BJ][LD] */
  bf16_t *sQ = sK + MR_BJ * LD;                        /* [2][BR][LD] */
  double *sR = (double *)(sQ + 2 * MR_BR * LD);        /* [WARPS][BJ] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.y, j0 = blockIdx.x * MR_BJ, group = Hq / Hkv;
  /* row tiles [r0 + rt BR, + BR); those before rt_first hold only rows i < j0, which see no key of the block */
  const int n_rt = (r1 - r0 + MR_BR - 1) / MR_BR;
  const int rt_first = j0 > r0 ? (j0 - r0) / MR_BR : 0;
  const int per_head = n_rt > rt_first ? n_rt - rt_first : 0, n_tiles = group * per_head;

  for (int e = threadIdx.x; e < MR_BJ * CH; e += NT) {
    const int r = e / CH, c = (e % CH) * 8, j = j0 + r;
    const bool ok = j < n_keys;
    ptx_cp_async16(sK + r * LD + c, ok ? kb + ((size_t)j * Hkv + h) * D + c : kb, ok);
  }
  auto load_q = [&](int t) {
    const int qh = h * group + t / per_head, i0 = r0 + (rt_first + t % per_head) * MR_BR;
    bf16_t *dq = sQ + (t & 1) * MR_BR * LD;
    for (int e = threadIdx.x; e < MR_BR * CH; e += NT) {
      const int r = e / CH, c = (e % CH) * 8, i = i0 + r;
      const bool ok = i < r1;
      ptx_cp_async16(dq + r * LD + c, ok ? qb + ((size_t)(i - r0) * Hq + qh) * D + c : qb, ok);
    }
  };
  if (n_tiles > 0) load_q(0);
  ptx_cp_async_commit();

  const int w0 = warp * RW, g = lane >> 2, qd = lane & 3;
  /* columns 8 nb + 2 qd + {0, 1} over this lane's rows: max of log2 p, or sum of p */
  acc_t acc[MR_BJ / 8][2];
#pragma unroll
  for (int nb = 0; nb < MR_BJ / 8; nb++) acc[nb][0] = acc[nb][1] = USE_MAX ? -INFINITY : 0;
  const float log2e = 1.4426950408889634f, scale_log2 = scale * log2e;

  for (int qi = 0; qi < group; qi++) {
    const int qh = h * group + qi;
    for (int rt = 0; rt < per_head; rt++) {
      const int t = qi * per_head + rt;
      cp_async_next_tile(t + 1 < n_tiles, [&] { load_q(t + 1); });
      __syncthreads();
      const int i0 = r0 + (rt_first + rt) * MR_BR, wi0 = i0 + w0;
      if (wi0 < r1 && wi0 + RW - 1 >= j0) { /* the warp has rows, and one of them sees a key of the block */
        const bf16_t *tQ = sQ + (t & 1) * MR_BR * LD + (w0 + (lane & 15)) * LD + (lane >> 4) * 8;
        float s[MR_MT][MR_BJ / 8][4];
        warp_qk<MR_MT, MR_BJ / 8, D>(s, tQ, sK, LD, lane);
        const bool causal = wi0 < j0 + MR_BJ - 1; /* some key of the block comes after some row of the warp */
#pragma unroll
        for (int mt = 0; mt < MR_MT; mt++)
#pragma unroll
          for (int hf = 0; hf < 2; hf++) {
            const int i = wi0 + mt * 16 + hf * 8 + g;
            if (i >= r1) continue;
            const float l2 = lse[(size_t)qh * T + i] * log2e;
#pragma unroll
            for (int nb = 0; nb < MR_BJ / 8; nb++)
#pragma unroll
              for (int e = 0; e < 2; e++) {
                if (causal && j0 + nb * 8 + 2 * qd + e > i) continue;
                const float x = fmaf(s[mt][nb][2 * hf + e], scale_log2, -l2); /* log2 p */
                if constexpr (USE_MAX)
                  acc[nb][e] = max_nan(acc[nb][e], x); /* exp is monotone: max the exponents, exp once */
                else
                  acc[nb][e] += (double)ptx_exp2(x);
              }
          }
      }
      __syncthreads(); /* tile t's buffer is free for tile t + 2 */
    }
    /* this query head's columns: the 8 lanes of a column pair, then the warps in order */
#pragma unroll
    for (int nb = 0; nb < MR_BJ / 8; nb++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        acc_t v = acc[nb][e];
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) {
          const acc_t w = __shfl_xor_sync(0xffffffffu, v, o);
          if constexpr (USE_MAX)
            v = max_nan(v, w);
          else
            v += w;
        }
        if constexpr (USE_MAX) {
          if (g == 0) sR[warp * MR_BJ + nb * 8 + 2 * qd + e] = (double)ptx_exp2(v); /* -inf (no row): 0 */
          acc[nb][e] = -INFINITY;
        } else {
          if (g == 0) sR[warp * MR_BJ + nb * 8 + 2 * qd + e] = v;
          acc[nb][e] = 0;
        }
      }
    __syncthreads();
    if (threadIdx.x < MR_BJ && j0 + (int)threadIdx.x < n_keys) {
      double v = sR[threadIdx.x];
      for (int w = 1; w < MR_WARPS; w++) {
        const double x = sR[w * MR_BJ + threadIdx.x];
        v = USE_MAX ? max_nan(v, x) : v + x;
      }
      out[(size_t)qh * n_keys + j0 + threadIdx.x] = v;
    }
    __syncthreads(); /* sR is read before the next head writes it */
  }
}

/* ---- value norms on tensor cores -------------------------------------------------
 * vm = v · M_q for 64 tokens at a time on mma.sync, then ||W_Oq v_j||² =
 * Σ_b vm[j, b]·v_j[b] in double, all in one kernel: the f32 path's vm (T_ctx
 * · Hq · d floats: 59 MB for the 8B shape at 4K) never goes to memory.
 * f32 accuracy from bf16 tensor cores: every f32 x is the exact sum of three
 * bf16 x0 + x1 + x2 (split3), M_q and v alike; the products that matter at
 * f32 precision, x0·y0, x0·y1, x0·y2, x1·y0, x1·y1, x2·y0, are formed exactly
 * and summed in the f32 accumulators (those left out are below 2^-24·|x||y|,
 * as an f32 product's rounding is). v from
 * the bf16 engine has x1 = x2 = 0: a block whose v tile is all bf16 values
 * does the three products with v0 only. */
const int VN_TOK = 64, VN_KC = 32, VN_WARPS = 4;

/* x = p[0] + p[1] + p[2] (bf16, each rounded to nearest even); each
 * difference is exact in f32. */
__device__ __forceinline__ void split3(float x, bf16_t p[3]) {
  p[0] = __float2bfloat16_rn(x);
  const float r1 = x - __bfloat162float(p[0]);
  p[1] = __float2bfloat16_rn(r1);
  p[2] = __float2bfloat16_rn(r1 - __bfloat162float(p[1]));
}

/* parts [3][Hq][d (b)][d (a)]: the split of gram[q][a][b] (stats.h's o_gram
 * layout), stored with b as the row so that an ldmatrix of rows b gives the
 * B fragment of vm[j, b] = Σ_a v[j, a]·M(a, b). */
__global__ void k_gram_split(const float *__restrict__ gram, int Hq, int d, bf16_t *__restrict__ parts) {
  const size_t dd = (size_t)d * d, n = (size_t)Hq * dd;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t q = i / dd;
    const int rem = (int)(i - q * dd), b = rem / d, a = rem % d;
    bf16_t p[3];
    split3(gram[q * dd + (size_t)a * d + b], p);
    parts[i] = p[0], parts[n + i] = p[1], parts[2 * n + i] = p[2];
  }
}

template <int D>
__host__ __device__ inline size_t vn_smem() {
  return (size_t)(3 * VN_TOK * (D + 8) + 2 * 3 * D * (VN_KC + 8)) * sizeof(bf16_t);
}

/* Grid (ceil(T_ctx / 64), Hkv), 4 warps of 16 tokens. For every query head
 * of KV head h's group: M_q's parts stream through shared memory in chunks
 * of 32 input dims (a cp.async double buffer), each warp accumulates its
 * [16 tokens, D] block of vm in registers, then the quadratic form in
 * double. Writes vn (not yet normalised) and one double partial sum per
 * block (its group's norms in a fixed order) at partial[y · gridDim.x + x]. */
template <int D>
__global__ void __launch_bounds__(VN_WARPS * 32)
    k_vnorm_mma(const float *__restrict__ v, const bf16_t *__restrict__ mparts, int T_ctx, int Hq, int Hkv,
                float *__restrict__ vn, double *__restrict__ partial) {
  constexpr int LDV = D + 8, LDM = VN_KC + 8, NT = D / 8, NKC = D / VN_KC, SEGS = VN_KC / 8;
  constexpr int NTH = VN_WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t *sV = (bf16_t *)smem;                  /* [3][TOK][LDV]: v's parts */
  bf16_t *sM = sV + 3 * VN_TOK * LDV;           /* [2][3][D][LDM]: chunks of M's parts */
  __shared__ double wsum[VN_WARPS];
  __shared__ int resid;
  const int h = blockIdx.y, j0 = blockIdx.x * VN_TOK, group = Hq / Hkv, nchunks = group * NKC;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, qd = lane & 3;
  const size_t npart = (size_t)Hq * D * D;
  /* chunk c: query head h·group + c / NKC, input dims [(c % NKC)·KC, + KC) */
  auto load_chunk = [&](int c) {
    const size_t q = (size_t)h * group + c / NKC;
    const int a0 = (c % NKC) * VN_KC;
    bf16_t *dst = sM + (size_t)(c & 1) * 3 * D * LDM;
    for (int e = tid; e < 3 * D * SEGS; e += NTH) {
      const int p = e / (D * SEGS), rem = e - p * D * SEGS, b = rem / SEGS, s = rem % SEGS;
      ptx_cp_async16(dst + ((size_t)p * D + b) * LDM + s * 8,
                     mparts + p * npart + (q * D + b) * D + a0 + s * 8, true);
    }
  };
  load_chunk(0);
  ptx_cp_async_commit();
  if (tid == 0) resid = 0;
  __syncthreads();
  /* v's tile, split while chunk 0 arrives; rows past T_ctx are zeros */
  bool mine = false;
  for (int e = tid; e < VN_TOK * (D / 4); e += NTH) {
    const int r = e / (D / 4), c = (e % (D / 4)) * 4, j = j0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (j < T_ctx) x = *(const float4 *)(v + ((size_t)j * Hkv + h) * D + c);
    const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      bf16_t p[3];
      split3(xs[i], p);
      mine |= __bfloat162float(p[1]) != 0.0f || __bfloat162float(p[2]) != 0.0f;
#pragma unroll
      for (int k = 0; k < 3; k++) sV[((size_t)k * VN_TOK + r) * LDV + c + i] = p[k];
    }
  }
  if (mine) resid = 1; /* benign: every writer writes 1 */
  __syncthreads();
  const int nv = resid ? 3 : 1; /* v parts in play: block-uniform */

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  double nsum = 0.0;
  const bf16_t *aV = sV + (size_t)(warp * 16 + (lane & 15)) * LDV + (lane >> 4) * 8;
  for (int c = 0; c < nchunks; c++) {
    cp_async_next_tile(c + 1 < nchunks, [&] { load_chunk(c + 1); });
    __syncthreads();
    const int kc = c % NKC;
    const bf16_t *bM = sM + (size_t)(c & 1) * 3 * D * LDM + (size_t)(lane & 7) * LDM + (lane >> 3) * 8;
    uint32_t a[3][2][4];
#pragma unroll
    for (int p = 0; p < 3; p++)
      if (p < nv) {
        ptx_ldmatrix_x4(a[p][0], aV + (size_t)p * VN_TOK * LDV + kc * VN_KC);
        ptx_ldmatrix_x4(a[p][1], aV + (size_t)p * VN_TOK * LDV + kc * VN_KC + 16);
      }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      uint32_t b[3][4];
#pragma unroll
      for (int p = 0; p < 3; p++) ptx_ldmatrix_x4(b[p], bM + ((size_t)p * D + nt * 8) * LDM);
      /* v0·(M0 + M1 + M2), then v1·(M0 + M1) and v2·M0 when v has them */
#pragma unroll
      for (int p = 0; p < 3; p++) {
        ptx_mma_bf16_16816(acc[nt], a[0][0], b[p][0], b[p][1]);
        ptx_mma_bf16_16816(acc[nt], a[0][1], b[p][2], b[p][3]);
      }
      if (nv > 1) {
#pragma unroll
        for (int p = 0; p < 2; p++) {
          ptx_mma_bf16_16816(acc[nt], a[1][0], b[p][0], b[p][1]);
          ptx_mma_bf16_16816(acc[nt], a[1][1], b[p][2], b[p][3]);
        }
        ptx_mma_bf16_16816(acc[nt], a[2][0], b[0][0], b[0][1]);
        ptx_mma_bf16_16816(acc[nt], a[2][1], b[0][2], b[0][3]);
      }
    }
    if (kc == NKC - 1) { /* query head c / NKC is complete: its norms */
      const int qh = h * group + c / NKC;
      double n2[2] = {0.0, 0.0};
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        const int j = j0 + warp * 16 + hf * 8 + g;
        if (j < T_ctx) {
          const float *vr = v + ((size_t)j * Hkv + h) * D + 2 * qd;
#pragma unroll
          for (int nt = 0; nt < NT; nt++) {
            const float2 x = *(const float2 *)(vr + nt * 8);
            n2[hf] += (double)acc[nt][2 * hf] * (double)x.x;
            n2[hf] += (double)acc[nt][2 * hf + 1] * (double)x.y;
          }
        }
      }
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        n2[hf] += __shfl_xor_sync(0xffffffffu, n2[hf], 1);
        n2[hf] += __shfl_xor_sync(0xffffffffu, n2[hf], 2);
        const int j = j0 + warp * 16 + hf * 8 + g;
        if (qd == 0 && j < T_ctx) {
          /* M is PSD: only rounding makes n2 negative; a NaN passes through. */
          const double n = n2[hf] < 0.0 ? 0.0 : sqrt(n2[hf]);
          vn[(size_t)qh * T_ctx + j] = (float)n;
          nsum += n;
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    }
    __syncthreads(); /* chunk c's buffer is free for chunk c + 2 */
  }
  nsum = warp_sum(nsum);
  if (lane == 0) wsum[warp] = nsum;
  __syncthreads();
  if (tid == 0) {
    double s = 0.0;
    for (int w = 0; w < VN_WARPS; w++) s += wsum[w];
    partial[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = s;
  }
}

/* *flag |= some element of p[0, n) is not a bf16 value (low 16 bits set);
 * with dst, also dst = the high half of each (its bf16 when it is one: the
 * copies k_colreduce_mma reads). */
__global__ void k_bf16_exact(const float *__restrict__ p, size_t n, uint16_t *__restrict__ dst,
                             unsigned *__restrict__ flag) {
  unsigned any = 0;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const unsigned u = __float_as_uint(p[i]);
    any |= u & 0xffffu;
    if (dst) dst[i] = (uint16_t)(u >> 16);
  }
  if (any) atomicOr(flag, 1u);
}

/* u[h, j] = max over the group of (float)(red[q, j] · vnorm[q, j]) (0 start,
 * NaN sticks), and the smallest bad j (non-finite or < 0) of head h in bad[h]. */
__global__ void k_utility_final(const double *__restrict__ red, const float *__restrict__ vn, int T_ctx, int Hq,
                                int Hkv, float *__restrict__ u, unsigned *__restrict__ bad) {
  const int h = blockIdx.y, group = Hq / Hkv;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= T_ctx) return;
  float m = 0.0f;
  for (int q = h * group; q < (h + 1) * group; q++) {
    const size_t o = (size_t)q * T_ctx + j;
    const float val = (float)(red[o] * (double)vn[o]);
    if (val > m || val != val) m = val;
  }
  u[(size_t)h * T_ctx + j] = m;
  if (!isfinite(m) || m < 0.0f) atomicMin(&bad[h], (unsigned)j);
}

/* score[h, j] = (1/group) Σ_q max_{|t−j| <= radius, 0 <= t < T_ctx} red[q, t],
 * in double, in the CPU's order. */
__global__ void k_snapkv_final(const double *__restrict__ red, int T_ctx, int Hq, int Hkv, int radius,
                               float *__restrict__ score) {
  const int h = blockIdx.y, group = Hq / Hkv;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= T_ctx) return;
  const int lo = j - radius < 0 ? 0 : j - radius;
  const int hi = j + radius > T_ctx - 1 ? T_ctx - 1 : j + radius;
  double acc = 0.0;
  for (int q = h * group; q < (h + 1) * group; q++) {
    const double *a = red + (size_t)q * T_ctx;
    double m = a[lo];
    for (int i = lo + 1; i <= hi; i++) m = max_nan(m, a[i]);
    acc += m;
  }
  score[(size_t)h * T_ctx + j] = (float)(acc / group);
}

/* ---- keydiff -------------------------------------------------------------------- */

/* part[h, chunk, c] = Σ_{j in chunk} k_j[c] / ||k_j|| (0 for a zero key), double. */
__global__ void __launch_bounds__(256) k_keydiff_partial(const float *__restrict__ k, int T_ctx, int Hkv, int d,
                                                         double *__restrict__ part) {
  __shared__ double inv_s[KD_CHUNK];
  const int h = blockIdx.y, ch = blockIdx.x, nch = gridDim.x;
  const int j0 = ch * KD_CHUNK, nj = T_ctx - j0 < KD_CHUNK ? T_ctx - j0 : KD_CHUNK;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  for (int r = w; r < nj; r += 8) {
    const float *kj = k + ((size_t)(j0 + r) * Hkv + h) * d;
    double n2 = 0.0;
    for (int c = lane; c < d; c += 32) n2 += (double)kj[c] * kj[c];
    n2 = warp_sum(n2);
    if (lane == 0) inv_s[r] = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    double s = 0.0;
    for (int r = 0; r < nj; r++) s += (double)k[((size_t)(j0 + r) * Hkv + h) * d + c] * inv_s[r];
    part[((size_t)h * nch + ch) * d + c] = s;
  }
}

/* mean[h, c] = Σ_chunks part / T_ctx; inv_m[h] = 1/||mean|| (0 when 0). */
__global__ void __launch_bounds__(256) k_keydiff_mean(const double *__restrict__ part, int nch, int T_ctx, int d,
                                                      double *__restrict__ mean, double *__restrict__ inv_m) {
  extern __shared__ double m_s[]; /* [d] */
  const int h = blockIdx.x;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    double s = 0.0;
    for (int ch = 0; ch < nch; ch++) s += part[((size_t)h * nch + ch) * d + c];
    s /= T_ctx;
    mean[(size_t)h * d + c] = s;
    m_s[c] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double mn2 = 0.0;
    for (int c = 0; c < d; c++) mn2 += m_s[c] * m_s[c];
    inv_m[h] = mn2 > 0.0 ? 1.0 / sqrt(mn2) : 0.0;
  }
}

/* score[h, j] = (float)(−(k_j · mean) · (1/||k_j||) · inv_m), one warp per key. */
__global__ void __launch_bounds__(256) k_keydiff_score(const float *__restrict__ k, int T_ctx, int Hkv, int d,
                                                       const double *__restrict__ mean,
                                                       const double *__restrict__ inv_m, float *__restrict__ score) {
  const int h = blockIdx.y, lane = threadIdx.x & 31;
  const int j = blockIdx.x * 8 + (threadIdx.x >> 5);
  if (j >= T_ctx) return; /* whole warps leave together */
  const float *kj = k + ((size_t)j * Hkv + h) * d;
  const double *m = mean + (size_t)h * d;
  double n2 = 0.0, dot = 0.0;
  for (int c = lane; c < d; c += 32) {
    n2 += (double)kj[c] * kj[c];
    dot += (double)kj[c] * m[c];
  }
  n2 = warp_sum(n2);
  dot = warp_sum(dot);
  if (lane == 0) {
    const double inv = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
    score[(size_t)h * T_ctx + j] = (float)(-dot * inv * inv_m[h]);
  }
}

/* ---- curves --------------------------------------------------------------------- */

struct score_ptrs {
  const float *p[MAX_SCORES];
};

/* Ascending order of the 64-bit keys = score descending, then token index
 * ascending: the CPU's rank_cmp. The high word maps floats to unsigned
 * integers in order (negative: all bits flipped; positive: sign bit set) and
 * flips that for descending; −0 is made +0 first, because the CPU's `<`/`>`
 * call them equal (a tie). */
__device__ __forceinline__ unsigned long long rank_key(float sc, int j) {
  const float f = sc == 0.0f ? 0.0f : sc;
  const unsigned b = __float_as_uint(f);
  const unsigned ord = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return ((unsigned long long)(~ord) << 32) | (unsigned)j;
}

/* Segment seg = slot · H + h (slot 0: the oracle, ranked by u; slot 1 + i:
 * scores.p[i]) holds the n_mid mid tokens j = sink + r of head h. bad[seg]:
 * the smallest j whose utility is not finite or < 0, or whose score is NaN
 * (what lukv_stats_curve refuses). */
__global__ void k_curve_keys(const float *__restrict__ u, score_ptrs scores, int H, int T_ctx, int sink, int n_mid,
                             unsigned long long *__restrict__ keys, unsigned *__restrict__ bad) {
  const int seg = blockIdx.y, slot = seg / H, h = seg - slot * H;
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_mid) return;
  const int j = sink + r;
  const float uv = u[(size_t)h * T_ctx + j];
  const float sc = slot == 0 ? uv : scores.p[slot - 1][(size_t)h * T_ctx + j];
  if (!isfinite(uv) || uv < 0.0f || sc != sc) atomicMin(&bad[seg], (unsigned)j);
  keys[(size_t)seg * n_mid + r] = rank_key(sc, j);
}

/* One block per segment: loss(m) = Σ utility of ranks m.. accumulated by one
 * thread in double from the end of the ranking, exactly the CPU's suffix
 * loop. The sum is a chain of dependent double adds, so it runs as fast as
 * that chain can: warp 0's lane 0 adds a chunk from shared memory, eight
 * loads ahead of the adds between grid points, while warps 1.. gather the
 * next chunk of utilities (in rank order) into the other buffer.
 * curve[seg, g] = (float)loss(mg[g]); mg is non-decreasing with mg[0] = 0
 * and mg[G] = n_mid. Needs blockDim.x >= 64. */
__global__ void __launch_bounds__(256) k_curve_suffix(const unsigned long long *__restrict__ keys,
                                                      const float *__restrict__ u, int H, int T_ctx, int n_mid,
                                                      const int *__restrict__ mg, int G,
                                                      float *__restrict__ curves) {
  __shared__ double buf[2][SUFFIX_CHUNK];
  const int seg = blockIdx.x, h = seg % H;
  const unsigned long long *ks = keys + (size_t)seg * n_mid;
  const float *uh = u + (size_t)h * T_ctx;
  float *out = curves + (size_t)seg * (G + 1);
  const int n_chunks = (n_mid + SUFFIX_CHUNK - 1) / SUFFIX_CHUNK;
  /* Chunk c holds ranks [max(0, n_mid - (c + 1)·CHUNK), n_mid - c·CHUNK):
   * chunk 0 is the end of the ranking, summed first. */
  /* buf[ch & 1][r - c0] = utility of rank r for chunk ch's ranks [c0, c1),
   * gathered by threads t, t + stride, ... */
  auto gather = [&](int ch, int t, int stride) {
    const int c1 = n_mid - ch * SUFFIX_CHUNK, c0 = c1 - SUFFIX_CHUNK > 0 ? c1 - SUFFIX_CHUNK : 0;
    for (int r = c0 + t; r < c1; r += stride) buf[ch & 1][r - c0] = (double)uh[(unsigned)(ks[r] & 0xffffffffull)];
  };
  gather(0, (int)threadIdx.x, (int)blockDim.x);
  /* thread 0's state */
  double acc = 0.0;
  int gi = G, next = -1;
  if (threadIdx.x == 0) {
    while (gi >= 0 && mg[gi] == n_mid) out[gi--] = 0.0f; /* loss(n_mid) = 0 */
    next = gi >= 0 ? mg[gi] : -1;
  }
  __syncthreads();
  for (int ch = 0; ch < n_chunks; ch++) {
    const int c1 = n_mid - ch * SUFFIX_CHUNK, c0 = c1 - SUFFIX_CHUNK > 0 ? c1 - SUFFIX_CHUNK : 0;
    if (threadIdx.x >= 32 && ch + 1 < n_chunks) gather(ch + 1, (int)threadIdx.x - 32, (int)blockDim.x - 32);
    if (threadIdx.x == 0) {
      const double *cb = buf[ch & 1] - c0; /* cb[r] for r in [c0, c1) */
      int r = c1 - 1;
      while (r >= c0) {
        /* Add ranks r down to stop (inclusive) in order; acc = loss(stop). */
        const int stop = next >= c0 ? next : c0;
        int n = r - stop + 1;
        const double *p = cb + r;
        for (; n >= 8; n -= 8, p -= 8) {
          const double x0 = p[0], x1 = p[-1], x2 = p[-2], x3 = p[-3], x4 = p[-4], x5 = p[-5], x6 = p[-6],
                       x7 = p[-7];
          acc += x0;
          acc += x1;
          acc += x2;
          acc += x3;
          acc += x4;
          acc += x5;
          acc += x6;
          acc += x7;
        }
        for (; n > 0; n--, p--) acc += *p;
        while (next == stop) {
          out[gi--] = (float)acc;
          next = gi >= 0 ? mg[gi] : -1;
        }
        r = stop - 1;
      }
    }
    __syncthreads(); /* thread 0 is done with this buffer; the next one is full */
  }
}

/* ---- the context ------------------------------------------------------------------ */

struct dbuf {
  void *p;
  size_t bytes;
};

} /* namespace */

struct lukv_stats_cuda {
  int device;
  size_t smem_optin; /* largest dynamic shared memory a block may opt in to */
  cudaStream_t st;
  cublasHandle_t blas;
  /* device scratch */
  dbuf gram, gparts, vm, partial, dsum, red, kd_part, kd_mean, kd_inv, keys_in, keys_out, offs, cub_tmp, mg, curves_d,
      flags, vn, u, score, not_bf16, q_bf16, k_bf16;
  /* host scratch */
  float *curves_h;
  size_t curves_h_bytes;
  int *mg_h, *offs_h;
  size_t mg_h_n, offs_h_n;
  /* the shape {nseg, n_mid, G, T_ctx, sink, window} whose offsets and grid
   * counts offs and mg hold on the device; nseg 0 (never a real one): none */
  int curve_shape[6];
  int vnorm_f32_only; /* lukv_stats_cuda_set_vnorm_f32 */
  /* lukv_stats_cuda_gram's slots: [n_grams] device [Hq, d, d] each */
  dbuf *grams;
  int n_grams;
};

namespace {

typedef lukv_stats_cuda ctx_t;

int ensure(ctx_t *c, dbuf *b, size_t bytes, const char *who, lukv_error *err) {
  if (bytes <= b->bytes) return LUKV_OK;
  if (b->p) {
    /* No queued kernel may still read the old buffer. */
    cudaError_t e = cudaStreamSynchronize(c->st);
    if (e == cudaSuccess) e = cudaFree(b->p);
    b->p = NULL;
    b->bytes = 0;
    if (e != cudaSuccess) return cuda_fail(err, who, "cudaFree", e);
  }
  size_t want = bytes + bytes / 4; /* headroom: growing contexts allocate rarely */
  cudaError_t e = cudaMalloc(&b->p, want);
  if (e != cudaSuccess) {
    b->p = NULL;
    return lukv_error_set(err, e == cudaErrorMemoryAllocation ? LUKV_ERR_NOMEM : LUKV_ERR_CUDA,
                          "%s: cudaMalloc of %zu bytes of scratch failed: %s", who, want, cudaGetErrorString(e));
  }
  b->bytes = want;
  return LUKV_OK;
}

int ensure_host(void **p, size_t *have, size_t bytes, const char *who, lukv_error *err) {
  if (bytes <= *have) return LUKV_OK;
  void *n = realloc(*p, bytes);
  if (!n) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %zu bytes of host scratch", who, bytes);
  *p = n;
  *have = bytes;
  return LUKV_OK;
}

int use_device(ctx_t *c, const char *who, lukv_error *err) {
  if (!c) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: context is NULL", who);
  CU(cudaSetDevice(c->device));
  return LUKV_OK;
}

int stream_sync(ctx_t *c, const char *who, lukv_error *err) {
  CU(cudaStreamSynchronize(c->st));
  return LUKV_OK;
}

unsigned blocks_for(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

/* ---- enqueue: no synchronisation, no host checks of results ------------------- */

/* gram [Hq, d, d] device = W_Oqᵀ W_Oq per query head (f32, no TF32). */
int enq_gram(ctx_t *c, const lukv_layer_view *x, float *gram, const char *who, lukv_error *err) {
  const int Hq = x->n_heads, d = x->head_dim, D = x->hidden_size;
  const float one = 1.0f, zero = 0.0f;
  const int ld_w = Hq * d;
  BLAS(cublasSetStream(c->blas, c->st));
  /* gram[q] (column-major d x d) = X_q X_qᵀ, X_q(a, o) = W_O[o, q·d + a]: the
   * d x D column-major matrix at o_proj + q·d with leading dimension Hq·d.
   * Symmetric, so the column-major result is also stats.h's row-major one. */
  BLAS(cublasSgemmStridedBatched(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, d, d, D, &one, x->o_proj, ld_w,
                                 (long long)d, x->o_proj, ld_w, (long long)d, &zero, gram, d,
                                 (long long)d * d, Hq));
  return LUKV_OK;
}

/* vn = v·M·v norms on tensor cores (k_vnorm_mma) for d = 64 and 128;
 * returns the number of partial sums written. */
template <int D>
int enq_vnorm_mma(ctx_t *c, const lukv_layer_view *x, const float *gram, float *vn, size_t *n_partial,
                  const char *who, lukv_error *err) {
  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads;
  const size_t npart = (size_t)Hq * D * D;
  const unsigned nbx = blocks_for((size_t)T, VN_TOK);
  *n_partial = (size_t)nbx * Hkv;
  int rc = ensure(c, &c->gparts, sizeof(bf16_t) * 3 * npart, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->partial, sizeof(double) * *n_partial, who, err);
  if (rc != LUKV_OK) return rc;
  unsigned nb = blocks_for(npart, 256);
  if (nb > 4096) nb = 4096;
  k_gram_split<<<nb, 256, 0, c->st>>>(gram, Hq, D, (bf16_t *)c->gparts.p);
  LAUNCHED("k_gram_split");
  CU(cudaFuncSetAttribute(k_vnorm_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)vn_smem<D>()));
  k_vnorm_mma<D><<<dim3(nbx, (unsigned)Hkv), VN_WARPS * 32, vn_smem<D>(), c->st>>>(
      x->v, (const bf16_t *)c->gparts.p, T, Hq, Hkv, vn, (double *)c->partial.p);
  LAUNCHED("k_vnorm_mma");
  return LUKV_OK;
}

/* vn = v·M·v norms through cuBLAS f32 (any head dim); returns the number of
 * partial sums written. */
int enq_vnorm_f32(ctx_t *c, const lukv_layer_view *x, const float *gram, float *vn, size_t *n_partial,
                  const char *who, lukv_error *err) {
  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads, d = x->head_dim;
  const int group = Hq / Hkv;
  const size_t hqd = (size_t)Hq * d;
  size_t nc_max = VM_FLOATS / hqd;
  if (nc_max < 1) nc_max = 1;
  if (nc_max > (size_t)T) nc_max = (size_t)T;
  const size_t n_chunks = ((size_t)T + nc_max - 1) / nc_max;
  int rc = ensure(c, &c->vm, sizeof(float) * hqd * nc_max, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->partial, sizeof(double) * (((size_t)Hq * T + 7) / 8 + n_chunks), who, err);
  if (rc != LUKV_OK) return rc;
  float *vm = (float *)c->vm.p;
  double *partial = (double *)c->partial.p;
  const float one = 1.0f, zero = 0.0f;
  const int ld_v = Hkv * d, gd = group * d;
  BLAS(cublasSetStream(c->blas, c->st));
  size_t off = 0;
  for (size_t j0 = 0; j0 < (size_t)T; j0 += nc_max) {
    const int nc = (int)((size_t)T - j0 < nc_max ? (size_t)T - j0 : nc_max);
    /* Per KV head h: vm_h (column-major gd x nc) = Mcatᵀ · V_h, with Mcat the
     * group's Gram matrices side by side (d x gd column-major, ld d, at
     * gram + h·group·d·d) and V_h the d x nc column-major view of v's rows
     * j0.. for head h (ld Hkv·d). vm[h][jj][qq·d + b] = Σ_a M_q(a, b) v_j[a]. */
    BLAS(cublasSgemmStridedBatched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, gd, nc, d, &one, gram, d,
                                   (long long)group * d * d, x->v + j0 * (size_t)ld_v, ld_v, (long long)d,
                                   &zero, vm, gd, (long long)nc * gd, Hkv));
    const size_t nb = ((size_t)Hq * nc + 7) / 8;
    k_vnorm_rows<<<(unsigned)nb, 256, 0, c->st>>>(vm, x->v, nc, (int)j0, T, Hq, Hkv, d, vn, partial + off);
    LAUNCHED("k_vnorm_rows");
    off += nb;
  }
  *n_partial = off;
  return LUKV_OK;
}

/* vn [Hq, T_ctx] device, normalised; the layer sum lands in c->dsum. */
int enq_vnorm(ctx_t *c, const lukv_layer_view *x, float *vn, const char *who, lukv_error *err) {
  const int T = x->T_ctx, Hq = x->n_heads, d = x->head_dim;
  int rc = ensure(c, &c->dsum, sizeof(double), who, err);
  if (rc != LUKV_OK) return rc;
  const float *gram = x->o_gram;
  if (!gram) {
    if ((rc = ensure(c, &c->gram, sizeof(float) * Hq * (size_t)d * d, who, err)) != LUKV_OK) return rc;
    if ((rc = enq_gram(c, x, (float *)c->gram.p, who, err)) != LUKV_OK) return rc;
    gram = (const float *)c->gram.p;
  }
  size_t n_partial = 0;
  if (c->vnorm_f32_only)
    rc = enq_vnorm_f32(c, x, gram, vn, &n_partial, who, err);
  else if (d == 128 && vn_smem<128>() <= c->smem_optin)
    rc = enq_vnorm_mma<128>(c, x, gram, vn, &n_partial, who, err);
  else if (d == 64 && vn_smem<64>() <= c->smem_optin)
    rc = enq_vnorm_mma<64>(c, x, gram, vn, &n_partial, who, err);
  else
    rc = enq_vnorm_f32(c, x, gram, vn, &n_partial, who, err);
  if (rc != LUKV_OK) return rc;
  k_vnorm_sum<<<1, 256, 0, c->st>>>((const double *)c->partial.p, (long long)n_partial, (double *)c->dsum.p);
  LAUNCHED("k_vnorm_sum");
  const size_t n = (size_t)Hq * T;
  unsigned nb = blocks_for(n, 256);
  if (nb > 65535u * 8) nb = 65535u * 8;
  k_vnorm_scale<<<nb, 256, 0, c->st>>>(vn, n, (const double *)c->dsum.p);
  LAUNCHED("k_vnorm_scale");
  return LUKV_OK;
}

size_t colreduce_smem(int d) {
  const size_t qs = (size_t)d * CR_PAD > (size_t)2 * 16 * CR_BJ ? (size_t)d * CR_PAD : (size_t)2 * 16 * CR_BJ;
  return sizeof(float) * ((size_t)d * CR_PAD + qs + CR_BR);
}

int check_head_dim(const ctx_t *c, int d, const char *who, lukv_error *err) {
  if (d > MAX_HEAD_DIM || colreduce_smem(d) > c->smem_optin)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: head_dim %d: the attention kernels take head dims up to %d (%zu bytes of "
                          "shared memory; this device allows %zu)",
                          who, d, MAX_HEAD_DIM, colreduce_smem(d), c->smem_optin);
  return LUKV_OK;
}

/* k_colreduce_mma<USE_MAX, D> on the bf16 copies k_bf16_exact wrote. */
template <bool USE_MAX, int D>
cudaError_t launch_colreduce_mma(ctx_t *c, const lukv_layer_view *x, dim3 grid, int r0, int r1,
                                 const unsigned *not_bf16, double *red) {
  const cudaError_t e =
      cudaFuncSetAttribute(k_colreduce_mma<USE_MAX, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)mr_smem<D>());
  if (e != cudaSuccess) return e;
  k_colreduce_mma<USE_MAX, D><<<grid, MR_WARPS * 32, mr_smem<D>(), c->st>>>(
      (const bf16_t *)c->q_bf16.p, (const bf16_t *)c->k_bf16.p, x->lse, x->T_ctx + x->F, x->T_ctx, x->n_heads,
      x->n_kv_heads, x->scale, r0, r1, not_bf16, red);
  return cudaSuccess;
}

/* Queues the tensor-core kernel (k_colreduce_mma when mma, else
 * k_colreduce_tc, when tc) and k_colreduce for one USE_MAX. */
template <bool USE_MAX>
int launch_colreduce(ctx_t *c, const lukv_layer_view *x, int r0, int r1, bool tc, bool mma, const unsigned *not_bf16,
                     double *red, const char *who, lukv_error *err) {
  const int T = x->T_ctx + x->F, d = x->head_dim;
  const dim3 grid((unsigned)((x->T_ctx + CR_BJ - 1) / CR_BJ), (unsigned)x->n_kv_heads);
  if (mma) {
    static_assert(MR_BJ == CR_BJ, "one grid for both kernels");
    if (d == 64)
      CU((launch_colreduce_mma<USE_MAX, 64>(c, x, grid, r0, r1, not_bf16, red)));
    else
      CU((launch_colreduce_mma<USE_MAX, 128>(c, x, grid, r0, r1, not_bf16, red)));
    LAUNCHED("k_colreduce_mma");
  } else if (tc) {
    const size_t smem = tc_layout(d).total;
    CU(cudaFuncSetAttribute(k_colreduce_tc<USE_MAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    k_colreduce_tc<USE_MAX><<<grid, TC_THREADS, smem, c->st>>>(x->q, x->k, x->lse, T, x->T_ctx, x->n_heads,
                                                               x->n_kv_heads, d, x->scale, r0, r1, not_bf16, red);
    LAUNCHED("k_colreduce_tc");
  }
  const size_t smem = colreduce_smem(d);
  CU(cudaFuncSetAttribute(k_colreduce<USE_MAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  k_colreduce<USE_MAX><<<grid, CR_THREADS, smem, c->st>>>(x->q, x->k, x->lse, T, x->T_ctx, x->n_heads,
                                                          x->n_kv_heads, d, x->scale, r0, r1, not_bf16, red);
  LAUNCHED("k_colreduce");
  return LUKV_OK;
}

/* red [Hq, T_ctx] device = column reduction over rows [r0, r1): on tensor
 * cores when q and k hold bf16 values and d is a multiple of 16 (mma.sync
 * for d = 64 and 128, on bf16 copies of q's rows and of k; wmma for the
 * others), else in f32. The kernels are queued behind the check
 * (k_bf16_exact, which also writes the bf16 copies for mma); each returns
 * at once when another one is the right one. */
int enq_colreduce(ctx_t *c, const lukv_layer_view *x, int r0, int r1, int use_max, double *red, const char *who,
                  lukv_error *err) {
  int rc = check_head_dim(c, x->head_dim, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->not_bf16, sizeof(unsigned), who, err);
  if (rc != LUKV_OK) return rc;
  const int d = x->head_dim;
  unsigned *not_bf16 = (unsigned *)c->not_bf16.p;
  const bool tc = d % 16 == 0 && tc_layout(d).total <= c->smem_optin && r1 > r0;
  const bool mma = tc && (d == 64 || d == 128) && (d == 64 ? mr_smem<64>() : mr_smem<128>()) <= c->smem_optin;
  const float *spans[2] = {x->q + (size_t)r0 * x->n_heads * d, x->k};
  const size_t lens[2] = {(size_t)(r1 - r0) * x->n_heads * d, (size_t)x->T_ctx * x->n_kv_heads * d};
  if (mma) {
    rc = ensure(c, &c->q_bf16, sizeof(uint16_t) * (lens[0] ? lens[0] : 1), who, err);
    if (rc == LUKV_OK) rc = ensure(c, &c->k_bf16, sizeof(uint16_t) * (lens[1] ? lens[1] : 1), who, err);
    if (rc != LUKV_OK) return rc;
  }
  if (tc) {
    CU(cudaMemsetAsync(not_bf16, 0, sizeof(unsigned), c->st));
    uint16_t *packed[2] = {mma ? (uint16_t *)c->q_bf16.p : NULL, mma ? (uint16_t *)c->k_bf16.p : NULL};
    for (int t = 0; t < 2; t++) {
      if (lens[t] == 0) continue;
      const unsigned nb = blocks_for(lens[t], 256);
      k_bf16_exact<<<nb < 2048 ? nb : 2048, 256, 0, c->st>>>(spans[t], lens[t], packed[t], not_bf16);
      LAUNCHED("k_bf16_exact");
    }
  } else {
    CU(cudaMemsetAsync(not_bf16, 0xff, sizeof(unsigned), c->st)); /* the f32 kernel, always */
  }
  return use_max ? launch_colreduce<true>(c, x, r0, r1, tc, mma, not_bf16, red, who, err)
                 : launch_colreduce<false>(c, x, r0, r1, tc, mma, not_bf16, red, who, err);
}

int enq_utility(ctx_t *c, const lukv_layer_view *x, const float *vn, lukv_utility_mode mode, float *u,
                unsigned *bad_u, const char *who, lukv_error *err) {
  const int T = x->T_ctx;
  int rc = ensure(c, &c->red, sizeof(double) * (size_t)x->n_heads * T, who, err);
  if (rc == LUKV_OK)
    rc = enq_colreduce(c, x, T, T + x->F, mode == LUKV_UTILITY_MAX, (double *)c->red.p, who, err);
  if (rc != LUKV_OK) return rc;
  k_utility_final<<<dim3(blocks_for((size_t)T, 256), (unsigned)x->n_kv_heads), 256, 0, c->st>>>(
      (const double *)c->red.p, vn, T, x->n_heads, x->n_kv_heads, u, bad_u);
  LAUNCHED("k_utility_final");
  return LUKV_OK;
}

int enq_snapkv(ctx_t *c, const lukv_layer_view *x, int window, int pool_kernel, float *score, const char *who,
               lukv_error *err) {
  const int T = x->T_ctx;
  int rc = ensure(c, &c->red, sizeof(double) * (size_t)x->n_heads * T, who, err);
  /* The window rows are context rows: their forward lse is over context keys
   * only, the softmax SnapKV sees at prefill. w = 0: no rows, red = 0. */
  if (rc == LUKV_OK) rc = enq_colreduce(c, x, T - window, T, 0, (double *)c->red.p, who, err);
  if (rc != LUKV_OK) return rc;
  k_snapkv_final<<<dim3(blocks_for((size_t)T, 256), (unsigned)x->n_kv_heads), 256, 0, c->st>>>(
      (const double *)c->red.p, T, x->n_heads, x->n_kv_heads, pool_kernel / 2, score);
  LAUNCHED("k_snapkv_final");
  return LUKV_OK;
}

int enq_keydiff(ctx_t *c, const lukv_layer_view *x, float *score, const char *who, lukv_error *err) {
  const int T = x->T_ctx, Hkv = x->n_kv_heads, d = x->head_dim;
  const int nch = (T + KD_CHUNK - 1) / KD_CHUNK;
  int rc = ensure(c, &c->kd_part, sizeof(double) * (size_t)Hkv * nch * d, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->kd_mean, sizeof(double) * (size_t)Hkv * d, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->kd_inv, sizeof(double) * (size_t)Hkv, who, err);
  if (rc != LUKV_OK) return rc;
  if ((size_t)d * sizeof(double) > c->smem_optin)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED, "%s: head_dim %d is too large for keydiff", who, d);
  k_keydiff_partial<<<dim3((unsigned)nch, (unsigned)Hkv), 256, 0, c->st>>>(x->k, T, Hkv, d,
                                                                           (double *)c->kd_part.p);
  LAUNCHED("k_keydiff_partial");
  const size_t smem = sizeof(double) * (size_t)d;
  if (smem > 48 * 1024) CU(cudaFuncSetAttribute(k_keydiff_mean, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  k_keydiff_mean<<<(unsigned)Hkv, 256, smem, c->st>>>((const double *)c->kd_part.p, nch, T, d,
                                                      (double *)c->kd_mean.p, (double *)c->kd_inv.p);
  LAUNCHED("k_keydiff_mean");
  k_keydiff_score<<<dim3(blocks_for((size_t)T, 8), (unsigned)Hkv), 256, 0, c->st>>>(
      x->k, T, Hkv, d, (const double *)c->kd_mean.p, (const double *)c->kd_inv.p, score);
  LAUNCHED("k_keydiff_score");
  return LUKV_OK;
}

/* curves_d [(1 + n_scores)·H, G+1] device; bad [(1 + n_scores)·H] (already
 * filled with NONE by the caller). */
int enq_curves(ctx_t *c, const float *u, int n_scores, const float *const *scores, int H, int T_ctx, int sink,
               int window, int G, float *curves_d, unsigned *bad, const char *who, lukv_error *err) {
  const int n_mid = T_ctx - sink - window, nseg = (1 + n_scores) * H;
  if ((long long)nseg * n_mid > INT_MAX)
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: %d curves of %d mid tokens are too many to sort at once",
                          who, nseg, n_mid);
  const size_t n_items = (size_t)nseg * n_mid;
  int rc = ensure(c, &c->keys_in, sizeof(unsigned long long) * n_items, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->keys_out, sizeof(unsigned long long) * n_items, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->offs, sizeof(int) * ((size_t)nseg + 1), who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->mg, sizeof(int) * ((size_t)G + 1), who, err);
  if (rc == LUKV_OK)
    rc = ensure_host((void **)&c->offs_h, &c->offs_h_n, sizeof(int) * ((size_t)nseg + 1), who, err);
  if (rc == LUKV_OK) rc = ensure_host((void **)&c->mg_h, &c->mg_h_n, sizeof(int) * ((size_t)G + 1), who, err);
  if (rc != LUKV_OK) return rc;
  /* The segment offsets and grid keep counts depend only on the shape: upload
   * them when it changes (every layer of a profile run has the same one). */
  const int shape[6] = {nseg, n_mid, G, T_ctx, sink, window};
  /* (The buffers only grow, and only when nseg or G grows: a shape change.) */
  if (memcmp(shape, c->curve_shape, sizeof shape) != 0) {
    for (int s = 0; s <= nseg; s++) c->offs_h[s] = s * n_mid;
    for (int g = 0; g <= G; g++) c->mg_h[g] = lukv_keep_count(g, G, T_ctx, sink, window);
    c->curve_shape[0] = 0; /* none until both copies are enqueued */
    /* Pageable sources: the copies are staged before these calls return. */
    CU(cudaMemcpyAsync(c->offs.p, c->offs_h, sizeof(int) * ((size_t)nseg + 1), cudaMemcpyHostToDevice, c->st));
    CU(cudaMemcpyAsync(c->mg.p, c->mg_h, sizeof(int) * ((size_t)G + 1), cudaMemcpyHostToDevice, c->st));
    memcpy(c->curve_shape, shape, sizeof shape);
  }

  score_ptrs sp;
  memset(&sp, 0, sizeof sp);
  for (int i = 0; i < n_scores; i++) sp.p[i] = scores[i];
  unsigned long long *kin = (unsigned long long *)c->keys_in.p, *kout = (unsigned long long *)c->keys_out.p;
  k_curve_keys<<<dim3(blocks_for((size_t)n_mid, 256), (unsigned)nseg), 256, 0, c->st>>>(u, sp, H, T_ctx, sink,
                                                                                          n_mid, kin, bad);
  LAUNCHED("k_curve_keys");
  const int *offs = (const int *)c->offs.p;
  size_t tmp_bytes = 0;
  CU(cub::DeviceSegmentedRadixSort::SortKeys(NULL, tmp_bytes, kin, kout, (int)n_items, nseg, offs, offs + 1, 32, 64,
                                             c->st));
  rc = ensure(c, &c->cub_tmp, tmp_bytes > 0 ? tmp_bytes : 1, who, err);
  if (rc != LUKV_OK) return rc;
  tmp_bytes = c->cub_tmp.bytes;
  CU(cub::DeviceSegmentedRadixSort::SortKeys(c->cub_tmp.p, tmp_bytes, kin, kout, (int)n_items, nseg, offs, offs + 1,
                                             32, 64, c->st));
  k_curve_suffix<<<(unsigned)nseg, 256, 0, c->st>>>(kout, u, H, T_ctx, n_mid, (const int *)c->mg.p, G, curves_d);
  LAUNCHED("k_curve_suffix");
  return LUKV_OK;
}

/* One float of device memory (for messages). */
float fetch_float(const float *p) {
  float v = NAN;
  if (cudaMemcpy(&v, p, sizeof v, cudaMemcpyDeviceToHost) != cudaSuccess) v = NAN;
  return v;
}

/* The CPU's utility error for the first bad head, if any. */
int report_bad_utility(const unsigned *bad_u, int Hkv, int T_ctx, const float *u_dev, lukv_error *err) {
  for (int h = 0; h < Hkv; h++)
    if (bad_u[h] != NONE) {
      const int j = (int)bad_u[h];
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "lukv_stats_utility: utility %g at [head %d, token %d] (check q, k, lse, vnorm)",
                            (double)fetch_float(u_dev + (size_t)h * T_ctx + j), h, j);
    }
  return LUKV_OK;
}

/* The CPU's lukv_stats_curve error for the first flagged segment, if any. */
int report_bad_curve(const unsigned *bad, int n_scores, int H, int T_ctx, const float *u_dev,
                     const float *const *scores, lukv_error *err) {
  for (int seg = 0; seg < (1 + n_scores) * H; seg++) {
    if (bad[seg] == NONE) continue;
    const int slot = seg / H, h = seg % H, j = (int)bad[seg];
    const float uv = fetch_float(u_dev + (size_t)h * T_ctx + j);
    if (!isfinite(uv) || uv < 0.0f)
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "lukv_stats_curve: utility %g at token %d; must be finite and >= 0", (double)uv, j);
    (void)slot;
    return lukv_error_set(err, LUKV_ERR_RANGE, "lukv_stats_curve: score is NaN at token %d", j);
  }
  (void)scores;
  return LUKV_OK;
}

int check_vsum(double vsum, lukv_error *err) {
  if (!isfinite(vsum))
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "lukv_stats_vnorm: value norms are not finite (check v, o_proj)");
  return LUKV_OK;
}

} /* namespace */

/* ---- public ------------------------------------------------------------------------- */

extern "C" int lukv_stats_cuda_create(lukv_stats_cuda **out, lukv_error *err) {
  const char *who = "lukv_stats_cuda_create";
  if (!out) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: out is NULL", who);
  *out = NULL;
  ctx_t *c = (ctx_t *)calloc(1, sizeof *c);
  if (!c) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: context", who);
  int optin = 0;
  cudaError_t e = cudaGetDevice(&c->device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    free(c);
    return cuda_fail(err, who, "cudaGetDevice / cudaDeviceGetAttribute / cudaStreamCreateWithFlags", e);
  }
  c->smem_optin = (size_t)optin;
  cublasStatus_t b = cublasCreate(&c->blas);
  if (b == CUBLAS_STATUS_SUCCESS) b = cublasSetStream(c->blas, c->st);
  /* f32 as the CPU twin: no TF32 (also not through NVIDIA_TF32_OVERRIDE). */
  if (b == CUBLAS_STATUS_SUCCESS) b = cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH);
  if (b != CUBLAS_STATUS_SUCCESS) {
    if (c->blas) cublasDestroy(c->blas);
    cudaStreamDestroy(c->st);
    free(c);
    return blas_fail(err, who, "cublasCreate / cublasSetStream / cublasSetMathMode", b);
  }
  *out = c;
  return LUKV_OK;
}

extern "C" void lukv_stats_cuda_destroy(lukv_stats_cuda *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  dbuf *bufs[] = {&c->gram,  &c->gparts, &c->vm,     &c->partial,  &c->dsum,    &c->red,  &c->kd_part,
                  &c->kd_mean, &c->kd_inv, &c->keys_in, &c->keys_out, &c->offs, &c->cub_tmp,
                  &c->mg,    &c->curves_d, &c->flags,  &c->vn,      &c->u,    &c->score, &c->not_bf16,
                  &c->q_bf16, &c->k_bf16};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i]->p) cudaFree(bufs[i]->p);
  for (int i = 0; i < c->n_grams; i++)
    if (c->grams[i].p) cudaFree(c->grams[i].p);
  free(c->grams);
  if (c->blas) cublasDestroy(c->blas);
  if (c->st) cudaStreamDestroy(c->st);
  free(c->curves_h);
  free(c->mg_h);
  free(c->offs_h);
  free(c);
}

extern "C" int lukv_stats_cuda_set_vnorm_f32(lukv_stats_cuda *c, int f32_only, lukv_error *err) {
  if (!c || (f32_only != 0 && f32_only != 1))
    return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_stats_cuda_set_vnorm_f32: %s",
                          c ? "f32_only must be 0 or 1" : "context is NULL");
  c->vnorm_f32_only = f32_only;
  return LUKV_OK;
}

extern "C" int lukv_stats_cuda_last_used_tensor_cores(lukv_stats_cuda *c) {
  if (!c || !c->not_bf16.p) return -1;
  unsigned flag = 0;
  if (cudaSetDevice(c->device) != cudaSuccess ||
      cudaMemcpyAsync(&flag, c->not_bf16.p, sizeof flag, cudaMemcpyDeviceToHost, c->st) != cudaSuccess ||
      cudaStreamSynchronize(c->st) != cudaSuccess)
    return -1;
  return flag == 0;
}

extern "C" int lukv_stats_cuda_vnorm(lukv_stats_cuda *c, const lukv_layer_view *x, float *vnorm_dev,
                                     lukv_error *err) {
  const char *who = "lukv_stats_cuda_vnorm";
  int rc = lukv_stats_check_view(x, "vg", who, err);
  if (rc != LUKV_OK) return rc;
  if (!vnorm_dev) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: vnorm is NULL", who);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;
  if ((rc = enq_vnorm(c, x, vnorm_dev, who, err)) != LUKV_OK) return rc;
  double vsum = 0.0;
  CU(cudaMemcpyAsync(&vsum, c->dsum.p, sizeof vsum, cudaMemcpyDeviceToHost, c->st));
  if ((rc = stream_sync(c, who, err)) != LUKV_OK) return rc;
  return check_vsum(vsum, err);
}

extern "C" int lukv_stats_cuda_gram(lukv_stats_cuda *c, int slot, const lukv_layer_view *x, const float **gram_dev,
                                    lukv_error *err) {
  const char *who = "lukv_stats_cuda_gram";
  if (!c || !gram_dev) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: context or gram_dev is NULL", who);
  int rc = lukv_stats_check_view(x, "o", who, err);
  if (rc != LUKV_OK) return rc;
  if (slot < 0 || slot > (1 << 20))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: slot %d out of range [0, 2^20]", who, slot);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;
  if (slot >= c->n_grams) {
    dbuf *g = (dbuf *)realloc(c->grams, sizeof(dbuf) * ((size_t)slot + 1));
    if (!g) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %d slots", who, slot + 1);
    memset(g + c->n_grams, 0, sizeof(dbuf) * ((size_t)slot + 1 - c->n_grams));
    c->grams = g, c->n_grams = slot + 1;
  }
  const size_t bytes = sizeof(float) * x->n_heads * (size_t)x->head_dim * x->head_dim;
  if ((rc = ensure(c, &c->grams[slot], bytes, who, err)) != LUKV_OK) return rc;
  if ((rc = enq_gram(c, x, (float *)c->grams[slot].p, who, err)) != LUKV_OK) return rc;
  if ((rc = stream_sync(c, who, err)) != LUKV_OK) return rc;
  *gram_dev = (const float *)c->grams[slot].p;
  return LUKV_OK;
}

extern "C" int lukv_stats_cuda_utility(lukv_stats_cuda *c, const lukv_layer_view *x, const float *vnorm_dev,
                                       lukv_utility_mode mode, float *u_dev, lukv_error *err) {
  const char *who = "lukv_stats_cuda_utility";
  int rc = lukv_stats_check_view(x, "qkl", who, err);
  if (rc != LUKV_OK) return rc;
  if (!vnorm_dev || !u_dev) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: vnorm or u is NULL", who);
  if (x->F < 1)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: F = %d future tokens; need >= 1", who, x->F);
  if (mode != LUKV_UTILITY_MAX && mode != LUKV_UTILITY_SUM)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: unknown utility mode %d", who, (int)mode);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;
  const int Hkv = x->n_kv_heads;
  if ((rc = ensure(c, &c->flags, sizeof(unsigned) * (size_t)Hkv, who, err)) != LUKV_OK) return rc;
  unsigned *bad_d = (unsigned *)c->flags.p;
  CU(cudaMemsetAsync(bad_d, 0xff, sizeof(unsigned) * (size_t)Hkv, c->st));
  if ((rc = enq_utility(c, x, vnorm_dev, mode, u_dev, bad_d, who, err)) != LUKV_OK) return rc;
  unsigned *bad = (unsigned *)malloc(sizeof(unsigned) * (size_t)Hkv);
  if (!bad) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: flags", who);
  cudaError_t e = cudaMemcpyAsync(bad, bad_d, sizeof(unsigned) * (size_t)Hkv, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
  if (e != cudaSuccess) {
    free(bad);
    return cuda_fail(err, who, "cudaMemcpyAsync / cudaStreamSynchronize", e);
  }
  rc = report_bad_utility(bad, Hkv, x->T_ctx, u_dev, err);
  free(bad);
  return rc;
}

extern "C" int lukv_score_cuda_snapkv(lukv_stats_cuda *c, const lukv_layer_view *x, int window, int pool_kernel,
                                      float *score_dev, lukv_error *err) {
  const char *who = "lukv_score_cuda_snapkv";
  int rc = lukv_stats_check_view(x, "qkl", who, err);
  if (rc != LUKV_OK) return rc;
  if (!score_dev) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: score is NULL", who);
  if (window < 0 || window > x->T_ctx)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: window %d outside [0, T_ctx=%d]", who, window, x->T_ctx);
  if (pool_kernel < 1 || pool_kernel % 2 == 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: pool kernel %d must be odd and >= 1 (same-size pooling)",
                          who, pool_kernel);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;
  if ((rc = enq_snapkv(c, x, window, pool_kernel, score_dev, who, err)) != LUKV_OK) return rc;
  return stream_sync(c, who, err);
}

extern "C" int lukv_score_cuda_keydiff(lukv_stats_cuda *c, const lukv_layer_view *x, float *score_dev,
                                       lukv_error *err) {
  const char *who = "lukv_score_cuda_keydiff";
  int rc = lukv_stats_check_view(x, "k", who, err);
  if (rc != LUKV_OK) return rc;
  if (!score_dev) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: score is NULL", who);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;
  if ((rc = enq_keydiff(c, x, score_dev, who, err)) != LUKV_OK) return rc;
  return stream_sync(c, who, err);
}

extern "C" int lukv_stats_cuda_curves(lukv_stats_cuda *c, const float *u_dev, int n_scores,
                                      const float *const *score_dev, int n_heads, int T_ctx, int sink, int window,
                                      int grid, float *curves, lukv_error *err) {
  const char *who = "lukv_stats_cuda_curves";
  if (!u_dev || !curves || (n_scores > 0 && !score_dev))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: utility, scores or curve is NULL", who);
  if (n_scores < 0 || n_scores > MAX_SCORES || n_heads < 1)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %d scores (at most %d) of %d heads", who, n_scores,
                          MAX_SCORES, n_heads);
  for (int i = 0; i < n_scores; i++)
    if (!score_dev[i]) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: score %d is NULL", who, i);
  if (grid < 1 || sink < 0 || window < 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: grid %d, sink %d, window %d out of range", who, grid, sink,
                          window);
  if (T_ctx < 1 || (int64_t)T_ctx <= (int64_t)sink + window)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: context of %d tokens leaves no mid tokens after sink %d + window %d", who, T_ctx,
                          sink, window);
  int rc = use_device(c, who, err);
  if (rc != LUKV_OK) return rc;
  const int nseg = (1 + n_scores) * n_heads;
  const size_t ncurve = (size_t)nseg * ((size_t)grid + 1);
  if ((rc = ensure(c, &c->curves_d, sizeof(float) * ncurve, who, err)) != LUKV_OK) return rc;
  if ((rc = ensure(c, &c->flags, sizeof(unsigned) * (size_t)nseg, who, err)) != LUKV_OK) return rc;
  unsigned *bad_d = (unsigned *)c->flags.p;
  CU(cudaMemsetAsync(bad_d, 0xff, sizeof(unsigned) * (size_t)nseg, c->st));
  rc = enq_curves(c, u_dev, n_scores, score_dev, n_heads, T_ctx, sink, window, grid, (float *)c->curves_d.p, bad_d,
                  who, err);
  if (rc != LUKV_OK) return rc;
  unsigned *bad = (unsigned *)malloc(sizeof(unsigned) * (size_t)nseg);
  if (!bad) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: flags", who);
  cudaError_t e = cudaMemcpyAsync(curves, c->curves_d.p, sizeof(float) * ncurve, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess) e = cudaMemcpyAsync(bad, bad_d, sizeof(unsigned) * (size_t)nseg, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
  if (e != cudaSuccess) {
    free(bad);
    return cuda_fail(err, who, "cudaMemcpyAsync / cudaStreamSynchronize", e);
  }
  rc = report_bad_curve(bad, n_scores, n_heads, T_ctx, u_dev, score_dev, err);
  free(bad);
  return rc;
}

extern "C" int lukv_layer_stats_cuda(lukv_stats_cuda *c, const lukv_layer_view *x, const lukv_stats_params *p,
                                     int n_scorers, const lukv_scorer_id *scorers, int n_samples, int n_layers,
                                     int sample, int layer, float *const *curves, float *oracle,
                                     float *utility_total, lukv_error *err) {
  const char *who = "lukv_layer_stats_cuda";
  int rc = lukv_stats_check_view(x, "qkvlg", who, err);
  if (rc != LUKV_OK) return rc;
  if ((rc = lukv_stats_check_params(x, p, who, err)) != LUKV_OK) return rc;
  if (n_scorers < 0 || (n_scorers > 0 && (!scorers || !curves)))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %d scorers but no scorer list or curves", who, n_scorers);
  if (n_scorers > MAX_SCORES)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: %d scorers; at most %d", who, n_scorers, MAX_SCORES);
  for (int i = 0; i < n_scorers; i++) {
    if (!lukv_scorer_name(scorers[i]))
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: unknown scorer id %d", who, (int)scorers[i]);
    if (!curves[i])
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: curves for %s is NULL", who, lukv_scorer_name(scorers[i]));
  }
  if (!oracle || !utility_total)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: oracle or utility_total is NULL", who);
  if (n_samples < 1 || n_layers < 1 || sample < 0 || sample >= n_samples || layer < 0 || layer >= n_layers)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: sample %d of %d, layer %d of %d out of range", who, sample,
                          n_samples, layer, n_layers);
  if ((rc = use_device(c, who, err)) != LUKV_OK) return rc;

  const int T = x->T_ctx, Hq = x->n_heads, Hkv = x->n_kv_heads, G = p->grid;
  const int s = p->sink, w = p->window;
  const int nseg = (1 + n_scorers) * Hkv;
  const size_t ncurve = (size_t)nseg * ((size_t)G + 1), ht = (size_t)Hkv * T;
  const size_t n_flags = (size_t)Hkv + (size_t)nseg;
  rc = ensure(c, &c->vn, sizeof(float) * (size_t)Hq * T, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->u, sizeof(float) * ht, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->score, sizeof(float) * ht * (n_scorers > 0 ? n_scorers : 1), who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->curves_d, sizeof(float) * ncurve, who, err);
  if (rc == LUKV_OK) rc = ensure(c, &c->flags, sizeof(unsigned) * n_flags, who, err);
  if (rc == LUKV_OK) rc = ensure_host((void **)&c->curves_h, &c->curves_h_bytes, sizeof(float) * ncurve, who, err);
  if (rc != LUKV_OK) return rc;
  float *vn = (float *)c->vn.p, *u = (float *)c->u.p;
  const float *score_ptr[MAX_SCORES];
  for (int i = 0; i < n_scorers; i++) score_ptr[i] = (const float *)c->score.p + (size_t)i * ht;
  unsigned *bad_u = (unsigned *)c->flags.p, *bad_c = bad_u + Hkv;
  CU(cudaMemsetAsync(c->flags.p, 0xff, sizeof(unsigned) * n_flags, c->st));

  if ((rc = enq_vnorm(c, x, vn, who, err)) != LUKV_OK) return rc;
  if ((rc = enq_utility(c, x, vn, p->utility, u, bad_u, who, err)) != LUKV_OK) return rc;
  for (int i = 0; i < n_scorers && rc == LUKV_OK; i++) {
    float *sc = (float *)c->score.p + (size_t)i * ht;
    switch (scorers[i]) {
    case LUKV_SCORER_SNAPKV: rc = enq_snapkv(c, x, w, p->pool_kernel, sc, who, err); break;
    case LUKV_SCORER_KEYDIFF: rc = enq_keydiff(c, x, sc, who, err); break;
    }
  }
  if (rc != LUKV_OK) return rc;
  rc = enq_curves(c, u, n_scorers, score_ptr, Hkv, T, s, w, G, (float *)c->curves_d.p, bad_c, who, err);
  if (rc != LUKV_OK) return rc;

  unsigned *flags = (unsigned *)malloc(sizeof(unsigned) * n_flags);
  if (!flags) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: flags", who);
  double vsum = 0.0;
  cudaError_t e = cudaMemcpyAsync(c->curves_h, c->curves_d.p, sizeof(float) * ncurve, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(flags, c->flags.p, sizeof(unsigned) * n_flags, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess) e = cudaMemcpyAsync(&vsum, c->dsum.p, sizeof vsum, cudaMemcpyDeviceToHost, c->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
  if (e != cudaSuccess) {
    free(flags);
    return cuda_fail(err, who, "cudaMemcpyAsync / cudaStreamSynchronize", e);
  }
  /* Errors in the CPU twin's order: value norms, utility, then the curves. */
  rc = check_vsum(vsum, err);
  if (rc == LUKV_OK) rc = report_bad_utility(flags, Hkv, T, u, err);
  if (rc == LUKV_OK) rc = report_bad_curve(flags + Hkv, n_scorers, Hkv, T, u, score_ptr, err);
  free(flags);
  if (rc != LUKV_OK) return rc;

  /* Row (sample, layer, h) of an [S, L, H, G+1] array, and of [S, L, H]. */
  const size_t head0 = ((size_t)sample * n_layers + layer) * Hkv, G1 = (size_t)G + 1;
  for (int h = 0; h < Hkv; h++) {
    float *orow = oracle + (head0 + h) * G1;
    memcpy(orow, c->curves_h + (size_t)h * G1, sizeof(float) * G1);
    utility_total[head0 + h] = orow[0]; /* m_0 = 0: the mid total as stored */
  }
  for (int i = 0; i < n_scorers; i++)
    for (int h = 0; h < Hkv; h++) {
      float *crow = curves[i] + (head0 + h) * G1;
      memcpy(crow, c->curves_h + ((size_t)(1 + i) * Hkv + h) * G1, sizeof(float) * G1);
      lukv_stats_guard_curve(crow, oracle + (head0 + h) * G1, G, T, s, w);
    }
  return LUKV_OK;
}

namespace {
int cuda_layer_stats(void *user, const lukv_layer_view *x, const lukv_stats_params *p, int n_scorers,
                     const lukv_scorer_id *scorers, int n_samples, int n_layers, int sample, int layer,
                     float *const *curves, float *oracle, float *utility_total, lukv_error *err) {
  return lukv_layer_stats_cuda((ctx_t *)user, x, p, n_scorers, scorers, n_samples, n_layers, sample, layer, curves,
                               oracle, utility_total, err);
}
} /* namespace */

extern "C" int lukv_profile_add_layer_cuda(lukv_stats_cuda *c, lukv_profile *prof, int sample, int layer,
                                           const lukv_layer_view *x, lukv_error *err) {
  if (!c) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_profile_add_layer_cuda: context is NULL");
  return lukv_profile_add_layer_with(prof, sample, layer, x, cuda_layer_stats, c, "lukv_profile_add_layer_cuda",
                                     err);
}

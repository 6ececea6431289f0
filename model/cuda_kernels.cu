/* CUDA kernels of the engine; contracts in cuda_kernels.h.
 *
 * One translation unit on purpose (CI compiles it on two cores): no template
 * instantiated per head_dim, head_dim is a runtime value everywhere. The
 * only template parameter is the storage type E of activations and weights:
 * bf16 (the default path) or float (the f32 accuracy path); arithmetic is f32
 * in both. */
#include "cuda_kernels.h"
#include "mma_ptx.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <math.h>

typedef __nv_bfloat16 bf16;

namespace {

const int kThreads = 256;

/* Blocks for a grid-stride loop over n elements (capped: the loops stride). */
unsigned grid_for(size_t n) {
  size_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return (unsigned)b;
}

/* Storage <-> f32 arithmetic for E = bf16 or float. */
__device__ __forceinline__ float ld(const bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ld(const float x) { return x; }
__device__ __forceinline__ void st(bf16 *p, float x) { *p = __float2bfloat16(x); }
__device__ __forceinline__ void st(float *p, float x) { *p = x; }

/* ---- elementwise ---------------------------------------------------------- */

template <typename E>
__global__ void embed_k(const E *__restrict__ table, const int32_t *__restrict__ tok, int D, float *__restrict__ x) {
  const E *row = table + (size_t)tok[blockIdx.x] * D;
  float *o = x + (size_t)blockIdx.x * D;
  for (int c = threadIdx.x; c < D; c += blockDim.x) o[c] = ld(row[c]);
}

/* One block per row; f32 partial sums (the CPU twin sums in double: D terms
 * of one sign, so the difference is a few f32 ulps, far under bf16). */
template <typename E>
__global__ void rmsnorm_k(const float *__restrict__ x, const float *__restrict__ w, int D, float eps,
                          E *__restrict__ out) {
  __shared__ float part[32];
  const float *xr = x + (size_t)blockIdx.x * D;
  E *o = out + (size_t)blockIdx.x * D;
  float ss = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) ss += xr[c] * xr[c];
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) part[warp] = ss;
  __syncthreads();
  if (warp == 0) {
    ss = lane < nw ? part[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) part[0] = ss;
  }
  __syncthreads();
  const float r = (float)(1.0 / sqrt((double)part[0] / D + (double)eps));
  for (int c = threadIdx.x; c < D; c += blockDim.x) st(&o[c], w[c] * (xr[c] * r));
}

__global__ void rope_table_k(const float *__restrict__ inv_freq, int half, int T, int pos0,
                             float *__restrict__ cos_t, float *__restrict__ sin_t) {
  const size_t n = (size_t)T * half;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(e / half), i = (int)(e % half);
    const float pos = (float)(pos0 + t);
    const float ang = pos * inv_freq[i]; /* f32 product, as transformers */
    double s, c;
    sincos((double)ang, &s, &c);
    cos_t[e] = (float)c;
    sin_t[e] = (float)s;
  }
}

/* One thread per output element; it reads its partner in the other half of
 * the head, so the input is never written (no in-place hazard). */
template <typename E>
__global__ void qkv_rope_k(const float *__restrict__ qkv, const float *__restrict__ bias,
                           const float *__restrict__ cos_t, const float *__restrict__ sin_t, int T, int Hq,
                           int Hkv, int d, E *__restrict__ q, E *__restrict__ k, E *__restrict__ v) {
  const int QD = Hq * d, KD = Hkv * d, W = QD + 2 * KD, half = d / 2;
  const size_t n = (size_t)T * W;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const int t = (int)(e / W), c = (int)(e % W);
    const float *row = qkv + (size_t)t * W;
    float x = row[c] + (bias ? bias[c] : 0.f);
    if (c >= QD + KD) {
      st(&v[(size_t)t * KD + (c - QD - KD)], x);
      continue;
    }
    const int base = c < QD ? 0 : QD, local = c - base, i = local % d;
    const int pc = base + (local - i) + (i < half ? i + half : i - half); /* partner column */
    const float xp = row[pc] + (bias ? bias[pc] : 0.f);
    const int ii = i < half ? i : i - half;
    const float cs = cos_t[(size_t)t * half + ii], sn = sin_t[(size_t)t * half + ii];
    /* x1 = first half, x2 = second: (x1 c - x2 s, x2 c + x1 s) */
    const float y = i < half ? x * cs - xp * sn : x * cs + xp * sn;
    if (c < QD) st(&q[(size_t)t * QD + local], y);
    else st(&k[(size_t)t * KD + local], y);
  }
}

template <typename E>
__global__ void swiglu_k(const float *__restrict__ gu, const float *__restrict__ bias, int n_rows, int I,
                         E *__restrict__ out) {
  const size_t n = (size_t)n_rows * I;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
    const size_t r = e / I;
    const int i = (int)(e % I);
    const float *row = gu + r * 2 * (size_t)I;
    const float g = row[i] + (bias ? bias[i] : 0.f), u = row[I + i] + (bias ? bias[I + i] : 0.f);
    st(&out[e], g / (1.0f + expf(-g)) * u);
  }
}

__global__ void add_bias_k(float *__restrict__ y, const float *__restrict__ b, int T, int N) {
  const size_t n = (size_t)T * N;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    y[e] += b[e % N];
}

__global__ void f32_to_bf16_k(const float *__restrict__ s, size_t n, bf16 *__restrict__ d) {
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    d[e] = __float2bfloat16(s[e]);
}

__global__ void f16_to_bf16_k(const uint16_t *__restrict__ s, size_t n, bf16 *__restrict__ d) {
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    d[e] = __float2bfloat16(__half2float(__ushort_as_half(s[e]))); /* f16 -> f32 is exact */
}

__global__ void bf16_to_f32_k(const bf16 *__restrict__ s, size_t n, float *__restrict__ d) {
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    d[e] = ld(s[e]);
}

/* ---- flash attention (tensor cores) ------------------------------------------
 * Block: 4 warps, 64 query rows of one head (16 per warp). Per 64-key tile:
 *   S_w [16, 64] = Q_w K^T            (WMMA, f32, staged in shared memory)
 *   online softmax on S_w rows        (2 lanes per row, f32)
 *   O_w [16, d] = alpha O_w + P_w V   (O kept in shared memory in f32: WMMA
 *                                      fragments have no portable row layout,
 *                                      so the per-row rescale happens there)
 * Shared memory (bytes, d = head_dim): Q, K, V tiles 3 x 64 (d + 8) x 2,
 * S 4 x 16 x 68 x 4, P 4 x 16 x 72 x 2, O 4 x 16 (d + 4) x 4: 110 KiB for
 * d = 128, 190 KiB for d = 256 (opt-in above 48 KiB). */

namespace wm = nvcuda::wmma;

const int FA_BQ = 64, FA_BK = 64, FA_WARPS = 4;
const int FA_SLD = FA_BK + 4; /* f32 score row stride */
const int FA_PLD = FA_BK + 8; /* bf16 P row stride */

struct FaLayout {
  size_t q, k, v, s, p, o, total;
};

__host__ __device__ inline size_t fa_round(size_t b) { return (b + 127) / 128 * 128; }

__host__ __device__ inline FaLayout fa_layout(int d) {
  FaLayout L;
  const size_t tile = fa_round((size_t)FA_BQ * (d + 8) * sizeof(bf16));
  L.q = 0;
  L.k = L.q + tile;
  L.v = L.k + tile;
  L.s = L.v + tile;
  L.p = L.s + fa_round((size_t)FA_WARPS * 16 * FA_SLD * sizeof(float));
  L.o = L.p + fa_round((size_t)FA_WARPS * 16 * FA_PLD * sizeof(bf16));
  L.total = L.o + fa_round((size_t)FA_WARPS * 16 * (d + 4) * sizeof(float));
  return L;
}

__device__ __forceinline__ int key_lo(int p, int window) {
  return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

__global__ void __launch_bounds__(FA_WARPS * 32)
    flash_fwd_k(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                bf16 *__restrict__ out, float *__restrict__ lse, int T, int S, int Hq, int Hkv, int d, int window,
                float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  const FaLayout L = fa_layout(d);
  const int ldh = d + 8, ldo = d + 4;
  bf16 *sQ = (bf16 *)(smem + L.q), *sK = (bf16 *)(smem + L.k), *sV = (bf16 *)(smem + L.v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *sS = (float *)(smem + L.s) + warp * 16 * FA_SLD;
  bf16 *sP = (bf16 *)(smem + L.p) + warp * 16 * FA_PLD;
  float *sO = (float *)(smem + L.o) + (size_t)warp * 16 * ldo;

  const int nqb = (T + FA_BQ - 1) / FA_BQ;
  const int qb = nqb - 1 - (int)blockIdx.x; /* the longest (last) tiles start first */
  const int h = blockIdx.y, g = h / (Hq / Hkv);
  const int i0 = qb * FA_BQ, nq = min(FA_BQ, T - i0), pos0 = S - T;
  const size_t qs = (size_t)Hq * d, ks = (size_t)Hkv * d;
  const int dv = d / 8; /* 16-byte vectors per row */
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);

  for (int e = threadIdx.x; e < FA_BQ * dv; e += blockDim.x) {
    const int r = e / dv, c = (e % dv) * 8;
    uint4 val = zero;
    if (r < nq) val = *reinterpret_cast<const uint4 *>(q + (size_t)(i0 + r) * qs + (size_t)h * d + c);
    *reinterpret_cast<uint4 *>(sQ + r * ldh + c) = val;
  }
  for (int e = lane; e < 16 * d; e += 32) sO[(e / d) * ldo + e % d] = 0.f;

  /* this lane: row r of the warp's 16, the columns of parity `half` of S and O */
  const int r = lane >> 1, half = lane & 1;
  const int row = warp * 16 + r;
  const bool row_ok = row < nq;
  const int p = pos0 + i0 + row, klo = key_lo(p, window);
  float m = -INFINITY, l = 0.f;

  /* keys any row of the block sees, and those of this warp's rows */
  const int lo = key_lo(pos0 + i0, window), hi = pos0 + i0 + nq;
  const int w_first = warp * 16, w_last = min(warp * 16 + 15, nq - 1);
  const bool warp_any = w_first < nq;
  const int wp_last = pos0 + i0 + w_last, wlo = key_lo(pos0 + i0 + w_first, window);

  for (int j0 = lo; j0 < hi; j0 += FA_BK) {
    __syncthreads(); /* everyone is done with the previous K/V tile */
    for (int e = threadIdx.x; e < FA_BK * dv; e += blockDim.x) {
      const int rr = e / dv, c = (e % dv) * 8, j = j0 + rr;
      uint4 kv = zero, vv = zero; /* zero rows past hi: masked, and 0 * garbage could be NaN */
      if (j < hi) {
        kv = *reinterpret_cast<const uint4 *>(k + (size_t)j * ks + (size_t)g * d + c);
        vv = *reinterpret_cast<const uint4 *>(v + (size_t)j * ks + (size_t)g * d + c);
      }
      *reinterpret_cast<uint4 *>(sK + rr * ldh + c) = kv;
      *reinterpret_cast<uint4 *>(sV + rr * ldh + c) = vv;
    }
    __syncthreads();
    if (!warp_any || j0 > wp_last || j0 + FA_BK <= wlo) continue; /* no key of the tile is visible to the warp */

    /* S_w = Q_w K^T: B = K^T is K read column-major */
    for (int n = 0; n < FA_BK / 16; n++) {
      wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
      wm::fill_fragment(acc, 0.f);
      for (int kk = 0; kk < d; kk += 16) {
        wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
        wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> b;
        wm::load_matrix_sync(a, sQ + warp * 16 * ldh + kk, ldh);
        wm::load_matrix_sync(b, sK + n * 16 * ldh + kk, ldh);
        wm::mma_sync(acc, a, b, acc);
      }
      wm::store_matrix_sync(sS + n * 16, acc, FA_SLD, wm::mem_row_major);
    }
    __syncwarp();

    /* online softmax of row r; this lane takes the columns of parity `half`
     * (interleaved: 2-way instead of 4-way shared-memory bank conflicts).
     * Visible columns: [ca, cb). */
    const float *srow = sS + r * FA_SLD;
    bf16 *prow = sP + r * FA_PLD;
    const int ca = row_ok ? klo - j0 : 0, cb = row_ok ? p - j0 + 1 : 0;
    float mx = -INFINITY;
    for (int c = half; c < FA_BK; c += 2)
      if (c >= ca && c < cb) mx = fmaxf(mx, srow[c] * scale);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.f : expf(m - m_new); /* O and l are 0 while m is -inf */
    float sum = 0.f;
    for (int c = half; c < FA_BK; c += 2) {
      const float e = c >= ca && c < cb ? expf(srow[c] * scale - m_new) : 0.f;
      prow[c] = __float2bfloat16(e);
      sum += e;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    if (alpha != 1.f)
      for (int c = half; c < d; c += 2) sO[r * ldo + c] *= alpha;
    __syncwarp();

    /* O_w += P_w V */
    for (int n = 0; n < d / 16; n++) {
      wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
      wm::load_matrix_sync(acc, sO + n * 16, ldo, wm::mem_row_major);
      for (int kk = 0; kk < FA_BK; kk += 16) {
        wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> a;
        wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> b;
        wm::load_matrix_sync(a, sP + kk, FA_PLD);
        wm::load_matrix_sync(b, sV + kk * ldh + n * 16, ldh);
        wm::mma_sync(acc, a, b, acc);
      }
      wm::store_matrix_sync(sO + n * 16, acc, ldo, wm::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();
  if (row_ok) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
    bf16 *o = out + (size_t)(i0 + row) * qs + (size_t)h * d;
    for (int c = half; c < d; c += 2) o[c] = __float2bfloat16(sO[r * ldo + c] * inv);
    if (half == 0) lse[(size_t)h * T + i0 + row] = l > 0.f ? m + logf(l) : -INFINITY;
  }
}

/* ---- flash attention, register-resident (mma.sync m16n8k16) ---------------------
 * The FlashAttention-2 scheme, for head_dim 64 and 128 (the other multiples
 * of 16 take the WMMA kernel above). Block: WARPS warps of MT m-tiles (16
 * query rows each) of one head; keys in tiles of 64, loaded with cp.async
 * into a double buffer so that tile t + 1 streams in while tile t is
 * computed. Per warp and key tile:
 *   S [16 MT, 64] = Q K^T   Q's fragments reloaded from shared memory per
 *                           tile (they would not fit in registers beside O)
 *   online softmax          in registers; a row lives in the 4 lanes of a quad
 *   O [16 MT, d] += P V     P taken from S's accumulators without a trip
 *                           through shared memory; O stays in registers (f32)
 * Shared memory: Q [BQ][d + 8], K and V [2][64][d + 8] bf16 (the +8 pad puts
 * the 8 rows an ldmatrix reads in 8 different bank groups). The scores use
 * exp2 with scale * log2(e) folded in. Used: MT 2 x 4 warps (128 rows, 104 KiB
 * of shared memory and 255 registers for d = 128: two blocks per SM). On the
 * H100 at the 8B shape that was 1.35-1.45x faster than 1 x 8 and 1 x 4, and
 * 3-7% faster than 2 x 8 (docs/engine.md). */

template <int D, int MT, int WARPS>
struct Fa2 {
  static const int BQ = 16 * MT * WARPS, BK = 64, LD = D + 8, NT = WARPS * 32;
  /* Q [BQ][LD], then K and V [2][BK][LD] */
  static size_t smem() { return (size_t)(BQ + 4 * BK) * LD * sizeof(bf16); }
};

template <int D, int MT, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    flash2_fwd_k(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                 bf16 *__restrict__ out, float *__restrict__ lse, int T, int S, int Hq, int Hkv, int window,
                 float scale_log2) {
  typedef Fa2<D, MT, WARPS> C;
  constexpr int BQ = C::BQ, BK = C::BK, LD = C::LD, NT = C::NT, CH = D / 8; /* CH: 16-byte chunks per row */
  constexpr int RW = 16 * MT; /* rows per warp */
  extern __shared__ __align__(128) unsigned char smem[];
  bf16 *sQ = (bf16 *)smem;      /* [BQ][LD] */
  bf16 *sK = sQ + BQ * LD;      /* [2][BK][LD] */
  bf16 *sV = sK + 2 * BK * LD;  /* [2][BK][LD] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  const int nqb = (T + BQ - 1) / BQ;
  const int qb = nqb - 1 - (int)blockIdx.x; /* the longest (last) tiles start first */
  const int h = blockIdx.y, g = h / (Hq / Hkv);
  const int i0 = qb * BQ, nq = min(BQ, T - i0), pos0 = S - T;
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  const int lo = key_lo(pos0 + i0, window), hi = pos0 + i0 + nq; /* keys any row of the block sees */
  const int n_tiles = (hi - lo + BK - 1) / BK;

  for (int e = threadIdx.x; e < BQ * CH; e += NT) {
    const int r = e / CH, c = (e % CH) * 8;
    const bool ok = r < nq;
    ptx_cp_async16(sQ + r * LD + c, ok ? q + (size_t)(i0 + r) * qs + (size_t)h * D + c : q, ok);
  }
  /* rows past hi are zeros: masked anyway, and 0 * garbage could be NaN */
  auto load_kv = [&](int t) {
    const int j0 = lo + t * BK;
    bf16 *dk = sK + (t & 1) * BK * LD, *dv = sV + (t & 1) * BK * LD;
    for (int e = threadIdx.x; e < BK * CH; e += NT) {
      const int r = e / CH, c = (e % CH) * 8, j = j0 + r;
      const bool ok = j < hi;
      const size_t off = (size_t)j * ks + (size_t)g * D + c;
      ptx_cp_async16(dk + r * LD + c, ok ? k + off : k, ok);
      ptx_cp_async16(dv + r * LD + c, ok ? v + off : v, ok);
    }
  };
  load_kv(0);
  ptx_cp_async_commit();

  /* this warp's rows w0 .. w0 + RW - 1; this lane's, in m-tile mt:
   * w0 + 16 mt + lane / 4 (fragment elements 0, 1) and 8 more (elements 2, 3) */
  const int w0 = warp * RW;
  const bool warp_any = w0 < nq;
  int pr[MT][2], klo[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      pr[mt][hf] = pos0 + i0 + w0 + 16 * mt + 8 * hf + (lane >> 2);
      klo[mt][hf] = key_lo(pr[mt][hf], window);
    }
  const int wp_first = pos0 + i0 + w0, wp_last = pos0 + i0 + min(w0 + RW - 1, nq - 1);
  const int wlo = key_lo(wp_first, window), wlo_max = key_lo(wp_first + RW - 1, window);
  const bf16 *qrow = sQ + (w0 + (lane & 15)) * LD + (lane >> 4) * 8; /* this lane's ldmatrix row of m-tile 0 */

  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  float m[MT][2], l[MT][2]; /* m in log2 units; l a per-lane partial sum until the end */
#pragma unroll
  for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;

  for (int t = 0; t < n_tiles; t++) {
    cp_async_next_tile(t + 1 < n_tiles, [&] { load_kv(t + 1); });
    __syncthreads();
    const int j0 = lo + t * BK;
    if (warp_any && j0 <= wp_last && j0 + BK > wlo) {
      const bf16 *tK = sK + (t & 1) * BK * LD, *tV = sV + (t & 1) * BK * LD;
      float s[MT][BK / 8][4];
      warp_qk<MT, BK / 8, D>(s, qrow, tK, LD, lane);
      /* causal and window masks, only on the tiles that cross them */
      if (j0 + BK - 1 > wp_first || j0 < wlo_max) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
          for (int nb = 0; nb < BK / 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
              const int j = j0 + nb * 8 + (lane & 3) * 2 + (e & 1), hf = e >> 1;
              if (j > pr[mt][hf] || j < klo[mt][hf]) s[mt][nb][e] = -INFINITY;
            }
      }
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
          float x = -INFINITY;
#pragma unroll
          for (int nb = 0; nb < BK / 8; nb++) x = fmaxf(x, fmaxf(s[mt][nb][2 * hf], s[mt][nb][2 * hf + 1]));
          x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
          x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
          const float mn = fmaxf(m[mt][hf], x * scale_log2);
          /* a row with no visible key yet keeps m = -inf: exponents against 0 give exact zeros */
          const float u = mn == -INFINITY ? 0.f : mn;
          const float alpha = ptx_exp2(m[mt][hf] - u);
          m[mt][hf] = mn;
          float sum = 0.f;
#pragma unroll
          for (int nb = 0; nb < BK / 8; nb++) {
            s[mt][nb][2 * hf] = ptx_exp2(fmaf(s[mt][nb][2 * hf], scale_log2, -u));
            s[mt][nb][2 * hf + 1] = ptx_exp2(fmaf(s[mt][nb][2 * hf + 1], scale_log2, -u));
            sum += s[mt][nb][2 * hf] + s[mt][nb][2 * hf + 1];
          }
          l[mt][hf] = l[mt][hf] * alpha + sum;
          /* once the running maximum settles, most tiles leave it alone: skip
           * the multiplications by exactly 1 (a warp pays for them only when
           * one of its rows needs them) */
          if (alpha != 1.f) {
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
              o[mt][i][2 * hf] *= alpha;
              o[mt][i][2 * hf + 1] *= alpha;
            }
          }
        }
      /* O += P V: S's accumulators of key blocks 2kk, 2kk + 1 are P's A fragment */
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int db = 0; db < D / 16; db++) {
          uint32_t b[4];
          ptx_ldmatrix_x4_trans(b, tV + (kk * 16 + (lane & 15)) * LD + db * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            ptx_mma_bf16_16816(o[mt][2 * db], a[mt], b[0], b[1]);
            ptx_mma_bf16_16816(o[mt][2 * db + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads(); /* everyone is done with tile t's buffer before t + 2 is loaded into it */
  }

  const float ln2 = 0.6931471805599453f;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      float sum = l[mt][hf];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int r = w0 + 16 * mt + 8 * hf + (lane >> 2);
      if (r >= nq) continue;
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      bf16 *orow = out + (size_t)(i0 + r) * qs + (size_t)h * D + (lane & 3) * 2;
#pragma unroll
      for (int i = 0; i < D / 8; i++)
        *reinterpret_cast<uint32_t *>(orow + i * 8) = pack_bf16x2(o[mt][i][2 * hf] * inv, o[mt][i][2 * hf + 1] * inv);
      if ((lane & 3) == 0) lse[(size_t)h * T + i0 + r] = sum > 0.f ? m[mt][hf] * ln2 + logf(sum) : -INFINITY;
    }
}

/* ---- flash attention in f32 (SIMT) ----------------------------------------------
 * The f32 backend's prefill: the flash kernel's tiling without tensor cores.
 * Block: 128 threads, 32 query rows of one head; thread (row r = tid / 4,
 * sub = tid % 4) scores keys sub, sub + 4, ... of each 32-key tile against
 * its row, and owns output columns sub, sub + 4, ... in registers. Q, K, V
 * tiles and the probabilities sit in shared memory with rows padded by one
 * float (no bank conflicts between the 8 rows of a warp); the four threads
 * of a row are adjacent lanes, so a row's softmax needs only shuffles and
 * __syncwarp. Shared memory: (3 x 32 (d + 1) + 32 x 33) x 4 bytes: 54 KiB for
 * d = 128, 103 KiB for d = 256 (opt-in above 48 KiB). */

const int F32_BQ = 32, F32_BK = 32, F32_THREADS = 128, F32_MAXC = LUKV_CUDA_MAX_HEAD_DIM / 4;

__host__ __device__ inline size_t f32_smem(int d) {
  return sizeof(float) * (3 * (size_t)F32_BQ * (d + 1) + (size_t)F32_BQ * (F32_BK + 1));
}

__global__ void __launch_bounds__(F32_THREADS)
    flash_f32_k(const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                float *__restrict__ out, float *__restrict__ lse, int T, int S, int Hq, int Hkv, int d, int window,
                float scale) {
  extern __shared__ float fsm[];
  const int ld = d + 1;
  float *sQ = fsm, *sK = sQ + F32_BQ * ld, *sV = sK + F32_BK * ld, *sP = sV + F32_BK * ld; /* sP [32, 33] */
  const int nqb = (T + F32_BQ - 1) / F32_BQ;
  const int qb = nqb - 1 - (int)blockIdx.x; /* the longest (last) tiles start first */
  const int h = blockIdx.y, g = h / (Hq / Hkv);
  const int i0 = qb * F32_BQ, nq = min(F32_BQ, T - i0), pos0 = S - T;
  const size_t qs = (size_t)Hq * d, ks = (size_t)Hkv * d;
  const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
  const bool row_ok = r < nq;
  const int p = pos0 + i0 + r, klo = key_lo(p, window);

  for (int e = threadIdx.x; e < F32_BQ * d; e += blockDim.x) {
    const int rr = e / d, c = e % d;
    sQ[rr * ld + c] = rr < nq ? q[(size_t)(i0 + rr) * qs + (size_t)h * d + c] : 0.f;
  }
  float acc[F32_MAXC];
#pragma unroll
  for (int i = 0; i < F32_MAXC; i++) acc[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  const int lo = key_lo(pos0 + i0, window), hi = pos0 + i0 + nq; /* keys any row of the block sees */

  for (int j0 = lo; j0 < hi; j0 += F32_BK) {
    __syncthreads(); /* everyone is done with the previous K/V tile (and sQ is written) */
    for (int e = threadIdx.x; e < F32_BK * d; e += blockDim.x) {
      const int jj = e / d, c = e % d, j = j0 + jj;
      const bool in = j < hi; /* zero rows past hi: masked, and 0 * garbage could be NaN */
      sK[jj * ld + c] = in ? k[(size_t)j * ks + (size_t)g * d + c] : 0.f;
      sV[jj * ld + c] = in ? v[(size_t)j * ks + (size_t)g * d + c] : 0.f;
    }
    __syncthreads();
    /* scores of keys jj = sub + 4 t, t < 8 */
    float sc[F32_BK / 4];
#pragma unroll
    for (int t = 0; t < F32_BK / 4; t++) sc[t] = 0.f;
    for (int c = 0; c < d; c++) {
      const float qv = sQ[r * ld + c];
#pragma unroll
      for (int t = 0; t < F32_BK / 4; t++) sc[t] += qv * sK[(sub + 4 * t) * ld + c];
    }
    float mx = -INFINITY;
#pragma unroll
    for (int t = 0; t < F32_BK / 4; t++) {
      const int j = j0 + sub + 4 * t;
      const bool vis = row_ok && j >= klo && j <= p;
      sc[t] = vis ? sc[t] * scale : -INFINITY;
      mx = fmaxf(mx, sc[t]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.f : expf(m - m_new); /* acc and l are 0 while m is -inf */
    float sum = 0.f;
#pragma unroll
    for (int t = 0; t < F32_BK / 4; t++) {
      const float e = sc[t] == -INFINITY ? 0.f : expf(sc[t] - m_new);
      sP[r * (F32_BK + 1) + sub + 4 * t] = e;
      sum += e;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    l = l * alpha + sum;
    m = m_new;
    __syncwarp(); /* the row's probabilities, written by its four lanes */
#pragma unroll
    for (int i = 0; i < F32_MAXC; i++) acc[i] *= alpha;
    for (int jj = 0; jj < F32_BK; jj++) {
      const float pv = sP[r * (F32_BK + 1) + jj];
#pragma unroll
      for (int i = 0; i < F32_MAXC; i++) {
        const int c = sub + 4 * i;
        if (c < d) acc[i] += pv * sV[jj * ld + c];
      }
    }
    __syncwarp(); /* sP is rewritten by the next tile */
  }
  if (row_ok) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
    float *o = out + (size_t)(i0 + r) * qs + (size_t)h * d;
#pragma unroll
    for (int i = 0; i < F32_MAXC; i++) {
      const int c = sub + 4 * i;
      if (c < d) o[c] = acc[i] * inv;
    }
    if (sub == 0) lse[(size_t)h * T + i0 + r] = l > 0.f ? m + logf(l) : -INFINITY;
  }
}

/* ---- split-KV attention, one query row at a time ------------------------------
 * Block (split, KV head g and a sub-group of up to AR_GH of its query heads,
 * row t): the row's visible keys [klo, p] are cut into n_split equal chunks;
 * the block's 4 warps take keys round-robin, lane c holds head-dim elements
 * c, c + 32, ..., and each warp keeps per head an online softmax state
 * (m, l, acc) in registers. The warps' states are merged in shared memory and
 * written as the split's partial (m, l, unnormalised acc); merge_k combines
 * the splits. */

const int AR_WARPS = 4, AR_GH = 8, AR_MAXC = LUKV_CUDA_MAX_HEAD_DIM / 32;

struct RowsPlan {
  int n_split, n_hsub, zrows;
};

__host__ __device__ inline size_t rows_smem(int d) {
  return sizeof(float) * ((size_t)AR_GH * d + (size_t)AR_WARPS * AR_GH * 2 + (size_t)AR_WARPS * AR_GH * d);
}

/* Lane's elements c = lane + 32 i of key j's K and V rows (zeros past d or
 * when j >= ke). */
template <typename E>
__device__ __forceinline__ void rows_load(const E *__restrict__ k, const E *__restrict__ v, int j, int ke, size_t kst,
                                          int g, int d, int lane, float *kr, float *vr) {
  const E *kj = k + (size_t)j * kst + (size_t)g * d, *vj = v + (size_t)j * kst + (size_t)g * d;
#pragma unroll
  for (int i = 0; i < AR_MAXC; i++) {
    const int c = lane + 32 * i;
    const bool ok = j < ke && c < d;
    kr[i] = ok ? ld(kj[c]) : 0.f;
    vr[i] = ok ? ld(vj[c]) : 0.f;
  }
}

template <typename E>
__global__ void __launch_bounds__(AR_WARPS * 32)
    rows_partial_k(const E *__restrict__ q, const E *__restrict__ k, const E *__restrict__ v, int T,
                   int S, int Hq, int Hkv, int d, int window, float scale, int n_split, int n_hsub,
                   float *__restrict__ pm, float *__restrict__ pl, float *__restrict__ pacc) {
  extern __shared__ float rsm[];
  float *qs = rsm;                                   /* [AR_GH, d] */
  float *wm_ = qs + AR_GH * d;                       /* [AR_WARPS, AR_GH] */
  float *wl = wm_ + AR_WARPS * AR_GH;                /* [AR_WARPS, AR_GH] */
  float *wacc = wl + AR_WARPS * AR_GH;               /* [AR_WARPS, AR_GH, d] */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int split = blockIdx.x, g = blockIdx.y / n_hsub, hs = blockIdx.y % n_hsub;
  const int G = Hq / Hkv, hbeg = g * G + hs * AR_GH, nh = min(AR_GH, G - hs * AR_GH);
  const size_t kst = (size_t)Hkv * d;

  for (int t = blockIdx.z; t < T; t += gridDim.z) {
    __syncthreads(); /* shared memory of the previous row is consumed */
    for (int e = threadIdx.x; e < nh * d; e += blockDim.x)
      qs[e] = ld(q[((size_t)t * Hq + hbeg + e / d) * d + e % d]);
    __syncthreads();
    const int p = S - T + t, klo = key_lo(p, window), len = p + 1 - klo;
    const int chunk = (len + n_split - 1) / n_split;
    const int kb = klo + split * chunk, ke = min(p + 1, kb + chunk);

    float m[AR_GH], l[AR_GH], acc[AR_GH][AR_MAXC];
#pragma unroll
    for (int gh = 0; gh < AR_GH; gh++) {
      m[gh] = -INFINITY;
      l[gh] = 0.f;
#pragma unroll
      for (int i = 0; i < AR_MAXC; i++) acc[gh][i] = 0.f;
    }
    /* key j in kr/vr while key j + AR_WARPS loads into kn/vn (hides the latency) */
    float kr[AR_MAXC], vr[AR_MAXC], kn[AR_MAXC], vn[AR_MAXC];
    rows_load(k, v, kb + warp, ke, kst, g, d, lane, kn, vn);
    for (int j = kb + warp; j < ke; j += AR_WARPS) {
#pragma unroll
      for (int i = 0; i < AR_MAXC; i++) kr[i] = kn[i], vr[i] = vn[i];
      rows_load(k, v, j + AR_WARPS, ke, kst, g, d, lane, kn, vn);
#pragma unroll
      for (int gh = 0; gh < AR_GH; gh++) {
        if (gh >= nh) continue; /* not break: the loop stays fully unrolled, arrays in registers */
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < AR_MAXC; i++) {
          const int c = lane + 32 * i;
          if (c < d) dot += qs[gh * d + c] * kr[i];
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const float s = dot * scale, m_new = fmaxf(m[gh], s);
        const float alpha = m[gh] == -INFINITY ? 0.f : expf(m[gh] - m_new), e = expf(s - m_new);
        l[gh] = l[gh] * alpha + e;
        m[gh] = m_new;
#pragma unroll
        for (int i = 0; i < AR_MAXC; i++) acc[gh][i] = acc[gh][i] * alpha + e * vr[i];
      }
    }
#pragma unroll
    for (int gh = 0; gh < AR_GH; gh++) {
      if (gh >= nh) continue;
      if (lane == 0) {
        wm_[warp * AR_GH + gh] = m[gh];
        wl[warp * AR_GH + gh] = l[gh];
      }
#pragma unroll
      for (int i = 0; i < AR_MAXC; i++) {
        const int c = lane + 32 * i;
        if (c < d) wacc[((size_t)warp * AR_GH + gh) * d + c] = acc[gh][i];
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < nh * d; e += blockDim.x) {
      const int gh = e / d, c = e % d;
      float M = -INFINITY;
      for (int w = 0; w < AR_WARPS; w++) M = fmaxf(M, wm_[w * AR_GH + gh]);
      float A = 0.f, Ls = 0.f;
      for (int w = 0; w < AR_WARPS; w++) {
        const float mw = wm_[w * AR_GH + gh];
        const float f = mw == -INFINITY ? 0.f : expf(mw - M);
        A += f * wacc[((size_t)w * AR_GH + gh) * d + c];
        Ls += f * wl[w * AR_GH + gh];
      }
      const size_t slot = ((size_t)t * Hq + hbeg + gh) * n_split + split;
      pacc[slot * d + c] = A;
      if (c == 0) {
        pm[slot] = M;
        pl[slot] = Ls;
      }
    }
  }
}

/* One block per (row t, head h): combines the n_split partials. */
template <typename E>
__global__ void rows_merge_k(const float *__restrict__ pm, const float *__restrict__ pl,
                             const float *__restrict__ pacc, int T, int Hq, int d, int n_split,
                             E *__restrict__ out, float *__restrict__ lse) {
  const size_t th = blockIdx.x; /* t * Hq + h */
  const int t = (int)(th / Hq), h = (int)(th % Hq);
  const size_t base = th * n_split;
  float M = -INFINITY;
  for (int s = 0; s < n_split; s++) M = fmaxf(M, pm[base + s]);
  float Ls = 0.f;
  for (int s = 0; s < n_split; s++) Ls += pm[base + s] == -INFINITY ? 0.f : expf(pm[base + s] - M) * pl[base + s];
  const float inv = Ls > 0.f ? 1.f / Ls : 0.f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float A = 0.f;
    for (int s = 0; s < n_split; s++)
      if (pm[base + s] != -INFINITY) A += expf(pm[base + s] - M) * pacc[(base + s) * d + c];
    st(&out[th * d + c], A * inv);
  }
  if (threadIdx.x == 0) lse[(size_t)h * T + t] = Ls > 0.f ? M + logf(Ls) : -INFINITY;
}

bool shape_ok(const lukv_attn_shape *s) {
  return s && s->T >= 1 && s->S >= s->T && s->n_kv_heads >= 1 && s->n_heads >= s->n_kv_heads &&
         s->n_heads % s->n_kv_heads == 0 && s->head_dim >= 2 && s->head_dim % 2 == 0 &&
         s->head_dim <= LUKV_CUDA_MAX_HEAD_DIM && s->window >= 0;
}

size_t rows_bytes(const lukv_attn_shape *s, int n_split) {
  return sizeof(float) * (size_t)s->T * s->n_heads * n_split * (size_t)(s->head_dim + 2);
}

/* Enough blocks for four per SM of an H100 (132 SMs; 16 warps per SM to
 * overlap memory latency) when the rows alone do not, with at least 128 keys
 * per split and at most 64 splits. */
RowsPlan rows_plan(const lukv_attn_shape *s) {
  RowsPlan P;
  const int G = s->n_heads / s->n_kv_heads;
  P.n_hsub = (G + AR_GH - 1) / AR_GH;
  P.zrows = s->T < 65535 ? s->T : 65535;
  const long long blocks = (long long)P.zrows * s->n_kv_heads * P.n_hsub, target = 4 * 132;
  long long want = blocks >= target ? 1 : (target + blocks - 1) / blocks;
  long long most = s->S / 128;
  if (most > 64) most = 64;
  if (most < 1) most = 1;
  P.n_split = (int)(want < most ? want : most);
  return P;
}

cudaError_t launched() { return cudaGetLastError(); }

} /* namespace */

/* ---- launchers -------------------------------------------------------------- */

namespace {

template <typename E>
cudaError_t embed(const E *table, const int32_t *tok, int T, int D, float *x, cudaStream_t stream) {
  if (T < 1 || D < 1) return cudaErrorInvalidValue;
  embed_k<E><<<T, kThreads, 0, stream>>>(table, tok, D, x);
  return launched();
}

template <typename E>
cudaError_t rmsnorm(const float *x, const float *w, int T, int D, float eps, E *out, cudaStream_t stream) {
  if (T < 1 || D < 1) return cudaErrorInvalidValue;
  rmsnorm_k<E><<<T, kThreads, 0, stream>>>(x, w, D, eps, out);
  return launched();
}

template <typename E>
cudaError_t qkv_rope(const float *qkv, const float *bias, const float *cos_t, const float *sin_t, int T, int Hq,
                     int Hkv, int d, E *q, E *k, E *v, cudaStream_t stream) {
  if (T < 1 || Hq < 1 || Hkv < 1 || d < 2 || d % 2) return cudaErrorInvalidValue;
  qkv_rope_k<E><<<grid_for((size_t)T * (Hq + 2 * Hkv) * d), kThreads, 0, stream>>>(qkv, bias, cos_t, sin_t, T, Hq,
                                                                                   Hkv, d, q, k, v);
  return launched();
}

template <typename E>
cudaError_t swiglu(const float *gu, const float *bias, int n, int I, E *out, cudaStream_t stream) {
  if (n < 1 || I < 1) return cudaErrorInvalidValue;
  swiglu_k<E><<<grid_for((size_t)n * I), kThreads, 0, stream>>>(gu, bias, n, I, out);
  return launched();
}

template <typename E>
cudaError_t attention_rows(const E *q, const E *k, const E *v, const lukv_attn_shape *s, E *out, float *lse,
                           void *ws, size_t ws_bytes, cudaStream_t stream) {
  if (!shape_ok(s) || !ws) return cudaErrorInvalidValue;
  RowsPlan P = rows_plan(s);
  const size_t one = rows_bytes(s, 1);
  if (ws_bytes < one) return cudaErrorInvalidValue;
  if ((size_t)P.n_split > ws_bytes / one) P.n_split = (int)(ws_bytes / one);
  const size_t n_state = (size_t)s->T * s->n_heads * P.n_split;
  float *pm = (float *)ws, *pl = pm + n_state, *pacc = pl + n_state;
  const dim3 grid((unsigned)P.n_split, (unsigned)(s->n_kv_heads * P.n_hsub), (unsigned)P.zrows);
  rows_partial_k<E><<<grid, AR_WARPS * 32, rows_smem(s->head_dim), stream>>>(
      q, k, v, s->T, s->S, s->n_heads, s->n_kv_heads, s->head_dim, s->window, 1.0f / sqrtf((float)s->head_dim),
      P.n_split, P.n_hsub, pm, pl, pacc);
  cudaError_t e = launched();
  if (e != cudaSuccess) return e;
  const int threads = s->head_dim < 128 ? 64 : 128;
  rows_merge_k<E><<<(unsigned)((size_t)s->T * s->n_heads), threads, 0, stream>>>(
      pm, pl, pacc, s->T, s->n_heads, s->head_dim, P.n_split, out, lse);
  return launched();
}

/* Column-major view: y^T [out, T] = W [out, in] . x^T [in, T], where the
 * row-major W buffer is W^T column-major (hence OP_T) and x is x^T. */
cublasStatus_t linear(cublasHandle_t h, const void *x, const void *W, cudaDataType in_type, int T, int in, int out,
                      float beta, void *y, cudaDataType y_type) {
  if (T < 1 || in < 1 || out < 1 || (y_type != CUDA_R_32F && beta != 0.f)) return CUBLAS_STATUS_INVALID_VALUE;
  const float alpha = 1.f;
  return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &alpha, W, in_type, in, x, in_type, in, &beta, y,
                      y_type, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

} /* namespace */

extern "C" cudaError_t lukv_cuda_embed(const lukv_bf16 *table, const int32_t *tok, int T, int D, float *x,
                                       cudaStream_t stream) {
  return embed((const bf16 *)table, tok, T, D, x, stream);
}

extern "C" cudaError_t lukv_cuda_embed_f32(const float *table, const int32_t *tok, int T, int D, float *x,
                                           cudaStream_t stream) {
  return embed(table, tok, T, D, x, stream);
}

extern "C" cudaError_t lukv_cuda_rmsnorm(const float *x, const float *w, int T, int D, float eps, lukv_bf16 *out,
                                         cudaStream_t stream) {
  return rmsnorm(x, w, T, D, eps, (bf16 *)out, stream);
}

extern "C" cudaError_t lukv_cuda_rmsnorm_f32(const float *x, const float *w, int T, int D, float eps, float *out,
                                             cudaStream_t stream) {
  return rmsnorm(x, w, T, D, eps, out, stream);
}

extern "C" cudaError_t lukv_cuda_rope_table(const float *inv_freq, int half, int T, int pos0, float *cos_t,
                                            float *sin_t, cudaStream_t stream) {
  if (T < 1 || half < 1 || pos0 < 0) return cudaErrorInvalidValue;
  rope_table_k<<<grid_for((size_t)T * half), kThreads, 0, stream>>>(inv_freq, half, T, pos0, cos_t, sin_t);
  return launched();
}

extern "C" cudaError_t lukv_cuda_qkv_rope(const float *qkv, const float *bias, const float *cos_t,
                                          const float *sin_t, int T, int Hq, int Hkv, int d, lukv_bf16 *q,
                                          lukv_bf16 *k, lukv_bf16 *v, cudaStream_t stream) {
  return qkv_rope(qkv, bias, cos_t, sin_t, T, Hq, Hkv, d, (bf16 *)q, (bf16 *)k, (bf16 *)v, stream);
}

extern "C" cudaError_t lukv_cuda_qkv_rope_f32(const float *qkv, const float *bias, const float *cos_t,
                                              const float *sin_t, int T, int Hq, int Hkv, int d, float *q, float *k,
                                              float *v, cudaStream_t stream) {
  return qkv_rope(qkv, bias, cos_t, sin_t, T, Hq, Hkv, d, q, k, v, stream);
}

extern "C" cudaError_t lukv_cuda_swiglu(const float *gu, const float *bias, int n, int I, lukv_bf16 *out,
                                        cudaStream_t stream) {
  return swiglu(gu, bias, n, I, (bf16 *)out, stream);
}

extern "C" cudaError_t lukv_cuda_swiglu_f32(const float *gu, const float *bias, int n, int I, float *out,
                                            cudaStream_t stream) {
  return swiglu(gu, bias, n, I, out, stream);
}

extern "C" cudaError_t lukv_cuda_add_bias(float *y, const float *b, int T, int N, cudaStream_t stream) {
  if (T < 1 || N < 1) return cudaErrorInvalidValue;
  add_bias_k<<<grid_for((size_t)T * N), kThreads, 0, stream>>>(y, b, T, N);
  return launched();
}

extern "C" cudaError_t lukv_cuda_f32_to_bf16(const float *src, size_t n, lukv_bf16 *dst, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  f32_to_bf16_k<<<grid_for(n), kThreads, 0, stream>>>(src, n, (bf16 *)dst);
  return launched();
}

extern "C" cudaError_t lukv_cuda_f16_to_bf16(const uint16_t *src, size_t n, lukv_bf16 *dst, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  f16_to_bf16_k<<<grid_for(n), kThreads, 0, stream>>>(src, n, (bf16 *)dst);
  return launched();
}

extern "C" cudaError_t lukv_cuda_bf16_to_f32(const lukv_bf16 *src, size_t n, float *dst, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  bf16_to_f32_k<<<grid_for(n), kThreads, 0, stream>>>((const bf16 *)src, n, dst);
  return launched();
}

extern "C" cublasStatus_t lukv_cuda_linear(cublasHandle_t h, const lukv_bf16 *x, const lukv_bf16 *W, int T, int in,
                                           int out, float beta, void *y, int y_f32) {
  return linear(h, x, W, CUDA_R_16BF, T, in, out, beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF);
}

extern "C" cublasStatus_t lukv_cuda_linear_f32(cublasHandle_t h, const float *x, const float *W, int T, int in,
                                               int out, float beta, float *y) {
  return linear(h, x, W, CUDA_R_32F, T, in, out, beta, y, CUDA_R_32F);
}

namespace {
template <int D, int MT, int WARPS>
cudaError_t flash2_launch(const bf16 *q, const bf16 *k, const bf16 *v, const lukv_attn_shape *s, bf16 *out,
                          float *lse, cudaStream_t stream) {
  typedef Fa2<D, MT, WARPS> C;
  cudaError_t e =
      cudaFuncSetAttribute(flash2_fwd_k<D, MT, WARPS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::smem());
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)((s->T + C::BQ - 1) / C::BQ), (unsigned)s->n_heads);
  const float scale_log2 = 1.4426950408889634f / sqrtf((float)s->head_dim);
  flash2_fwd_k<D, MT, WARPS><<<grid, C::NT, C::smem(), stream>>>(q, k, v, out, lse, s->T, s->S, s->n_heads,
                                                                  s->n_kv_heads, s->window, scale_log2);
  return launched();
}
}  // namespace

extern "C" int lukv_cuda_flash_supported(const lukv_attn_shape *s) {
  return shape_ok(s) && s->head_dim % 16 == 0;
}

extern "C" cudaError_t lukv_cuda_flash_attention(const lukv_bf16 *q, const lukv_bf16 *k, const lukv_bf16 *v,
                                                 const lukv_attn_shape *s, lukv_bf16 *out, float *lse,
                                                 cudaStream_t stream) {
  if (!lukv_cuda_flash_supported(s)) return cudaErrorInvalidValue;
  if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) % 16) return cudaErrorMisalignedAddress;
  const bf16 *qb = (const bf16 *)q, *kb = (const bf16 *)k, *vb = (const bf16 *)v;
  if (s->head_dim == 64) return flash2_launch<64, 2, 4>(qb, kb, vb, s, (bf16 *)out, lse, stream);
  if (s->head_dim == 128) return flash2_launch<128, 2, 4>(qb, kb, vb, s, (bf16 *)out, lse, stream);
  const FaLayout L = fa_layout(s->head_dim);
  cudaError_t e = cudaFuncSetAttribute(flash_fwd_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.total);
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)((s->T + FA_BQ - 1) / FA_BQ), (unsigned)s->n_heads);
  flash_fwd_k<<<grid, FA_WARPS * 32, L.total, stream>>>(qb, kb, vb, (bf16 *)out, lse, s->T, s->S, s->n_heads,
                                                        s->n_kv_heads, s->head_dim, s->window,
                                                        1.0f / sqrtf((float)s->head_dim));
  return launched();
}

extern "C" cudaError_t lukv_cuda_flash_attention_f32(const float *q, const float *k, const float *v,
                                                     const lukv_attn_shape *s, float *out, float *lse,
                                                     cudaStream_t stream) {
  if (!shape_ok(s)) return cudaErrorInvalidValue;
  const size_t smem = f32_smem(s->head_dim);
  cudaError_t e = cudaFuncSetAttribute(flash_f32_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)((s->T + F32_BQ - 1) / F32_BQ), (unsigned)s->n_heads);
  flash_f32_k<<<grid, F32_THREADS, smem, stream>>>(q, k, v, out, lse, s->T, s->S, s->n_heads, s->n_kv_heads,
                                                   s->head_dim, s->window, 1.0f / sqrtf((float)s->head_dim));
  return launched();
}

extern "C" size_t lukv_cuda_attention_rows_ws(const lukv_attn_shape *s) {
  if (!shape_ok(s)) return 0;
  return rows_bytes(s, rows_plan(s).n_split);
}

extern "C" cudaError_t lukv_cuda_attention_rows(const lukv_bf16 *q, const lukv_bf16 *k, const lukv_bf16 *v,
                                                const lukv_attn_shape *s, lukv_bf16 *out, float *lse, void *ws,
                                                size_t ws_bytes, cudaStream_t stream) {
  return attention_rows((const bf16 *)q, (const bf16 *)k, (const bf16 *)v, s, (bf16 *)out, lse, ws, ws_bytes,
                        stream);
}

extern "C" cudaError_t lukv_cuda_attention_rows_f32(const float *q, const float *k, const float *v,
                                                    const lukv_attn_shape *s, float *out, float *lse, void *ws,
                                                    size_t ws_bytes, cudaStream_t stream) {
  return attention_rows(q, k, v, s, out, lse, ws, ws_bytes, stream);
}

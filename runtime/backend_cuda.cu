/* CUDA backend of liblukv (rt_backend.h): each entry is the device twin of
 * the plain-C reference in backend_cpu.c.
 *
 *   score   snapkv: rowstats (per window-query row, per span of 256 keys: max
 *           and sum of exp, f64) -> rowmerge (softmax denominator per row) ->
 *           accum (sum over window rows of the normalised probabilities,
 *           per query head, f64) -> pool (max-pool, group mean, -inf past
 *           T_b). Logits are the CPU's bit for bit (f32 products and sums
 *           in index order, no FMA contraction, then f64); the T x T (or
 *           T x w) matrix is never stored.
 *           keydiff: norms -> mean of the normalised keys (f64) -> -cos.
 *   select  keys (score, NaN -> -inf, -0 -> +0) of the mid tokens of each
 *           evicting segment -> cub::DeviceSegmentedRadixSort descending
 *           (stable: equal scores keep ascending positions) -> flags of the
 *           kept tokens -> block-scan compaction into ascending positions,
 *           copied to the host table.
 *   gather  one uint4 (8 bf16) per thread, kept rows into the segments.
 *   append  one block per segment; the row index is keep + a per-layer
 *           device counter that the last block to finish advances, so a
 *           captured append writes the next row on every graph replay.
 *   decode  split-KV flash-decoding: grid (split, segment, head chunk);
 *           a block serves up to 8 query heads of one KV head's group, so
 *           each K / V row is loaded once (uint4 loads) for all of them;
 *           f32 online softmax in the exp2 domain; the splits are merged by
 *           the last block to finish (atomic counter, reset by that block).
 *
 * Every CUDA call is checked: LUKV_ERR_CUDA with "WHERE: WHAT: CALL failed:
 * cudaGetErrorString (name)", as model/backend_cuda.cu does. All work is
 * queued on the cache's stream (lukv_cache_set_stream; default: the legacy
 * default stream). append and decode allocate nothing and never wait, so
 * they can be captured in a CUDA graph (lukv.h, "CUDA graphs").
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cub/cub.cuh>
#include <cuda_runtime_api.h>

extern "C" {
#include "rt_backend.h"
}

namespace {

/* ---- errors --------------------------------------------------------------- */

int cuda_fail(lukv_error *err, const char *where, const char *what, const char *call,
              cudaError_t e) {
  return lukv_error_set(err, LUKV_ERR_CUDA, "%s: %s: %s failed: %s (%s)", where, what, call,
                        cudaGetErrorString(e), cudaGetErrorName(e));
}

/* Checks a CUDA call inside a function with `err` and `where` in scope. */
#define CU(what, call)                                                    \
  do {                                                                    \
    cudaError_t e_ = (call);                                              \
    if (e_ != cudaSuccess) return cuda_fail(err, where, what, #call, e_); \
  } while (0)
/* After a launch: configuration errors surface here, faults later. */
#define LAUNCHED(what) CU(what, cudaGetLastError())

/* ---- constants ------------------------------------------------------------ */

const int SNAP_SPAN = 256;    /* keys per rowstats block */
/* Decode tuning (overridable at compile time for sweeps on a GPU): threads
 * per block, rows per team and step (U), the minimum resident blocks per SM
 * the compiler must allow (caps registers), and how splits are counted (FILL
 * 1: one exact wave of resident blocks; 0: WAVES x SMs blocks). Chosen on an
 * H100 (2026-11-24, bench-decode, 14 settings timed): MINB 4 (128
 * registers, 16 warps per SM instead of 138 registers and 12 warps) with
 * FILL 1 reads 84-90% of the copy bandwidth at 8-64 sequences x 16K tokens,
 * against 63-82% before; U 2, 64-thread blocks and MINB 6-8 were slower. */
#ifndef LUKV_DEC_THREADS
#define LUKV_DEC_THREADS 128
#endif
#ifndef LUKV_DEC_U
#define LUKV_DEC_U 4
#endif
#ifndef LUKV_DEC_MINB
#define LUKV_DEC_MINB 4
#endif
#ifndef LUKV_DEC_WAVES
#define LUKV_DEC_WAVES 4
#endif
#ifndef LUKV_DEC_FILL /* 1: splits fill one wave of resident blocks exactly */
#define LUKV_DEC_FILL 1
#endif
const int DEC_THREADS = LUKV_DEC_THREADS; /* decode block */
const int NSPLIT_MAX = 32;    /* most splits of one segment */
const int MIN_SPLIT_ROWS = 64;
const int GATHER_ROWS = 32;   /* rows per gather block */

enum { SC_T, SC_A, SC_B, SC_C, SC_D, SC_E, SC_F, SC_CUB, SC_POS, SC_INFO, SC_N };

struct cu_ctx {
  cudaStream_t stream;
  int device, sms;
  int resident; /* decode blocks resident at once on the device (occupancy x SMs) */
  lukv_rt_dims dims;
  int reserve;
  int group;       /* Hq / Hkv */
  int G;           /* query heads per decode block (template): 1, 2, 4 or 8 */
  int gz;          /* decode blocks per group: ceil(group / G) */
  int nsplit_cap;  /* splits the decode scratch is sized for */
  float *part_acc; /* [S * gz * nsplit_cap * G * d] */
  float *part_ml;  /* [S * gz * nsplit_cap * G * 2] */
  unsigned *counters; /* [S * gz], zero between launches */
  void *sc[SC_N];
  size_t sc_bytes[SC_N];
};

/* Per compressed layer: the device copy of the segment table. */
struct cu_layer {
  int64_t *off;   /* [S] */
  int32_t *keep;  /* [S] */
  int32_t *ctl;   /* [4]: appended, append done-counter, overflow flag, unused */
  int max_keep, max_cap;
};

/* Grow-only device scratch owned by the cache. Freeing waits for the device. */
int scratch(cu_ctx *c, int slot, size_t bytes, void **p, lukv_error *err) {
  const char *where = "cuda backend";
  if (bytes == 0) bytes = 16;
  if (c->sc_bytes[slot] < bytes) {
    if (c->sc[slot]) CU("scratch", cudaFree(c->sc[slot]));
    c->sc[slot] = NULL;
    c->sc_bytes[slot] = 0;
    cudaError_t e = cudaMalloc(&c->sc[slot], bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: scratch: cudaMalloc of %.1f MiB failed: %s",
                            where, (double)bytes / (1 << 20), cudaGetErrorString(e));
    }
    c->sc_bytes[slot] = bytes;
  }
  *p = c->sc[slot];
  return LUKV_OK;
}

/* ---- device helpers ------------------------------------------------------- */

__device__ __forceinline__ float bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a quiet NaN (rt_bf16.h, bit for bit). */
__device__ __forceinline__ uint16_t f2bf(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* 8 bf16 in a uint4 -> f32. */
__device__ __forceinline__ void unpack8(const uint4 &u, float *x) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    x[2 * i] = __uint_as_float(w[i] << 16);
    x[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

/* q . k over d elements, f32, products and sums rounded one by one in index
 * order: the CPU twin's dot() exactly (no FMA contraction). */
__device__ __forceinline__ float dot_rn(const float *q, const float *k, int d) {
  float s = 0.0f;
  for (int c = 0; c < d; c++) s = __fadd_rn(s, __fmul_rn(q[c], k[c]));
  return s;
}

__device__ __forceinline__ double warp_max(double x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

/* 32 keys [j0, j0 + 32) of segment s as f32 into ks (rows past T: 0); the
 * whole block takes part. Row stride 257 floats: lanes reading one column
 * of 32 rows hit 32 banks. */
const int KS_STRIDE = 257;
__device__ void load_key_tile(float (*ks)[KS_STRIDE], const uint16_t *K, size_t s, int t_max,
                              int d, int j0, int T) {
  for (int e = threadIdx.x; e < 32 * d; e += blockDim.x) {
    const int kr = e / d, c = e % d, j = j0 + kr;
    ks[kr][c] = j < T ? bf2f(K[(s * t_max + j) * d + c]) : 0.0f;
  }
}

/* ---- snapkv --------------------------------------------------------------- */

/* Window-query row r of segment s (r = local head * w + i) sees keys
 * j <= p = T - w + i. Grid (ceil(Tm / SPAN), S, ceil(NR / 8)), 256 threads:
 * warp = one row, lane = one key of the current 32-key tile. Writes
 * part[(s*NR + r) * nspan + span] = (max logit, sum exp(logit - max)). */
__global__ void __launch_bounds__(256)
    snap_rowstats(const uint16_t *__restrict__ K, const uint16_t *__restrict__ Q,
                  const int32_t *__restrict__ Tb, int Hkv, int t_max, int d, int w, int NR,
                  float scale, double2 *__restrict__ part, int nspan) {
  __shared__ float ks[32][KS_STRIDE];
  __shared__ float qs[8][256];
  const int s = blockIdx.y, span = blockIdx.x, T = Tb[s / Hkv];
  const int jspan = span * SNAP_SPAN;
  if (jspan >= T) return; /* block-uniform */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.z * 8 + warp;
  const bool rvalid = r < NR;
  const int p = rvalid ? T - w + r % w : -1;
  if (rvalid)
    for (int c = lane; c < d; c += 32) qs[warp][c] = bf2f(Q[((size_t)s * NR + r) * d + c]);
  double m = -INFINITY, l = 0.0;
  for (int sub = 0; sub < SNAP_SPAN / 32; sub++) {
    const int j0 = jspan + sub * 32;
    if (j0 >= T) break; /* block-uniform */
    __syncthreads();    /* the previous tile is consumed */
    load_key_tile(ks, K, (size_t)s, t_max, d, j0, T);
    __syncthreads();
    if (rvalid && j0 <= p) { /* warp-uniform */
      const int j = j0 + lane;
      const float dt = dot_rn(qs[warp], ks[lane], d);
      const double lg = j <= p ? (double)scale * (double)dt : -INFINITY;
      const double mt = warp_max(lg);
      const double mn = fmax(m, mt); /* finite: key j0 <= p is visible */
      const double ex = j <= p ? exp(lg - mn) : 0.0;
      const double st = warp_sum(ex);
      l = (m == -INFINITY ? 0.0 : l * exp(m - mn)) + st;
      m = mn;
    }
  }
  if (rvalid && lane == 0) part[((size_t)s * NR + r) * nspan + span] = make_double2(m, l);
}

/* One thread per row: merge the spans holding keys <= p. */
__global__ void snap_rowmerge(const double2 *__restrict__ part, const int32_t *__restrict__ Tb,
                              int Hkv, int w, int NR, int nspan, size_t nrows,
                              double2 *__restrict__ stat) {
  const size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= nrows) return;
  const int s = (int)(row / NR), r = (int)(row % NR);
  const int p = Tb[s / Hkv] - w + r % w;
  double M = -INFINITY, L = 0.0;
  if (p >= 0) {
    const int last = p / SNAP_SPAN;
    for (int sp = 0; sp <= last; sp++) M = fmax(M, part[row * nspan + sp].x);
    for (int sp = 0; sp <= last; sp++) {
      const double2 v = part[row * nspan + sp];
      if (v.x != -INFINITY) L += v.y * exp(v.x - M);
    }
  }
  stat[row] = make_double2(M, L);
}

/* a[(s*G + g) * Tm + j] = sum over window rows i of query head g of
 * softmax_i(j), rows in ascending i (the CPU's order). Grid
 * (ceil(Tm / 32), S), 256 threads: lane = key, warp = query heads g = warp,
 * warp + 8, ...; each (g, j) is owned by one thread: no atomics. */
__global__ void __launch_bounds__(256)
    snap_accum(const uint16_t *__restrict__ K, const uint16_t *__restrict__ Q,
               const int32_t *__restrict__ Tb, const double2 *__restrict__ stat, int Hkv,
               int t_max, int d, int w, int group, int Tm, float scale, double *__restrict__ a) {
  __shared__ float ks[32][KS_STRIDE];
  __shared__ float qs[8][256];
  const int s = blockIdx.y, T = Tb[s / Hkv], j0 = blockIdx.x * 32;
  if (j0 >= T) return; /* block-uniform */
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, j = j0 + lane;
  const int NR = group * w;
  load_key_tile(ks, K, (size_t)s, t_max, d, j0, T);
  __syncthreads();
  for (int g = warp; g < group; g += 8) {
    double acc = 0.0;
    for (int i = 0; i < w; i++) {
      const int p = T - w + i;
      if (p < j0) continue; /* warp-uniform: no key of the tile visible (also p < 0) */
      const int r = g * w + i;
      __syncwarp();
      for (int c = lane; c < d; c += 32) qs[warp][c] = bf2f(Q[((size_t)s * NR + r) * d + c]);
      __syncwarp();
      const float dt = dot_rn(qs[warp], ks[lane], d);
      if (j <= p) {
        const double2 st = stat[(size_t)s * NR + r];
        acc += exp((double)scale * (double)dt - st.x) / st.y;
      }
    }
    if (j < T) a[((size_t)s * group + g) * Tm + j] = acc;
  }
}

/* scores[s, j]: per query head, max over [j - rad, j + rad] within [0, T),
 * summed over the group in head order, / group; 0 without a window; -inf
 * for j >= T. One thread per (s, j < t_max). */
__global__ void snap_pool(const double *__restrict__ a, const int32_t *__restrict__ Tb, int Hkv,
                          int t_max, int group, int Tm, int radius, int has_window,
                          float *__restrict__ out) {
  const int s = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= t_max) return;
  const int T = Tb[s / Hkv];
  float v;
  if (j >= T) {
    v = -INFINITY;
  } else if (!has_window) {
    v = 0.0f;
  } else {
    const int lo = j - radius < 0 ? 0 : j - radius, hi = j + radius > T - 1 ? T - 1 : j + radius;
    double acc = 0.0;
    for (int g = 0; g < group; g++) {
      const double *ag = a + ((size_t)s * group + g) * Tm;
      double m = ag[lo];
      for (int t = lo + 1; t <= hi; t++)
        if (ag[t] > m) m = ag[t];
      acc += m;
    }
    v = (float)(acc / group);
  }
  out[(size_t)s * t_max + j] = v;
}

/* ---- keydiff (common/keydiff.c) ------------------------------------------- */

/* inv[s*Tm + j] = 1 / ||k_j|| (0 for a zero key). */
__global__ void kd_norm(const uint16_t *__restrict__ K, const int32_t *__restrict__ Tb, int Hkv,
                        int t_max, int d, int Tm, double *__restrict__ inv) {
  const int s = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= Tb[s / Hkv]) return;
  const uint16_t *k = K + ((size_t)s * t_max + j) * d;
  double n2 = 0.0;
  for (int c = 0; c < d; c++) {
    const double x = bf2f(k[c]);
    n2 += x * x;
  }
  inv[(size_t)s * Tm + j] = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
}

/* mean[s*d + c] += sum over a chunk of 256 keys of k_j[c] / ||k_j||.
 * Grid (ceil(Tm / 256), S), d threads. mean is zeroed before. */
__global__ void kd_mean(const uint16_t *__restrict__ K, const int32_t *__restrict__ Tb, int Hkv,
                        int t_max, int d, int Tm, const double *__restrict__ inv,
                        double *__restrict__ mean) {
  const int s = blockIdx.y, c = threadIdx.x, T = Tb[s / Hkv];
  const int j0 = blockIdx.x * 256, j1 = j0 + 256 < T ? j0 + 256 : T;
  if (j0 >= T || c >= d) return;
  double acc = 0.0;
  for (int j = j0; j < j1; j++)
    acc += (double)bf2f(K[((size_t)s * t_max + j) * d + c]) * inv[(size_t)s * Tm + j];
  atomicAdd(&mean[(size_t)s * d + c], acc);
}

/* mean /= T; inv_m[s] = 1 / ||mean|| (0 if zero). One thread per segment. */
__global__ void kd_finish(const int32_t *__restrict__ Tb, int Hkv, int d, int S,
                          double *__restrict__ mean, double *__restrict__ inv_m) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= S) return;
  const int T = Tb[s / Hkv];
  double mn2 = 0.0;
  for (int c = 0; c < d; c++) {
    const double m = mean[(size_t)s * d + c] / T;
    mean[(size_t)s * d + c] = m;
    mn2 += m * m;
  }
  inv_m[s] = mn2 > 0.0 ? 1.0 / sqrt(mn2) : 0.0;
}

__global__ void kd_score(const uint16_t *__restrict__ K, const int32_t *__restrict__ Tb, int Hkv,
                         int t_max, int d, const double *__restrict__ mean,
                         const double *__restrict__ inv_m, float *__restrict__ out) {
  const int s = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= t_max) return;
  const int T = Tb[s / Hkv];
  if (j >= T) {
    out[(size_t)s * t_max + j] = -INFINITY;
    return;
  }
  const uint16_t *k = K + ((size_t)s * t_max + j) * d;
  const double *m = mean + (size_t)s * d;
  double n2 = 0.0, dot = 0.0;
  for (int c = 0; c < d; c++) {
    const double x = bf2f(k[c]);
    n2 += x * x;
    dot += x * m[c];
  }
  const double inv = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
  out[(size_t)s * t_max + j] = (float)(-dot * inv * inv_m[s]);
}

/* ---- select --------------------------------------------------------------- */

/* Per segment: item_begin (-1: keeps everything), n mid tokens, m of them
 * kept, T. */
struct seg_info {
  int ib, n, m, T;
};

__device__ __forceinline__ float rank_key(float x) {
  if (isnan(x)) return -INFINITY; /* NaN ranks last (rt_alloc.h) */
  return x == 0.0f ? 0.0f : x;    /* -0 ties with +0, as == says */
}

/* Grid (ceil(Tm / 256), S). */
__global__ void sel_keys(const float *__restrict__ scores, const seg_info *__restrict__ info,
                         int t_max, int sink, float *__restrict__ keys,
                         int32_t *__restrict__ vals) {
  const seg_info si = info[blockIdx.y];
  const int jj = blockIdx.x * blockDim.x + threadIdx.x;
  if (si.ib < 0 || jj >= si.n) return;
  const int t = sink + jj;
  keys[si.ib + jj] = rank_key(scores[(size_t)blockIdx.y * t_max + t]);
  vals[si.ib + jj] = t;
}

/* flags[s*Tm + t]: sink, window, or everything when nothing is evicted. */
__global__ void sel_flags(const seg_info *__restrict__ info, int Tm, int sink, int w,
                          uint8_t *__restrict__ flags) {
  const seg_info si = info[blockIdx.y];
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= Tm) return;
  flags[(size_t)blockIdx.y * Tm + t] =
      t < si.T && (si.ib < 0 || t < sink || t >= si.T - w) ? 1 : 0;
}

/* The top m of each sorted segment. Grid (ceil(max m / 256), S). */
__global__ void sel_mark(const seg_info *__restrict__ info, const int32_t *__restrict__ sorted,
                         int Tm, uint8_t *__restrict__ flags) {
  const seg_info si = info[blockIdx.y];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (si.ib < 0 || i >= si.m) return;
  flags[(size_t)blockIdx.y * Tm + sorted[si.ib + i]] = 1;
}

/* Flagged positions of segment s, ascending, to pos[off[s] ...]. One block
 * of 256 per segment. */
__global__ void __launch_bounds__(256)
    sel_compact(const seg_info *__restrict__ info, const uint8_t *__restrict__ flags,
                const int64_t *__restrict__ off, int Tm, int32_t *__restrict__ pos) {
  typedef cub::BlockScan<int, 256> scan_t;
  __shared__ typename scan_t::TempStorage tmp;
  const int s = blockIdx.x, T = info[s].T;
  int32_t *out = pos + off[s];
  int base = 0;
  for (int t0 = 0; t0 < T; t0 += 256) {
    const int t = t0 + threadIdx.x;
    const int f = t < T ? flags[(size_t)s * Tm + t] : 0;
    int idx, total;
    scan_t(tmp).ExclusiveSum(f, idx, total);
    if (f) out[base + idx] = t;
    base += total;
    __syncthreads(); /* tmp is reused */
  }
}

/* ---- gather / append ------------------------------------------------------ */

/* Grid (ceil(max keep / GATHER_ROWS), S), 256 threads; uint4 = 8 bf16. */
__global__ void gather_rows(const uint4 *__restrict__ ks, const uint4 *__restrict__ vs,
                            uint4 *__restrict__ K, uint4 *__restrict__ V,
                            const int64_t *__restrict__ off, const int32_t *__restrict__ keep,
                            const int32_t *__restrict__ pos, int t_max, int nch) {
  const int s = blockIdx.y, kp = keep[s], r0 = blockIdx.x * GATHER_ROWS;
  if (r0 >= kp) return;
  const int64_t o = off[s];
  for (int idx = threadIdx.x; idx < GATHER_ROWS * nch; idx += blockDim.x) {
    const int r = r0 + idx / nch, ch = idx % nch;
    if (r >= kp) break; /* idx only grows */
    const size_t src = ((size_t)s * t_max + (size_t)pos[o + r]) * nch + ch;
    const size_t dst = (size_t)(o + r) * nch + ch;
    K[dst] = ks[src];
    V[dst] = vs[src];
  }
}

/* One block (32 threads) per segment. ctl[0] = rows appended to every
 * segment of the layer so far; the last block to finish advances it (and
 * resets the done counter ctl[1]), so every block reads the old value. A
 * full layer (ctl[0] == reserve) is left alone and ctl[2] raised. */
__global__ void append_rows(const uint4 *__restrict__ kn, const uint4 *__restrict__ vn,
                            uint4 *__restrict__ K, uint4 *__restrict__ V,
                            const int64_t *__restrict__ off, const int32_t *__restrict__ keep,
                            int32_t *ctl, int reserve, int nch) {
  const int s = blockIdx.x;
  const int n = *(volatile int32_t *)ctl;
  const bool ok = n < reserve;
  if (ok) {
    const size_t row = (size_t)(off[s] + keep[s] + n);
    for (int ch = threadIdx.x; ch < nch; ch += blockDim.x) {
      K[row * nch + ch] = kn[(size_t)s * nch + ch];
      V[row * nch + ch] = vn[(size_t)s * nch + ch];
    }
  }
  __syncthreads(); /* every thread has read ctl[0] */
  if (threadIdx.x == 0) {
    if (!ok) ctl[2] = 1;
    __threadfence();
    const unsigned prev = atomicAdd((unsigned *)&ctl[1], 1u);
    if (prev == gridDim.x - 1) {
      ctl[1] = 0;
      if (ok) ctl[0] = n + 1;
      __threadfence();
    }
  }
}

/* ---- decode --------------------------------------------------------------- */

struct dec_args {
  const uint16_t *q;  /* [B, Hq, d] */
  uint16_t *out;      /* [B, Hq, d] */
  const uint16_t *k, *v;
  const int64_t *off;
  const int32_t *keep;
  const int32_t *ctl;
  float *part_acc, *part_ml;
  unsigned *counters;
  int Hkv, Hq, group, d, nsplit;
  float scale_log2;   /* scale * log2(e): logits in the exp2 domain */
};

/* Grid (nsplit, S, gz), DEC_THREADS threads. Team = TPR threads = one K / V
 * row (lane lt holds elements 8 lt .. 8 lt + 7); the block's R teams take
 * consecutive rows, U rows each per step. Block state per team: running max
 * m, sum l and unnormalised acc per query head (f32, exp2 domain). */
template <int TPR, int G, int U>
__global__ void __launch_bounds__(DEC_THREADS, LUKV_DEC_MINB) decode_kernel(const dec_args a) {
  constexpr int R = DEC_THREADS / TPR;
  constexpr int DM = TPR * 8;
  __shared__ float sm_acc[R][G][DM];
  __shared__ float sm_m[R][G], sm_l[R][G];
  __shared__ int sm_last;
  const int split = blockIdx.x, s = blockIdx.y, z = blockIdx.z;
  const int tid = threadIdx.x, team = tid / TPR, lt = tid % TPR;
  const int d = a.d, nch = d >> 3;
  const bool act = lt < nch;
  const int b = s / a.Hkv, h = s % a.Hkv;
  const int g0 = z * G, ng = a.group - g0 < G ? a.group - g0 : G;
  const int len = a.keep[s] + a.ctl[0];
  const int chunk = (len + a.nsplit - 1) / a.nsplit;
  const int start = split * chunk < len ? split * chunk : len;
  const int end = start + chunk < len ? start + chunk : len;
  /* Query head g of this block: b*Hq + h*group + g0 + g. */
  const size_t qbase = ((size_t)b * a.Hq + (size_t)h * a.group + g0) * d;

  float q[G][8];
#pragma unroll
  for (int g = 0; g < G; g++) {
    if (g < ng && act) {
      const uint4 u = __ldg((const uint4 *)(a.q + qbase + (size_t)g * d) + lt);
      unpack8(u, q[g]);
#pragma unroll
      for (int e = 0; e < 8; e++) q[g][e] *= a.scale_log2;
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) q[g][e] = 0.0f;
    }
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; g++) {
    m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
  }
  const uint4 *Kb = (const uint4 *)(a.k + (size_t)a.off[s] * d);
  const uint4 *Vb = (const uint4 *)(a.v + (size_t)a.off[s] * d);

  for (int r0 = start; r0 < end; r0 += R * U) { /* block-uniform */
    uint4 kk[U], vv[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int r = r0 + team + u * R;
      if (r < end && act) {
        kk[u] = __ldg(Kb + (size_t)r * nch + lt);
        vv[u] = __ldg(Vb + (size_t)r * nch + lt);
      } else {
        kk[u] = make_uint4(0, 0, 0, 0);
        vv[u] = make_uint4(0, 0, 0, 0);
      }
    }
    float sc[U][G];
#pragma unroll
    for (int u = 0; u < U; u++) {
      float kf[8];
      unpack8(kk[u], kf);
#pragma unroll
      for (int g = 0; g < G; g++) {
        float x = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) x = fmaf(q[g][e], kf[e], x);
#pragma unroll
        for (int o = TPR / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        sc[u][g] = r0 + team + u * R < end ? x : -INFINITY;
      }
    }
    float vf[U][8];
#pragma unroll
    for (int u = 0; u < U; u++) unpack8(vv[u], vf[u]);
#pragma unroll
    for (int g = 0; g < G; g++) {
      float mt = sc[0][g];
#pragma unroll
      for (int u = 1; u < U; u++) mt = fmaxf(mt, sc[u][g]);
      const float mn = fmaxf(m[g], mt);
      const float corr = m[g] == -INFINITY ? 0.0f : exp2f(m[g] - mn);
      float p[U], ps = 0.0f;
#pragma unroll
      for (int u = 0; u < U; u++) {
        p[u] = sc[u][g] == -INFINITY ? 0.0f : exp2f(sc[u][g] - mn);
        ps += p[u];
      }
      l[g] = l[g] * corr + ps;
#pragma unroll
      for (int e = 0; e < 8; e++) {
        float x = acc[g][e] * corr;
#pragma unroll
        for (int u = 0; u < U; u++) x = fmaf(p[u], vf[u][e], x);
        acc[g][e] = x;
      }
      m[g] = mn;
    }
  }

  /* Merge the teams. */
  if (lt == 0) {
#pragma unroll
    for (int g = 0; g < G; g++) sm_m[team][g] = m[g], sm_l[team][g] = l[g];
  }
  if (act) {
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
      for (int e = 0; e < 8; e++) sm_acc[team][g][lt * 8 + e] = acc[g][e];
  }
  __syncthreads();
  const int nout = ng * d;
  if (a.nsplit == 1) {
    for (int idx = tid; idx < nout; idx += DEC_THREADS) {
      const int g = idx / d, c = idx % d;
      float M = -INFINITY;
      for (int t = 0; t < R; t++) M = fmaxf(M, sm_m[t][g]);
      float Ls = 0.0f, As = 0.0f;
      for (int t = 0; t < R; t++) {
        const float wt = sm_m[t][g] == -INFINITY ? 0.0f : exp2f(sm_m[t][g] - M);
        Ls += wt * sm_l[t][g];
        As += wt * sm_acc[t][g][c];
      }
      a.out[qbase + (size_t)g * d + c] = f2bf(Ls > 0.0f ? As / Ls : 0.0f);
    }
    return;
  }
  const size_t cell = (size_t)s * gridDim.z + z;       /* (segment, head chunk) */
  const size_t pbase = cell * a.nsplit * G;            /* its first (split, head) slot */
  const size_t pslot = pbase + (size_t)split * G;
  for (int idx = tid; idx < nout; idx += DEC_THREADS) {
    const int g = idx / d, c = idx % d;
    float M = -INFINITY;
    for (int t = 0; t < R; t++) M = fmaxf(M, sm_m[t][g]);
    float Ls = 0.0f, As = 0.0f;
    for (int t = 0; t < R; t++) {
      const float wt = sm_m[t][g] == -INFINITY ? 0.0f : exp2f(sm_m[t][g] - M);
      Ls += wt * sm_l[t][g];
      As += wt * sm_acc[t][g][c];
    }
    a.part_acc[(pslot + g) * d + c] = As;
    if (c == 0) a.part_ml[(pslot + g) * 2] = M, a.part_ml[(pslot + g) * 2 + 1] = Ls;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) sm_last = atomicAdd(&a.counters[cell], 1u) == (unsigned)a.nsplit - 1;
  __syncthreads();
  if (!sm_last) return;
  __threadfence();
  /* The splits' (m, l) come into shared memory in one parallel step and
   * become weights there, so that each output's loop over the splits is
   * independent loads of part_acc, not a chain of dependent L2 round trips
   * (which made a floor of several microseconds per call). Same order of
   * operations per output as a sequential merge. */
  __shared__ float sm_wt[NSPLIT_MAX][G], sm_ls[NSPLIT_MAX][G], sm_L[G];
  for (int idx = tid; idx < a.nsplit * ng; idx += DEC_THREADS) {
    const int sp = idx / ng, g = idx % ng;
    const size_t sl = pbase + (size_t)sp * G + g;
    sm_wt[sp][g] = __ldcg(&a.part_ml[sl * 2]);
    sm_ls[sp][g] = __ldcg(&a.part_ml[sl * 2 + 1]);
  }
  __syncthreads();
  if (tid < ng) {
    float M = -INFINITY, Ls = 0.0f;
    for (int sp = 0; sp < a.nsplit; sp++) M = fmaxf(M, sm_wt[sp][tid]);
    for (int sp = 0; sp < a.nsplit; sp++) {
      const float ms = sm_wt[sp][tid];
      const float wt = ms == -INFINITY ? 0.0f : exp2f(ms - M);
      sm_wt[sp][tid] = wt;
      Ls += wt * sm_ls[sp][tid];
    }
    sm_L[tid] = Ls;
  }
  __syncthreads();
  for (int idx = tid; idx < nout; idx += DEC_THREADS) {
    const int g = idx / d, c = idx % d;
    float As = 0.0f;
#pragma unroll 8
    for (int sp = 0; sp < a.nsplit; sp++)
      As += sm_wt[sp][g] * __ldcg(&a.part_acc[(pbase + (size_t)sp * G + g) * d + c]);
    const float Ls = sm_L[g];
    a.out[qbase + (size_t)g * d + c] = f2bf(Ls > 0.0f ? As / Ls : 0.0f);
  }
  if (tid == 0) a.counters[cell] = 0; /* ready for the next launch / replay */
}

typedef void (*decode_fn)(const dec_args);

template <int TPR>
decode_fn pick_g(int G) {
  switch (G) {
  case 1: return decode_kernel<TPR, 1, LUKV_DEC_U>;
  case 2: return decode_kernel<TPR, 2, LUKV_DEC_U>;
  case 4: return decode_kernel<TPR, 4, LUKV_DEC_U>;
  default: return decode_kernel<TPR, 8, 2>;
  }
}

decode_fn pick_decode(int d, int G) {
  const int nch = d / 8;
  if (nch <= 8) return pick_g<8>(G);
  if (nch <= 16) return pick_g<16>(G);
  return pick_g<32>(G);
}

/* ---- host side ------------------------------------------------------------ */

inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

int splits_for(const cu_ctx *c, int max_cap) {
  const int cells = c->dims.B * c->dims.Hkv * c->gz;
#if LUKV_DEC_FILL
  /* As many splits as fill the resident blocks once: a partial second wave
   * leaves most SMs idle while it runs (H100, 8 sequences x 16K tokens, 4
   * blocks per SM: 576 blocks, 1.09 waves of 528, read 56% of the copy
   * bandwidth; 512 blocks read 84%). */
  int n = c->resident / cells;
#else
  int n = (int)cdiv((size_t)LUKV_DEC_WAVES * c->sms, (size_t)cells);
#endif
  const int by_rows = (int)cdiv((size_t)(max_cap > 0 ? max_cap : 1), MIN_SPLIT_ROWS);
  if (n > by_rows) n = by_rows;
  if (n > c->nsplit_cap) n = c->nsplit_cap;
  return n < 1 ? 1 : n;
}

bool misaligned(const void *p) { return ((uintptr_t)p & 15u) != 0; }

int be_init(const lukv_rt_dims *dims, int reserve, void **out, lukv_error *err) {
  const char *where = "lukv_cache_create";
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n < 1) {
    cudaGetLastError();
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: LUKV_BACKEND_CUDA: no usable CUDA device (%s); use "
                          "LUKV_BACKEND_CPU",
                          where, e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
  }
  int dev = 0, major = 0, sms = 0;
  CU("device", cudaGetDevice(&dev));
  CU("device", cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CU("device", cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (major < 9)
    return lukv_error_set(err, LUKV_ERR_UNSUPPORTED,
                          "%s: LUKV_BACKEND_CUDA: device %d has compute capability %d.x; this "
                          "build has sm_90 code",
                          where, dev, major);
  cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
  if (!c) return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", where);
  c->stream = 0;
  c->device = dev;
  c->sms = sms;
  c->dims = *dims;
  c->reserve = reserve;
  c->group = dims->Hq / dims->Hkv;
  c->G = c->group == 1 ? 1 : c->group == 2 ? 2 : c->group <= 4 ? 4 : 8;
  c->gz = (c->group + c->G - 1) / c->G;
  const size_t cells = (size_t)dims->B * dims->Hkv * c->gz;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, (const void *)pick_decode(dims->d, c->G), DEC_THREADS,
                                                    0) != cudaSuccess || per_sm < 1) {
    cudaGetLastError();
    per_sm = 1;
  }
  c->resident = per_sm * sms;
#if LUKV_DEC_FILL
  int cap = (int)((size_t)c->resident / cells);
#else
  int cap = (int)cdiv((size_t)LUKV_DEC_WAVES * sms, cells);
#endif
  c->nsplit_cap = cap < 1 ? 1 : cap > NSPLIT_MAX ? NSPLIT_MAX : cap;
  const size_t slots = cells * c->nsplit_cap * c->G;
  int rc = LUKV_OK;
  cudaError_t e1 = cudaMalloc(&c->part_acc, slots * dims->d * sizeof(float));
  cudaError_t e2 = e1 == cudaSuccess ? cudaMalloc(&c->part_ml, slots * 2 * sizeof(float)) : e1;
  cudaError_t e3 = e2 == cudaSuccess ? cudaMalloc(&c->counters, cells * sizeof(unsigned)) : e2;
  if (e3 != cudaSuccess) {
    cudaGetLastError();
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: decode scratch: cudaMalloc failed: %s", where,
                        cudaGetErrorString(e3));
  } else {
    cudaError_t e4 = cudaMemset(c->counters, 0, cells * sizeof(unsigned));
    if (e4 != cudaSuccess) rc = cuda_fail(err, where, "decode counters", "cudaMemset", e4);
  }
  if (rc != LUKV_OK) {
    cudaFree(c->part_acc), cudaFree(c->part_ml), cudaFree(c->counters);
    free(c);
    return rc;
  }
  *out = c;
  return LUKV_OK;
}

void be_fini(void *ctx) {
  cu_ctx *c = (cu_ctx *)ctx;
  if (!c) return;
  /* cudaFree waits for the device; the stream may already be destroyed. */
  cudaFree(c->part_acc), cudaFree(c->part_ml), cudaFree(c->counters);
  for (int i = 0; i < SC_N; i++) cudaFree(c->sc[i]);
  free(c);
}

int be_set_stream(void *ctx, void *stream, lukv_error *err) {
  (void)err;
  ((cu_ctx *)ctx)->stream = (cudaStream_t)stream;
  return LUKV_OK;
}

int be_capturing(void *ctx) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(((cu_ctx *)ctx)->stream, &st) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return st != cudaStreamCaptureStatusNone;
}

int be_layer_init(void *ctx, lukv_rt_layer *ly, lukv_error *err) {
  const char *where = "lukv_compress";
  cu_ctx *c = (cu_ctx *)ctx;
  const int S = c->dims.B * c->dims.Hkv;
  cu_layer *cl = (cu_layer *)calloc(1, sizeof *cl);
  int64_t *off = (int64_t *)malloc(sizeof *off * S);
  int32_t *keep = (int32_t *)malloc(sizeof *keep * S);
  if (!cl || !off || !keep) {
    free(cl), free(off), free(keep);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", where);
  }
  for (int i = 0; i < S; i++) {
    off[i] = ly->seg[i].offset;
    keep[i] = ly->seg[i].keep;
    if (keep[i] > cl->max_keep) cl->max_keep = keep[i];
    if (ly->seg[i].capacity > cl->max_cap) cl->max_cap = ly->seg[i].capacity;
  }
  /* One allocation: off [S] int64, keep [S] int32, ctl [4] int32. */
  char *blk = NULL;
  const size_t bytes = sizeof(int64_t) * S + sizeof(int32_t) * (S + 4);
  cudaError_t e = cudaMalloc(&blk, bytes);
  if (e == cudaSuccess) {
    cl->off = (int64_t *)blk;
    cl->keep = (int32_t *)(blk + sizeof(int64_t) * S);
    cl->ctl = cl->keep + S;
    e = cudaMemcpyAsync(cl->off, off, sizeof *off * S, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess)
      e = cudaMemcpyAsync(cl->keep, keep, sizeof *keep * S, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(cl->ctl, 0, 4 * sizeof(int32_t), c->stream);
  }
  free(off), free(keep);
  if (e != cudaSuccess) {
    cudaFree(blk);
    free(cl);
    return cuda_fail(err, where, "segment table", "cudaMalloc / cudaMemcpyAsync", e);
  }
  ly->dev = cl;
  return LUKV_OK;
}

void be_layer_fini(void *ctx, lukv_rt_layer *ly) {
  cu_layer *cl = (cu_layer *)ly->dev;
  (void)ctx;
  if (cl) cudaFree(cl->off); /* the whole block */
  free(cl);
  ly->dev = NULL;
}

int be_sync_layer(void *ctx, const lukv_rt_layer *ly, int32_t *appended, int *overflow,
                  lukv_error *err) {
  const char *where = "lukv_cache_sync";
  cu_ctx *c = (cu_ctx *)ctx;
  const cu_layer *cl = (const cu_layer *)ly->dev;
  int32_t ctl[4];
  CU("layer counters", cudaMemcpyAsync(ctl, cl->ctl, sizeof ctl, cudaMemcpyDeviceToHost, c->stream));
  CU("layer counters", cudaStreamSynchronize(c->stream));
  *appended = ctl[0];
  *overflow = ctl[2] != 0;
  if (ctl[2]) CU("layer counters", cudaMemsetAsync(cl->ctl + 2, 0, sizeof(int32_t), c->stream));
  return LUKV_OK;
}

int be_alloc(void *ctx, size_t bytes, void **ptr, lukv_error *err) {
  (void)ctx;
  cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 16);
  if (e != cudaSuccess) {
    cudaGetLastError();
    *ptr = NULL;
    return lukv_error_set(err, LUKV_ERR_NOMEM, "cuda backend: cudaMalloc of %.1f MiB failed: %s",
                          (double)bytes / (1 << 20), cudaGetErrorString(e));
  }
  return LUKV_OK;
}

void be_free(void *ctx, void *ptr) {
  (void)ctx;
  cudaFree(ptr);
}

int be_to_host(void *ctx, void *dst, const void *src, size_t bytes, lukv_error *err) {
  const char *where = "cuda backend";
  cu_ctx *c = (cu_ctx *)ctx;
  if (!bytes) return LUKV_OK;
  CU("copy to host", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  CU("copy to host", cudaStreamSynchronize(c->stream));
  return LUKV_OK;
}

int max_len(const int32_t *T, int B) {
  int m = 1;
  for (int b = 0; b < B; b++)
    if (T[b] > m) m = T[b];
  return m;
}

/* context_len [B] into device scratch SC_T. */
int upload_T(cu_ctx *c, const int32_t *T, int32_t **dT, lukv_error *err) {
  const char *where = "lukv_compress";
  void *p = NULL;
  int rc = scratch(c, SC_T, sizeof(int32_t) * c->dims.B, &p, err);
  if (rc != LUKV_OK) return rc;
  CU("context_len", cudaMemcpyAsync(p, T, sizeof(int32_t) * c->dims.B, cudaMemcpyHostToDevice,
                                    c->stream));
  *dT = (int32_t *)p;
  return LUKV_OK;
}

int be_score(void *ctx, const lukv_rt_score_job *job, float *scores, lukv_error *err) {
  const char *where = "lukv_compress (score)";
  cu_ctx *c = (cu_ctx *)ctx;
  const int B = job->dims.B, Hkv = job->dims.Hkv, d = job->dims.d, S = B * Hkv;
  const int group = job->dims.Hq / Hkv, w = job->window, tm = job->t_max;
  const int Tm = max_len(job->context_len, B);
  const uint16_t *K = (const uint16_t *)job->k, *Q = (const uint16_t *)job->q_window;
  int32_t *dT = NULL;
  int rc = upload_T(c, job->context_len, &dT, err);
  if (rc != LUKV_OK) return rc;
  cudaStream_t st = c->stream;
  if (job->scorer == LUKV_RT_KEYDIFF) {
    void *inv = NULL, *mean = NULL, *inv_m = NULL;
    if ((rc = scratch(c, SC_A, sizeof(double) * S * (size_t)Tm, &inv, err)) ||
        (rc = scratch(c, SC_B, sizeof(double) * S * (size_t)d, &mean, err)) ||
        (rc = scratch(c, SC_C, sizeof(double) * S, &inv_m, err)))
      return rc;
    CU("keydiff mean", cudaMemsetAsync(mean, 0, sizeof(double) * S * (size_t)d, st));
    kd_norm<<<dim3(cdiv(Tm, 256), S), 256, 0, st>>>(K, dT, Hkv, tm, d, Tm, (double *)inv);
    LAUNCHED("kd_norm");
    kd_mean<<<dim3(cdiv(Tm, 256), S), d, 0, st>>>(K, dT, Hkv, tm, d, Tm, (const double *)inv,
                                                   (double *)mean);
    LAUNCHED("kd_mean");
    kd_finish<<<cdiv(S, 128), 128, 0, st>>>(dT, Hkv, d, S, (double *)mean, (double *)inv_m);
    LAUNCHED("kd_finish");
    kd_score<<<dim3(cdiv(tm, 256), S), 256, 0, st>>>(K, dT, Hkv, tm, d, (const double *)mean,
                                                     (const double *)inv_m, scores);
    LAUNCHED("kd_score");
    return LUKV_OK;
  }
  double *a = NULL;
  if (w > 0) {
    const int NR = group * w, nspan = (int)cdiv(Tm, SNAP_SPAN);
    const size_t nrows = (size_t)S * NR;
    void *part = NULL, *stat = NULL, *av = NULL;
    if ((rc = scratch(c, SC_A, sizeof(double2) * nrows * nspan, &part, err)) ||
        (rc = scratch(c, SC_B, sizeof(double2) * nrows, &stat, err)) ||
        (rc = scratch(c, SC_C, sizeof(double) * (size_t)S * group * Tm, &av, err)))
      return rc;
    a = (double *)av;
    snap_rowstats<<<dim3(nspan, S, cdiv(NR, 8)), 256, 0, st>>>(K, Q, dT, Hkv, tm, d, w, NR,
                                                                job->scale, (double2 *)part,
                                                                nspan);
    LAUNCHED("snap_rowstats");
    snap_rowmerge<<<cdiv(nrows, 256), 256, 0, st>>>((const double2 *)part, dT, Hkv, w, NR, nspan,
                                                    nrows, (double2 *)stat);
    LAUNCHED("snap_rowmerge");
    snap_accum<<<dim3(cdiv(Tm, 32), S), 256, 0, st>>>(K, Q, dT, (const double2 *)stat, Hkv, tm, d,
                                                       w, group, Tm, job->scale, a);
    LAUNCHED("snap_accum");
  }
  snap_pool<<<dim3(cdiv(tm, 256), S), 256, 0, st>>>(a, dT, Hkv, tm, group, Tm,
                                                     job->pool_kernel / 2, w > 0, scores);
  LAUNCHED("snap_pool");
  return LUKV_OK;
}

int be_select(void *ctx, const lukv_rt_select_job *job, lukv_error *err) {
  const char *where = "lukv_compress (select)";
  cu_ctx *c = (cu_ctx *)ctx;
  const lukv_rt_layer *ly = job->layer;
  const cu_layer *cl = (const cu_layer *)ly->dev;
  const int B = job->dims.B, Hkv = job->dims.Hkv, S = B * Hkv;
  const int sink = job->sink, w = job->window, tm = job->t_max;
  const int Tm = max_len(job->context_len, B);
  cudaStream_t st = c->stream;
  seg_info *info = (seg_info *)malloc(sizeof *info * S);
  int *offs = (int *)malloc(sizeof(int) * (S + 1));
  if (!info || !offs) {
    free(info), free(offs);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", where);
  }
  int64_t N = 0;
  int nseg = 0, max_m = 0;
  for (int i = 0; i < S; i++) {
    const int T = job->context_len[i / Hkv], keep = ly->seg[i].keep;
    info[i].T = T;
    if (keep >= T) { /* nothing evicted */
      info[i].ib = -1, info[i].n = 0, info[i].m = 0;
      continue;
    }
    /* s + w <= keep < T: sink, mid and window are disjoint. */
    info[i].ib = (int)N;
    info[i].n = T - sink - w;
    info[i].m = keep - sink - w;
    if (info[i].m > max_m) max_m = info[i].m;
    offs[nseg++] = (int)N;
    N += info[i].n;
    if (N > INT32_MAX / 2) {
      free(info), free(offs);
      return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: %lld mid tokens exceed one sort",
                            where, (long long)N);
    }
  }
  offs[nseg] = (int)N;
  void *dinfo = NULL, *flags = NULL, *pos = NULL;
  int rc;
  if ((rc = scratch(c, SC_INFO, sizeof *info * S + sizeof(int) * (S + 1), &dinfo, err)) ||
      (rc = scratch(c, SC_D, (size_t)S * Tm, &flags, err)) ||
      (rc = scratch(c, SC_POS, sizeof(int32_t) * (size_t)(ly->rows ? ly->rows : 1), &pos, err))) {
    free(info), free(offs);
    return rc;
  }
  int *doffs = (int *)((char *)dinfo + sizeof *info * S);
  cudaError_t e = cudaMemcpyAsync(dinfo, info, sizeof *info * S, cudaMemcpyHostToDevice, st);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(doffs, offs, sizeof(int) * (nseg + 1), cudaMemcpyHostToDevice, st);
  free(info), free(offs);
  if (e != cudaSuccess) return cuda_fail(err, where, "segment info", "cudaMemcpyAsync", e);
  const seg_info *di = (const seg_info *)dinfo;
  sel_flags<<<dim3(cdiv(Tm, 256), S), 256, 0, st>>>(di, Tm, sink, w, (uint8_t *)flags);
  LAUNCHED("sel_flags");
  if (nseg > 0) {
    void *kin = NULL, *kout = NULL, *vin = NULL, *vout = NULL, *tmp = NULL;
    size_t tmp_bytes = 0;
    CU("segmented sort", cub::DeviceSegmentedRadixSort::SortPairsDescending(
                             NULL, tmp_bytes, (const float *)NULL, (float *)NULL,
                             (const int32_t *)NULL, (int32_t *)NULL, (int)N, nseg, doffs,
                             doffs + 1, 0, 32, st));
    if ((rc = scratch(c, SC_A, sizeof(float) * (size_t)N, &kin, err)) ||
        (rc = scratch(c, SC_B, sizeof(float) * (size_t)N, &kout, err)) ||
        (rc = scratch(c, SC_C, sizeof(int32_t) * (size_t)N, &vin, err)) ||
        (rc = scratch(c, SC_E, sizeof(int32_t) * (size_t)N, &vout, err)) ||
        (rc = scratch(c, SC_CUB, tmp_bytes, &tmp, err)))
      return rc;
    sel_keys<<<dim3(cdiv(Tm, 256), S), 256, 0, st>>>(job->scores, di, tm, sink, (float *)kin,
                                                      (int32_t *)vin);
    LAUNCHED("sel_keys");
    CU("segmented sort", cub::DeviceSegmentedRadixSort::SortPairsDescending(
                             tmp, tmp_bytes, (const float *)kin, (float *)kout,
                             (const int32_t *)vin, (int32_t *)vout, (int)N, nseg, doffs,
                             doffs + 1, 0, 32, st));
    if (max_m > 0) {
      sel_mark<<<dim3(cdiv(max_m, 256), S), 256, 0, st>>>(di, (const int32_t *)vout, Tm,
                                                          (uint8_t *)flags);
      LAUNCHED("sel_mark");
    }
  }
  sel_compact<<<S, 256, 0, st>>>(di, (const uint8_t *)flags, cl->off, Tm, (int32_t *)pos);
  LAUNCHED("sel_compact");
  if (ly->rows) {
    CU("positions", cudaMemcpyAsync(ly->pos, pos, sizeof(int32_t) * (size_t)ly->rows,
                                    cudaMemcpyDeviceToHost, st));
  }
  CU("positions", cudaStreamSynchronize(st));
  return LUKV_OK;
}

int be_gather(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *ly, const void *k_src,
              const void *v_src, int t_max, lukv_error *err) {
  const char *where = "lukv_compress (gather)";
  cu_ctx *c = (cu_ctx *)ctx;
  const cu_layer *cl = (const cu_layer *)ly->dev;
  const int S = dims->B * dims->Hkv;
  if (misaligned(k_src) || misaligned(v_src))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: k and v must be 16-byte aligned", where);
  if (cl->max_keep == 0) return LUKV_OK;
  void *pos = NULL;
  int rc = scratch(c, SC_POS, sizeof(int32_t) * (size_t)ly->rows, &pos, err);
  if (rc != LUKV_OK) return rc;
  CU("positions", cudaMemcpyAsync(pos, ly->pos, sizeof(int32_t) * (size_t)ly->rows,
                                  cudaMemcpyHostToDevice, c->stream));
  gather_rows<<<dim3(cdiv(cl->max_keep, GATHER_ROWS), S), 256, 0, c->stream>>>(
      (const uint4 *)k_src, (const uint4 *)v_src, (uint4 *)ly->k, (uint4 *)ly->v, cl->off,
      cl->keep, (const int32_t *)pos, t_max, dims->d / 8);
  LAUNCHED("gather_rows");
  /* The caller may free its prefill K / V once lukv_compress returns. */
  CU("gather", cudaStreamSynchronize(c->stream));
  return LUKV_OK;
}

int be_append(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *ly, const void *k_new,
              const void *v_new, lukv_error *err) {
  const char *where = "lukv_append";
  cu_ctx *c = (cu_ctx *)ctx;
  const cu_layer *cl = (const cu_layer *)ly->dev;
  if (misaligned(k_new) || misaligned(v_new))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: k_new and v_new must be 16-byte aligned",
                          where);
  append_rows<<<dims->B * dims->Hkv, 32, 0, c->stream>>>(
      (const uint4 *)k_new, (const uint4 *)v_new, (uint4 *)ly->k, (uint4 *)ly->v, cl->off,
      cl->keep, cl->ctl, c->reserve, dims->d / 8);
  LAUNCHED("append_rows");
  return LUKV_OK;
}

int be_decode(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *ly, const void *q,
              void *out, float scale, lukv_error *err) {
  const char *where = "lukv_decode_attention";
  cu_ctx *c = (cu_ctx *)ctx;
  const cu_layer *cl = (const cu_layer *)ly->dev;
  if (misaligned(q) || misaligned(out))
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: q and out must be 16-byte aligned", where);
  dec_args a;
  a.q = (const uint16_t *)q;
  a.out = (uint16_t *)out;
  a.k = (const uint16_t *)ly->k;
  a.v = (const uint16_t *)ly->v;
  a.off = cl->off;
  a.keep = cl->keep;
  a.ctl = cl->ctl;
  a.part_acc = c->part_acc;
  a.part_ml = c->part_ml;
  a.counters = c->counters;
  a.Hkv = dims->Hkv;
  a.Hq = dims->Hq;
  a.group = c->group;
  a.d = dims->d;
  a.nsplit = splits_for(c, cl->max_cap);
  a.scale_log2 = scale * 1.4426950408889634f;
  decode_fn fn = pick_decode(dims->d, c->G);
  fn<<<dim3(a.nsplit, dims->B * dims->Hkv, c->gz), DEC_THREADS, 0, c->stream>>>(a);
  LAUNCHED("decode_kernel");
  return LUKV_OK;
}

} /* namespace */

extern "C" const lukv_rt_backend lukv_rt_backend_cuda = {
    "cuda",        be_init,   be_fini,   be_set_stream, be_capturing, be_layer_init,
    be_layer_fini, be_sync_layer, be_alloc, be_free,    be_to_host,   be_score,
    be_select,     be_gather, be_append, be_decode,
};

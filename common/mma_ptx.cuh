/* The inline PTX of the tensor-core kernels (the engine's flash attention in
 * model/cuda_kernels.cu, the profiler's column reduction in
 * profiler/stats_cuda.cu): warp-level mma.sync m16n8k16 on bf16, ldmatrix,
 * cp.async. Under cudasim (tests/cudasim/include/cudasim_ptx.h) the same
 * names run on the CPU with the PTX ISA's fragment layouts.
 *
 * Fragments of mma.m16n8k16.row.col (lane t, g = t / 4, q = t % 4):
 *   A [16][16] a[0..3]: rows g, g + 8, g, g + 8; columns 2q + {0, 1}, + 8 for a[2], a[3]
 *   B [16][8]  b0, b1:  rows (k) 2q + {0, 1}, + 8 for b1; column (n) g
 *   C [16][8]  c[0..3]: (g, 2q), (g, 2q + 1), (g + 8, 2q), (g + 8, 2q + 1)
 * An A or B register holds two bf16, the lower column (row for B) in the low half. */
#ifndef LUKV_MMA_PTX_CUH
#define LUKV_MMA_PTX_CUH

#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#ifndef LUKV_CUDASIM_H
static __device__ __forceinline__ uint32_t ptx_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
/* 16 bytes global -> shared, asynchronous; zeros when !ok (src not read) */
static __device__ __forceinline__ void ptx_cp_async16(void *dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(ptx_smem_addr(dst)), "l"(src),
               "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void ptx_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/* waits until at most n committed groups are still in flight */
template <int n>
static __device__ __forceinline__ void ptx_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(n));
}
/* four 8x8 bf16 matrices; lane i gives the address of row i % 8 of matrix i / 8;
 * r[m] holds row lane / 4, columns 2 (lane % 4) + {0, 1} of matrix m (of its
 * transpose with trans) */
static __device__ __forceinline__ void ptx_ldmatrix_x4(uint32_t r[4], const __nv_bfloat16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(ptx_smem_addr(p)));
}
static __device__ __forceinline__ void ptx_ldmatrix_x4_trans(uint32_t r[4], const __nv_bfloat16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(ptx_smem_addr(p)));
}
/* c [16, 8] += a [16, 16] b [16, 8], bf16 in, f32 accumulate (PTX ISA fragment layouts) */
static __device__ __forceinline__ void ptx_mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ float ptx_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
#endif


/* two floats as the bf16 pair of an A fragment register (lo = the lower column) */
static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

/* One step of a cp.async double buffer: with a next tile, start loading it
 * (load(), one commit group) and wait for all but that group, i.e. for the
 * tile about to be computed; at the last tile wait for everything. A
 * __syncthreads must follow before the tile is read. */
template <class Load>
static __device__ __forceinline__ void cp_async_next_tile(bool has_next, Load load) {
  if (has_next) {
    load();
    ptx_cp_async_commit();
    ptx_cp_async_wait<1>();
  } else {
    ptx_cp_async_wait<0>();
  }
}

/* s [MT][NB][4] = Q K^T for one warp, the tile loop both mma.sync kernels
 * share: MT m-tiles of 16 query rows against NB blocks of 8 keys, D head
 * dims. q_lane: this lane's ldmatrix row address for m-tile 0 (row
 * lane % 16 of the warp's first 16 rows, column 8 (lane / 16)); m-tile mt
 * is 16 ld elements further per row. k_tile: the key tile's first row.
 * Both row-major bf16 in shared memory with row stride ld. K's ldmatrix x4
 * gives two k16 steps of one key block, so the loop runs 32 dims at a time. */
template <int MT, int NB, int D>
static __device__ __forceinline__ void warp_qk(float s[MT][NB][4], const __nv_bfloat16 *q_lane,
                                               const __nv_bfloat16 *k_tile, int ld, int lane) {
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int nb = 0; nb < NB; nb++) s[mt][nb][0] = s[mt][nb][1] = s[mt][nb][2] = s[mt][nb][3] = 0.f;
#pragma unroll
  for (int kc = 0; kc < D / 32; kc++) {
    uint32_t a[MT][2][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      ptx_ldmatrix_x4(a[mt][0], q_lane + mt * 16 * ld + kc * 32);
      ptx_ldmatrix_x4(a[mt][1], q_lane + mt * 16 * ld + kc * 32 + 16);
    }
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
      uint32_t b[4];
      ptx_ldmatrix_x4(b, k_tile + (nb * 8 + (lane & 7)) * ld + kc * 32 + (lane >> 3) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        ptx_mma_bf16_16816(s[mt][nb], a[mt][0], b[0], b[1]);
        ptx_mma_bf16_16816(s[mt][nb], a[mt][1], b[2], b[3]);
      }
    }
  }
}

#endif

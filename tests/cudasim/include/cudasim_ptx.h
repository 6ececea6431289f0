/* cudasim's versions of the inline PTX that model/cuda_kernels.cu wraps
 * (ptx_cp_async16 ... ptx_exp2, under #ifndef LUKV_CUDASIM_H there), with
 * the register layouts of the PTX ISA, so that a fragment-layout mistake in
 * the kernel shows on the CPU as it would on a GPU:
 * - ldmatrix .x4 [.trans]: lane i gives the address of row i % 8 of matrix
 *   i / 8 (16-byte aligned, else abort); register m of lane t holds row t / 4,
 *   columns 2 (t % 4) + {0, 1} of matrix m (of its transpose with .trans).
 * - mma.m16n8k16.row.col bf16 -> f32: A, B, C fragments as in the ISA's
 *   figures; products exact in f32, the sum over k in order, in f32, then
 *   added to C (computed once per warp).
 * - cp.async: the source is read when the copy is issued, the shared memory
 *   written only when a cp.async.wait_group lets the copy's group complete:
 *   a read of the tile before the wait sees the old (or 0xff, NaN) bytes.
 * Each warp-wide operation is a warp collective (every lane must reach it). */
#ifndef LUKV_CUDASIM_PTX_H
#define LUKV_CUDASIM_PTX_H

#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace cudasim {
struct cp_async_copy {
  void *dst;
  unsigned char data[16];
};
struct cp_async_state {
  std::vector<cp_async_copy> open;                /* issued, not yet committed */
  std::vector<std::vector<cp_async_copy>> groups; /* committed, oldest first */
};
std::vector<cp_async_state> &cp_async_threads(); /* indexed by the thread's linear index in its block */
int thread_linear();
/* Every lane deposits `bytes` (<= 16) of v; returns the 32 deposits (16-byte
 * slots, lane order), valid until the warp's next collective. */
const void *warp_gather(const void *v, size_t bytes);

inline cp_async_state &cp_async_mine() {
  std::vector<cp_async_state> &all = cp_async_threads();
  const size_t i = (size_t)thread_linear();
  if (all.size() <= i) all.resize(1024);
  return all[i];
}
inline uint32_t ldmatrix_word(const void *row, int col) { /* two bf16 at columns col, col + 1 */
  uint32_t u;
  memcpy(&u, (const unsigned char *)row + 2 * col, 4);
  return u;
}
inline float bf16_bits_to_float(uint16_t b) {
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}
/* the 32 lanes' row addresses of an ldmatrix */
inline void ldmatrix_rows(const void *p, const void *rows[32]) {
  if ((uintptr_t)p % 16) {
    fprintf(stderr, "cudasim: ldmatrix row address %p is not 16-byte aligned\n", p);
    abort();
  }
  const unsigned char *slots = (const unsigned char *)warp_gather(&p, sizeof p);
  for (int l = 0; l < 32; l++) memcpy(&rows[l], slots + 16 * l, sizeof(void *));
}
}  // namespace cudasim

static inline void ptx_cp_async16(void *dst, const void *src, bool ok) {
  ::cudasim::cp_async_copy c;
  c.dst = dst;
  if (ok) memcpy(c.data, src, 16);
  else memset(c.data, 0, 16);
  ::cudasim::cp_async_mine().open.push_back(c);
}
static inline void ptx_cp_async_commit() {
  ::cudasim::cp_async_state &s = ::cudasim::cp_async_mine();
  s.groups.push_back(std::move(s.open));
  s.open.clear();
}
template <int n>
static inline void ptx_cp_async_wait() {
  ::cudasim::cp_async_state &s = ::cudasim::cp_async_mine();
  while (s.groups.size() > (size_t)n) {
    for (const ::cudasim::cp_async_copy &c : s.groups.front()) memcpy(c.dst, c.data, 16);
    s.groups.erase(s.groups.begin());
  }
}
static inline void ptx_ldmatrix_x4(uint32_t r[4], const __nv_bfloat16 *p) {
  const void *rows[32];
  ::cudasim::ldmatrix_rows(p, rows);
  const int t = ::cudasim::lane_id();
  for (int m = 0; m < 4; m++) r[m] = ::cudasim::ldmatrix_word(rows[8 * m + t / 4], 2 * (t % 4));
}
static inline void ptx_ldmatrix_x4_trans(uint32_t r[4], const __nv_bfloat16 *p) {
  const void *rows[32];
  ::cudasim::ldmatrix_rows(p, rows);
  const int t = ::cudasim::lane_id();
  for (int m = 0; m < 4; m++) {
    uint16_t lo, hi; /* the matrix's rows 2 (t % 4) and 2 (t % 4) + 1, column t / 4 */
    memcpy(&lo, (const unsigned char *)rows[8 * m + 2 * (t % 4)] + 2 * (t / 4), 2);
    memcpy(&hi, (const unsigned char *)rows[8 * m + 2 * (t % 4) + 1] + 2 * (t / 4), 2);
    r[m] = (uint32_t)lo | (uint32_t)hi << 16;
  }
}
static inline void ptx_mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  const unsigned char *sa = (const unsigned char *)::cudasim::warp_gather(a, 16);
  const uint32_t bb[2] = {b0, b1};
  const unsigned char *sb = (const unsigned char *)::cudasim::warp_gather(bb, 8);
  /* the product A B [16][8], once per warp (the fragments are all gathered) */
  void *memo;
  float(*P)[8];
  if (::cudasim::warp_memo(sizeof(float) * 16 * 8, &memo)) {
    P = (float(*)[8])memo;
    float A[16][16], Bm[16][8];
    for (int l = 0; l < 32; l++) {
      const int g = l / 4, q = l % 4;
      uint16_t h[8];
      memcpy(h, sa + 16 * l, 16); /* a0 .. a7: register i / 2 */
      for (int i = 0; i < 8; i++)
        A[g + 8 * ((i / 2) % 2)][2 * q + i % 2 + 8 * (i / 4)] = ::cudasim::bf16_bits_to_float(h[i]);
      memcpy(h, sb + 16 * l, 8); /* b0 .. b3 */
      for (int i = 0; i < 4; i++) Bm[2 * q + i % 2 + 8 * (i / 2)][g] = ::cudasim::bf16_bits_to_float(h[i]);
    }
    for (int row = 0; row < 16; row++)
      for (int col = 0; col < 8; col++) {
        float sum = 0.f;
        for (int kk = 0; kk < 16; kk++) sum += A[row][kk] * Bm[kk][col];
        P[row][col] = sum;
      }
  }
  P = (float(*)[8])memo;
  const int t = ::cudasim::lane_id();
  for (int e = 0; e < 4; e++) c[e] += P[t / 4 + 8 * (e / 2)][2 * (t % 4) + e % 2];
}
static inline float ptx_exp2(float x) { return exp2f(x); }

#endif

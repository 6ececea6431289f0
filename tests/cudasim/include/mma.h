/* cudasim's nvcuda::wmma (tests/cudasim/README.md): every lane holds the
 * whole tile. That is exact for code that, like this project's, never
 * assumes which element a lane owns (the fragment layout is unspecified in
 * CUDA too): it only loads, multiplies, fills and stores. Each operation is
 * warp-collective (a warp barrier first), as the _sync in its name says;
 * mma_sync computes once per warp (cudasim::warp_memo). Products of bf16/f16
 * inputs are exact in f32; the sum over k runs in order, in f32. */
#ifndef LUKV_CUDASIM_MMA_H
#define LUKV_CUDASIM_MMA_H

#include <type_traits>

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  T x[num_elements]; /* row-major tile */
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, const T &v) {
  ::cudasim::warp_barrier();
  for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
  static_assert(!std::is_same<Use, accumulator>::value, "an accumulator load needs a layout");
  ::cudasim::warp_barrier();
  typedef fragment<Use, M, N, K, T, L> F;
  for (int r = 0; r < F::rows; r++)
    for (int c = 0; c < F::cols; c++)
      f.x[r * F::cols + c] = std::is_same<L, col_major>::value ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &f, const T *p, unsigned ldm, layout_t l) {
  ::cudasim::warp_barrier();
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) f.x[r * N + c] = l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &f, unsigned ldm, layout_t l) {
  ::cudasim::warp_barrier();
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) {
      T &dst = l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
      dst = f.x[r * N + c];
    }
}

template <int M, int N, int K, class TA, class TB, class LA, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC> &d, const fragment<matrix_a, M, N, K, TA, LA> &a,
                     const fragment<matrix_b, M, N, K, TB, LB> &b, const fragment<accumulator, M, N, K, TC> &c) {
  ::cudasim::warp_barrier();
  /* Every lane holds the same tiles (the arguments of a warp collective are
   * warp-uniform), so the first lane computes and the others copy. */
  void *memo;
  if (::cudasim::warp_memo(sizeof(TC) * M * N, &memo)) {
    float fa[M * K], fbt[N * K]; /* A row-major, B transposed: both walk k contiguously */
    for (int i = 0; i < M * K; i++) fa[i] = (float)a.x[i];
    for (int k = 0; k < K; k++)
      for (int j = 0; j < N; j++) fbt[j * K + k] = (float)b.x[k * N + j];
    TC *out = (TC *)memo;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float s = (float)c.x[i * N + j];
        for (int k = 0; k < K; k++) s += fa[i * K + k] * fbt[j * K + k];
        out[i * N + j] = (TC)s;
      }
  }
  for (int i = 0; i < M * N; i++) d.x[i] = ((const TC *)memo)[i];
}

}  // namespace wmma
}  // namespace nvcuda

#endif

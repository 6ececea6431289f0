/* cudasim: runs this project's CUDA kernels on the CPU, for tests on machines
 * without a GPU (tests/cudasim/README.md).
 *
 * This header is force-included (-include cudasim.h) into the C++ that
 * translate.py makes from each .cu file. It keeps the real CUDA headers for
 * types (cudaError_t, dim3, uint4, __nv_bfloat16, ...), turns the CUDA
 * qualifiers into plain C++ (__shared__ becomes static: the blocks of a grid
 * run one after another on one OS thread), and declares what the kernels call
 * on the device: the thread indices, barriers, warp shuffles, atomics and the
 * intrinsics this project uses. Launches go to ::cudasim::launch_kernel, which
 * runs every thread of a block as a fiber and switches at each barrier.
 *
 * What it checks that a plain host port would not: barriers (a missing
 * __syncthreads shows up because threads run in a shuffled order between
 * barriers, a barrier not reached by all threads is a reported deadlock),
 * launch configurations (dimensions, dynamic shared memory above 48 KiB
 * without cudaFuncSetAttribute), stream capture rules, work on two streams
 * that nothing orders touching one allocation, and, under ASan,
 * every out-of-bounds access to global or shared memory. What it cannot
 * check: timing, registers, memory-model races between blocks. Host code
 * that dereferences a device pointer is caught under ASan only (cudasim.cc
 * poisons the allocations while no device work runs). */
#ifndef LUKV_CUDASIM_H
#define LUKV_CUDASIM_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <vector_functions.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/* Built with ASan (g++ or clang): cudasim.cc then poisons device memory
 * between device work, and tests can check it. */
#if defined(__SANITIZE_ADDRESS__)
#define CUDASIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDASIM_ASAN 1
#endif
#endif

/* ---- qualifiers ---------------------------------------------------------- */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)

namespace cudasim {

/* The running thread's coordinates; the scheduler sets them at every switch. */
extern uint3 thread_idx, block_idx;
extern dim3 block_dim, grid_dim;

void block_barrier();              /* __syncthreads */
void warp_barrier();               /* __syncwarp and the collective parts of wmma */
void *dynamic_smem();              /* this block's extern __shared__ buffer */
void *warp_exchange(const void *v, size_t bytes, int src_lane); /* see shfl below */
int lane_id();
/* Per-warp result of the warp collective that just passed its barrier: true
 * for the first lane to ask (it computes into *buf), false for the others
 * (they copy). Valid because a collective's arguments are warp-uniform. */
bool warp_memo(size_t bytes, void **buf);

struct launch_config {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  launch_config(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};

/* One allocation that a piece of device work reads or may write, named by
 * `who` (a kernel, copy or library call), for the stream-order check: two
 * operations on different streams that touch the same allocation, at least
 * one writing, must be ordered by a synchronisation (cudasim.cc,
 * "stream order"). A kernel's pointer parameter to const is a read, any
 * other pointer parameter a possible write. */
struct access {
  const void *p;
  bool write;
  const char *who;
};
typedef std::vector<access> access_list;

/* Validates the configuration, then runs the grid now or, while `stream` is
 * being captured, records it in the graph. Errors go to cudaGetLastError. */
void submit(const char *name, const void *kernel, const launch_config &c, std::function<void()> thread_body,
            access_list accesses);

/* A pointer that device work is given must be null or point into (or just
 * past) one cudaMalloc allocation: a host pointer faults on a GPU, so here it
 * aborts naming `who` (a kernel, a cuBLAS or a CUB call) and which argument. */
void check_device_pointer(const char *who, const char *what, int index, const void *p);

/* A struct passed by value may hold device pointers: every aligned word of
 * it that points into an allocation is taken as a possible write (the
 * field's constness is not known here). */
void scan_struct_param(const char *kernel, const void *bytes, size_t n, access_list &accesses);

template <class T>
void check_kernel_param(const char *kernel, int index, const T &v, access_list &accesses) {
  if constexpr (std::is_pointer<T>::value) {
    check_device_pointer(kernel, "argument", index, (const void *)v);
    if (v) accesses.push_back({(const void *)v, !std::is_const<typename std::remove_pointer<T>::type>::value, kernel});
  } else if constexpr (std::is_class<T>::value && std::is_trivially_copyable<T>::value) {
    scan_struct_param(kernel, &v, sizeof v, accesses);
  }
}

template <typename... P, typename... A>
void launch_kernel(const char *name, void (*kernel)(P...), const launch_config &c, A &&...args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  /* Arguments are converted to the parameter types and copied now, as a
   * launch does: a captured graph replays them by value. */
  std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
  access_list accesses;
  std::apply([name, &accesses](const auto &...p) {
    int i = 0;
    (check_kernel_param(name, i++, p, accesses), ...);
  }, params);
  submit(name, (const void *)kernel, c, [kernel, params]() { std::apply(kernel, params); }, std::move(accesses));
}

/* Host-side enqueue of work that is not a kernel (cuBLAS, CUB device-wide
 * calls): runs now, or is recorded while `stream` is captured. */
cudaError_t enqueue(cudaStream_t stream, const char *what, std::function<void()> work, access_list accesses);

}  // namespace cudasim

#define threadIdx (::cudasim::thread_idx)
#define blockIdx (::cudasim::block_idx)
#define blockDim (::cudasim::block_dim)
#define gridDim (::cudasim::grid_dim)
static constexpr int warpSize = 32;

/* nvcc's cuda_runtime.h C++ overloads: typed cudaMalloc, and the one that
 * takes the kernel itself. */
template <class T>
static inline cudaError_t cudaMalloc(T **p, size_t bytes) {
  return ::cudaMalloc((void **)p, bytes);
}
template <class T>
static inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute((const void *)entry, attr, value);
}

/* ---- barriers and warp collectives ------------------------------------- */
static inline void __syncthreads() { ::cudasim::block_barrier(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  ::cudasim::warp_barrier();
}
static inline void __threadfence() {}
static inline void __threadfence_block() {}

/* Every lane of the warp deposits v, waits for the others, and reads lane
 * src's value. Only full-warp masks are used by this project. */
template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  (void)mask;
  const int lane = ::cudasim::lane_id(), base = lane / width * width;
  T r;
  memcpy(&r, ::cudasim::warp_exchange(&v, sizeof(T), base + ((src % width) + width) % width), sizeof(T));
  return r;
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  (void)mask;
  const int lane = ::cudasim::lane_id(), base = lane / width * width;
  T r;
  memcpy(&r, ::cudasim::warp_exchange(&v, sizeof(T), base + ((lane - base) ^ lane_mask) % width), sizeof(T));
  return r;
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  (void)mask;
  const int lane = ::cudasim::lane_id(), base = lane / width * width, rel = lane - base;
  const int src = rel + (int)delta < width ? lane + (int)delta : lane;
  T r;
  memcpy(&r, ::cudasim::warp_exchange(&v, sizeof(T), src), sizeof(T));
  return r;
}

/* ---- atomics (one fiber runs at a time, so plain read-modify-write) ----- */
namespace cudasim {
template <class T, class F>
inline T rmw(T *p, F f) {
  const T old = *p;
  *p = f(old);
  return old;
}
}  // namespace cudasim
template <class T, class U>
static inline T atomicAdd(T *p, U v) { return ::cudasim::rmw(p, [v](T o) { return (T)(o + (T)v); }); }
template <class T, class U>
static inline T atomicMin(T *p, U v) { return ::cudasim::rmw(p, [v](T o) { return (T)v < o ? (T)v : o; }); }
template <class T, class U>
static inline T atomicMax(T *p, U v) { return ::cudasim::rmw(p, [v](T o) { return (T)v > o ? (T)v : o; }); }
template <class T, class U>
static inline T atomicExch(T *p, U v) { return ::cudasim::rmw(p, [v](T) { return (T)v; }); }
template <class T, class U>
static inline T atomicOr(T *p, U v) { return ::cudasim::rmw(p, [v](T o) { return (T)(o | (T)v); }); }
template <class T, class U>
static inline T atomicAnd(T *p, U v) { return ::cudasim::rmw(p, [v](T o) { return (T)(o & (T)v); }); }
template <class T, class U, class V>
static inline T atomicCAS(T *p, U cmp, V v) {
  return ::cudasim::rmw(p, [cmp, v](T o) { return o == (T)cmp ? (T)v : o; });
}

/* ---- loads and intrinsics ---------------------------------------------- */
template <class T>
static inline T __ldg(const T *p) { return *p; }
template <class T>
static inline T __ldcg(const T *p) { return *p; }
template <class T>
static inline T __ldcs(const T *p) { return *p; }

/* The _rn forms are single IEEE operations, never contracted into an FMA:
 * the translated files build with -ffp-contract=off. */
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
namespace cudasim {
template <class To, class From>
inline To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "a bit cast between types of different sizes");
  To t;
  memcpy(&t, &x, sizeof t);
  return t;
}
}  // namespace cudasim
static inline unsigned __float_as_uint(float x) { return ::cudasim::bits_as<unsigned>(x); }
static inline float __uint_as_float(unsigned u) { return ::cudasim::bits_as<float>(u); }
static inline int __float_as_int(float x) { return ::cudasim::bits_as<int>(x); }
static inline float __int_as_float(int u) { return ::cudasim::bits_as<float>(u); }
static inline long long __double_as_longlong(double x) { return ::cudasim::bits_as<long long>(x); }
static inline double __longlong_as_double(long long u) { return ::cudasim::bits_as<double>(u); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }

/* CUDA's min/max overloads for any mix of arithmetic types. */
template <class A, class B, class = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type min(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)b < (C)a ? (C)b : (C)a;
}
template <class A, class B, class = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type max(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)a < (C)b ? (C)b : (C)a;
}

#include "include/cudasim_ptx.h" /* the inline PTX of the mma.sync kernels (common/mma_ptx.cuh) */

#endif

/* cudasim's own tests: the emulator must run correct CUDA exactly and make
 * the classic mistakes visible (a missing barrier, blocks assumed to run in
 * order, a barrier not every thread reaches, a bad launch, an unsafe call
 * inside a stream capture, a host pointer given to device code, host code
 * touching device memory, work on two streams touching one buffer with
 * nothing ordering it), and its CUB, wmma and cuBLAS stand-ins must follow
 * the documented semantics.
 * Built only with -Dcudasim=true (this file goes through translate.py like
 * the project's kernels); suite cudasim. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <mma.h>

#include <cub/device/device_segmented_radix_sort.cuh>

#ifdef CUDASIM_ASAN /* cudasim.h, force-included */
#include <sanitizer/asan_interface.h>
#endif

namespace {

template <class T>
T *dev_alloc(size_t n) {
  T *p = nullptr;
  ck_assert_int_eq(cudaMalloc(&p, sizeof(T) * n), cudaSuccess);
  return p;
}

/* ---- barriers ------------------------------------------------------------------- */

/* Tree sum of 256 values in shared memory. */
__global__ void block_sum_k(const int *in, int *out) {
  __shared__ int s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (int h = 128; h > 0; h >>= 1) {
    if (t < h) s[t] += s[t + h];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

START_TEST(test_barrier_reduction) {
  const int nb = 3;
  int h[nb * 256], *in = dev_alloc<int>(nb * 256), *out = dev_alloc<int>(nb);
  for (int i = 0; i < nb * 256; i++) h[i] = i % 17 - 5;
  cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
  block_sum_k<<<nb, 256>>>(in, out);
  ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
  int got[nb];
  cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
  for (int b = 0; b < nb; b++) {
    int want = 0;
    for (int i = 0; i < 256; i++) want += h[b * 256 + i];
    ck_assert_int_eq(got[b], want);
  }
  cudaFree(in);
  cudaFree(out);
}
END_TEST

/* Each thread reads its neighbour's slot with the barrier left out: the
 * threads that run before their neighbour see the previous block's value. */
__global__ void missing_barrier_k(int *stale) {
  __shared__ int s[128];
  const int t = threadIdx.x;
  s[t] = 1000 * (int)blockIdx.x + t;
  /* __syncthreads() belongs here */
  const int want = 1000 * (int)blockIdx.x + (t + 1) % 128;
  if (s[(t + 1) % 128] != want) atomicAdd(stale, 1);
}

/* Runs a race kernel on 4 blocks of 128 threads; returns how many of its
 * checks saw a stale value. */
static int stale_reads(void (*kernel)(int *)) {
  int *stale = dev_alloc<int>(1);
  cudaMemset(stale, 0, sizeof(int));
  kernel<<<4, 128>>>(stale);
  int n = 0;
  cudaMemcpy(&n, stale, sizeof n, cudaMemcpyDeviceToHost);
  cudaFree(stale);
  return n;
}

START_TEST(test_missing_barrier_is_visible) {
  ck_assert_msg(stale_reads(missing_barrier_k) > 0, "no thread saw a stale value: the schedule hides races");
}
END_TEST

/* A tile loop without the barrier that keeps the next tile's writes after
 * every warp's reads of this one; a warp collective sits between the reads
 * and the writes. Warps that stepped from collective to collective together
 * would hide the race; cudasim lets one warp run ahead to the next
 * __syncthreads (tests/cudasim/README.md), so a warp reading its neighbour's
 * slots sees the next tile's values. */
__global__ void missing_loop_barrier_k(int *stale) {
  __shared__ int s[128];
  const int t = threadIdx.x, o = (t + 96) % 128; /* a slot of the previous warp */
  for (int it = 0; it < 4; it++) {
    /* __syncthreads() belongs here */
    s[t] = 1000 * it + t;
    __syncthreads();
    const int partner = __shfl_xor_sync(0xffffffffu, t, 1);
    if (s[o] != 1000 * it + o || partner != (t ^ 1)) atomicAdd(stale, 1);
    __syncwarp();
  }
}

START_TEST(test_missing_loop_barrier_is_visible) {
  ck_assert_msg(stale_reads(missing_loop_barrier_k) > 0,
                "no warp saw the next tile: the warps stepped in lockstep and hid the race");
}
END_TEST

/* Block b adds one to what block b - 1 wrote: right only if the blocks run
 * in index order, which a GPU does not promise. */
__global__ void block_chain_k(int *v) {
  if (threadIdx.x == 0) v[blockIdx.x + 1] = v[blockIdx.x] + 1;
}

START_TEST(test_block_order_is_shuffled) {
  const int nb = 64;
  int *v = dev_alloc<int>(nb + 1), h[nb + 1];
  int in_order = 0;
  for (int launch = 0; launch < 4; launch++) {
    cudaMemset(v, 0, sizeof h);
    block_chain_k<<<nb, 32>>>(v);
    cudaMemcpy(h, v, sizeof h, cudaMemcpyDeviceToHost);
    bool chain = true;
    for (int i = 0; i <= nb; i++) chain = chain && h[i] == i;
    in_order += chain;
  }
  ck_assert_msg(in_order == 0, "%d of 4 launches ran their blocks in index order", in_order);
  cudaFree(v);
}
END_TEST

/* Half of a warp waits at __syncthreads, the other half at __syncwarp. */
__global__ void divergent_barrier_k() {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __syncwarp();
}

START_TEST(test_divergent_barrier_aborts) {
  divergent_barrier_k<<<1, 32>>>();
}
END_TEST

/* ---- warp shuffles -------------------------------------------------------------- */

__global__ void warp_sum_k(const double *in, double *out) {
  double v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

START_TEST(test_shuffle_butterfly) {
  double h[64], *in = dev_alloc<double>(64), *out = dev_alloc<double>(64);
  for (int i = 0; i < 64; i++) h[i] = i * 0.5;
  cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
  warp_sum_k<<<1, 64>>>(in, out);
  double got[64];
  cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 64; i++) {
    double want = 0;
    for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) want += h[j];
    ck_assert_double_eq(got[i], want);
  }
  cudaFree(in);
  cudaFree(out);
}
END_TEST

/* Lanes 16..31 leave before the shuffle: lane 0 would read garbage. */
__global__ void shuffle_exited_k(int *out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 16);
}

START_TEST(test_shuffle_from_exited_lane_aborts) {
  int *out = dev_alloc<int>(32);
  shuffle_exited_k<<<1, 32>>>(out);
}
END_TEST

/* ---- launch configuration -------------------------------------------------------- */

__global__ void touch_smem_k(unsigned char *out) {
  extern __shared__ unsigned char buf[];
  buf[threadIdx.x] = (unsigned char)threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
}

START_TEST(test_launch_checks) {
  unsigned char *out = dev_alloc<unsigned char>(64);
  touch_smem_k<<<1, 2048, 64>>>(out);
  ck_assert_int_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
  touch_smem_k<<<dim3(1, 70000), 64, 64>>>(out);
  ck_assert_int_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
  touch_smem_k<<<1, 64, 64 * 1024>>>(out); /* above 48 KiB without the opt-in */
  ck_assert_int_eq(cudaGetLastError(), cudaErrorInvalidValue);
  ck_assert_int_eq(cudaFuncSetAttribute(touch_smem_k, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024),
                   cudaSuccess);
  touch_smem_k<<<1, 64, 64 * 1024>>>(out);
  ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
  unsigned char h[64];
  cudaMemcpy(h, out, 64, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 64; i++) ck_assert_int_eq(h[i], (i + 1) % 64);
  /* A host pointer where a device pointer belongs. */
  ck_assert_int_eq(cudaMemcpy(h, h + 1, 8, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  ck_assert_int_eq(cudaGetLastError(), cudaErrorInvalidValue);
  /* And a device pointer where the kind says host. */
  ck_assert_int_eq(cudaMemcpy(out, out + 8, 8, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  ck_assert_int_eq(cudaMemcpy(out, h, 8, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  ck_assert_int_eq(cudaMemcpy(out, out + 8, 8, cudaMemcpyDeviceToDevice), cudaSuccess);
  cudaGetLastError();
  cudaFree(out);
}
END_TEST

/* ---- device pointers and host code ------------------------------------------------ */

__global__ void copy_k(const int *in, int *out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i] + 1;
}

/* Device code handed host memory faults on a GPU: the launch aborts. */
START_TEST(test_host_pointer_to_kernel_aborts) {
  int *out = dev_alloc<int>(4), host[4] = {0, 1, 2, 3};
  copy_k<<<1, 4>>>(out, out, 4);     /* device pointers: fine */
  copy_k<<<1, 4>>>(nullptr, out, 0); /* null: fine (an unused optional) */
  copy_k<<<1, 4>>>(out + 4, out, 0); /* one past the end: fine */
  ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
  copy_k<<<1, 4>>>(host, out, 4);
}
END_TEST

START_TEST(test_host_pointer_to_cublas_aborts) {
  float *dev = dev_alloc<float>(16), host[16] = {0};
  cublasHandle_t h;
  ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, dev, CUDA_R_32F, 4, host, CUDA_R_32F, 4, &zero, dev,
               CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
END_TEST

START_TEST(test_host_pointer_to_cub_aborts) {
  int *dev = dev_alloc<int>(8), offs[2] = {0, 4};
  void *tmp = dev_alloc<char>(256);
  size_t bytes = 256;
  cub::DeviceSegmentedRadixSort::SortKeys(tmp, bytes, dev, dev + 4, 4, 1, offs, offs + 1); /* host offsets */
}
END_TEST

#ifdef CUDASIM_ASAN
/* Under ASan, device memory is poisoned while no device work runs: kernels,
 * copies, memsets and cuBLAS reach it, host code does not. */
START_TEST(test_device_memory_poisoned_on_host) {
  int *a = dev_alloc<int>(64), *b = dev_alloc<int>(64), h[64];
  ck_assert(__asan_address_is_poisoned(a) && __asan_address_is_poisoned(b + 63));
  for (int i = 0; i < 64; i++) h[i] = i;
  cudaMemcpy(a, h, sizeof h, cudaMemcpyHostToDevice);
  copy_k<<<2, 32>>>(a, b, 64);
  cudaMemset(a, 0, sizeof h);
  cudaMemcpy(h, b, sizeof h, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 64; i++) ck_assert_int_eq(h[i], i + 1);
  ck_assert(__asan_address_is_poisoned(a) && __asan_address_is_poisoned(b));
  ck_assert(!__asan_address_is_poisoned(h));
  cudaFree(a);
  cudaFree(b);
  /* A large allocation: its first 4 KiB (what a host read of a result or a
   * walk from the start touches first). */
  char *big = dev_alloc<char>(1 << 20);
  ck_assert(__asan_address_is_poisoned(big) && __asan_address_is_poisoned(big + 4095));
  cudaFree(big);
  ck_assert(!__asan_region_is_poisoned(h, sizeof h));
}
END_TEST

void abort_now(void) { abort(); }

/* The same read through the host: an ASan report (and, whatever
 * ASAN_OPTIONS say, an abort, for Check to see). */
START_TEST(test_host_read_of_device_memory_aborts) {
  int *a = dev_alloc<int>(4);
  cudaMemset(a, 0, 4 * sizeof(int));
  __asan_set_death_callback(abort_now);
  volatile int x = a[1];
  (void)x;
}
END_TEST
#endif

/* ---- stream capture ------------------------------------------------------------ */

__global__ void increment_k(int *x) {
  if (threadIdx.x == 0) x[0]++;
}

START_TEST(test_capture_and_replay) {
  int *x = dev_alloc<int>(1), zero = 0, got = -1;
  cudaMemcpy(x, &zero, sizeof zero, cudaMemcpyHostToDevice);
  cudaStream_t s;
  ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ck_assert_int_eq(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  increment_k<<<1, 32, 0, s>>>(x);
  increment_k<<<1, 32, 0, s>>>(x);
  cudaGraph_t g;
  ck_assert_int_eq(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaMemcpy(&got, x, sizeof got, cudaMemcpyDeviceToHost);
  ck_assert_int_eq(got, 0); /* captured, not run */
  cudaGraphExec_t e;
  ck_assert_int_eq(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  for (int r = 0; r < 3; r++) ck_assert_int_eq(cudaGraphLaunch(e, s), cudaSuccess);
  cudaStreamSynchronize(s);
  cudaMemcpy(&got, x, sizeof got, cudaMemcpyDeviceToHost);
  ck_assert_int_eq(got, 6);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);

  /* cudaMalloc inside a capture is refused and breaks the capture. */
  ck_assert_int_eq(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  void *p = nullptr;
  ck_assert_int_eq(cudaMalloc(&p, 16), cudaErrorStreamCaptureUnsupported);
  ck_assert_int_eq(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  /* So is a synchronisation of the capturing stream. */
  ck_assert_int_eq(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ck_assert_int_eq(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  ck_assert_int_eq(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  cudaStreamDestroy(s);
  cudaFree(x);
}
END_TEST

/* ---- stream order ---------------------------------------------------------------- */

__global__ void fill_k(int *out, int v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = v;
}

cudaStream_t new_stream(unsigned flags) {
  cudaStream_t s = nullptr;
  ck_assert_int_eq(cudaStreamCreateWithFlags(&s, flags), cudaSuccess);
  return s;
}

/* Work on two streams that touches the same allocation, ordered in each of
 * the ways CUDA offers: no report, and the results are right. */
START_TEST(test_stream_order_synchronised) {
  int *a = dev_alloc<int>(64), *b = dev_alloc<int>(64), *c = dev_alloc<int>(64), h[64];
  cudaStream_t s1 = new_stream(cudaStreamNonBlocking), s2 = new_stream(cudaStreamNonBlocking);
  cudaStream_t blocking = new_stream(cudaStreamDefault);
  /* A stream synchronisation between the writer and the reader. */
  fill_k<<<1, 64, 0, s1>>>(a, 7, 64);
  ck_assert_int_eq(cudaStreamSynchronize(s1), cudaSuccess);
  copy_k<<<1, 64, 0, s2>>>(a, b, 64);
  /* Two streams reading the same buffer at once (a const parameter) is fine. */
  copy_k<<<1, 64, 0, s1>>>(a, c, 64);
  /* An event the host waits for. */
  cudaEvent_t ev;
  ck_assert_int_eq(cudaEventCreate(&ev), cudaSuccess);
  ck_assert_int_eq(cudaEventRecord(ev, s2), cudaSuccess);
  ck_assert_int_eq(cudaEventSynchronize(ev), cudaSuccess);
  fill_k<<<1, 64, 0, s1>>>(a, 9, 64); /* after s2's read of a, through the event */
  /* A copy to the host returns when it is done. */
  ck_assert_int_eq(cudaMemcpyAsync(h, b, sizeof h, cudaMemcpyDeviceToHost, s2), cudaSuccess);
  for (int i = 0; i < 64; i++) ck_assert_int_eq(h[i], 8);
  fill_k<<<1, 64, 0, s1>>>(b, 1, 64);
  /* A blocking stream and the legacy stream wait for each other. */
  ck_assert_int_eq(cudaDeviceSynchronize(), cudaSuccess);
  fill_k<<<1, 64, 0, blocking>>>(c, 3, 64);
  ck_assert_int_eq(cudaMemset(c, 0, 64 * sizeof(int)), cudaSuccess);
  fill_k<<<1, 64, 0, blocking>>>(c, 4, 64);
  ck_assert_int_eq(cudaMemcpy(h, c, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 64; i++) ck_assert_int_eq(h[i], 4);
  ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
  cudaEventDestroy(ev);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
  cudaStreamDestroy(blocking);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
}
END_TEST

/* A kernel reads what another stream's kernel wrote, with nothing between. */
START_TEST(test_stream_read_after_write_aborts) {
  int *a = dev_alloc<int>(64), *b = dev_alloc<int>(64);
  cudaStream_t s1 = new_stream(cudaStreamNonBlocking), s2 = new_stream(cudaStreamNonBlocking);
  fill_k<<<1, 64, 0, s1>>>(a, 7, 64);
  copy_k<<<1, 64, 0, s2>>>(a, b, 64);
}
END_TEST

/* A kernel given its pointers inside a struct, as a launch-argument block:
 * found by scanning the struct. */
struct fill_args {
  int n;
  int *out;
  int v;
};
__global__ void fill_struct_k(const fill_args a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < a.n) a.out[i] = a.v;
}

START_TEST(test_stream_struct_pointer_aborts) {
  int *a = dev_alloc<int>(64), h[64];
  cudaStream_t s1 = new_stream(cudaStreamNonBlocking), s2 = new_stream(cudaStreamNonBlocking);
  fill_struct_k<<<1, 64, 0, s1>>>(fill_args{64, a, 5});
  ck_assert_int_eq(cudaMemcpyAsync(h, a, sizeof h, cudaMemcpyDeviceToHost, s1), cudaSuccess);
  ck_assert_int_eq(h[63], 5);
  fill_struct_k<<<1, 64, 0, s2>>>(fill_args{64, a, 6}); /* ordered: the copy to the host waited */
  copy_k<<<1, 64, 0, s1>>>(a, a, 64);                    /* not ordered after s2's write */
}
END_TEST

/* A memset overwrites what a GEMM on another stream still reads. */
START_TEST(test_stream_write_after_read_aborts) {
  float *a = dev_alloc<float>(16), *c = dev_alloc<float>(16);
  cudaMemset(a, 0, 16 * sizeof(float));
  cudaDeviceSynchronize();
  cudaStream_t s1 = new_stream(cudaStreamNonBlocking), s2 = new_stream(cudaStreamNonBlocking);
  cublasHandle_t h;
  ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  cublasSetStream(h, s1);
  const float one = 1.0f, zero = 0.0f;
  cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a, CUDA_R_32F, 4, a, CUDA_R_32F, 4, &zero, c, CUDA_R_32F,
               4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  cudaMemsetAsync(a, 0, 16 * sizeof(float), s2);
}
END_TEST

/* A non-blocking stream does not wait for the legacy stream: a replayed graph
 * on one reads what a synchronous-API memset (legacy stream) just wrote. */
START_TEST(test_stream_nonblocking_vs_legacy_aborts) {
  int *a = dev_alloc<int>(64), *b = dev_alloc<int>(64);
  cudaStream_t s = new_stream(cudaStreamNonBlocking);
  ck_assert_int_eq(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  copy_k<<<1, 64, 0, s>>>(a, b, 64);
  cudaGraph_t g;
  ck_assert_int_eq(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t e;
  ck_assert_int_eq(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  cudaMemset(a, 0, 64 * sizeof(int));
  cudaGraphLaunch(e, s);
}
END_TEST

/* ---- CUB --------------------------------------------------------------------------- */

START_TEST(test_cub_sort_semantics) {
  /* Descending, stable; -0 ties +0; a NaN's bits put it first; -inf last. */
  const float keys[7] = {1.0f, -0.0f, 3.0f, 0.0f, NAN, -INFINITY, 3.0f};
  const int vals[7] = {0, 1, 2, 3, 4, 5, 6}, want[7] = {4, 2, 6, 0, 1, 3, 5};
  const int offs[3] = {0, 7, 7}; /* a second, empty segment */
  float *kin = dev_alloc<float>(7), *kout = dev_alloc<float>(7);
  int *vin = dev_alloc<int>(7), *vout = dev_alloc<int>(7), *doffs = dev_alloc<int>(3);
  cudaMemcpy(kin, keys, sizeof keys, cudaMemcpyHostToDevice);
  cudaMemcpy(vin, vals, sizeof vals, cudaMemcpyHostToDevice);
  cudaMemcpy(doffs, offs, sizeof offs, cudaMemcpyHostToDevice);
  size_t bytes = 0;
  ck_assert_int_eq(cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, bytes, kin, kout, vin, vout, 7, 2,
                                                                        doffs, doffs + 1),
                   cudaSuccess);
  void *tmp = dev_alloc<char>(bytes);
  ck_assert_int_eq(cub::DeviceSegmentedRadixSort::SortPairsDescending(tmp, bytes, kin, kout, vin, vout, 7, 2, doffs,
                                                                        doffs + 1),
                   cudaSuccess);
  int got[7];
  cudaMemcpy(got, vout, sizeof got, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 7; i++) ck_assert_int_eq(got[i], want[i]);

  /* 64-bit keys ascending over the low 40 bits only: the high bits are ignored. */
  const unsigned long long k64[4] = {5ull | (9ull << 50), 3, 5, 1ull << 41};
  unsigned long long *a = dev_alloc<unsigned long long>(4), *b = dev_alloc<unsigned long long>(4), h[4];
  cudaMemcpy(a, k64, sizeof k64, cudaMemcpyHostToDevice);
  const int o2[2] = {0, 4};
  cudaMemcpy(doffs, o2, sizeof o2, cudaMemcpyHostToDevice);
  ck_assert_int_eq(cub::DeviceSegmentedRadixSort::SortKeys(tmp, bytes, a, b, 4, 1, doffs, doffs + 1, 0, 40),
                   cudaSuccess);
  cudaMemcpy(h, b, sizeof h, cudaMemcpyDeviceToHost);
  ck_assert(h[0] == (1ull << 41) && h[1] == 3 && h[2] == k64[0] && h[3] == 5);
  cudaFree(tmp);
  cudaFree(kin);
  cudaFree(kout);
  cudaFree(vin);
  cudaFree(vout);
  cudaFree(doffs);
  cudaFree(a);
  cudaFree(b);
}
END_TEST

/* ---- wmma and cuBLAS ------------------------------------------------------------ */

namespace wm = nvcuda::wmma;

/* C (16 x 16, row-major) = A (16 x 16 row-major) · B (16 x 16 given column-major). */
__global__ void wmma_k(const __nv_bfloat16 *a, const __nv_bfloat16 *b_col, float *c) {
  wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
  wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> fa;
  wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::col_major> fb;
  wm::fill_fragment(acc, 0.5f);
  wm::load_matrix_sync(fa, a, 16);
  wm::load_matrix_sync(fb, b_col, 16);
  wm::mma_sync(acc, fa, fb, acc);
  wm::store_matrix_sync(c, acc, 16, wm::mem_row_major);
}

START_TEST(test_wmma_and_gemm) {
  __nv_bfloat16 ha[256], hb[256];
  float fa[256], fb[256];
  for (int i = 0; i < 256; i++) {
    ha[i] = __float2bfloat16((float)(i % 7) - 3.0f);
    hb[i] = __float2bfloat16((float)(i % 5) * 0.25f);
    fa[i] = __bfloat162float(ha[i]);
    fb[i] = __bfloat162float(hb[i]);
  }
  __nv_bfloat16 *da = dev_alloc<__nv_bfloat16>(256), *db = dev_alloc<__nv_bfloat16>(256);
  float *dc = dev_alloc<float>(256), hc[256];
  cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
  cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
  wmma_k<<<1, 32>>>(da, db, dc);
  cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      float want = 0.5f;
      for (int k = 0; k < 16; k++) want += fa[i * 16 + k] * fb[j * 16 + k];
      ck_assert_float_eq(hc[i * 16 + j], want);
    }

  /* cuBLAS, column-major: C (16 x 16) = A^T B with A, B the same buffers as
   * 16 x 16 column-major bf16 matrices, f32 output, beta = 0 over garbage. */
  cublasHandle_t h;
  ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  cudaMemset(dc, 0xff, sizeof hc); /* NaN: beta = 0 must not read C */
  ck_assert_int_eq(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 16, 16, 16, &one, da, CUDA_R_16BF, 16, db, CUDA_R_16BF,
                                16, &zero, dc, CUDA_R_32F, 16, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   CUBLAS_STATUS_SUCCESS);
  cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      float want = 0.0f;
      for (int k = 0; k < 16; k++) want += fa[i * 16 + k] * fb[j * 16 + k];
      ck_assert_float_eq(hc[i + j * 16], want);
    }
  ck_assert_int_eq(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 16, 16, 16, &one, da, CUDA_R_16BF, 8, db, CUDA_R_16BF,
                                16, &zero, dc, CUDA_R_32F, 16, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   CUBLAS_STATUS_INVALID_VALUE); /* lda < m */
  cublasDestroy(h);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}
END_TEST

/* ---- the inline PTX stand-ins (include/cudasim_ptx.h) --------------------------- */

/* C [16][8] = 0.5 + A [16][16] B [16][8] twice: B's fragment from B^T's rows
 * (ldmatrix) and from B's rows (ldmatrix.trans). A arrives by cp.async;
 * stale[0] counts the lanes that saw A in shared memory before the wait. */
__global__ void ptx_k(const __nv_bfloat16 *a, const __nv_bfloat16 *b, const __nv_bfloat16 *bt, float *c, float *c_trans,
                      int *stale) {
  __shared__ __align__(16) __nv_bfloat16 sA[16][16], sB[16][8], sBt[8][16];
  const int lane = threadIdx.x;
  memset((void *)&sA[lane / 2][(lane % 2) * 8], 0xff, 16);
  __syncwarp();
  ptx_cp_async16(&sA[lane / 2][(lane % 2) * 8], a + lane * 8, true);
  if (lane < 16) {
    memcpy(&sB[lane][0], b + lane * 8, 16);
    memcpy(&sBt[lane / 2][(lane % 2) * 8], bt + lane * 8, 16);
  }
  ptx_cp_async_commit();
  uint16_t first;
  memcpy(&first, &sA[lane / 2][(lane % 2) * 8], 2);
  if (first == 0xffff) atomicAdd(stale, 1);
  ptx_cp_async_wait<0>();
  __syncwarp();
  uint32_t fa[4], fb[4], fbt[4];
  ptx_ldmatrix_x4(fa, &sA[lane & 15][(lane >> 4) * 8]);
  ptx_ldmatrix_x4(fb, &sBt[lane & 7][((lane >> 3) & 1) * 8]);
  ptx_ldmatrix_x4_trans(fbt, &sB[lane & 15][0]);
  float acc[4] = {0.5f, 0.5f, 0.5f, 0.5f}, acc_t[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  ptx_mma_bf16_16816(acc, fa, fb[0], fb[1]);
  ptx_mma_bf16_16816(acc_t, fa, fbt[0], fbt[1]);
  for (int e = 0; e < 4; e++) {
    const int row = lane / 4 + 8 * (e / 2), col = 2 * (lane % 4) + e % 2;
    c[row * 8 + col] = acc[e];
    c_trans[row * 8 + col] = acc_t[e];
  }
}

START_TEST(test_ptx_fragments) {
  __nv_bfloat16 ha[256], hb[128], hbt[128];
  float fa[256], fb[128];
  for (int i = 0; i < 256; i++) ha[i] = __float2bfloat16((float)(i % 7) - 3.0f), fa[i] = __bfloat162float(ha[i]);
  for (int k = 0; k < 16; k++)
    for (int n = 0; n < 8; n++) {
      hb[k * 8 + n] = hbt[n * 16 + k] = __float2bfloat16((float)((k * 8 + n) % 5) * 0.25f - 0.5f);
      fb[k * 8 + n] = __bfloat162float(hb[k * 8 + n]);
    }
  __nv_bfloat16 *da = dev_alloc<__nv_bfloat16>(256), *db = dev_alloc<__nv_bfloat16>(128),
                *dbt = dev_alloc<__nv_bfloat16>(128);
  float *dc = dev_alloc<float>(128), *dct = dev_alloc<float>(128), hc[128], hct[128];
  int *dstale = dev_alloc<int>(1), stale = -1;
  cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
  cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
  cudaMemcpy(dbt, hbt, sizeof hbt, cudaMemcpyHostToDevice);
  cudaMemset(dstale, 0, sizeof(int));
  ptx_k<<<1, 32>>>(da, db, dbt, dc, dct, dstale);
  ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
  cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
  cudaMemcpy(hct, dct, sizeof hct, cudaMemcpyDeviceToHost);
  cudaMemcpy(&stale, dstale, sizeof stale, cudaMemcpyDeviceToHost);
  ck_assert_int_eq(stale, 32); /* cp.async lands at the wait, not at the issue */
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 8; j++) {
      float want = 0.f;
      for (int k = 0; k < 16; k++) want += fa[i * 16 + k] * fb[k * 8 + j];
      ck_assert_float_eq(hc[i * 8 + j], 0.5f + want);
      ck_assert_float_eq(hct[i * 8 + j], 0.5f + want);
    }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dbt);
  cudaFree(dc);
  cudaFree(dct);
  cudaFree(dstale);
}
END_TEST

}  // namespace

int main(void) {
  Suite *s = suite_create("cudasim");
  TCase *tc = tcase_create("emulator");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_barrier_reduction);
  tcase_add_test(tc, test_missing_barrier_is_visible);
  tcase_add_test(tc, test_missing_loop_barrier_is_visible);
  tcase_add_test(tc, test_block_order_is_shuffled);
  tcase_add_test_raise_signal(tc, test_divergent_barrier_aborts, SIGABRT);
  tcase_add_test(tc, test_shuffle_butterfly);
  tcase_add_test_raise_signal(tc, test_shuffle_from_exited_lane_aborts, SIGABRT);
  tcase_add_test(tc, test_launch_checks);
  tcase_add_test_raise_signal(tc, test_host_pointer_to_kernel_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_host_pointer_to_cublas_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_host_pointer_to_cub_aborts, SIGABRT);
#ifdef CUDASIM_ASAN
  tcase_add_test(tc, test_device_memory_poisoned_on_host);
  tcase_add_test_raise_signal(tc, test_host_read_of_device_memory_aborts, SIGABRT);
#endif
  tcase_add_test(tc, test_capture_and_replay);
  tcase_add_test(tc, test_stream_order_synchronised);
  tcase_add_test_raise_signal(tc, test_stream_read_after_write_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_stream_struct_pointer_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_stream_write_after_read_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_stream_nonblocking_vs_legacy_aborts, SIGABRT);
  tcase_add_test(tc, test_cub_sort_semantics);
  tcase_add_test(tc, test_wmma_and_gemm);
  tcase_add_test(tc, test_ptx_fragments);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  const int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

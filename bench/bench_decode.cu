/* bench-decode: liblukv's CUDA decode attention (issue 6). Not a test; run it
 * on the GPU machine:
 *
 *   build/bench/bench-decode [--quick | --shape B,T]
 *
 * (--shape B,T: part (a) for that one shape only, e.g. under Nsight Compute:
 * ncu --kernel-name regex:decode_kernel --launch-skip 10 --launch-count 1 ...)
 *
 * (--smoke: one tiny shape, 2 calls per graph, a 1 MiB copy: the cudasim
 * build's gpu suite runs it so that a GPU session does not lose device time
 * to a crash; its timings mean nothing.)
 *
 * (a) Bandwidth: bytes the decode kernel must read (every segment's K and V
 *     rows, q) and write (out) per call, divided by its time, against the
 *     device-to-device copy bandwidth measured in the same run
 *     (cudaMemcpyAsync of a 1 GiB buffer: read + write bytes / time), for
 *     8-64 sequences x 8 KV heads (32 query heads, d 128) x segments of
 *     0.5K-16K tokens. Target: ratio >= 80%. Working sets that fit in L2 are
 *     marked: repeated calls may then run from L2 and exceed the DRAM copy.
 * (b) Time per layer at compression 0 / 50 / 80 / 90% (uniform keep counts,
 *     keydiff scores) with the same kernel, against 0% (the full cache).
 *     Target: 80% <= 0.3x the full-cache time. Batch 1 included; an empty
 *     kernel's launch-to-launch time, measured in the same run, shows where
 *     launch latency dominates. Each figure is the mean over a CUDA graph of
 *     ITERS back-to-back lukv_decode_attention calls (launch gaps included).
 * (c) Bytes held against the full cache (lukv_cache_memory), exact.
 *
 * The PyTorch SDPA peer on the full cache at the same shapes is a separate
 * script (bench/sdpa_decode_peer.py); docs/runtime.md puts both in one table.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench_cuda.h"
#include "lukv.h"

#define CK(call)                                                                      \
  do {                                                                                \
    cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "bench-decode: %s: %s\n", #call, cudaGetErrorString(e_));       \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#define LK(cache, call)                                                               \
  do {                                                                                \
    if ((call) != LUKV_OK) {                                                          \
      fprintf(stderr, "bench-decode: %s: %s\n", #call, lukv_cache_errmsg(cache));     \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

namespace {

const int HKV = 8, HQ = 32, D = 128, SINK = 4, WINDOW = 32;
int ITERS = 50;                       /* decode calls per graph (--smoke: 2) */
size_t COPY_BYTES = (size_t)1 << 30;  /* the copy-bandwidth buffer (--smoke: 1 MiB) */

__global__ void empty_kernel() {}

/* Hash noise in [-1, 1) as bf16. */
__global__ void fill_noise(uint16_t *x, size_t n, uint32_t seed) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    const float f = (float)(h >> 8) / 8388608.0f - 1.0f;
    x[i] = (uint16_t)(__float_as_uint(f) >> 16);
  }
}

void noise(uint16_t *x, size_t n, uint32_t seed, cudaStream_t st) {
  fill_noise<<<1024, 256, 0, st>>>(x, n, seed);
  CK(cudaGetLastError());
}

struct layer_cache {
  lukv_cache *cache;
  void *q, *out;
  uint64_t held, full;
  double bytes_per_call; /* K, V rows read + q read + out written */
};

/* One layer of B sequences of T tokens compressed at `ratio` (uniform keep
 * counts, keydiff ranking; ratio 0 keeps everything without scoring). */
layer_cache build(int B, int T, double ratio, cudaStream_t st) {
  layer_cache lc;
  memset(&lc, 0, sizeof lc);
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = 1, cfg.n_kv_heads = HKV, cfg.n_q_heads = HQ, cfg.head_dim = D;
  cfg.batch = B, cfg.max_context = T, cfg.decode_reserve = 0;
  cfg.backend = LUKV_BACKEND_CUDA;
  if (lukv_cache_create(&cfg, &lc.cache) != LUKV_OK) {
    fprintf(stderr, "bench-decode: %s\n", lukv_cache_errmsg(NULL));
    exit(1);
  }
  LK(lc.cache, lukv_cache_set_stream(lc.cache, st));
  const size_t nkv = (size_t)B * HKV * T * D;
  uint16_t *k, *v;
  CK(cudaMalloc(&k, nkv * 2));
  CK(cudaMalloc(&v, nkv * 2));
  noise(k, nkv, 1u, st);
  noise(v, nkv, 2u, st);
  lukv_compress_args a;
  lukv_compress_args_init(&a);
  a.layer = 0, a.k = k, a.v = v, a.t_max = T;
  a.scorer = "keydiff", a.sink = SINK, a.window = WINDOW;
  a.policy = LUKV_KEEP_UNIFORM, a.ratio = ratio;
  LK(lc.cache, lukv_compress(lc.cache, &a));
  CK(cudaFree(k));
  CK(cudaFree(v));
  LK(lc.cache, lukv_cache_memory(lc.cache, &lc.held, &lc.full));
  const size_t nq = (size_t)B * HQ * D;
  CK(cudaMalloc(&lc.q, nq * 2));
  CK(cudaMalloc(&lc.out, nq * 2));
  noise((uint16_t *)lc.q, nq, 3u, st);
  double rows = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < HKV; h++) {
      lukv_segment sg;
      LK(lc.cache, lukv_cache_segment(lc.cache, 0, b, h, &sg));
      rows += sg.length;
    }
  lc.bytes_per_call = rows * D * 2.0 * 2.0 + 2.0 * nq * 2.0;
  CK(cudaStreamSynchronize(st));
  return lc;
}

void drop(layer_cache *lc) {
  lukv_cache_destroy(lc->cache);
  CK(cudaFree(lc->q));
  CK(cudaFree(lc->out));
}

struct graph_run {
  cudaGraphExec_t ge;
  cudaStream_t st;
};
int launch_graph(void *p) {
  const graph_run *r = (const graph_run *)p;
  return bench_cuda_ok(cudaGraphLaunch(r->ge, r->st), "cudaGraphLaunch");
}

struct copy_run {
  void *a, *b;
  size_t bytes;
  cudaStream_t st;
};
int copy_once(void *p) {
  const copy_run *r = (const copy_run *)p;
  return bench_cuda_ok(cudaMemcpyAsync(r->b, r->a, r->bytes, cudaMemcpyDeviceToDevice, r->st), "cudaMemcpyAsync");
}

/* Mean seconds per call over a graph of ITERS decode calls (best of 3). */
double time_decode(layer_cache *lc, cudaStream_t st) {
  LK(lc->cache, lukv_decode_attention(lc->cache, 0, lc->q, lc->out, 0.0f)); /* warm up */
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < ITERS; i++)
    LK(lc->cache, lukv_decode_attention(lc->cache, 0, lc->q, lc->out, 0.0f));
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  graph_run r = {ge, st};
  const double best = bench_best_ms(launch_graph, &r, 3, st);
  if (best < 0) exit(1);
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return best / 1e3 / ITERS;
}

/* D2D copy bandwidth (read + write bytes per second), best of 5. */
double copy_bandwidth(cudaStream_t st) {
  const size_t bytes = COPY_BYTES;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemsetAsync(a, 1, bytes, st));
  copy_run r = {a, b, bytes, st};
  const double best = bench_best_ms(copy_once, &r, 5, st);
  if (best < 0) exit(1);
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * (double)bytes / (best / 1e3);
}

/* Launch-to-launch time of an empty kernel: plain launches and inside a graph. */
void empty_launch(cudaStream_t st, double *plain, double *graph) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const int n = 1000;
  for (int i = 0; i < 10; i++) empty_kernel<<<1, 32, 0, st>>>();
  CK(cudaEventRecord(e0, st));
  for (int i = 0; i < n; i++) empty_kernel<<<1, 32, 0, st>>>();
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  *plain = ms / 1e3 / n;
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < ITERS; i++) empty_kernel<<<1, 32, 0, st>>>();
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaEventRecord(e0, st));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  CK(cudaEventElapsedTime(&ms, e0, e1));
  *graph = ms / 1e3 / ITERS;
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
}

} /* namespace */

int main(int argc, char **argv) {
  bench_set_prog("bench-decode");
  int quick = 0, smoke = 0, one_b = 0, one_t = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = 1;
    } else if (strcmp(argv[i], "--smoke") == 0) {
      smoke = 1;
      ITERS = 2;
      COPY_BYTES = (size_t)1 << 20;
    } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc &&
               sscanf(argv[i + 1], "%d,%d", &one_b, &one_t) == 2 && one_b > 0 && one_t > 64) {
      i++;
    } else {
      fprintf(stderr, "usage: %s [--quick | --smoke | --shape B,T]\n", argv[0]);
      return 2;
    }
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
    fprintf(stderr, "bench-decode: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  int l2 = 0;
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  printf("bench-decode: %s, %d SMs, L2 %.0f MiB; Hkv %d, Hq %d, d %d, bf16; %d calls per graph\n",
         p.name, p.multiProcessorCount, l2 / 1048576.0, HKV, HQ, D, ITERS);
  if (smoke) printf("--smoke: tiny shapes to see that everything runs; the timings below mean nothing\n");

  const double copy = copy_bandwidth(st);
  double launch_plain, launch_graph;
  empty_launch(st, &launch_plain, &launch_graph);
  printf("copy bandwidth (cudaMemcpyAsync D2D, %.0f MiB, read + write): %.1f GB/s\n", COPY_BYTES / 1048576.0,
         copy / 1e9);
  printf("empty kernel: %.2f us per launch (stream), %.2f us per node (graph)\n\n",
         launch_plain * 1e6, launch_graph * 1e6);

  /* (a) */
  printf("(a) decode bandwidth, full cache (compression 0)\n");
  printf("%5s %7s %12s %10s %10s %8s %s\n", "B", "tokens", "MiB/call", "us/call", "GB/s",
         "vs copy", "");
  int Bs[] = {8, 16, 32, 64}, Ts[] = {512, 2048, 8192, 16384};
  if (smoke) Bs[0] = 2, Ts[0] = 96;
  if (one_b) Bs[0] = one_b, Ts[0] = one_t;
  for (int bi = 0; bi < 4; bi++)
    for (int ti = 0; ti < 4; ti++) {
      if ((quick && (bi % 2 || ti % 2)) || ((smoke || one_b) && (bi || ti))) continue;
      layer_cache lc = build(Bs[bi], Ts[ti], 0.0, st);
      const double t = time_decode(&lc, st), bw = lc.bytes_per_call / t;
      printf("%5d %7d %12.1f %10.2f %10.1f %7.1f%% %s\n", Bs[bi], Ts[ti],
             lc.bytes_per_call / 1048576.0, t * 1e6, bw / 1e9, 100.0 * bw / copy,
             lc.bytes_per_call < 2.0 * l2 ? "(fits in 2x L2: may run from L2)" : "");
      drop(&lc);
    }

  if (one_b) return 0;
  /* (b) + (c) */
  printf("\n(b) decode time per layer vs the full cache, (c) bytes held\n");
  printf("%5s %7s %6s %10s %10s %16s %16s %8s %s\n", "B", "tokens", "compr", "us/call",
         "vs full", "bytes held", "bytes full", "held %", "");
  int Bb[] = {1, 8, 32}, Tb[] = {4096, 16384};
  if (smoke) Tb[0] = 96;
  const double ratios[] = {0.0, 0.5, 0.8, 0.9};
  for (int bi = 0; bi < 3; bi++)
    for (int ti = 0; ti < 2; ti++) {
      if ((quick && ti == 1) || (smoke && (bi || ti))) continue;
      double t_full = 0.0;
      for (int ri = 0; ri < 4; ri++) {
        layer_cache lc = build(Bb[bi], Tb[ti], ratios[ri], st);
        const double t = time_decode(&lc, st);
        if (ri == 0) t_full = t;
        const char *note = "";
        if (t < 3.0 * launch_graph) note = "launch latency dominates";
        else if (ri == 2) note = t <= 0.3 * t_full ? "target <= 0.3x: met" : "target <= 0.3x: MISSED";
        printf("%5d %7d %5.0f%% %10.2f %9.3fx %16llu %16llu %7.2f%% %s\n", Bb[bi], Tb[ti],
               100.0 * ratios[ri], t * 1e6, t / t_full, (unsigned long long)lc.held,
               (unsigned long long)lc.full, 100.0 * (double)lc.held / (double)lc.full, note);
        drop(&lc);
      }
    }
  printf("\nPeer: PyTorch SDPA decode on the full cache at the same shapes:\n"
         "  python3 bench/sdpa_decode_peer.py%s\n"
         "docs/runtime.md puts both outputs in one table.\n",
         quick ? " --quick" : "");
  CK(cudaStreamDestroy(st));
  return 0;
}

/* minimal.c on the GPU: the same walkthrough with LUKV_BACKEND_CUDA, device
 * buffers, a stream of the engine's own, and one decode step (append +
 * attention for every layer) captured in a CUDA graph and replayed.
 *
 *   lukv-minimal-cuda BUDGETS.h5 [RATIO]     (exit 77: no usable CUDA device)
 *
 * Random numbers stand in for the model, as in minimal.c. Tensor arguments
 * are device pointers; context_len and keep counts stay on the host.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "lukv.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static void fill_random(uint16_t *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    x[i] = lukv_bf16_from_float((float)((rng >> 40) / (double)(1u << 23)) * 2.0f - 1.0f);
  }
}

#define CHECK_CUDA(call)                                                                    \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "lukv-minimal-cuda: %s: %s\n", #call, cudaGetErrorString(e_));        \
      goto done;                                                                            \
    }                                                                                       \
  } while (0)
#define CHECK_LUKV(call)                                                                    \
  do {                                                                                      \
    if ((call) != LUKV_OK) {                                                                \
      fprintf(stderr, "lukv-minimal-cuda: %s\n", lukv_cache_errmsg(cache));                 \
      goto done;                                                                            \
    }                                                                                       \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s BUDGETS.h5 [RATIO]\n", argv[0]);
    return 2;
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
    printf("lukv-minimal-cuda: no CUDA device: skipped\n");
    return 77;
  }
  const double ratio = argc == 3 ? atof(argv[2]) : 0.5;
  int rc = 1;
  lukv_table *table = NULL;
  lukv_cache *cache = NULL;
  cudaStream_t stream = NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  uint16_t *h = NULL;
  void *k = NULL, *v = NULL, *qw = NULL, *q = NULL, *out = NULL, *kn = NULL, *vn = NULL;

  if (lukv_table_open(argv[1], &table) != LUKV_OK) {
    fprintf(stderr, "lukv-minimal-cuda: %s\n", lukv_table_errmsg(NULL));
    return 1;
  }
  lukv_table_info ti;
  lukv_table_get_info(table, &ti);

  enum { B = 2, T_MAX = 384, RESERVE = 16, STEPS = 4 };
  const int32_t context_len[B] = {T_MAX, 200}; /* host memory, as every small integer array */
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = ti.n_layers;
  cfg.n_kv_heads = ti.n_kv_heads;
  cfg.n_q_heads = ti.n_q_heads;
  cfg.head_dim = ti.head_dim;
  cfg.batch = B;
  cfg.max_context = T_MAX;
  cfg.decode_reserve = RESERVE;
  cfg.backend = LUKV_BACKEND_CUDA;
  if (lukv_cache_create(&cfg, &cache) != LUKV_OK) {
    fprintf(stderr, "lukv-minimal-cuda: %s\n", lukv_cache_errmsg(NULL));
    goto done;
  }
  CHECK_LUKV(lukv_cache_check_table(cache, table));
  /* The engine's stream: every lukv call is queued on it. */
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CHECK_LUKV(lukv_cache_set_stream(cache, stream));

  const int L = cfg.n_layers, Hkv = cfg.n_kv_heads, Hq = cfg.n_q_heads, d = cfg.head_dim;
  const int w = ti.window;
  const size_t n_kv = (size_t)B * Hkv * T_MAX * d, n_qw = (size_t)B * Hq * w * d;
  const size_t n_q = (size_t)B * Hq * d, n_new = (size_t)B * Hkv * d;
  h = malloc((n_kv > n_qw ? n_kv : n_qw) * sizeof *h); /* host staging for the noise */
  if (!h) goto done;
  CHECK_CUDA(cudaMalloc(&k, n_kv * 2));
  CHECK_CUDA(cudaMalloc(&v, n_kv * 2));
  CHECK_CUDA(cudaMalloc(&qw, n_qw * 2 + 16));
  CHECK_CUDA(cudaMalloc(&q, n_q * 2));
  CHECK_CUDA(cudaMalloc(&out, n_q * 2));
  CHECK_CUDA(cudaMalloc(&kn, n_new * 2));
  CHECK_CUDA(cudaMalloc(&vn, n_new * 2));

  /* Prefill: per layer, the engine's device K, V and window queries. */
  for (int l = 0; l < L; l++) {
    fill_random(h, n_kv);
    CHECK_CUDA(cudaMemcpy(k, h, n_kv * 2, cudaMemcpyHostToDevice));
    fill_random(h, n_kv);
    CHECK_CUDA(cudaMemcpy(v, h, n_kv * 2, cudaMemcpyHostToDevice));
    fill_random(h, n_qw);
    CHECK_CUDA(cudaMemcpy(qw, h, n_qw * 2, cudaMemcpyHostToDevice));
    lukv_compress_args a;
    lukv_compress_args_init(&a);
    a.layer = l;
    a.k = k;
    a.v = v;
    a.q_window = qw;
    a.t_max = T_MAX;
    a.context_len = context_len;
    a.policy = LUKV_KEEP_TABLE;
    a.table = table;
    a.ratio = ratio;
    CHECK_LUKV(lukv_compress(cache, &a));
  }

  /* A first decode step, called directly (this token's q, k, v: noise). */
  fill_random(h, n_q);
  CHECK_CUDA(cudaMemcpy(q, h, n_q * 2, cudaMemcpyHostToDevice));
  fill_random(h, n_new);
  CHECK_CUDA(cudaMemcpy(kn, h, n_new * 2, cudaMemcpyHostToDevice));
  fill_random(h, n_new);
  CHECK_CUDA(cudaMemcpy(vn, h, n_new * 2, cudaMemcpyHostToDevice));
  for (int l = 0; l < L; l++) {
    CHECK_LUKV(lukv_append(cache, l, kn, vn));
    CHECK_LUKV(lukv_decode_attention(cache, l, q, out, 0.0f));
  }
  /* The same step captured once and replayed: each replay appends the next
   * row of every segment (the engine refreshes kn, vn, q in place). */
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int l = 0; l < L; l++) {
    if (lukv_append(cache, l, kn, vn) != LUKV_OK ||
        lukv_decode_attention(cache, l, q, out, 0.0f) != LUKV_OK) {
      fprintf(stderr, "lukv-minimal-cuda: %s\n", lukv_cache_errmsg(cache));
      cudaStreamEndCapture(stream, &graph);
      goto done;
    }
  }
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int step = 1; step < STEPS; step++) {
    fill_random(h, n_q);
    CHECK_CUDA(cudaMemcpyAsync(q, h, n_q * 2, cudaMemcpyHostToDevice, stream));
    CHECK_CUDA(cudaGraphLaunch(exec, stream));
  }
  /* Bring the host's segment lengths up to the device's. */
  CHECK_LUKV(lukv_cache_sync(cache));
  lukv_segment sg;
  CHECK_LUKV(lukv_cache_segment(cache, 0, 0, 0, &sg));
  printf("layer 0, seq 0, head 0: kept %d of %d tokens, %d rows after %d decode steps\n", sg.keep,
         sg.context_len, sg.length, STEPS);
  uint16_t o0;
  CHECK_CUDA(cudaMemcpy(&o0, out, 2, cudaMemcpyDeviceToHost));
  printf("out[0] = %.4f\n", (double)lukv_bf16_to_float(o0));

  uint64_t held, full;
  lukv_cache_memory(cache, &held, &full);
  printf("ratio %.2f: device bytes held %llu vs full %llu (%.1f%%)\n", ratio,
         (unsigned long long)held, (unsigned long long)full,
         full ? 100.0 * (double)held / (double)full : 0.0);
  rc = sg.length == sg.keep + STEPS ? 0 : 1;
done:
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  lukv_cache_destroy(cache); /* before the stream it uses */
  if (stream) cudaStreamDestroy(stream);
  cudaFree(k), cudaFree(v), cudaFree(qw), cudaFree(q), cudaFree(out), cudaFree(kn), cudaFree(vn);
  free(h);
  lukv_table_close(table);
  return rc;
}

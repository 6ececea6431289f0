/* bench-engine: the CUDA engine (model/, bf16) at a real model's shape with
 * random weights, each number next to the peer or limit it is measured
 * against in the same run (DESIGN §8):
 *
 *   GEMM peak     a large cublasGemmEx, bf16 in, f32 out, CUBLAS_COMPUTE_32F
 *                 (the model's own GEMM configuration) -> the MFU denominator
 *   bandwidth     a device-to-device cudaMemcpy (bytes read + written)
 *   attention     the flash-attention kernel alone at [T, Hq, d] / [T, Hkv, d],
 *                 causal; TFLOP/s and the ratio to the GEMM peak. The PyTorch
 *                 SDPA peer is bench/sdpa_peer.py, run on the same GPU.
 *   prefill       lukv_model_forward of T tokens into a KV cache: tokens/s,
 *                 model FLOP/s (2 x matmul params x T + causal attention + the
 *                 last row's lm_head) and MFU against the GEMM peak
 *   decode        N lukv_model_decode steps after the prefill: tokens/s and the
 *                 ratio to the bandwidth limit (bf16 weights + the K/V read,
 *                 per token, at the measured bandwidth)
 *   memory        device memory in use (cudaMemGetInfo) after each length
 *
 * Default: Llama-3.1-8B shape (bench/configs/llama-3.1-8b.json) at T = 4096,
 * 16384, 32768. Random init needs 4 bytes per parameter of host memory (32 GB
 * for 8B) before the bf16 upload. Exits 77 with one line when there is no
 * CUDA device.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "bench_cuda.h"

#include "cuda_kernels.h"
#include "model.h"

#ifndef LUKV_BENCH_CONFIG
#define LUKV_BENCH_CONFIG "bench/configs/llama-3.1-8b.json"
#endif

static const char usage[] =
    "usage: bench-engine [--config CONFIG.json] [--lengths T1,T2,...] [--decode N] [--seed N]\n"
    "                    [--gemm-size N] [--skip-model] [--skip-attention]\n"
    "\n"
    "CUDA engine benchmark with random weights: cuBLAS GEMM peak and copy\n"
    "bandwidth (the peers), flash-attention kernel, prefill tokens/s and MFU,\n"
    "decode tokens/s against the bandwidth limit, device memory in use.\n"
    "\n"
    "  --config PATH     model shape (default " LUKV_BENCH_CONFIG ")\n"
    "  --lengths LIST    prompt lengths (default 4096,16384,32768)\n"
    "  --decode N        decode steps after each prefill (default 32)\n"
    "  --seed N          random-init seed (default 0)\n"
    "  --gemm-size N     the peer GEMM is N x N x N (default 8192)\n"
    "  --skip-model      only the GEMM, bandwidth and attention measurements\n"
    "  --skip-attention  no standalone attention measurement\n";

#define MAX_LENGTHS 16

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double used_gib(void) {
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return -1;
  return (double)(tot - fr) / (1 << 30);
}

/* ---- peers --------------------------------------------------------------------- */

typedef struct gemm_ctx {
  cublasHandle_t h;
  int n;
  void *a, *b, *c;
} gemm_ctx;

static int gemm_once(void *vc) {
  gemm_ctx *g = vc;
  cublasStatus_t s = lukv_cuda_linear(g->h, g->a, g->b, g->n, g->n, g->n, 0.0f, g->c, 1);
  if (s != CUBLAS_STATUS_SUCCESS) fprintf(stderr, "bench-engine: cublasGemmEx: %s\n", cublasGetStatusString(s));
  return s == CUBLAS_STATUS_SUCCESS;
}

/* bf16 GEMM throughput in TFLOP/s (n x n x n, the model's configuration). */
static double gemm_peak(int n) {
  gemm_ctx g = {.n = n};
  double tf = -1;
  size_t e = (size_t)n * n;
  if (cublasCreate(&g.h) != CUBLAS_STATUS_SUCCESS) return -1;
  if (bench_cuda_ok(cudaMalloc(&g.a, 2 * e), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&g.b, 2 * e), "cudaMalloc") &&
      bench_cuda_ok(cudaMalloc(&g.c, 4 * e), "cudaMalloc") && bench_cuda_ok(cudaMemset(g.a, 0x3c, 2 * e), "cudaMemset") &&
      bench_cuda_ok(cudaMemset(g.b, 0x3c, 2 * e), "cudaMemset")) { /* 0x3c3c: a normal bf16 (~0.0115) */
    double ms = bench_time_ms(gemm_once, &g, 20);
    if (ms > 0) tf = 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
  }
  cudaFree(g.a), cudaFree(g.b), cudaFree(g.c);
  cublasDestroy(g.h);
  return tf;
}

typedef struct copy_ctx {
  void *a, *b;
  size_t bytes;
} copy_ctx;

static int copy_once(void *vc) {
  copy_ctx *c = vc;
  return bench_cuda_ok(cudaMemcpyAsync(c->b, c->a, c->bytes, cudaMemcpyDeviceToDevice, 0), "cudaMemcpyAsync");
}

/* Device memory bandwidth in GB/s (read + write of a 2 GiB copy). */
static double bandwidth(void) {
  copy_ctx c = {.bytes = (size_t)2 << 30};
  double gbs = -1;
  if (bench_cuda_ok(cudaMalloc(&c.a, c.bytes), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&c.b, c.bytes), "cudaMalloc") &&
      bench_cuda_ok(cudaMemset(c.a, 1, c.bytes), "cudaMemset")) {
    double ms = bench_time_ms(copy_once, &c, 10);
    if (ms > 0) gbs = 2.0 * (double)c.bytes / (ms * 1e-3) / 1e9;
  }
  cudaFree(c.a), cudaFree(c.b);
  return gbs;
}

/* ---- attention kernel alone ----------------------------------------------------- */

typedef struct attn_ctx {
  lukv_attn_shape sh;
  void *q, *k, *v, *out;
  float *lse;
} attn_ctx;

static int attn_once(void *vc) {
  attn_ctx *a = vc;
  return bench_cuda_ok(lukv_cuda_flash_attention(a->q, a->k, a->v, &a->sh, a->out, a->lse, 0), "flash attention");
}

static double causal_attn_flops(int T, int S, int Hq, int d) {
  /* QK^T and PV over the visible keys: 2 x 2 x d per (query head, visible key) */
  double pairs = (double)T * (S - T) + (double)T * (T + 1) / 2.0;
  return 4.0 * d * (double)Hq * pairs;
}

static void bench_attention(const lukv_model_config *c, const int *Ts, int nT, double peak_tf) {
  printf("\nflash attention alone (Hq %d, Hkv %d, d %d, causal; peer: python3 bench/sdpa_peer.py, same shapes):\n",
         c->n_heads, c->n_kv_heads, c->head_dim);
  printf("  %8s %12s %10s %10s\n", "T", "ms", "TFLOP/s", "/ GEMM");
  for (int i = 0; i < nT; i++) {
    attn_ctx a = {.sh = {.T = Ts[i], .S = Ts[i], .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                         .head_dim = c->head_dim, .window = 0}};
    size_t nq = (size_t)Ts[i] * c->n_heads * c->head_dim, nk = (size_t)Ts[i] * c->n_kv_heads * c->head_dim;
    double ms = -1;
    if (bench_cuda_ok(cudaMalloc(&a.q, 2 * nq), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&a.k, 2 * nk), "cudaMalloc") &&
        bench_cuda_ok(cudaMalloc(&a.v, 2 * nk), "cudaMalloc") && bench_cuda_ok(cudaMalloc(&a.out, 2 * nq), "cudaMalloc") &&
        bench_cuda_ok(cudaMalloc((void **)&a.lse, 4 * (size_t)Ts[i] * c->n_heads), "cudaMalloc") &&
        bench_fill_random_bf16(a.q, nq, 1) && bench_fill_random_bf16(a.k, nk, 2) && bench_fill_random_bf16(a.v, nk, 3))
      ms = bench_time_ms(attn_once, &a, 3);
    if (ms > 0) {
      double tf = causal_attn_flops(Ts[i], Ts[i], c->n_heads, c->head_dim) / (ms * 1e-3) / 1e12;
      printf("  %8d %12.3f %10.1f %10.3f\n", Ts[i], ms, tf, tf / peak_tf);
    } else {
      printf("  %8d failed\n", Ts[i]);
    }
    cudaFree(a.q), cudaFree(a.k), cudaFree(a.v), cudaFree(a.out), cudaFree(a.lse);
  }
}

/* ---- the model ------------------------------------------------------------------- */

static double matmul_params(const lukv_model_config *c) {
  double D = c->hidden_size, QD = (double)c->n_heads * c->head_dim, KD = (double)c->n_kv_heads * c->head_dim;
  double I = c->intermediate_size;
  return (double)c->n_layers * (D * (QD + 2 * KD) + QD * D + 3 * D * I);
}

static int bench_model(const char *cfg_path, uint64_t seed, const int *Ts, int nT, int n_dec, double peak_tf,
                       double bw) {
  lukv_error err = {0};
  lukv_model *m = NULL;
  fprintf(stderr, "bench-engine: random init of %s on the host, upload as bf16 ...\n", cfg_path);
  double t0 = now_s();
  if (lukv_model_random(cfg_path, seed, LUKV_DEVICE_CUDA, &m, &err) != LUKV_OK) {
    fprintf(stderr, "bench-engine: %s\n", err.msg);
    return 1;
  }
  const lukv_model_config *c = lukv_model_get_config(m);
  const double P = matmul_params(c), D = c->hidden_size, V = c->vocab_size;
  const double KD = (double)c->n_kv_heads * c->head_dim;
  /* bytes a decode step must read at least: every bf16 matrix (layers and lm_head) */
  const double weight_bytes = 2.0 * (P + D * V);
  printf("\nmodel %s: %d layers, D %d, I %d, Hq %d, Hkv %d, d %d, V %d; %.2f B params; loaded in %.1f s; "
         "device memory in use %.2f GiB\n",
         c->arch_name, c->n_layers, c->hidden_size, c->intermediate_size, c->n_heads, c->n_kv_heads, c->head_dim,
         c->vocab_size, (P + 2 * D * V) / 1e9, now_s() - t0, used_gib());
  printf("  %8s %12s %10s %8s %12s %12s %10s %12s\n", "T", "prefill s", "tok/s", "MFU", "decode tok/s",
         "limit tok/s", "/ limit", "mem GiB");
  float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
  int rc = logits ? 0 : 1;
  double peak_mem = 0;
  for (int i = 0; i < nT && rc == 0; i++) {
    const int T = Ts[i];
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    lukv_kv_cache *cache = NULL;
    if (!tok || lukv_kv_cache_create(m, T + n_dec, &cache, &err) != LUKV_OK) {
      fprintf(stderr, "bench-engine: T %d: %s\n", T, tok ? err.msg : "out of memory");
      free(tok);
      rc = 1;
      break;
    }
    uint64_t s = 12345 + (uint64_t)T;
    for (int t = 0; t < T; t++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      tok[t] = (int32_t)(s % (uint64_t)c->vocab_size);
    }
    lukv_forward_opts last = {.last_logits_only = 1};
    /* warm-up at this length: scratch buffers grow here, not in the timed pass */
    if (lukv_model_forward(m, cache, tok, T, &last, logits, &err) != LUKV_OK) {
      fprintf(stderr, "bench-engine: T %d: prefill: %s\n", T, err.msg);
      rc = 1;
    }
    double pre_s = 0, dec_s = 0;
    if (rc == 0) {
      lukv_kv_cache_reset(cache);
      double a = now_s();
      if (lukv_model_forward(m, cache, tok, T, &last, logits, &err) != LUKV_OK) rc = 1;
      pre_s = now_s() - a;
    }
    int32_t next = rc == 0 ? lukv_argmax(logits, c->vocab_size) : 0;
    if (rc == 0) {
      double a = now_s();
      for (int k = 0; k < n_dec && rc == 0; k++) {
        if (lukv_model_decode(m, cache, next, logits, &err) != LUKV_OK) rc = 1;
        else next = lukv_argmax(logits, c->vocab_size);
      }
      dec_s = now_s() - a;
    }
    if (rc != 0) {
      fprintf(stderr, "bench-engine: T %d: %s\n", T, err.msg);
    } else {
      double mem = used_gib();
      if (mem > peak_mem) peak_mem = mem;
      double flops = 2.0 * P * T + (double)c->n_layers * causal_attn_flops(T, T, c->n_heads, c->head_dim) +
                     2.0 * D * V;
      double mfu = flops / pre_s / 1e12 / peak_tf;
      /* decode limit: weights + the K and V read of every layer at the mean cache length */
      double kv_bytes = 2.0 * 2.0 * c->n_layers * KD * (T + n_dec / 2.0);
      double limit_tps = bw * 1e9 / (weight_bytes + kv_bytes), dec_tps = n_dec > 0 ? n_dec / dec_s : 0;
      printf("  %8d %12.3f %10.0f %8.3f %12.1f %12.1f %10.3f %12.2f\n", T, pre_s, T / pre_s, mfu, dec_tps,
             limit_tps, dec_tps / limit_tps, mem);
    }
    lukv_kv_cache_destroy(cache);
    free(tok);
  }
  if (rc == 0)
    printf("  peak device memory in use: %.2f GiB (weights, the largest cache and the engine's scratch)\n", peak_mem);
  free(logits);
  lukv_model_destroy(m);
  return rc;
}

static int parse_lengths(const char *s, int *Ts, int *nT) {
  *nT = 0;
  while (*s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < 1 || v > (1 << 24) || *nT == MAX_LENGTHS || (*end && *end != ',')) return 0;
    Ts[(*nT)++] = (int)v;
    s = *end ? end + 1 : end;
  }
  return *nT > 0;
}

int main(int argc, char **argv) {
  bench_set_prog("bench-engine");
  const char *cfg = LUKV_BENCH_CONFIG;
  int Ts[MAX_LENGTHS] = {4096, 16384, 32768}, nT = 3, n_dec = 32, skip_model = 0, skip_attn = 0, gemm_n = 8192;
  unsigned long long seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(a, "--skip-model")) {
      skip_model = 1;
    } else if (!strcmp(a, "--skip-attention")) {
      skip_attn = 1;
    } else if (!v) {
      fprintf(stderr, "bench-engine: %s needs a value (see --help)\n", a);
      return 2;
    } else if (!strcmp(a, "--config")) {
      cfg = v, i++;
    } else if (!strcmp(a, "--lengths")) {
      if (!parse_lengths(v, Ts, &nT)) {
        fprintf(stderr, "bench-engine: --lengths: \"%s\" is not a list of positive lengths\n", v);
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--decode") || !strcmp(a, "--seed") || !strcmp(a, "--gemm-size")) {
      char *end;
      errno = 0;
      unsigned long long x = strtoull(v, &end, 10);
      if (*v == '-' || !*v || *end || errno || (!strcmp(a, "--decode") && x > 100000) ||
          (!strcmp(a, "--gemm-size") && (x < 16 || x > 32768))) {
        fprintf(stderr, "bench-engine: %s: \"%s\" is not a valid count\n", a, v);
        return 2;
      }
      if (!strcmp(a, "--decode")) n_dec = (int)x;
      else if (!strcmp(a, "--gemm-size")) gemm_n = (int)x;
      else seed = x;
      i++;
    } else {
      fprintf(stderr, "bench-engine: unknown argument \"%s\" (see --help)\n", a);
      return 2;
    }
  }
  int n_dev = 0;
  cudaError_t e = cudaGetDeviceCount(&n_dev);
  if (e != cudaSuccess || n_dev < 1) {
    fprintf(stderr, "bench-engine: no CUDA device (%s); this benchmark needs an NVIDIA GPU (sm_90)\n",
            e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
    return 77;
  }
  struct cudaDeviceProp p;
  if (!bench_cuda_ok(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties")) return 1;
  printf("bench-engine: %s, %d SMs, %.1f GiB, compute capability %d.%d\n", p.name, p.multiProcessorCount,
         (double)p.totalGlobalMem / (1 << 30), p.major, p.minor);
  lukv_error err = {0};
  lukv_model_config c;
  if (lukv_config_read(cfg, &c, &err) != LUKV_OK) {
    fprintf(stderr, "bench-engine: %s\n", err.msg);
    return 1;
  }
  double peak = gemm_peak(gemm_n), bw = bandwidth();
  if (peak <= 0 || bw <= 0) return 1;
  printf("peers: cuBLAS bf16 GEMM %d^3 (bf16 in, f32 out, f32 compute): %.1f TFLOP/s; "
         "device copy bandwidth: %.0f GB/s\n",
         gemm_n, peak, bw);
  if (!skip_attn) bench_attention(&c, Ts, nT, peak);
  if (skip_model) return 0;
  return bench_model(cfg, seed, Ts, nT, n_dec, peak, bw);
}

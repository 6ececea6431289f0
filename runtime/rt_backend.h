/* What a runtime backend implements (internal to runtime/; ggml style).
 *
 * The front end (cache.c) owns every decision: argument checks, keep counts
 * (rt_alloc.h), the segment table and its lengths, memory accounting. A
 * backend only moves and computes tensors, each entry one GPU kernel (backend_cuda.cu)
 * with its plain-C twin in backend_cpu.c:
 *
 *   score   scorer over one layer's prefill        (CUDA: snapkv / keydiff kernels)
 *   select  per-head top-k of the mid tokens       (CUDA: CUB segmented sort/select)
 *   gather  kept rows into the segments            (CUDA: gather kernel, 16-byte loads)
 *   append  one decode row per segment             (CUDA: tiny scatter, graph safe)
 *   decode  attention over variable segments       (CUDA: split-KV flash-decoding)
 *
 * The front end guarantees on every call: shapes agree with the config,
 * indices are in range, T_b in [1, t_max], keep counts in
 * [min(T_b, s+w), T_b], segments of the layer are laid out and (for append)
 * not full. A backend reports failures with lukv_error_set and never changes
 * the segment table: the front end advances lengths after a successful call.
 *
 * CUDA: lengths live on the device too (a per-layer appended counter the
 * append kernel advances itself), so that appends can be captured in a CUDA
 * graph and replayed; the host lengths are then a mirror the front end
 * refreshes with sync_layer (lukv_cache_sync).
 *
 * Memory kinds: "backend memory" (k, v, q, out, scores, layer buffers) is
 * host memory on the CPU backend and device memory on CUDA; "host" arrays
 * (context_len, keep, segment table, positions) are always host memory.
 */
#ifndef LUKV_RT_BACKEND_H
#define LUKV_RT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lukv.h"
#include "status.h"

typedef enum lukv_rt_scorer { LUKV_RT_SNAPKV = 0, LUKV_RT_KEYDIFF = 1 } lukv_rt_scorer;

/* Shape of a cache, copied from its config. */
typedef struct lukv_rt_dims {
  int L, Hkv, Hq, d, B;
} lukv_rt_dims;

/* One compressed layer. seg and pos are host; k and v backend memory. */
typedef struct lukv_rt_layer {
  int compressed;      /* 0: nothing below is allocated */
  void *k, *v;         /* backend [rows, d] bf16 */
  int64_t rows;        /* sum of the segments' capacities */
  lukv_segment *seg;   /* host [B * Hkv], segment (b, h) at b*Hkv + h, offsets ascending */
  int32_t *pos;        /* host [rows]: original position of each row in use */
  void *dev;           /* backend's own per-layer state (layer_init), NULL on CPU */
} lukv_rt_layer;

typedef struct lukv_rt_score_job {
  lukv_rt_dims dims;
  const void *k;              /* backend [B, Hkv, t_max, d] bf16 */
  const void *q_window;       /* backend [B, Hq, w, d] bf16 (snapkv with w > 0) */
  int t_max;
  const int32_t *context_len; /* host [B] */
  lukv_rt_scorer scorer;
  int window;                 /* w */
  int pool_kernel;            /* odd >= 1 */
  float scale;                /* > 0 */
} lukv_rt_score_job;

typedef struct lukv_rt_select_job {
  lukv_rt_dims dims;
  const float *scores;        /* backend [B, Hkv, t_max] from score(); NULL if no head evicts */
  int t_max;
  const int32_t *context_len; /* host [B] */
  int sink, window;
  const lukv_rt_layer *layer; /* seg[].offset and .keep set; pos is the output */
} lukv_rt_select_job;

typedef struct lukv_rt_backend {
  const char *name;
  /* Every entry takes the backend's per-cache state `ctx` first (NULL on
   * the CPU backend). */
  /* Optional (NULL on CPU): per-cache state, made by lukv_cache_create after
   * the config checks, freed by lukv_cache_destroy. reserve: decode_reserve. */
  int (*init)(const lukv_rt_dims *dims, int reserve, void **ctx, lukv_error *err);
  void (*fini)(void *ctx);
  /* Optional: the stream (CUDA: cudaStream_t) all later work is ordered on. */
  int (*set_stream)(void *ctx, void *stream, lukv_error *err);
  /* Optional: 1 when work is being recorded rather than run (CUDA stream
   * capture); the front end then leaves its host lengths alone. */
  int (*capturing)(void *ctx);
  /* Optional: after the segment table of `layer` is laid out (offsets,
   * keep, capacity, length == keep) and its buffers allocated, before
   * select: the backend's own copy of the table (layer->dev). layer_fini
   * frees it (called for every layer whose dev is not NULL). */
  int (*layer_init)(void *ctx, lukv_rt_layer *layer, lukv_error *err);
  void (*layer_fini)(void *ctx, lukv_rt_layer *layer);
  /* Optional: the backend's count of rows appended to each segment of the
   * layer since compression (the same for all segments: appends are in
   * lockstep) and whether an append found the layer full and dropped its
   * rows (the flag is cleared). Waits for the queued work. */
  int (*sync_layer)(void *ctx, const lukv_rt_layer *layer, int32_t *appended, int *overflow,
                    lukv_error *err);
  /* Allocation of backend memory; alloc of 0 bytes returns a valid pointer. */
  int (*alloc)(void *ctx, size_t bytes, void **ptr, lukv_error *err);
  void (*free)(void *ctx, void *ptr);
  /* bytes from backend memory src to host memory dst (waits for queued work). */
  int (*to_host)(void *ctx, void *dst, const void *src, size_t bytes, lukv_error *err);
  /* scores: backend [B, Hkv, t_max] f32; t >= T_b set to -INFINITY. */
  int (*score)(void *ctx, const lukv_rt_score_job *job, float *scores, lukv_error *err);
  /* For each segment: sink, the top keep - s - w mid tokens by score (ties:
   * lower position; NaN ranks last), window, ascending, into
   * layer->pos[offset .. offset + keep). */
  int (*select)(void *ctx, const lukv_rt_select_job *job, lukv_error *err);
  /* Row pos[offset + i] of (b, h) in k_src / v_src [B, Hkv, t_max, d] to row
   * offset + i of the layer buffers, i < keep. */
  int (*gather)(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer,
                const void *k_src, const void *v_src, int t_max, lukv_error *err);
  /* k_new, v_new backend [B, Hkv, d] to row offset + length of each segment
   * (CUDA: offset + keep + the device's appended count, see sync_layer). */
  int (*append)(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer,
                const void *k_new, const void *v_new, lukv_error *err);
  /* q backend [B, Hq, d] -> out backend [B, Hq, d] over each segment's rows. */
  int (*decode)(void *ctx, const lukv_rt_dims *dims, const lukv_rt_layer *layer, const void *q,
                void *out, float scale, lukv_error *err);
} lukv_rt_backend;

extern const lukv_rt_backend lukv_rt_backend_cpu;
/* runtime/backend_cuda.cu; defined only in a build with CUDA (LUKV_HAVE_CUDA). */
extern const lukv_rt_backend lukv_rt_backend_cuda;

#endif

/* What a compute backend implements (internal to model/; ggml style: the
 * front end in model.c never touches backend data, a backend never parses
 * files or checks user input).
 *
 * The front end guarantees on every call: 1 <= T, tokens in [0, V), the cache
 * (if any) belongs to this backend and has room for T more rows, pos0 is its
 * current length. A backend reports failures with lukv_error_set and leaves
 * the cache length to the front end (it advances it after a successful call).
 *
 * The CPU backend (backend_cpu.c) is the reference. The CUDA backend
 * (backend_cuda.cu, built when LUKV_HAVE_CUDA) exposes `lukv_backend_cuda`
 * with the same five entries; model.c picks it for LUKV_DEVICE_CUDA. It
 * computes in bf16 with f32 accumulation (matrices bf16 on the device, norm
 * weights and biases f32, residual stream f32), uses the device current at
 * init, and reports every failed CUDA/cuBLAS call as LUKV_ERR_CUDA naming
 * the call and cudaGetErrorString.
 *
 * The tap on CUDA: lukv_tap_info.device = LUKV_DEVICE_CUDA and every pointer
 * is device memory, f32 as the interface says. q, k, v are f32 copies
 * (widened by a kernel) of the bf16 values attention actually used, so the
 * tapped lse is consistent with them; lse is the kernel's own f32 output;
 * o_proj is the bf16 weight widened to f32. The buffers belong to the backend
 * and are valid during the call only. The backend synchronises its stream
 * before calling the tap and the whole device (cudaDeviceSynchronize) after
 * it returns, so a tap may enqueue work on any stream that reads them, as
 * long as it does not keep the pointers.
 *
 * lukv_backend_cuda_f32 (LUKV_DEVICE_CUDA_F32) is the same code with f32
 * matrices, activations and KV cache: its tap hands out the engine's own f32
 * buffers (no copies), and it refuses external attention (bf16 interface).
 *
 * External attention on CUDA (lukv_model_decode_external): the callback gets
 * the bf16 device q, k, v and attention-output buffers the layer's own
 * attention would have used, and the backend's stream; nothing is
 * synchronised before or after it (the callback enqueues on that stream), so
 * a decode step waits once, for its logits.
 */
#ifndef LUKV_BACKEND_H
#define LUKV_BACKEND_H

#include "config.h"
#include "model.h"
#include "weights.h"

typedef struct lukv_fwd_call {
  const int32_t *tokens;          /* [T] host, checked */
  int T;
  void *cache;                    /* backend cache state or NULL */
  int pos0;                       /* absolute position of tokens[0] */
  const lukv_forward_opts *opts;  /* never NULL */
  float *logits;                  /* host [T, V] or [1, V], or NULL */
  const char *where;              /* model source, for messages */
  /* lukv_model_decode_external: when attn is set (the front end sets it
   * only with T == 1 and no cache) each layer calls it with the post-RoPE
   * q, k, v instead of running its own attention: host f32 on CPU, device
   * bf16 and the backend's stream on CUDA (model.h, lukv_attn_call). The
   * K/V rows go to row 0 of the call's scratch, RoPE is taken at pos0. */
  lukv_attn_fn attn;
  void *attn_user;
} lukv_fwd_call;

typedef struct lukv_backend {
  const char *name;
  lukv_device device;
  /* Builds the backend's weights from host refs (valid during the call).
   * *keep_files = 1 if the state still points into w's mapped files after
   * the call (then the front end keeps them mapped). */
  int (*init)(const lukv_model_config *cfg, const lukv_weights *w, const char *where, void **state,
              int *keep_files, lukv_error *err);
  void (*free)(void *state);
  int (*cache_init)(void *state, int capacity, void **cache, lukv_error *err);
  void (*cache_free)(void *cache);
  int (*forward)(void *state, const lukv_fwd_call *call, lukv_error *err);
} lukv_backend;

extern const lukv_backend lukv_backend_cpu;
extern const lukv_backend lukv_backend_cuda;     /* defined only when LUKV_HAVE_CUDA */
extern const lukv_backend lukv_backend_cuda_f32; /* the same in f32 storage (device LUKV_DEVICE_CUDA) */

#endif

/* What a compute backend implements (internal to model/; ggml style: the
 * front end in model.c never touches backend data, a backend never parses
 * files or checks user input).
 *
 * The front end guarantees on every call: 1 <= T, tokens in [0, V), the cache
 * (if any) belongs to this backend and has room for T more rows, pos0 is its
 * current length. A backend reports failures with lukv_error_set and leaves
 * the cache length to the front end (it advances it after a successful call).
 *
 * The CPU backend (backend_cpu.c) is the reference. A CUDA backend adds
 * backend_cuda.cu exposing `lukv_backend_cuda` with the same five entries;
 * model.c picks it for LUKV_DEVICE_CUDA.
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

#endif

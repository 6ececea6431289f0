/* Host-side view of a model's weights: every tensor the forward pass needs,
 * found by its Hugging Face name and shape-checked against the config, still
 * in its stored dtype. A backend turns these into its own format once (the
 * CPU backend: f32; a CUDA backend: bf16 uploads) and may then let the front
 * end release the files.
 */
#ifndef LUKV_WEIGHTS_H
#define LUKV_WEIGHTS_H

#include <stdint.h>

#include "config.h"
#include "safetensors.h"
#include "status.h"

typedef struct lukv_tensor_ref {
  const void *data;   /* NULL when absent (an optional bias); else borrowed from
                         the mapping or the random block, maybe unaligned */
  lukv_dtype dtype;   /* F32, F16 or BF16 */
  int64_t rows, cols; /* [rows, cols] matrix (nn.Linear: [out, in]); a vector is [n, 1] */
} lukv_tensor_ref;

typedef struct lukv_layer_weights {
  lukv_tensor_ref attn_norm;          /* [D] */
  lukv_tensor_ref wq, wk, wv;         /* [Hq*d, D], [Hkv*d, D], [Hkv*d, D] */
  lukv_tensor_ref bq, bk, bv;         /* [Hq*d], [Hkv*d], [Hkv*d] or absent */
  lukv_tensor_ref wo, bo;             /* [D, Hq*d], [D] or absent */
  lukv_tensor_ref mlp_norm;           /* [D] */
  lukv_tensor_ref w_gate, w_up;       /* [I, D] */
  lukv_tensor_ref w_down;             /* [D, I] */
  lukv_tensor_ref b_gate, b_up, b_down; /* [I], [I], [D] or absent */
} lukv_layer_weights;

typedef struct lukv_weights {
  lukv_tensor_ref embed;              /* [V, D] */
  lukv_tensor_ref final_norm;         /* [D] */
  lukv_tensor_ref lm_head;            /* [V, D]; same data as embed when tied */
  lukv_layer_weights *layers;         /* [L], owned */
  lukv_st_set *files;                 /* owned; NULL for random weights or once released */
  float *random_block;                /* owned; all tensors of random init, or all
                                         dequantised tensors of a GGUF (gguf.h) */
} lukv_weights;

/* Finds and checks every tensor of cfg in the safetensors of DIR. Errors:
 * FORMAT for a missing tensor, SHAPE for a misshapen one, UNSUPPORTED for a
 * dtype other than F32/F16/BF16. w is zeroed first; free with lukv_weights_free. */
int lukv_weights_load(const char *dir, const lukv_model_config *cfg, lukv_weights *w, lukv_error *err);

/* Seeded random weights of cfg's shape, f32: uniform with std
 * cfg->initializer_range for matrices and embeddings, norms 1, biases 0. */
int lukv_weights_random(const lukv_model_config *cfg, uint64_t seed, lukv_weights *w, lukv_error *err);

/* Applies fn to every tensor slot of cfg's model, in a fixed order, with its
 * HF name and shape [rows] (cols == 0) or [rows, cols]; present = 0 for an
 * optional tensor this config lacks. Stops at the first non-OK return. Sets
 * lm_head = embed afterwards when the embeddings are tied. w->layers must be
 * allocated [L]. (How other file formats, e.g. gguf.c, fill the same slots.) */
typedef int (*lukv_slot_fn)(void *ctx, const char *name, int64_t rows, int64_t cols, int present,
                            lukv_tensor_ref *slot, lukv_error *err);
int lukv_weights_for_each_slot(const lukv_model_config *cfg, lukv_weights *w, lukv_slot_fn fn, void *ctx,
                               lukv_error *err);

/* Unmaps the files once a backend holds its own copy; data pointers of
 * file-backed tensors become invalid. */
void lukv_weights_release_files(lukv_weights *w);
void lukv_weights_free(lukv_weights *w);  /* accepts a zeroed struct */

/* Elements of a tensor ref. */
static inline int64_t lukv_tensor_numel(const lukv_tensor_ref *t) { return t->rows * t->cols; }

#endif

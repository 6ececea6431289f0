/* lukv-eval's core: the query-agnostic protocol on one sample.
 *
 *   lukv_eval_prefill   context [T] through the engine (CPU or CUDA), the
 *                       tap keeping every layer's post-RoPE K, V and the
 *                       last w queries in bf16 (liblukv's layout)
 *   lukv_eval_run       for one (allocator, scorer, ratio): compress every
 *                       layer into a liblukv cache, then feed the question
 *                       and the answer token by token through
 *                       lukv_model_decode_external, attention by
 *                       lukv_append + lukv_decode_attention
 *
 * Devices: everything follows the model's. On a CUDA model the prefill also
 * keeps device copies of K, V and the window queries, the liblukv cache is
 * LUKV_BACKEND_CUDA (compressed from those copies) and each decode step's
 * append + attention is enqueued on the engine's stream (model.h).
 *
 * Exact match and the answer NLL come from the same teacher-forced pass: a
 * greedy decode reproduces the answer exactly iff at every answer step the
 * argmax (lowest id on ties) is the expected token, given the expected
 * prefix, which is what the teacher-forced pass sees.
 */
#ifndef LUKV_EVAL_RUN_H
#define LUKV_EVAL_RUN_H

#include <stdint.h>

#include "lukv.h"
#include "model.h"

typedef enum lukv_eval_alloc {
  LUKV_EVAL_FULL = 0,   /* no compression: every head keeps T */
  LUKV_EVAL_UNIFORM,
  LUKV_EVAL_PYRAMID,
  LUKV_EVAL_ADAKV,
  LUKV_EVAL_LUKV,       /* the budgets table at the ratio */
  LUKV_EVAL_N_ALLOC
} lukv_eval_alloc;

extern const char *const lukv_eval_alloc_names[LUKV_EVAL_N_ALLOC]; /* "full", ... */

/* One sample's prefill, kept for every configuration evaluated on it. */
typedef struct lukv_eval_prefill {
  int T, L, Hq, Hkv, d, w;
  uint16_t *k, *v;       /* [L, Hkv, T, d] bf16 */
  uint16_t *qw;          /* [L, Hq, w, d] bf16: queries at positions T-w .. T-1 */
  float *last_logits;    /* [V] logits of the last context token */
  lukv_device device;    /* the model's */
  /* CUDA: device copies of k, v, qw (same shapes, cudaMalloc'd); else NULL */
  void *k_dev, *v_dev, *qw_dev;
  double seconds;        /* wall time of the forward pass */
} lukv_eval_prefill;

/* Runs context [T] with the tap; w = observation window (<= T). */
int lukv_eval_do_prefill(lukv_model *m, const int32_t *context, int T, int w, lukv_eval_prefill *out,
                         lukv_error *err);
void lukv_eval_prefill_free(lukv_eval_prefill *p);

typedef struct lukv_eval_config {
  lukv_eval_alloc alloc;
  const char *scorer;    /* "snapkv" | "keydiff" */
  double ratio;          /* compression rho (ignored by full) */
  int sink, window;      /* s, w (the table's when a table is used) */
  int pool_kernel;
  lukv_table *table;     /* LUKV_EVAL_LUKV only; borrowed */
  const char *model_hash;/* checked against the table; may be NULL */
} lukv_eval_config;

typedef struct lukv_eval_result {
  int exact;             /* 1: greedy answer == expected answer */
  double nll_sum;        /* sum of -log p(answer token), nats */
  int n_answer;          /* answer tokens scored */
  uint64_t held_bytes, full_bytes; /* lukv_cache_memory after the whole decode */
  double compress_s;     /* lukv_compress over all layers */
  double decode_s;       /* decode steps through the compacted cache */
  int decode_steps;
  int32_t *greedy;       /* [n_answer] argmax at each answer step (caller frees), or NULL */
} lukv_eval_result;

/* Evaluates one configuration on a prefilled sample (question [nq], answer
 * [na >= 1]) with the model that made p (same device). */
int lukv_eval_run(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, const int32_t *question,
                  int nq, const int32_t *answer, int na, lukv_eval_result *out, lukv_error *err);

/* Free-running greedy decode through a liblukv cache compressed with cfg:
 * out [n_new] the argmax tokens, logits_out [n_new, V] (may be NULL) the
 * logits that chose them. The first token comes from the prefill's last
 * logits. Used by the tests to compare with lukv_model_generate. */
int lukv_eval_greedy(lukv_model *m, const lukv_eval_prefill *p, const lukv_eval_config *cfg, int n_new,
                     int32_t *out, float *logits_out, lukv_error *err);

#endif

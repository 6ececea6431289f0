/* The three lukv file formats: corpus.h5, profile.h5, budgets.h5.
 *
 * Full specification: docs/formats.md. Every reader validates `format`,
 * `format_version`, each object's presence, type, shape and value range, and
 * on failure returns a negative status with err->msg of the form
 *   "PATH: /OBJECT: problem"
 * Writers write PATH.tmp and rename it to PATH only once everything is
 * written, so a failed write never leaves a partial PATH behind.
 *
 * Ownership: a struct filled by a reader owns every pointer inside it and is
 * released by the matching *_free (which accepts NULL and a zeroed struct).
 * Writers only read the struct they are given.
 */
#ifndef LUKV_FORMATS_H
#define LUKV_FORMATS_H

#include <stdint.h>

#include "status.h"

#define LUKV_CORPUS_FORMAT "lukv-corpus"
#define LUKV_PROFILE_FORMAT "lukv-profile"
#define LUKV_BUDGETS_FORMAT "lukv-budgets"
#define LUKV_CORPUS_VERSION 1
#define LUKV_PROFILE_VERSION 1
#define LUKV_BUDGETS_VERSION 1

/* ---- corpus.h5 --------------------------------------------------------- */

typedef struct lukv_corpus {
  int64_t n_tokens;   /* N */
  int64_t n_samples;  /* S */
  int32_t *tokens;    /* [N] all samples concatenated; 0 <= id < vocab_size */
  int64_t *offsets;   /* [S+1] sample s is tokens[offsets[s] .. offsets[s+1]) */
  char *tokenizer;    /* e.g. "bytes" or a HF tokenizer name */
  int64_t vocab_size;
  char *source;       /* free text: where the samples came from */
} lukv_corpus;

int lukv_corpus_read(const char *path, lukv_corpus *out, lukv_error *err);
int lukv_corpus_write(const char *path, const lukv_corpus *c, lukv_error *err);
void lukv_corpus_free(lukv_corpus *c);

/* ---- shared model identity ---------------------------------------------- */

typedef struct lukv_model_id {
  char *model_name;   /* human name, e.g. "lukv-tiny" */
  char *model_hash;   /* hex digest of the weights, identifies the exact model */
  int32_t n_layers;   /* L */
  int32_t n_kv_heads; /* H (KV heads per layer) */
  int32_t n_q_heads;  /* query heads per layer (GQA group = n_q_heads / H) */
  int32_t head_dim;
} lukv_model_id;

/* ---- profile.h5 --------------------------------------------------------- */

typedef struct lukv_profile {
  lukv_model_id model;
  /* protocol */
  char *mode;          /* "teacher" | "generate" */
  char *utility;       /* "max" | "sum" */
  int32_t context_len; /* T requested (samples may be shorter, see below) */
  int32_t future_len;
  int32_t sink;        /* s */
  int32_t window;      /* w */
  int32_t pool_kernel;
  int32_t grid;        /* G: curves have G+1 points, keep fraction g/G */
  /* data */
  int64_t n_samples;   /* S >= 1 */
  int n_scorers;       /* number of scorer curves besides the oracle */
  char **scorer_names; /* [n_scorers] e.g. "snapkv", "keydiff" */
  float **curves;      /* [n_scorers] each [S, L, H, G+1]: loss at keep index g */
  float *oracle;       /* [S, L, H, G+1] loss when ranking by the utility itself */
  float *utility_total;       /* [S, L, H] total utility of each head's mid tokens */
  int32_t *sample_context_len; /* [S] T of each sample */
  /* optional root attributes (provenance; a zeroed struct has none of them) */
  int has_first_sample;        /* first_sample is recorded */
  int64_t first_sample;        /* corpus index of sample 0 (>= 0) */
  int32_t shard_index;         /* --shard I/N: I, 1-based (1 <= I <= N) ... */
  int32_t shard_count;         /* ... and N; 0 = not a shard */
  char *precision;             /* the engine's activations, "bf16" | "f32"; NULL = not recorded */
} lukv_profile;

/* Reads and validates: curves finite and >= 0, shapes [S, L, H, G+1],
 * sample_context_len in (sink + window, ...], S >= 1; the optional attributes
 * when present (first_sample >= 0, 1 <= shard_index <= shard_count, precision
 * "bf16" or "f32"). The writer writes those that are set. */
int lukv_profile_read(const char *path, lukv_profile *out, lukv_error *err);
int lukv_profile_write(const char *path, const lukv_profile *p, lukv_error *err);
void lukv_profile_free(lukv_profile *p);
/* Curves of a scorer by name ("oracle" gives p->oracle); NULL if absent. */
const float *lukv_profile_curves(const lukv_profile *p, const char *scorer);

/* ---- budgets.h5 --------------------------------------------------------- */

typedef struct lukv_budgets {
  lukv_model_id model;
  char *scorer;        /* scorer whose curves were solved */
  char *aggregation;   /* "mean-curve" | "mean-of-solutions" */
  char *solver;        /* e.g. "hull-greedy" */
  int32_t sink;
  int32_t window;
  int32_t grid;           /* G */
  int32_t min_keep_index; /* g_min */
  int32_t context_len;    /* shortest T in the profile (defines g_min) */
  int64_t calibration_samples; /* optional attribute: the profile samples the table was
                                  solved on (>= 1); 0 = not recorded (older files) */
  int64_t n_ratios;       /* R */
  float *compression;     /* [R] rho, strictly increasing in (0, 1) */
  float *keep_fraction;   /* [R, L, H] in [0, 1] */
  /* /report: summed loss over all heads on the aggregated curves, per ratio.
   * NaN where that figure was not computed (e.g. --exact none). */
  double *report_greedy;   /* [R] */
  double *report_lp_bound; /* [R] */
  double *report_exact;    /* [R] */
  double *report_uniform;  /* [R] */
  double *report_pyramid;  /* [R] */
  /* Further per-ratio figures under /report/<name>, float64 [R] each (for
   * example lp_glpk, mip_gap, heldout_mean_curve). Optional on read. */
  int n_extra;
  char **extra_names;  /* [n_extra] */
  double **extra;      /* [n_extra] each [R] */
} lukv_budgets;

int lukv_budgets_read(const char *path, lukv_budgets *out, lukv_error *err);
int lukv_budgets_write(const char *path, const lukv_budgets *b, lukv_error *err);
void lukv_budgets_free(lukv_budgets *b);
/* Index of the ratio equal to rho (within 1e-6), or -1. */
int64_t lukv_budgets_find_ratio(const lukv_budgets *b, double rho);
/* Extra report by name; NULL if absent. */
const double *lukv_budgets_extra(const lukv_budgets *b, const char *name);
/* Appends a copy of an [R] extra report (takes no ownership of values). */
int lukv_budgets_add_extra(lukv_budgets *b, const char *name, const double *values);

#endif

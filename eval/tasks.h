/* lukv-eval tasks: what the model is asked after its context was compressed.
 *
 * A sample is a context (prefilled, then compressed), a question (fed after
 * compression, token by token through the compacted cache) and the expected
 * answer (decoded greedily / teacher-forced). Two sources:
 *   - a RULER-style generator for byte-level models (token = byte, optional
 *     BOS), haystacks cut from a held-out corpus.h5, deterministic by seed;
 *   - a pre-tokenized task file (tasks.h5, docs/formats.md §5) for any
 *     tokenizer.
 *
 * Ownership: a lukv_task_set owns every array in it; lukv_task_set_free
 * releases it (NULL and zeroed sets are fine).
 */
#ifndef LUKV_EVAL_TASKS_H
#define LUKV_EVAL_TASKS_H

#include <stdint.h>

#include "formats.h"
#include "status.h"

#define LUKV_TASKS_FORMAT "lukv-tasks"
#define LUKV_TASKS_VERSION 1
/* Generator seeds start here: the organism's training / probe / needle_eval
 * streams (tools/organism/README.md) use numpy SeedSequence entropy with
 * domain tags 1, 2, 3; ours is a different generator (splitmix64) whose
 * base seed is >= 1_000_000, so no stream is shared. */
#define LUKV_TASK_SEED_MIN 1000000ULL

typedef struct lukv_task_sample {
  char *task;         /* task name, e.g. "niah_single" */
  int32_t *context;   /* [n_context] */
  int32_t *question;  /* [n_question] (may be 0: "ppl") */
  int32_t *answer;    /* [n_answer] >= 1 */
  int n_context, n_question, n_answer;
} lukv_task_sample;

typedef struct lukv_task_set {
  int n;                     /* samples */
  lukv_task_sample *s;       /* [n] */
  char *tokenizer;           /* "bytes" for the generator */
  int64_t vocab_size;        /* ids are < vocab_size */
} lukv_task_set;

/* The generator's task names, NULL-terminated:
 *   niah_single, niah_multikey, niah_multivalue, niah_multiquery, vt, cwe,
 *   fwe, ppl. */
extern const char *const lukv_task_names[];
/* 1 if name is a generator task. */
int lukv_task_known(const char *name);

/* Generates one sample of `task` whose context is exactly context_len tokens
 * (BOS = 256 first when bos != 0), from the byte tokens (< 256) of hay.
 * The random stream is splitmix64 seeded from (seed, task, context_len,
 * index): same arguments, same sample, on every platform.
 * Errors: LUKV_ERR_NOTFOUND (unknown task), LUKV_ERR_RANGE (context_len too
 * short for the task's needles, or hay without enough byte tokens). */
int lukv_task_generate(const char *task, int context_len, uint64_t seed, int index, const lukv_corpus *hay,
                       int bos, lukv_task_sample *out, lukv_error *err);

void lukv_task_sample_free(lukv_task_sample *s);

/* The query-aware protocol's sample: the question appended to the context,
 * the question left empty, so that compression (and SnapKV's observation
 * window) sees it. Answer unchanged. On LUKV_ERR_NOMEM s is unchanged. */
int lukv_task_question_into_context(lukv_task_sample *s, lukv_error *err);

/* Reads and validates a tasks.h5 (docs/formats.md §5). */
int lukv_tasks_read(const char *path, lukv_task_set *out, lukv_error *err);
/* Writes one (PATH.tmp, then rename). */
int lukv_tasks_write(const char *path, const lukv_task_set *set, lukv_error *err);
void lukv_task_set_free(lukv_task_set *set);

#endif

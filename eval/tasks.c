/* RULER-style task generator for byte-level models and the tasks.h5 reader /
 * writer (docs/formats.md §5). */
#include "tasks.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"

const char *const lukv_task_names[] = {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery",
                                       "vt",          "cwe",           "fwe",             "ppl",
                                       NULL};

/* Answer length of the "ppl" task: teacher-forced continuation bytes. */
enum { PPL_ANSWER = 64, BOS_TOKEN = 256, N_NEEDLES = 4 };

static const char *const WORDS[] = {
    "apple",  "river",  "stone",  "cloud",  "tiger",  "maple",  "ocean",  "piano",  "candle", "forest",
    "silver", "garden", "rocket", "pepper", "window", "castle", "meadow", "violet", "harbor", "lemon",
    "falcon", "marble", "copper", "willow", "anchor", "basket", "cactus", "dragon", "ember",  "feather",
    "glacier", "hammer", "island", "jungle", "kettle", "ladder", "mirror", "needle", "orchid", "pebble",
    "quartz", "ribbon", "saddle", "tunnel", "umbrella", "valley", "walnut", "yogurt", "zebra",  "beacon",
    "cobalt", "dune",   "engine", "fossil", "goblet", "hollow", "ivory",  "jasper", "kernel", "lantern",
    "magnet", "nectar", "oyster", "parrot", "quiver", "raven",  "summit", "thistle", "velvet", "wagon",
    "bamboo", "canyon", "dolphin", "elbow", "fabric", "ginger", "helmet", "igloo",  "jacket", "koala",
    "lobster", "muffin", "noodle", "onion", "pillow", "rabbit", "salmon", "turnip", "walrus", "almond"};
enum { N_WORDS = sizeof WORDS / sizeof WORDS[0] };

/* ---- deterministic randomness ---------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1 (modulo bias < 2^-40 for the n used here). */
static uint64_t rnd(uint64_t *s, uint64_t n) { return splitmix(s) % n; }

static uint64_t seed_for(const char *task, int T, uint64_t seed, int index) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a of the task name */
  for (const char *p = task; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  uint64_t s = seed;
  splitmix(&s);
  s ^= h;
  splitmix(&s);
  s ^= (uint64_t)(uint32_t)T * 0x100000001B3ULL;
  splitmix(&s);
  s ^= (uint64_t)(uint32_t)index;
  splitmix(&s);
  return s;
}

/* ---- growable token buffer --------------------------------------------------- */

typedef struct vec {
  int32_t *p;
  int n, cap;
  int oom;
} vec;

static void vpush(vec *v, int32_t x) {
  if (v->n == v->cap) {
    int cap = v->cap ? 2 * v->cap : 256;
    int32_t *p = realloc(v->p, sizeof *p * (size_t)cap);
    if (!p) {
      v->oom = 1;
      return;
    }
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = x;
}

static void vstr(vec *v, const char *s) {
  for (; *s; s++) vpush(v, (unsigned char)*s);
}

int lukv_task_known(const char *name) {
  for (int i = 0; lukv_task_names[i]; i++)
    if (!strcmp(lukv_task_names[i], name)) return 1;
  return 0;
}

/* Byte tokens (< 256) of hay, read cyclically from a random start. */
typedef struct hay_reader {
  const lukv_corpus *c;
  int64_t at;
} hay_reader;

static int32_t hay_next(hay_reader *r) {
  for (;;) {
    int32_t t = r->c->tokens[r->at];
    r->at = (r->at + 1) % r->c->n_tokens;
    if (t >= 0 && t < 256) return t;
  }
}

static void digits(uint64_t *s, int n, char *out) {
  out[0] = (char)('1' + rnd(s, 9));
  for (int i = 1; i < n; i++) out[i] = (char)('0' + rnd(s, 10));
  out[n] = 0;
}

/* n distinct indices into [0, m), in draw order. */
static void distinct(uint64_t *s, int n, int m, int *out) {
  for (int i = 0; i < n; i++) {
    int again;
    do {
      out[i] = (int)rnd(s, (uint64_t)m);
      again = 0;
      for (int j = 0; j < i; j++) again |= out[j] == out[i];
    } while (again);
  }
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* Context = haystack bytes with the needles inserted in the given order at
 * sorted random points, exactly `room` tokens. */
static int build_haystack(vec *ctx, uint64_t *s, const lukv_corpus *hay, int room, char **needles, int n_needles) {
  int total = 0;
  for (int i = 0; i < n_needles; i++) total += (int)strlen(needles[i]);
  int H = room - total;
  if (H < 0) return -1;
  int pts[16];
  for (int i = 0; i < n_needles; i++) pts[i] = (int)rnd(s, (uint64_t)H + 1);
  qsort(pts, (size_t)n_needles, sizeof *pts, cmp_int);
  hay_reader r = {hay, (int64_t)rnd(s, (uint64_t)hay->n_tokens)};
  int k = 0;
  for (int i = 0; i <= H; i++) {
    while (k < n_needles && pts[k] == i) vstr(ctx, needles[k++]);
    if (i < H) vpush(ctx, hay_next(&r));
  }
  return 0;
}

static void keyname(uint64_t *s, char *out, size_t n) {
  snprintf(out, n, "%s-%s", WORDS[rnd(s, N_WORDS)], WORDS[rnd(s, N_WORDS)]);
}

/* Word-list contexts (cwe, fwe): words separated by spaces, padded with
 * spaces to exactly room bytes. counts[i] copies of words[i], shuffled. */
static int word_list(vec *ctx, uint64_t *s, int room, char **words, const int *counts, int n) {
  int total = 0, bytes = 0;
  for (int i = 0; i < n; i++) total += counts[i], bytes += counts[i] * ((int)strlen(words[i]) + 1);
  if (bytes > room) return -1;
  int *seq = malloc(sizeof *seq * (size_t)(total ? total : 1));
  if (!seq) return -2;
  int m = 0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < counts[i]; c++) seq[m++] = i;
  for (int i = m - 1; i > 0; i--) { /* Fisher-Yates */
    int j = (int)rnd(s, (uint64_t)i + 1), t = seq[i];
    seq[i] = seq[j], seq[j] = t;
  }
  int start = ctx->n;
  for (int i = 0; i < m; i++) {
    vstr(ctx, words[seq[i]]);
    vpush(ctx, ' ');
  }
  while (ctx->n - start < room) vpush(ctx, ' ');
  free(seq);
  return 0;
}

/* Counts of a cwe / fwe list for parameter k (the three answers first);
 * returns the bytes it takes. The tail of other words takes at most half
 * the room and each of them stays below the third answer's count. */
static int list_counts(int cwe, int k, int room, char **words, int n_words, int *counts) {
  int bytes = 0, left = room / 2;
  for (int i = 0; i < n_words; i++) {
    int len = (int)strlen(words[i]) + 1, c;
    if (i < 3) {
      c = cwe ? k + 2 - i : (3 - i) * (k + 1);
    } else {
      c = cwe ? k - 1 : (k / (i - 2) > 1 ? k / (i - 2) : 1);
      if (c * len > left) c = left / len;
      left -= c * len;
    }
    counts[i] = c;
    bytes += c * len;
  }
  return bytes;
}

int lukv_task_generate(const char *task, int context_len, uint64_t seed, int index, const lukv_corpus *hay,
                       int bos, lukv_task_sample *out, lukv_error *err) {
  memset(out, 0, sizeof *out);
  if (!task || !lukv_task_known(task))
    return lukv_error_set(err, LUKV_ERR_NOTFOUND, "tasks: %s: unknown task (known: niah_single, niah_multikey, "
                          "niah_multivalue, niah_multiquery, vt, cwe, fwe, ppl)", task ? task : "(null)");
  int64_t n_bytes = 0;
  for (int64_t i = 0; hay && i < hay->n_tokens; i++) n_bytes += hay->tokens[i] >= 0 && hay->tokens[i] < 256;
  if (n_bytes < 1) return lukv_error_set(err, LUKV_ERR_RANGE, "tasks: haystack corpus has no byte tokens (< 256)");
  uint64_t st = seed_for(task, context_len, seed, index);
  uint64_t *s = &st;
  vec ctx = {0}, q = {0}, a = {0};
  int room = context_len - (bos ? 1 : 0);
  if (bos) vpush(&ctx, BOS_TOKEN);
  char buf[N_NEEDLES][384], qs[512], as[512];
  char *needles[8] = {0};
  int bad = 0;
  if (!strncmp(task, "niah_", 5)) {
    char keys[N_NEEDLES][64], vals[N_NEEDLES][8];
    int multi_value = !strcmp(task, "niah_multivalue"), n = !strcmp(task, "niah_single") ? 1 : N_NEEDLES;
    for (int i = 0; i < n; i++) {
      if (i == 0 || !multi_value) {
        int again;
        do { /* distinct keys */
          keyname(s, keys[i], sizeof keys[i]);
          again = 0;
          for (int j = 0; j < i; j++) again |= !strcmp(keys[j], keys[i]);
        } while (again);
      } else {
        strcpy(keys[i], keys[0]);
      }
      digits(s, 7, vals[i]);
      snprintf(buf[i], sizeof buf[i], " The special magic number for %s is: %s.", keys[i], vals[i]);
      needles[i] = buf[i];
    }
    if (!strcmp(task, "niah_multivalue")) {
      snprintf(qs, sizeof qs, " What are all the special magic numbers for %s? Answer: ", keys[0]);
      snprintf(as, sizeof as, "%s, %s, %s, %s", vals[0], vals[1], vals[2], vals[3]);
    } else if (!strcmp(task, "niah_multiquery")) {
      int pick[2];
      distinct(s, 2, n, pick);
      snprintf(qs, sizeof qs, " What are the special magic numbers for %s and %s? Answer: ", keys[pick[0]],
               keys[pick[1]]);
      snprintf(as, sizeof as, "%s, %s", vals[pick[0]], vals[pick[1]]);
    } else {
      int k = n == 1 ? 0 : (int)rnd(s, (uint64_t)n);
      snprintf(qs, sizeof qs, " What is the special magic number for %s? Answer: ", keys[k]);
      snprintf(as, sizeof as, "%s", vals[k]);
    }
    bad = build_haystack(&ctx, s, hay, room, needles, n);
  } else if (!strcmp(task, "vt")) {
    /* A chain of 4 variables holding one value and a 2-variable distractor
     * chain holding another; statements in chain order. */
    char names[6][8], v1[8], v2[8];
    int idx[6];
    for (int i = 0; i < 6; i++) {
      int again;
      do {
        for (int c = 0; c < 5; c++) names[i][c] = (char)('A' + rnd(s, 26));
        names[i][5] = 0;
        again = 0;
        for (int j = 0; j < i; j++) again |= !strcmp(names[j], names[i]);
      } while (again);
    }
    digits(s, 5, v1);
    do digits(s, 5, v2); while (!strcmp(v1, v2));
    snprintf(buf[0], 64, " VAR %s = %s.", names[0], v1);
    char extra[5][64];
    for (int i = 1; i < 4; i++) snprintf(extra[i - 1], 64, " VAR %s = %s.", names[i], names[i - 1]);
    snprintf(extra[3], 64, " VAR %s = %s.", names[4], v2);
    snprintf(extra[4], 64, " VAR %s = %s.", names[5], names[4]);
    /* interleave the two chains, each in order */
    char *all[6] = {buf[0], extra[0], extra[1], extra[2], extra[3], extra[4]};
    int order[6] = {0, 1, 2, 3, 4, 5}, i1 = 0, i2 = 4;
    for (int i = 0; i < 6; i++) {
      int from1 = i1 < 4 && (i2 >= 6 || rnd(s, 2));
      idx[i] = from1 ? order[i1++] : order[i2++];
      needles[i] = all[idx[i]];
    }
    snprintf(qs, sizeof qs, " Question: Which variables equal %s? Answer: ", v1);
    snprintf(as, sizeof as, "%s %s %s %s", names[0], names[1], names[2], names[3]);
    bad = build_haystack(&ctx, s, hay, room, needles, 6);
  } else if (!strcmp(task, "cwe") || !strcmp(task, "fwe")) {
    /* cwe: 3 common English words, counts k+2 > k+1 > k, the others fewer
     * than k times; fwe: random 4-letter coded words, counts 3k+3 > 2k+2 >
     * k+1, the others at most k. Answer: the 3 in descending frequency. */
    int cwe = !strcmp(task, "cwe");
    char code[64][5];
    char *words[N_WORDS > 64 ? N_WORDS : 64];
    int n_words = cwe ? N_WORDS : 64, pool[N_WORDS];
    if (cwe) {
      for (int i = 0; i < N_WORDS; i++) pool[i] = i;
      for (int i = N_WORDS - 1; i > 0; i--) {
        int j = (int)rnd(s, (uint64_t)i + 1), t = pool[i];
        pool[i] = pool[j], pool[j] = t;
      }
      for (int i = 0; i < N_WORDS; i++) words[i] = (char *)WORDS[pool[i]];
    } else {
      for (int i = 0; i < 64; i++) {
        int again;
        do {
          for (int c = 0; c < 4; c++) code[i][c] = (char)('a' + rnd(s, 26));
          code[i][4] = 0;
          again = 0;
          for (int j = 0; j < i; j++) again |= !strcmp(code[j], code[i]);
        } while (again);
        words[i] = code[i];
      }
    }
    int counts[N_WORDS > 64 ? N_WORDS : 64];
    int best = 0;
    for (int k = 1; k < room; k++) { /* the largest k whose list fits */
      if (list_counts(cwe, k, room, words, n_words, counts) > room) break;
      best = k;
    }
    if (best < 1) {
      bad = -1;
    } else {
      list_counts(cwe, best, room, words, n_words, counts);
      int r = word_list(&ctx, s, room, words, counts, n_words);
      if (r == -2) ctx.oom = 1;
      bad = r == -1 ? -1 : 0;
      snprintf(qs, sizeof qs,
               cwe ? " Question: What are the 3 most common words in the list above? Answer: "
                   : " Question: What are the 3 most frequent coded words in the text above? Answer: ");
      snprintf(as, sizeof as, "%s %s %s", words[0], words[1], words[2]);
    }
  } else { /* ppl: a held-out stretch and its continuation */
    hay_reader r = {hay, (int64_t)rnd(s, (uint64_t)hay->n_tokens)};
    for (int i = 0; i < room; i++) vpush(&ctx, hay_next(&r));
    for (int i = 0; i < PPL_ANSWER; i++) vpush(&a, hay_next(&r));
    qs[0] = as[0] = 0;
  }
  if (strcmp(task, "ppl")) {
    vstr(&q, qs);
    vstr(&a, as);
  }
  if (bad || ctx.oom || q.oom || a.oom) {
    free(ctx.p), free(q.p), free(a.p);
    if (bad)
      return lukv_error_set(err, LUKV_ERR_RANGE, "tasks: %s: context length %d is too short for its needles",
                            task, context_len);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "tasks: %s: out of memory", task);
  }
  out->task = strdup(task);
  if (!out->task) {
    free(ctx.p), free(q.p), free(a.p);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "tasks: %s: out of memory", task);
  }
  out->context = ctx.p, out->n_context = ctx.n;
  out->question = q.p, out->n_question = q.n;
  out->answer = a.p, out->n_answer = a.n;
  return LUKV_OK;
}

void lukv_task_sample_free(lukv_task_sample *s) {
  if (!s) return;
  free(s->task), free(s->context), free(s->question), free(s->answer);
  memset(s, 0, sizeof *s);
}

int lukv_task_question_into_context(lukv_task_sample *s, lukv_error *err) {
  if (s->n_question == 0) return LUKV_OK;
  int32_t *ctx = realloc(s->context, sizeof(int32_t) * ((size_t)s->n_context + (size_t)s->n_question));
  if (!ctx) return lukv_error_set(err, LUKV_ERR_NOMEM, "tasks: out of memory");
  memcpy(ctx + s->n_context, s->question, sizeof(int32_t) * (size_t)s->n_question);
  s->context = ctx;
  s->n_context += s->n_question;
  s->n_question = 0;
  return LUKV_OK;
}

void lukv_task_set_free(lukv_task_set *set) {
  if (!set) return;
  for (int i = 0; i < set->n; i++) lukv_task_sample_free(&set->s[i]);
  free(set->s);
  free(set->tokenizer);
  memset(set, 0, sizeof *set);
}

/* ---- tasks.h5 ---------------------------------------------------------------- */

static const char *const PARTS[3] = {"context", "question", "answer"};

static int read_part(hid_t f, const char *path, int p, lukv_task_set *set, int64_t vocab, lukv_error *err) {
  char name[64], oname[64];
  snprintf(name, sizeof name, "/%s", PARTS[p]);
  snprintf(oname, sizeof oname, "/%s_offsets", PARTS[p]);
  hsize_t nd[1], od[1];
  int32_t *tok = NULL;
  int64_t *off = NULL;
  int rc = lukv_h5_read_dataset(f, path, name, H5T_INTEGER, H5T_NATIVE_INT32, 1, NULL, nd, (void **)&tok, err);
  if (rc == LUKV_OK) {
    hsize_t ex[1] = {(hsize_t)set->n + 1};
    rc = lukv_h5_read_dataset(f, path, oname, H5T_INTEGER, H5T_NATIVE_INT64, 1, ex, od, (void **)&off, err);
  }
  if (rc == LUKV_OK) {
    if (off[0] != 0 || off[set->n] != (int64_t)nd[0])
      rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: must start at 0 and end at %llu (the length of %s)", path,
                          oname, (unsigned long long)nd[0], name);
    for (int i = 0; i < set->n && rc == LUKV_OK; i++) {
      int64_t len = off[i + 1] - off[i];
      if (len < 0 || len > 1 << 30)
        rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s[%d]: offsets decrease", path, oname, i + 1);
      else if (len == 0 && p != 1)
        rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: sample %d is empty", path, name, i);
    }
    for (hsize_t i = 0; i < nd[0] && rc == LUKV_OK; i++)
      if (tok[i] < 0 || tok[i] >= vocab)
        rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s[%llu]: id %ld outside [0, vocab_size %lld)", path, name,
                            (unsigned long long)i, (long)tok[i], (long long)vocab);
  }
  for (int i = 0; i < set->n && rc == LUKV_OK; i++) {
    int len = (int)(off[i + 1] - off[i]);
    int32_t *dst = malloc(sizeof *dst * (size_t)(len ? len : 1));
    if (!dst) {
      rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", path, name);
      break;
    }
    memcpy(dst, tok + off[i], sizeof *dst * (size_t)len);
    lukv_task_sample *s = &set->s[i];
    if (p == 0) s->context = dst, s->n_context = len;
    else if (p == 1) s->question = dst, s->n_question = len;
    else s->answer = dst, s->n_answer = len;
  }
  free(tok);
  free(off);
  return rc;
}

int lukv_tasks_read(const char *path, lukv_task_set *out, lukv_error *err) {
  memset(out, 0, sizeof *out);
  lukv_h5_quiet();
  hid_t f;
  int rc = lukv_h5_open_read(path, &f, err);
  if (rc != LUKV_OK) return rc;
  rc = lukv_h5_check_header(f, path, LUKV_TASKS_FORMAT, LUKV_TASKS_VERSION, err);
  if (rc == LUKV_OK) rc = lukv_h5_read_attr_str(f, path, "tokenizer", &out->tokenizer, err);
  if (rc == LUKV_OK) rc = lukv_h5_read_attr_int(f, path, "vocab_size", &out->vocab_size, err);
  if (rc == LUKV_OK && out->vocab_size < 1)
    rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: vocab_size: %lld < 1", path, (long long)out->vocab_size);
  /* /task: [S] variable-length strings, one task name per sample */
  hid_t d = -1, sp = -1, mt = -1;
  char **names = NULL;
  hsize_t S = 0;
  if (rc == LUKV_OK) {
    if (!lukv_h5_exists(f, "/task")) rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: /task: missing dataset", path);
  }
  if (rc == LUKV_OK) {
    d = H5Dopen2(f, "/task", H5P_DEFAULT);
    sp = d >= 0 ? H5Dget_space(d) : -1;
    hid_t ft = d >= 0 ? H5Dget_type(d) : -1;
    int ok = sp >= 0 && ft >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
             H5Sget_simple_extent_ndims(sp) == 1;
    if (ft >= 0) H5Tclose(ft);
    if (!ok) rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: /task: expected a 1-D variable-length string dataset", path);
    else {
      H5Sget_simple_extent_dims(sp, &S, NULL);
      if (S < 1 || S > 1 << 24) rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: /task: %llu samples", path,
                                                     (unsigned long long)S);
    }
  }
  if (rc == LUKV_OK) {
    names = calloc(S, sizeof *names);
    out->s = calloc(S, sizeof *out->s);
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5T_CSET_UTF8);
    if (!names || !out->s) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
    else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) < 0)
      rc = lukv_h5_fail(err, LUKV_ERR_IO, path, "/task", "cannot read");
    else {
      out->n = (int)S;
      for (hsize_t i = 0; i < S && rc == LUKV_OK; i++)
        if (!names[i] || !names[i][0] || !(out->s[i].task = strdup(names[i])))
          rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: /task[%llu]: empty task name", path, (unsigned long long)i);
      H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, names);
    }
  }
  free(names);
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  for (int p = 0; p < 3 && rc == LUKV_OK; p++) rc = read_part(f, path, p, out, out->vocab_size, err);
  H5Fclose(f);
  if (rc != LUKV_OK) lukv_task_set_free(out);
  return rc;
}

int lukv_tasks_write(const char *path, const lukv_task_set *set, lukv_error *err) {
  lukv_h5_quiet();
  lukv_h5_writer w;
  int rc = lukv_h5_create(&w, path, LUKV_TASKS_FORMAT, LUKV_TASKS_VERSION, err);
  if (rc != LUKV_OK) return rc;
  rc = lukv_h5_write_attr_str(w.file, path, "tokenizer", set->tokenizer ? set->tokenizer : "", err);
  if (rc == LUKV_OK) rc = lukv_h5_write_attr_int(w.file, path, "vocab_size", set->vocab_size, err);
  for (int p = 0; p < 3 && rc == LUKV_OK; p++) {
    int64_t *off = malloc(sizeof *off * (size_t)(set->n + 1));
    int64_t total = 0;
    for (int i = 0; i < set->n; i++) {
      const lukv_task_sample *s = &set->s[i];
      total += p == 0 ? s->n_context : p == 1 ? s->n_question : s->n_answer;
    }
    int32_t *tok = malloc(sizeof *tok * (size_t)(total ? total : 1));
    if (!off || !tok) rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
    if (rc == LUKV_OK) {
      off[0] = 0;
      for (int i = 0; i < set->n; i++) {
        const lukv_task_sample *s = &set->s[i];
        int n = p == 0 ? s->n_context : p == 1 ? s->n_question : s->n_answer;
        const int32_t *src = p == 0 ? s->context : p == 1 ? s->question : s->answer;
        if (n) memcpy(tok + off[i], src, sizeof *tok * (size_t)n);
        off[i + 1] = off[i] + n;
      }
      char name[64], oname[64];
      snprintf(name, sizeof name, "/%s", PARTS[p]);
      snprintf(oname, sizeof oname, "/%s_offsets", PARTS[p]);
      hsize_t dn[1] = {(hsize_t)total}, dof[1] = {(hsize_t)set->n + 1};
      rc = lukv_h5_write_dataset(w.file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dn, tok, err);
      if (rc == LUKV_OK)
        rc = lukv_h5_write_dataset(w.file, path, oname, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dof, off, err);
    }
    free(off);
    free(tok);
  }
  if (rc == LUKV_OK) {
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hsize_t dn[1] = {(hsize_t)set->n};
    hid_t sp = H5Screate_simple(1, dn, NULL);
    hid_t d = H5Dcreate2(w.file, "/task", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char **names = malloc(sizeof *names * (size_t)(set->n ? set->n : 1));
    if (names)
      for (int i = 0; i < set->n; i++) names[i] = set->s[i].task ? set->s[i].task : "";
    if (!names || d < 0 || H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) < 0)
      rc = lukv_h5_fail(err, LUKV_ERR_IO, path, "/task", "cannot write");
    free(names);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(st);
  }
  if (rc != LUKV_OK) {
    lukv_h5_abort(&w);
    return rc;
  }
  return lukv_h5_commit(&w, err);
}

/* lukv-profile: per-head loss curves of a model on a calibration corpus
 * (DESIGN §3 "Method", §7 "Scale").
 *
 *   lukv-profile [--model DIR|F.gguf] [--corpus C.h5] -o PROFILE [options]   profile
 *   lukv-profile merge [--corpora] A.h5 B.h5 ... -o OUT.h5              join shards
 *   lukv-profile show PROFILE                                          per-head table
 *
 * Exit status: 0 success, 1 bad input or failure (one line on stderr naming
 * the file, the object and the problem; no output file), 2 usage error.
 */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "formats.h"
#include "identity.h"
#include "lukv_config.h"
#include "model.h"
#include "progress.h"
#include "sha256.h"
#include "stats.h"
#if LUKV_HAVE_CUDA
#include "stats_cuda.h"
#endif

#define PROG "lukv-profile"
#define DEFAULT_MODEL "data/models/lukv-tiny"
#define DEFAULT_CORPUS "data/corpora/calib.h5"

static const char USAGE[] =
    "usage: " PROG " [--model DIR|FILE.gguf] [--corpus CORPUS.h5] -o PROFILE.h5 [options]\n"
    "       " PROG " merge [--corpora] A.h5 B.h5 ... -o OUT.h5\n"
    "       " PROG " show PROFILE.h5\n"
    "\n"
    "Runs a Llama-family model over calibration samples and writes, for every\n"
    "(layer, KV head), the loss curves of each scorer and of the oracle\n"
    "(docs/formats.md §3, docs/profiling.md) for lukv-solve.\n"
    "\n"
    "profile options:\n"
    "  --model DIR|FILE.gguf    Hugging Face model directory (default " DEFAULT_MODEL ")\n"
    "                           or a llama.cpp GGUF file (a path ending in .gguf)\n"
    "  --corpus FILE            corpus.h5 of token ids (default " DEFAULT_CORPUS ")\n"
    "  --random-init CONFIG     instead of --model: a config.json's shape with seeded\n"
    "                           random weights (benchmarks of big shapes); without\n"
    "                           --corpus the samples are seeded random tokens\n"
    "  --seed N                 seed of --random-init weights and tokens (default 0)\n"
    "  -o, --output FILE        profile.h5 to write (required)\n"
    "  --context-len T          context tokens per sample (default 2048)\n"
    "  --future-len F           future tokens per sample, >= 1 (default 256)\n"
    "  --mode M                 teacher (default): the future is the sample's next F\n"
    "                           tokens, one teacher-forced pass over T+F tokens;\n"
    "                           generate: the model greedily generates F tokens after\n"
    "                           the first T, then one teacher-forced pass over both\n"
    "  --samples S              use the first S samples of the corpus (default all)\n"
    "  --scorers LIST           comma-separated: snapkv,keydiff (default both)\n"
    "  --sink S                 first tokens always kept (default 4)\n"
    "  --window W               last context tokens always kept, and the SnapKV\n"
    "                           observation window (default 32)\n"
    "  --pool P                 SnapKV max-pool kernel, odd (default 7)\n"
    "  --utility U              max (default) | sum over future steps\n"
    "  --grid G                 curves have G+1 points (default 256)\n"
    "  --shard I/N              profile only shard I of N (1 <= I <= N): samples\n"
    "                           [floor((I-1)*S/N), floor(I*S/N)); join with merge\n"
    "  --device D               cpu (default) | cuda (bf16 engine, fast) | cuda-f32\n"
    "                           (f32 engine on the GPU: matches the cpu profile\n"
    "                           to ~1e-6 where bf16 differs by up to ~5e-2; slower)\n"
    "  --dump-tokens FILE       write the token ids used, one sample per line\n"
    "  -q, --quiet              no progress line\n"
    "\n"
    "merge: concatenates the samples of partial profiles (shards) that agree on\n"
    "  the model and every protocol attribute, and on the engine's precision\n"
    "  (bf16 for --device cuda, f32 otherwise) where recorded. Inputs written by\n"
    "  --shard carry first_sample and are ordered by it (any argument order gives\n"
    "  the same file); otherwise argument order is kept.\n"
    "  --corpora: the inputs profile different corpora (for example general text\n"
    "  and retrieval samples, docs/results.md): their first_sample values are\n"
    "  not compared, argument order is kept, and the result has no first_sample.\n"
    "  The solver weights every sample alike, so the sample counts set the mix.\n"
    "\n"
    "model identity: model_hash is the sha256 of the directory's *.safetensors\n"
    "  files concatenated in sorted name order, or of the .gguf file's bytes;\n"
    "  model_name is config.json's _name_or_path, or the GGUF's general.name,\n"
    "  else the directory's base name (the file's, without .gguf).\n"
    "\n"
    "show: one row per (layer, KV head): utility_total (mean over samples) and,\n"
    "  per scorer, the normalised gap to the oracle\n"
    "      gap = sum_g (scorer[g] - oracle[g]) / ((G+1) * utility_total)\n"
    "  (curves averaged over samples): 0 = the scorer ranks that head's tokens as\n"
    "  well as the future does, larger = worse, at most 1.\n"
    "\n"
    "  -h, --help               this text\n"
    "  --version                print the version\n";

/* A non-negative integer that uses the whole string. */
static int parse_int(const char *s, int lo, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > INT32_MAX) return -1;
  *out = (int)v;
  return 0;
}

static int is_dir_with(const char *dir, const char *file) {
  char p[4096];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, file);
  return stat(p, &st) == 0;
}


/* ---- profiling ---------------------------------------------------------------- */

typedef struct tap_ctx {
  lukv_profile *prof;
  int sample;  /* row of the profile being filled */
  int T_ctx, F;
  float scale;
#if LUKV_HAVE_CUDA
  lukv_stats_cuda *gpu; /* the statistics' scratch when the model runs on CUDA */
  /* [n_layers]: each layer's W_Oqᵀ W_Oq on the device (owned by gpu), computed
   * at the layer's first sample: the weights do not change during a run */
  const float **gram;
#endif
  lukv_error err; /* the profiler's own message, preferred over the engine's */
} tap_ctx;

static int on_layer(void *user, const lukv_tap_info *info) {
  tap_ctx *c = user;
  lukv_layer_view x = {.T_ctx = c->T_ctx, .F = c->F, .n_heads = info->n_heads,
                       .n_kv_heads = info->n_kv_heads, .head_dim = info->head_dim,
                       .hidden_size = info->hidden_size, .scale = c->scale, .q = info->q,
                       .k = info->k, .v = info->v, .lse = info->lse, .o_proj = info->o_proj};
  if (info->pos0 != 0 || info->T != c->T_ctx + c->F)
    return lukv_error_set(&c->err, LUKV_ERR_INVALID,
                          "tap: layer %d has %d rows at position %d, expected %d at 0", info->layer,
                          info->T, info->pos0, c->T_ctx + c->F);
  if (info->device == LUKV_DEVICE_CUDA) {
    /* Device pointers: the statistics run where the tensors are. */
#if LUKV_HAVE_CUDA
    if (c->gpu) {
      if (info->layer < 0 || info->layer >= c->prof->model.n_layers)
        return lukv_error_set(&c->err, LUKV_ERR_INVALID, "tap: layer %d of a %d-layer model", info->layer,
                              c->prof->model.n_layers);
      if (!c->gram[info->layer]) {
        int rc = lukv_stats_cuda_gram(c->gpu, info->layer, &x, &c->gram[info->layer], &c->err);
        if (rc != LUKV_OK) return rc;
      }
      x.o_gram = c->gram[info->layer];
      return lukv_profile_add_layer_cuda(c->gpu, c->prof, c->sample, info->layer, &x, &c->err);
    }
#endif
    return lukv_error_set(&c->err, LUKV_ERR_UNSUPPORTED,
                          "tap: layer %d: device tensors but no CUDA statistics context", info->layer);
  }
  return lukv_profile_add_layer(c->prof, c->sample, info->layer, &x, &c->err);
}

/* The engine's activation precision, recorded as the optional `precision`
 * attribute: profiles of the bf16 CUDA engine differ from f32 ones by up to
 * ~5e-2 (docs/profiling.md), so merge refuses to mix them. */
static const char *device_precision(lukv_device d) { return d == LUKV_DEVICE_CUDA ? "bf16" : "f32"; }

/* --random-init's identity: the sha256 of "random-init", the config file's
 * bytes and the seed, so that profiles of one shape and seed merge and those
 * of another refuse to. */
static int random_model_hash(const char *config_path, int seed, char hex[65], lukv_error *err) {
  FILE *f = fopen(config_path, "rb");
  if (!f) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot open: %s", config_path, strerror(errno));
  lukv_sha256 h;
  lukv_sha256_init(&h);
  lukv_sha256_update(&h, "random-init", 11);
  unsigned char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) lukv_sha256_update(&h, buf, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) return lukv_error_set(err, LUKV_ERR_IO, "%s: read error", config_path);
  char s[32];
  snprintf(s, sizeof s, "seed %d", seed);
  lukv_sha256_update(&h, s, strlen(s));
  lukv_sha256_final_hex(&h, hex);
  return LUKV_OK;
}

/* "random-init <config file name> seed N"; malloc'd (NULL when out of memory). */
static char *random_model_name(const char *config_path, int seed) {
  const char *base = strrchr(config_path, '/');
  base = base ? base + 1 : config_path;
  size_t n = strlen(base) + 48;
  char *s = malloc(n);
  if (s) snprintf(s, n, "random-init %s seed %d", base, seed);
  return s;
}

static int cmd_profile(int argc, char **argv) {
  const char *model_dir = NULL, *corpus_path = NULL, *out_path = NULL, *dump_path = NULL;
  const char *rand_cfg = NULL; /* --random-init */
  int seed = 0;
  const char *mode = "teacher", *scorers_arg = "snapkv,keydiff", *utility = "max";
  int T = 2048, F = 256, n_samples_arg = -1, sink = 4, window = 32, pool = 7, grid = 256;
  int shard_i = 0, shard_n = 0, quiet = 0;
  lukv_device device = LUKV_DEVICE_CPU;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                    \
  do {                                                                  \
    if (!v) return lukv_cli_usage(PROG, "option %s needs a value", a); \
    i++;                                                                \
  } while (0)
#define INT_OPT(name, lo, var)                                                         \
  else if (!strcmp(a, name)) {                                                         \
    NEED_VALUE();                                                                      \
    if (parse_int(v, lo, &var))                                                        \
      return lukv_cli_usage(PROG, name " needs an integer >= " #lo ", not '%s'", v);            \
  }
    if (!strcmp(a, "--model")) {
      NEED_VALUE();
      model_dir = v;
    } else if (!strcmp(a, "--random-init")) {
      NEED_VALUE();
      rand_cfg = v;
    } else if (!strcmp(a, "--corpus")) {
      NEED_VALUE();
      corpus_path = v;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      NEED_VALUE();
      out_path = v;
    }
    INT_OPT("--context-len", 1, T)
    INT_OPT("--future-len", 1, F)
    INT_OPT("--samples", 1, n_samples_arg)
    INT_OPT("--sink", 0, sink)
    INT_OPT("--window", 0, window)
    INT_OPT("--pool", 1, pool)
    INT_OPT("--grid", 1, grid)
    INT_OPT("--seed", 0, seed)
    else if (!strcmp(a, "--mode")) {
      NEED_VALUE();
      if (strcmp(v, "teacher") && strcmp(v, "generate"))
        return lukv_cli_usage(PROG, "unknown --mode '%s' (teacher or generate)", v);
      mode = v;
    } else if (!strcmp(a, "--scorers")) {
      NEED_VALUE();
      scorers_arg = v;
    } else if (!strcmp(a, "--utility")) {
      NEED_VALUE();
      if (strcmp(v, "max") && strcmp(v, "sum"))
        return lukv_cli_usage(PROG, "unknown --utility '%s' (max or sum)", v);
      utility = v;
    } else if (!strcmp(a, "--shard")) {
      NEED_VALUE();
      char buf[64], *slash;
      snprintf(buf, sizeof buf, "%s", v);
      if (!(slash = strchr(buf, '/'))) return lukv_cli_usage(PROG, "--shard needs I/N, not '%s'", v);
      *slash = '\0';
      if (parse_int(buf, 1, &shard_i) || parse_int(slash + 1, 1, &shard_n) || shard_i > shard_n)
        return lukv_cli_usage(PROG, "--shard needs I/N with 1 <= I <= N, not '%s'", v);
    } else if (!strcmp(a, "--device")) {
      NEED_VALUE();
      if (lukv_device_parse(v, &device) != LUKV_OK)
        return lukv_cli_usage(PROG, "unknown --device '%s' (cpu, cuda or cuda-f32)", v);
    } else if (!strcmp(a, "--dump-tokens")) {
      NEED_VALUE();
      dump_path = v;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = 1;
    } else if (a[0] == '-' && a[1]) {
      return lukv_cli_usage(PROG, "unknown option '%s'", a);
    } else {
      return lukv_cli_usage(PROG, "unexpected argument '%s'", a);
    }
#undef INT_OPT
#undef NEED_VALUE
  }
  if (!out_path) return lukv_cli_usage(PROG, "%s", "missing -o PROFILE.h5");
  if (pool % 2 == 0) return lukv_cli_usage(PROG, "--pool must be odd, not %s", "even");
  if (T <= sink + window) {
    char b[96];
    snprintf(b, sizeof b, "%d <= sink %d + window %d", T, sink, window);
    return lukv_cli_usage(PROG, "--context-len must exceed sink + window (%s)", b);
  }
  if ((long)T + F > INT32_MAX / 2) return lukv_cli_usage(PROG, "%s", "--context-len + --future-len too large");

  /* scorers: known, no duplicates. The names point into buf, which lives as
   * long as this function, so the many early returns below own nothing. */
  const char *names[LUKV_N_SCORERS];
  int n_scorers = 0;
  char buf[256];
  {
    if (strlen(scorers_arg) >= sizeof buf) return lukv_cli_usage(PROG, "--scorers '%s' too long", scorers_arg);
    snprintf(buf, sizeof buf, "%s", scorers_arg);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
      lukv_scorer_id id;
      if (lukv_scorer_parse(t, &id, NULL) != LUKV_OK)
        return lukv_cli_usage(PROG, "unknown scorer '%s' (snapkv, keydiff)", t);
      for (int k = 0; k < n_scorers; k++)
        if (!strcmp(names[k], t)) return lukv_cli_usage(PROG, "scorer '%s' given twice", t);
      if (n_scorers == LUKV_N_SCORERS) return lukv_cli_usage(PROG, "scorer '%s' given twice", t);
      names[n_scorers++] = t;
    }
    if (n_scorers == 0) return lukv_cli_usage(PROG, "%s", "--scorers needs at least one scorer");
  }

  if (model_dir && rand_cfg) return lukv_cli_usage(PROG, "%s", "give --model or --random-init, not both");

  lukv_error err;
  lukv_error_clear(&err);
  if (!model_dir && !rand_cfg) {
    model_dir = DEFAULT_MODEL;
    if (!is_dir_with(model_dir, "config.json")) {
      lukv_error_set(&err, LUKV_ERR_NOTFOUND,
                     "%s: the bundled model is not trained yet (tools/organism/); pass --model DIR",
                     model_dir);
      return lukv_cli_fail(PROG, &err);
    }
  }
  /* --random-init without --corpus: seeded random tokens, drawn once the
   * model's vocabulary is known (below). */
  const int random_tokens = rand_cfg && !corpus_path;
  const char *model_src = rand_cfg ? rand_cfg : model_dir; /* for messages */
  if (!corpus_path) corpus_path = random_tokens ? "random tokens" : DEFAULT_CORPUS;

  /* corpus first: cheap, and its errors need no model */
  lukv_corpus corpus;
  memset(&corpus, 0, sizeof corpus);
  if (random_tokens) {
    corpus.n_samples = n_samples_arg > 0 ? n_samples_arg : 1;
    corpus.n_tokens = corpus.n_samples * (int64_t)(T + F);
    corpus.tokens = calloc((size_t)corpus.n_tokens, sizeof *corpus.tokens);
    corpus.offsets = malloc(sizeof *corpus.offsets * (size_t)(corpus.n_samples + 1));
    if (!corpus.tokens || !corpus.offsets) {
      lukv_corpus_free(&corpus);
      lukv_error_set(&err, LUKV_ERR_NOMEM, "%s: out of memory", corpus_path);
      return lukv_cli_fail(PROG, &err);
    }
    for (int64_t s = 0; s <= corpus.n_samples; s++) corpus.offsets[s] = s * (T + F);
  } else if (lukv_corpus_read(corpus_path, &corpus, &err) != LUKV_OK) {
    return lukv_cli_fail(PROG, &err);
  }
  int64_t S_all = corpus.n_samples;
  if (n_samples_arg > 0) {
    if (n_samples_arg > S_all) {
      lukv_error_set(&err, LUKV_ERR_RANGE, "%s: /offsets: --samples %d but the corpus has %lld",
                     corpus_path, n_samples_arg, (long long)S_all);
      lukv_corpus_free(&corpus);
      return lukv_cli_fail(PROG, &err);
    }
    S_all = n_samples_arg;
  }
  int64_t s0 = 0, s1 = S_all;
  if (shard_n > 0) {
    s0 = (int64_t)(shard_i - 1) * S_all / shard_n;
    s1 = (int64_t)shard_i * S_all / shard_n;
    if (s1 <= s0) {
      lukv_error_set(&err, LUKV_ERR_RANGE, "%s: shard %d/%d of %lld samples is empty", corpus_path,
                     shard_i, shard_n, (long long)S_all);
      lukv_corpus_free(&corpus);
      return lukv_cli_fail(PROG, &err);
    }
  }
  int S = (int)(s1 - s0);
  int teacher = !strcmp(mode, "teacher");
  int need = teacher ? T + F : T;
  for (int64_t s = s0; s < s1; s++) {
    int64_t len = corpus.offsets[s + 1] - corpus.offsets[s];
    if (len < need) {
      if (teacher)
        lukv_error_set(&err, LUKV_ERR_RANGE,
                       "%s: sample %lld: %lld tokens, fewer than context_len %d + future_len %d",
                       corpus_path, (long long)s, (long long)len, T, F);
      else
        lukv_error_set(&err, LUKV_ERR_RANGE,
                       "%s: sample %lld: %lld tokens, fewer than context_len %d", corpus_path,
                       (long long)s, (long long)len, T);
      lukv_corpus_free(&corpus);
      return lukv_cli_fail(PROG, &err);
    }
  }

  lukv_model *m = NULL;
  if ((rand_cfg ? lukv_model_random(rand_cfg, (uint64_t)seed, device, &m, &err)
                : lukv_model_open(model_dir, device, &m, &err)) != LUKV_OK) {
    lukv_corpus_free(&corpus);
    return lukv_cli_fail(PROG, &err);
  }
  const lukv_model_config *cfg = lukv_model_get_config(m);
  int rc = LUKV_OK;
  if (random_tokens) { /* xorshift64 per sample: the same tokens for every shard */
    for (int64_t s = 0; s < corpus.n_samples; s++) {
      uint64_t x = ((uint64_t)seed << 32 ^ (uint64_t)s) * 0x9e3779b97f4a7c15ULL + 1;
      for (int64_t t = corpus.offsets[s]; t < corpus.offsets[s + 1]; t++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        corpus.tokens[t] = (int32_t)((x >> 11) % (uint64_t)cfg->vocab_size);
      }
    }
  }
  for (int l = 0; l < cfg->n_layers && rc == LUKV_OK; l++) {
    int w = lukv_config_layer_window(cfg, l);
    if (w > 0 && w < T + F)
      rc = lukv_error_set(&err, LUKV_ERR_UNSUPPORTED,
                          "%s: layer %d: sliding window %d < context_len %d + future_len %d; the "
                          "statistics assume full causal attention",
                          model_src, l, w, T, F);
  }
  for (int64_t s = s0; s < s1 && rc == LUKV_OK; s++)
    for (int64_t t = 0; t < (teacher ? T + F : T); t++) {
      int32_t id = corpus.tokens[corpus.offsets[s] + t];
      if (id >= cfg->vocab_size) {
        rc = lukv_error_set(&err, LUKV_ERR_RANGE,
                            "%s: /tokens: sample %lld token %lld (index %lld) is id %d, outside "
                            "the model's vocabulary [0, %d) of %s",
                            corpus_path, (long long)s, (long long)t,
                            (long long)(corpus.offsets[s] + t), (int)id, cfg->vocab_size, model_src);
        break;
      }
    }

  lukv_profile prof;
  memset(&prof, 0, sizeof prof);
  char hex[65];
  if (rc == LUKV_OK) rc = rand_cfg ? random_model_hash(rand_cfg, seed, hex, &err) : lukv_model_hash(model_dir, hex, &err);
  size_t L = (size_t)cfg->n_layers, H = (size_t)cfg->n_kv_heads, G1 = (size_t)grid + 1;
  if (rc == LUKV_OK) {
    prof.model.model_name = rand_cfg ? random_model_name(rand_cfg, seed) : lukv_model_display_name(model_dir);
    prof.model.model_hash = strdup(hex);
    prof.model.n_layers = cfg->n_layers;
    prof.model.n_kv_heads = cfg->n_kv_heads;
    prof.model.n_q_heads = cfg->n_heads;
    prof.model.head_dim = cfg->head_dim;
    prof.mode = strdup(mode);
    prof.utility = strdup(utility);
    prof.context_len = T;
    prof.future_len = F;
    prof.sink = sink;
    prof.window = window;
    prof.pool_kernel = pool;
    prof.grid = grid;
    prof.n_samples = S;
    /* provenance: first_sample and the shard make merge order-independent */
    prof.has_first_sample = 1;
    prof.first_sample = s0;
    prof.shard_index = shard_n > 0 ? shard_i : 0;
    prof.shard_count = shard_n;
    prof.precision = strdup(device_precision(device));
    prof.n_scorers = n_scorers;
    prof.scorer_names = calloc((size_t)n_scorers, sizeof *prof.scorer_names);
    prof.curves = calloc((size_t)n_scorers, sizeof *prof.curves);
    size_t nc = (size_t)S * L * H * G1;
    prof.oracle = calloc(nc, sizeof *prof.oracle);
    prof.utility_total = calloc((size_t)S * L * H, sizeof *prof.utility_total);
    prof.sample_context_len = calloc((size_t)S, sizeof *prof.sample_context_len);
    int ok = prof.model.model_name && prof.model.model_hash && prof.mode && prof.utility && prof.precision &&
             prof.scorer_names && prof.curves && prof.oracle && prof.utility_total &&
             prof.sample_context_len;
    for (int k = 0; ok && k < n_scorers; k++) {
      ok = (prof.scorer_names[k] = strdup(names[k])) != NULL &&
           (prof.curves[k] = calloc(nc, sizeof(float))) != NULL;
    }
    if (!ok) rc = lukv_error_set(&err, LUKV_ERR_NOMEM, "%s: out of memory for the profile", out_path);
  }
  int32_t *toks = malloc(sizeof *toks * (size_t)(T + F));
  int32_t *used = dump_path ? malloc(sizeof *used * (size_t)S * (size_t)(T + F)) : NULL;
  if (rc == LUKV_OK && (!toks || (dump_path && !used)))
    rc = lukv_error_set(&err, LUKV_ERR_NOMEM, "out of memory for tokens");

  tap_ctx ctx = {.prof = &prof, .T_ctx = T, .F = F, .scale = 1.0f / sqrtf((float)cfg->head_dim)};
  lukv_error_clear(&ctx.err);
#if LUKV_HAVE_CUDA
  if (rc == LUKV_OK && lukv_model_device(m) == LUKV_DEVICE_CUDA) {
    ctx.gram = calloc((size_t)cfg->n_layers, sizeof *ctx.gram);
    if (!ctx.gram) rc = lukv_error_set(&err, LUKV_ERR_NOMEM, "out of memory for %d layers", cfg->n_layers);
    else rc = lukv_stats_cuda_create(&ctx.gpu, &err);
  }
#endif
  lukv_forward_opts fo = {.tap = on_layer, .tap_user = &ctx, .last_logits_only = 1};
  lukv_progress prog;
  lukv_progress_init(&prog, "tokens", quiet);
  double t0 = lukv_now();
  long done_tokens = 0, total_tokens = (long)S * (T + F);
  for (int s = 0; s < S && rc == LUKV_OK; s++) {
    const int32_t *src = corpus.tokens + corpus.offsets[s0 + s];
    char stage[64];
    snprintf(stage, sizeof stage, "sample %d/%d", s + 1, S);
    lukv_progress_update(&prog, stage, done_tokens, total_tokens);
    if (teacher) {
      memcpy(toks, src, sizeof *toks * (size_t)(T + F));
    } else {
      memcpy(toks, src, sizeof *toks * (size_t)T);
      rc = lukv_model_generate(m, toks, T, F, toks + T, NULL, &err);
    }
    if (rc == LUKV_OK) {
      ctx.sample = s;
      rc = lukv_model_forward(m, NULL, toks, T + F, &fo, NULL, &err);
      if (rc != LUKV_OK && ctx.err.msg[0]) {
        lukv_error_clear(&err);
        lukv_error_set(&err, rc, "%s: sample %lld: %s", corpus_path, (long long)(s0 + s), ctx.err.msg);
      } else if (rc != LUKV_OK) {
        char tmp[sizeof err.msg];
        snprintf(tmp, sizeof tmp, "%s", err.msg);
        lukv_error_clear(&err);
        lukv_error_set(&err, rc, "%s: sample %lld: %s", corpus_path, (long long)(s0 + s), tmp);
      }
    }
    if (rc == LUKV_OK && used) memcpy(used + (size_t)s * (T + F), toks, sizeof *toks * (size_t)(T + F));
    done_tokens += T + F;
  }
  if (rc == LUKV_OK) lukv_progress_update(&prog, "done", total_tokens, total_tokens);
  lukv_progress_end(&prog);
  double secs = lukv_now() - t0;

  /* outputs: dump to DUMP.tmp, the profile (PATH.tmp + rename), then the dump's rename */
  char dump_tmp[4096] = "";
  if (rc == LUKV_OK && dump_path) {
    snprintf(dump_tmp, sizeof dump_tmp, "%s.tmp", dump_path);
    FILE *f = fopen(dump_tmp, "w");
    if (!f) {
      rc = lukv_error_set(&err, LUKV_ERR_IO, "%s: cannot write %s: %s", dump_path, dump_tmp,
                          strerror(errno));
      dump_tmp[0] = '\0';
    } else {
      for (int s = 0; s < S; s++)
        for (int t = 0; t < T + F; t++)
          fprintf(f, "%d%c", (int)used[(size_t)s * (T + F) + t], t + 1 < T + F ? ' ' : '\n');
      if (ferror(f) | fclose(f))
        rc = lukv_error_set(&err, LUKV_ERR_IO, "%s: cannot write %s", dump_path, dump_tmp);
    }
  }
  if (rc == LUKV_OK) rc = lukv_profile_write(out_path, &prof, &err);
  if (rc == LUKV_OK && dump_path && rename(dump_tmp, dump_path) != 0) {
    rc = lukv_error_set(&err, LUKV_ERR_IO, "%s: cannot rename %s: %s", dump_path, dump_tmp,
                        strerror(errno));
    remove(out_path);
  }
  if (rc != LUKV_OK && dump_tmp[0]) remove(dump_tmp);

  if (rc == LUKV_OK) {
    printf("# wrote %s: %d samples (corpus %lld..%lld), %d layers x %d KV heads, grid %d, "
           "%s mode, scorers",
           out_path, S, (long long)s0, (long long)s1 - 1, cfg->n_layers, cfg->n_kv_heads, grid,
           mode);
    for (int k = 0; k < n_scorers; k++) printf("%s%s", k ? "," : " ", prof.scorer_names[k]);
    printf("\n# %.1f tokens/s (%ld tokens in %.2f s, %s)\n", secs > 0 ? total_tokens / secs : 0.0,
           total_tokens, secs, lukv_device_name(device));
  }
  free(toks);
  free(used);
#if LUKV_HAVE_CUDA
  lukv_stats_cuda_destroy(ctx.gpu);
  free(ctx.gram);
#endif
  lukv_profile_free(&prof);
  lukv_model_destroy(m);
  lukv_corpus_free(&corpus);
  return rc == LUKV_OK ? 0 : lukv_cli_fail(PROG, &err);
}

/* ---- merge ------------------------------------------------------------------------ */

typedef struct merge_in {
  const char *path;
  lukv_profile p;
} merge_in;

static int cmp_merge_in(const void *a, const void *b) {
  const merge_in *x = a, *y = b;
  return (x->p.first_sample > y->p.first_sample) - (x->p.first_sample < y->p.first_sample);
}

/* B disagrees with A on one attribute: names it and both files. */
static int check_agree(const merge_in *a, const merge_in *b, lukv_error *err) {
  const lukv_profile *x = &a->p, *y = &b->p;
#define STR(field, name)                                                                          \
  if (strcmp(x->field, y->field))                                                                 \
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s is \"%s\" but %s has \"%s\"", b->path,   \
                          name, y->field, a->path, x->field);
#define INT(field, name)                                                                          \
  if (x->field != y->field)                                                                       \
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s is %lld but %s has %lld", b->path, name,  \
                          (long long)y->field, a->path, (long long)x->field);
  STR(model.model_name, "model_name")
  STR(model.model_hash, "model_hash")
  INT(model.n_layers, "n_layers")
  INT(model.n_kv_heads, "n_kv_heads")
  INT(model.n_q_heads, "n_q_heads")
  INT(model.head_dim, "head_dim")
  STR(mode, "mode")
  STR(utility, "utility")
  INT(context_len, "context_len")
  INT(future_len, "future_len")
  INT(sink, "sink")
  INT(window, "window")
  INT(pool_kernel, "pool_kernel")
  INT(grid, "grid")
#undef STR
#undef INT
  int same = x->n_scorers == y->n_scorers;
  for (int k = 0; same && k < x->n_scorers; k++) same = !strcmp(x->scorer_names[k], y->scorer_names[k]);
  if (!same) {
    char sa[256] = "", sb[256] = "";
    for (int k = 0, n = 0; k < x->n_scorers; k++)
      n += snprintf(sa + n, sizeof sa - (size_t)n, "%s%s", k ? "," : "", x->scorer_names[k]);
    for (int k = 0, n = 0; k < y->n_scorers; k++)
      n += snprintf(sb + n, sizeof sb - (size_t)n, "%s%s", k ? "," : "", y->scorer_names[k]);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: /curves: scorers %s but %s has %s", b->path,
                          sb, a->path, sa);
  }
  return LUKV_OK;
}

static int cmd_merge(int argc, char **argv) {
  const char *out_path = NULL;
  int n = 0, corpora = 0;
  merge_in *in = calloc((size_t)argc, sizeof *in);
  if (!in) return fputs(PROG ": error: out of memory\n", stderr), 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (i + 1 >= argc) return free(in), lukv_cli_usage(PROG, "option %s needs a value", argv[i]);
      out_path = argv[++i];
    } else if (!strcmp(argv[i], "--corpora")) {
      corpora = 1;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return free(in), lukv_cli_usage(PROG, "unknown option '%s'", argv[i]);
    } else {
      in[n++].path = argv[i];
    }
  }
  if (!out_path) return free(in), lukv_cli_usage(PROG, "%s", "merge: missing -o OUT.h5");
  if (n == 0) return free(in), lukv_cli_usage(PROG, "%s", "merge: no input profiles");

  lukv_error err;
  lukv_error_clear(&err);
  int rc = LUKV_OK, all_first = 1;
  const merge_in *with_precision = NULL; /* the first input carrying the attribute */
  for (int i = 0; i < n && rc == LUKV_OK; i++) {
    rc = lukv_profile_read(in[i].path, &in[i].p, &err);
    if (rc == LUKV_OK && i > 0) rc = check_agree(&in[0], &in[i], &err);
    /* precision: checked between the files that carry it (older ones do not) */
    if (rc == LUKV_OK && in[i].p.precision) {
      if (!with_precision) with_precision = &in[i];
      else if (strcmp(with_precision->p.precision, in[i].p.precision))
        rc = lukv_error_set(&err, LUKV_ERR_FORMAT,
                            "%s: precision is \"%s\" but %s has \"%s\" (bf16 and f32 engines give different "
                            "profiles: profile every shard with the same engine precision)",
                            in[i].path, in[i].p.precision, with_precision->path, with_precision->p.precision);
    }
    /* first_sample indexes one corpus: across corpora it orders nothing */
    all_first &= in[i].p.has_first_sample && !corpora;
  }
  /* the merged file keeps precision when every input carries it (all equal by now) */
  const char *precision = n > 0 ? in[0].p.precision : NULL;
  for (int i = 1; i < n && precision; i++)
    if (!in[i].p.precision) precision = NULL;
  if (rc == LUKV_OK && all_first) {
    qsort(in, (size_t)n, sizeof *in, cmp_merge_in);
    for (int i = 1; i < n && rc == LUKV_OK; i++)
      if (in[i].p.first_sample < in[i - 1].p.first_sample + in[i - 1].p.n_samples)
        rc = lukv_error_set(&err, LUKV_ERR_RANGE,
                            "%s: first_sample %lld overlaps %s (corpus samples %lld..%lld)",
                            in[i].path, (long long)in[i].p.first_sample, in[i - 1].path,
                            (long long)in[i - 1].p.first_sample,
                            (long long)(in[i - 1].p.first_sample + in[i - 1].p.n_samples - 1));
  }
  lukv_profile o;
  memset(&o, 0, sizeof o);
  if (rc == LUKV_OK) {
    const lukv_profile *a = &in[0].p;
    int64_t S = 0;
    for (int i = 0; i < n; i++) S += in[i].p.n_samples;
    size_t row = (size_t)a->model.n_layers * (size_t)a->model.n_kv_heads;
    size_t crow = row * ((size_t)a->grid + 1);
    o = *a; /* attributes: shallow copy of the strings, re-duplicated below */
    o.model.model_name = strdup(a->model.model_name);
    o.model.model_hash = strdup(a->model.model_hash);
    o.mode = strdup(a->mode);
    o.utility = strdup(a->utility);
    o.n_samples = S;
    /* the merged file: first_sample when the inputs are one contiguous run of
     * corpus samples (sorted by now; with a gap the file's samples would not
     * be first_sample.. onwards), precision when every input has it, no shard */
    int contiguous = all_first;
    for (int i = 1; i < n && contiguous; i++)
      contiguous = in[i].p.first_sample == in[i - 1].p.first_sample + in[i - 1].p.n_samples;
    o.has_first_sample = contiguous;
    o.first_sample = contiguous ? a->first_sample : 0;
    o.shard_index = o.shard_count = 0;
    o.precision = precision ? strdup(precision) : NULL;
    o.scorer_names = calloc((size_t)a->n_scorers, sizeof *o.scorer_names);
    o.curves = calloc((size_t)a->n_scorers, sizeof *o.curves);
    o.oracle = malloc(sizeof(float) * (size_t)S * crow);
    o.utility_total = malloc(sizeof(float) * (size_t)S * row);
    o.sample_context_len = malloc(sizeof(int32_t) * (size_t)S);
    int ok = o.model.model_name && o.model.model_hash && o.mode && o.utility && (o.precision || !precision) &&
             o.scorer_names &&
             o.curves && o.oracle && o.utility_total && o.sample_context_len;
    for (int k = 0; ok && k < a->n_scorers; k++)
      ok = (o.scorer_names[k] = strdup(a->scorer_names[k])) &&
           (o.curves[k] = malloc(sizeof(float) * (size_t)S * crow));
    if (!ok) {
      o.n_scorers = 0; /* only free what exists */
      for (int k = 0; k < a->n_scorers; k++) {
        if (o.scorer_names) free(o.scorer_names[k]);
        if (o.curves) free(o.curves[k]);
      }
      rc = lukv_error_set(&err, LUKV_ERR_NOMEM, "%s: out of memory", out_path);
    } else {
      int64_t at = 0;
      for (int i = 0; i < n; i++) {
        const lukv_profile *p = &in[i].p;
        size_t ns = (size_t)p->n_samples;
        memcpy(o.oracle + at * crow, p->oracle, sizeof(float) * ns * crow);
        memcpy(o.utility_total + at * row, p->utility_total, sizeof(float) * ns * row);
        memcpy(o.sample_context_len + at, p->sample_context_len, sizeof(int32_t) * ns);
        for (int k = 0; k < a->n_scorers; k++)
          memcpy(o.curves[k] + at * crow, p->curves[k], sizeof(float) * ns * crow);
        at += (int64_t)ns;
      }
      rc = lukv_profile_write(out_path, &o, &err);
    }
  }
  if (rc == LUKV_OK)
    printf("# wrote %s: %lld samples from %d profiles (%s order)\n", out_path,
           (long long)o.n_samples, n, all_first ? "first_sample" : "argument");
  lukv_profile_free(&o);
  for (int i = 0; i < n; i++) lukv_profile_free(&in[i].p);
  free(in);
  return rc == LUKV_OK ? 0 : lukv_cli_fail(PROG, &err);
}

/* ---- show ------------------------------------------------------------------------- */

static int cmd_show(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1])
      return lukv_cli_usage(PROG, "unknown option '%s'", argv[i]);
    else if (!path)
      path = argv[i];
    else
      return lukv_cli_usage(PROG, "unexpected argument '%s'", argv[i]);
  }
  if (!path) return lukv_cli_usage(PROG, "%s", "show: missing PROFILE.h5");
  lukv_error err;
  lukv_error_clear(&err);
  lukv_profile p;
  if (lukv_profile_read(path, &p, &err) != LUKV_OK) return lukv_cli_fail(PROG, &err);
  int L = p.model.n_layers, H = p.model.n_kv_heads, G1 = p.grid + 1, nsc = p.n_scorers;
  int64_t S = p.n_samples;
  char from[96] = "";
  if (p.has_first_sample)
    snprintf(from, sizeof from, " (corpus samples %lld..%lld)", (long long)p.first_sample,
             (long long)(p.first_sample + S - 1));
  if (p.shard_count > 0)
    snprintf(from + strlen(from), sizeof from - strlen(from), ", shard %d/%d", (int)p.shard_index,
             (int)p.shard_count);
  printf("# %s: model %s (%s), %lld samples%s, %s mode, context %d + future %d, utility %s, engine %s\n", path,
         p.model.model_name, p.model.model_hash, (long long)S, from, p.mode, p.context_len, p.future_len,
         p.utility, p.precision ? p.precision : "precision not recorded");
  printf("# sink %d, window %d, pool %d, grid %d; gap = sum_g (scorer - oracle) / ((G+1) * "
         "utility_total), 0 = as good as the oracle\n",
         p.sink, p.window, p.pool_kernel, p.grid);
  printf("%5s %4s %14s", "layer", "head", "utility_total");
  for (int k = 0; k < nsc; k++) printf(" %10s", p.scorer_names[k]);
  printf("\n");
  double *wsum = calloc((size_t)nsc + 1, sizeof *wsum);
  double utot_all = 0;
  for (int l = 0; l < L; l++)
    for (int h = 0; h < H; h++) {
      double u = 0;
      for (int64_t s = 0; s < S; s++) u += p.utility_total[((size_t)s * L + l) * H + h];
      u /= (double)S;
      utot_all += u;
      printf("%5d %4d %14.6g", l, h, u);
      for (int k = 0; k < nsc; k++) {
        double gap = 0;
        for (int64_t s = 0; s < S; s++) {
          size_t off = (((size_t)s * L + l) * H + h) * (size_t)G1;
          for (int g = 0; g < G1; g++) gap += (double)p.curves[k][off + g] - p.oracle[off + g];
        }
        gap /= (double)S;
        if (u > 0) {
          printf(" %10.4f", gap / (G1 * u));
          if (wsum) wsum[k] += gap / G1;
        } else {
          printf(" %10s", "-");
        }
      }
      printf("\n");
    }
  if (wsum && utot_all > 0) {
    printf("# all heads (utility-weighted):");
    for (int k = 0; k < nsc; k++) printf(" %s %.4f", p.scorer_names[k], wsum[k] / utot_all);
    printf("\n");
  }
  free(wsum);
  lukv_profile_free(&p);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(USAGE, stdout);
      return 0;
    }
  if (!strcmp(argv[1], "--version")) {
    printf(PROG " %s\n", LUKV_VERSION);
    return 0;
  }
  if (!strcmp(argv[1], "merge")) return cmd_merge(argc - 1, argv + 1);
  if (!strcmp(argv[1], "show")) return cmd_show(argc - 1, argv + 1);
  return cmd_profile(argc, argv);
}

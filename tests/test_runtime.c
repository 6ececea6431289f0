/* liblukv, CPU backend (runtime/include/lukv.h): the runtime rule, the
 * allocators, token selection against a brute-force search, the scorers
 * against naive formulas, append and decode against naive attention, memory
 * accounting, and every bad argument.
 *
 * Inputs are small random bf16 tensors from a fixed seed. Naive references
 * work in double straight from the definitions in lukv.h; they share no code
 * with the library. Each test has its own mkdtemp directory for the budgets
 * files it writes with lukv_budgets_write.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "lukv.h"
#include "rt_alloc.h"
#include "testutil.h"

/* ---- fixtures ------------------------------------------------------------ */

static void setup(void) { lukv_test_tmpdir_setup("lukv-runtime"); }

/* tmpdir/t<i>.h5 */
static const char *tpath(int i) {
  char name[32];
  snprintf(name, sizeof name, "t%d.h5", i);
  return lukv_test_path(name);
}

static uint64_t rng_state;
static void seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static double urand(void) { /* [0, 1) */
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static void fill(uint16_t *x, size_t n, double amp) {
  for (size_t i = 0; i < n; i++) x[i] = lukv_bf16_from_float((float)((2.0 * urand() - 1.0) * amp));
}
static uint16_t *bf16_alloc(size_t n) {
  uint16_t *p = calloc(n ? n : 1, sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}
static double bf(uint16_t x) { return (double)lukv_bf16_to_float(x); }

/* A budgets table with the given shape and keep fractions [R, L, H]. */
typedef struct tspec {
  int L, H, Hq, d, sink, window, R;
  const float *rho;  /* [R] */
  const float *frac; /* [R, L, H] */
  const char *scorer, *hash;
} tspec;

static void write_table(const char *path, const tspec *t) {
  double *nan = malloc(sizeof *nan * (size_t)t->R);
  ck_assert_ptr_nonnull(nan);
  for (int r = 0; r < t->R; r++) nan[r] = NAN;
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  b.model.model_name = (char *)"test-model";
  b.model.model_hash = (char *)(t->hash ? t->hash : "hash-a");
  b.model.n_layers = t->L;
  b.model.n_kv_heads = t->H;
  b.model.n_q_heads = t->Hq;
  b.model.head_dim = t->d;
  b.scorer = (char *)(t->scorer ? t->scorer : "snapkv");
  b.aggregation = (char *)"mean-curve";
  b.solver = (char *)"test";
  b.sink = t->sink;
  b.window = t->window;
  b.grid = 256;
  b.context_len = 64;
  b.n_ratios = t->R;
  b.compression = (float *)t->rho;
  b.keep_fraction = (float *)t->frac;
  b.report_greedy = b.report_lp_bound = b.report_exact = b.report_uniform = b.report_pyramid = nan;
  lukv_error e = {LUKV_OK, ""};
  ck_assert_msg(lukv_budgets_write(path, &b, &e) == LUKV_OK, "%s", e.msg);
  free(nan);
}

static lukv_table *open_table(const char *path) {
  lukv_table *t = NULL;
  ck_assert_msg(lukv_table_open(path, &t) == LUKV_OK, "%s", lukv_table_errmsg(NULL));
  return t;
}

/* Random keep fractions in [0, 1] for R ratios, decreasing with the ratio. */
static float *random_fracs(int R, int L, int H) {
  float *f = malloc(sizeof *f * (size_t)R * L * H);
  ck_assert_ptr_nonnull(f);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < L * H; i++) f[(size_t)r * L * H + i] = (float)(urand() * (1.0 - 0.2 * r));
  return f;
}

static lukv_cache *make_cache(int L, int H, int Hq, int d, int B, int max_ctx, int reserve) {
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = L, cfg.n_kv_heads = H, cfg.n_q_heads = Hq, cfg.head_dim = d;
  cfg.batch = B, cfg.max_context = max_ctx, cfg.decode_reserve = reserve;
  lukv_cache *c = NULL;
  ck_assert_msg(lukv_cache_create(&cfg, &c) == LUKV_OK, "%s", lukv_cache_errmsg(NULL));
  return c;
}

#define OK(cache, call) ck_assert_msg((call) == LUKV_OK, "%s", lukv_cache_errmsg(cache))

/* Asserts a status and a non-empty message on the handle. */
#define EXPECT(cache, call, status)                                                          \
  do {                                                                                       \
    int rc_ = (call);                                                                        \
    ck_assert_msg(rc_ == (status), "line %d: status %d (%s), expected %d; message: %s",      \
                  __LINE__, rc_, lukv_strerror(rc_), (status), lukv_cache_errmsg(cache));   \
    if ((status) != LUKV_OK) ck_assert_str_ne(lukv_cache_errmsg(cache), "");                 \
  } while (0)

/* ---- naive references ----------------------------------------------------- */

/* floor(H (1 - rho) T), forgiving binary rounding just below an integer. */
static int64_t budget(int H, int T, double rho) {
  double x = (1.0 - rho) * T * H;
  return (int64_t)floor(x + 1e-9 * (x > 1.0 ? x : 1.0));
}

/* The rule of lukv_table_keep, written out with repeated argmax. */
static void naive_rule(const float *frac, int H, int T, int s, int w, int32_t *keep) {
  double x[64], fr[64], total = 0.0;
  int64_t floors = 0;
  int given[64] = {0};
  for (int h = 0; h < H; h++) {
    x[h] = (double)frac[h] * T;
    keep[h] = (int32_t)floor(x[h]);
    fr[h] = x[h] - keep[h];
    total += x[h];
    floors += keep[h];
  }
  int64_t rem = (int64_t)floor(total + 1e-9 * (total > 1 ? total : 1)) - floors;
  for (; rem > 0; rem--) {
    int best = -1;
    for (int h = 0; h < H; h++)
      if (!given[h] && fr[h] > 0 && (best < 0 || fr[h] > fr[best])) best = h;
    if (best < 0) break;
    given[best] = 1;
    keep[best]++;
  }
  int lo = s + w < T ? s + w : T;
  for (int h = 0; h < H; h++) keep[h] = keep[h] < lo ? lo : (keep[h] > T ? T : keep[h]);
}

/* snapkv of head h of sequence b from the definition, in double.
 * K [B, H, tm, d], Qw [B, Hq, w, d]; out [T]. */
static void naive_snapkv(const uint16_t *K, const uint16_t *Qw, int b, int h, int H, int Hq,
                         int tm, int d, int T, int w, int kernel, double scale, double *out) {
  const int group = Hq / H, r = kernel / 2;
  double *a = calloc((size_t)T, sizeof *a), *lg = calloc((size_t)T, sizeof *lg);
  for (int j = 0; j < T; j++) out[j] = 0.0;
  for (int g = 0; g < group; g++) {
    const int q = h * group + g;
    for (int j = 0; j < T; j++) a[j] = 0.0;
    for (int i = 0; i < w; i++) {
      const int p = T - w + i;
      if (p < 0) continue;
      const uint16_t *qv = Qw + (((size_t)b * Hq + q) * w + i) * d;
      double m = -INFINITY, den = 0.0;
      for (int j = 0; j <= p; j++) {
        const uint16_t *kv = K + (((size_t)b * H + h) * tm + j) * d;
        double s = 0.0;
        for (int c = 0; c < d; c++) s += bf(qv[c]) * bf(kv[c]);
        lg[j] = scale * s;
        if (lg[j] > m) m = lg[j];
      }
      for (int j = 0; j <= p; j++) den += exp(lg[j] - m);
      for (int j = 0; j <= p; j++) a[j] += exp(lg[j] - m) / den;
    }
    for (int j = 0; j < T; j++) {
      double m = -INFINITY;
      for (int t = j - r; t <= j + r; t++)
        if (t >= 0 && t < T && a[t] > m) m = a[t];
      out[j] += m / group;
    }
  }
  free(a), free(lg);
}

static void naive_keydiff(const uint16_t *K, int b, int h, int H, int tm, int d, int T,
                          double *out) {
  double *mean = calloc((size_t)d, sizeof *mean);
  for (int j = 0; j < T; j++) {
    const uint16_t *kv = K + (((size_t)b * H + h) * tm + j) * d;
    double n = 0.0;
    for (int c = 0; c < d; c++) n += bf(kv[c]) * bf(kv[c]);
    n = sqrt(n);
    for (int c = 0; c < d; c++) mean[c] += n > 0 ? bf(kv[c]) / n / T : 0.0;
  }
  double mn = 0.0;
  for (int c = 0; c < d; c++) mn += mean[c] * mean[c];
  mn = sqrt(mn);
  for (int j = 0; j < T; j++) {
    const uint16_t *kv = K + (((size_t)b * H + h) * tm + j) * d;
    double n = 0.0, dt = 0.0;
    for (int c = 0; c < d; c++) n += bf(kv[c]) * bf(kv[c]), dt += bf(kv[c]) * mean[c];
    n = sqrt(n);
    out[j] = n > 0 && mn > 0 ? -dt / (n * mn) : 0.0;
  }
  free(mean);
}

/* Brute-force selection: sink, window, and the keep - s - w best mid tokens
 * by repeated argmax (a strictly greater score wins, so ties go to the lower
 * position). pos: out [keep], ascending. */
static void brute_select(const float *sc, int T, int s, int w, int keep, int32_t *pos) {
  unsigned char *in = calloc((size_t)T, 1);
  if (keep >= T) {
    memset(in, 1, (size_t)T);
  } else {
    for (int t = 0; t < s; t++) in[t] = 1;
    for (int t = T - w; t < T; t++) in[t] = 1;
    for (int r = 0; r < keep - s - w; r++) {
      int best = -1;
      float bk = 0;
      for (int j = s; j < T - w; j++) {
        float k = isnan(sc[j]) ? -INFINITY : sc[j];
        if (!in[j] && (best < 0 || k > bk)) best = j, bk = k;
      }
      in[best] = 1;
    }
  }
  int n = 0;
  for (int t = 0; t < T; t++)
    if (in[t]) pos[n++] = t;
  ck_assert_int_eq(n, keep);
  free(in);
}

/* Attention of q [d] over rows K, V [n, d] (bf16), in double. out [d]. */
static void naive_attention(const uint16_t *q, const uint16_t *const *krow,
                            const uint16_t *const *vrow, int n, int d, double scale,
                            double *out) {
  double *p = malloc(sizeof *p * (size_t)(n ? n : 1)), m = -INFINITY, den = 0.0;
  for (int i = 0; i < n; i++) {
    double s = 0.0;
    for (int c = 0; c < d; c++) s += bf(q[c]) * bf(krow[i][c]);
    p[i] = scale * s;
    if (p[i] > m) m = p[i];
  }
  for (int c = 0; c < d; c++) out[c] = 0.0;
  for (int i = 0; i < n; i++) {
    p[i] = exp(p[i] - m);
    den += p[i];
    for (int c = 0; c < d; c++) out[c] += p[i] * bf(vrow[i][c]);
  }
  for (int c = 0; c < d; c++) out[c] = n ? out[c] / den : 0.0;
  free(p);
}

/* ---- a prefilled batch ----------------------------------------------------- */

typedef struct batch {
  int B, H, Hq, d, tm, w;
  int32_t T[8];
  uint16_t *k, *v, *qw; /* [B, H, tm, d] x2, [B, Hq, w, d] */
} batch;

static batch make_batch(int B, int H, int Hq, int d, int tm, int w, const int32_t *T) {
  batch x = {.B = B, .H = H, .Hq = Hq, .d = d, .tm = tm, .w = w};
  for (int b = 0; b < B; b++) x.T[b] = T[b];
  const size_t n = (size_t)B * H * tm * d;
  x.k = bf16_alloc(n), x.v = bf16_alloc(n), x.qw = bf16_alloc((size_t)B * Hq * w * d);
  fill(x.k, n, 1.0);
  fill(x.v, n, 1.0);
  fill(x.qw, (size_t)B * Hq * w * d, 1.0);
  /* Rows past T_b hold garbage a correct runtime never reads. */
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (size_t i = ((size_t)(b * H + h) * tm + T[b]) * d; i < (size_t)(b * H + h + 1) * tm * d;
           i++)
        x.k[i] = x.v[i] = 0x7fc0; /* NaN */
  return x;
}

static void free_batch(batch *x) { free(x->k), free(x->v), free(x->qw); }

static lukv_compress_args args_for(const batch *x, int layer) {
  lukv_compress_args a;
  lukv_compress_args_init(&a);
  a.layer = layer;
  a.k = x->k, a.v = x->v, a.q_window = x->qw;
  a.t_max = x->tm;
  a.context_len = x->T;
  a.window = x->w; /* q_window holds exactly w rows per query head */
  return a;
}

/* Every segment of `layer` against brute-force selection on the library's
 * own scores: positions exact, rows byte-identical to the prompt's. */
static void check_selection(lukv_cache *c, const batch *x, const lukv_compress_args *a, int s,
                            int w) {
  float *sc = malloc(sizeof *sc * (size_t)x->B * x->H * x->tm);
  OK(c, lukv_compress_scores(c, a, sc));
  int32_t *pos = malloc(sizeof *pos * (size_t)x->tm), *exp_pos = malloc(sizeof *pos * x->tm);
  uint16_t *kr = bf16_alloc((size_t)x->tm * x->d), *vr = bf16_alloc((size_t)x->tm * x->d);
  for (int b = 0; b < x->B; b++)
    for (int h = 0; h < x->H; h++) {
      lukv_segment sg;
      OK(c, lukv_cache_segment(c, a->layer, b, h, &sg));
      ck_assert_int_eq(sg.length, sg.keep);
      ck_assert_int_eq(sg.context_len, x->T[b]);
      OK(c, lukv_cache_read_segment(c, a->layer, b, h, kr, vr, pos, x->tm));
      brute_select(sc + ((size_t)b * x->H + h) * x->tm, x->T[b], s, w, sg.keep, exp_pos);
      for (int i = 0; i < sg.keep; i++) {
        ck_assert_msg(pos[i] == exp_pos[i], "b %d h %d row %d: position %d, brute force %d", b,
                      h, i, pos[i], exp_pos[i]);
        if (i > 0) ck_assert_int_lt(pos[i - 1], pos[i]); /* original order */
        const size_t src = (((size_t)b * x->H + h) * x->tm + pos[i]) * x->d;
        ck_assert(!memcmp(kr + (size_t)i * x->d, x->k + src, sizeof *kr * x->d));
        ck_assert(!memcmp(vr + (size_t)i * x->d, x->v + src, sizeof *vr * x->d));
      }
      /* sink and window always there */
      if (sg.keep < x->T[b]) {
        for (int t = 0; t < s; t++) ck_assert_int_eq(pos[t], t);
        for (int t = 0; t < w; t++) ck_assert_int_eq(pos[sg.keep - w + t], x->T[b] - w + t);
      }
    }
  free(sc), free(pos), free(exp_pos), free(kr), free(vr);
}

/* ---- status and bf16 --------------------------------------------------------- */

START_TEST(status_and_bf16) {
  ck_assert_int_eq(LUKV_OK, 0);
  ck_assert_str_eq(lukv_strerror(LUKV_ERR_SHAPE), "shape mismatch");
  ck_assert_str_eq(lukv_strerror(LUKV_ERR_UNSUPPORTED), "unsupported");
  ck_assert_ptr_nonnull(lukv_strerror(12345));
  ck_assert_uint_eq(lukv_bf16_from_float(1.0f), 0x3f80);
  ck_assert(lukv_bf16_to_float(0x3f80) == 1.0f);
  ck_assert(lukv_bf16_to_float(0xc020) == -2.5f);
  /* halfway cases round to even */
  ck_assert_uint_eq(lukv_bf16_from_float(1.0f + 1.0f / 256), 0x3f80);
  ck_assert_uint_eq(lukv_bf16_from_float(1.0f + 3.0f / 256), 0x3f82);
  ck_assert_uint_eq(lukv_bf16_from_float(1.0f + 1.0f / 256 + 1.0f / 4096), 0x3f81);
  ck_assert(isnan(lukv_bf16_to_float(lukv_bf16_from_float(NAN))));
  ck_assert(isinf(lukv_bf16_to_float(lukv_bf16_from_float(INFINITY))));
  for (int i = 0; i < 1000; i++) { /* every bf16 value round-trips */
    uint16_t h = (uint16_t)(i * 65 + 7);
    if ((h & 0x7f80) == 0x7f80) continue;
    ck_assert_uint_eq(lukv_bf16_from_float(lukv_bf16_to_float(h)), h);
  }
}
END_TEST

/* ---- tables ------------------------------------------------------------------ */

START_TEST(table_keep_rule) {
  /* Hand-checked layers (s = w = 1, so the clamp floor is 2):
   * layer 0, T = 13: x = 4.875 8.125 6.5 1.625 -> floors 4 8 6 1 (19),
   *   floor(sum 21.125) = 21: +1 to the two largest fractions (.875 h0,
   *   .625 h3) -> 5 8 6 2;
   * layer 1, T = 13: x = 3.25 x 4 -> floors 3 (12), floor(13) = 13: one to
   *   the lowest head of the tie -> 4 3 3 3;
   * layer 2, T = 13: 0 0 1 0.5 -> x = 0 0 13 6.5 -> 0 0 13 6 (+0, sum 19.5 ->
   *   19) -> clamp 2 2 13 6. */
  const float rho[2] = {0.25f, 0.5f};
  const float frac[2 * 3 * 4] = {0.375f, 0.625f, 0.5f, 0.125f, 0.25f, 0.25f, 0.25f, 0.25f,
                                 0.0f,   0.0f,   1.0f, 0.5f,   0.1f,  0.2f,  0.3f,  0.4f,
                                 0.5f,   0.6f,   0.7f, 0.8f,   0.9f,  0.05f, 0.15f, 0.25f};
  tspec ts = {.L = 3, .H = 4, .Hq = 8, .d = 16, .sink = 1, .window = 1, .R = 2, .rho = rho,
              .frac = frac};
  write_table(tpath(0), &ts);
  lukv_table *t = open_table(tpath(0));
  int L = 0, H = 0;
  ck_assert_int_eq(lukv_table_shape(t, &L, &H), LUKV_OK);
  ck_assert_int_eq(L, 3);
  ck_assert_int_eq(H, 4);
  lukv_table_info ti;
  ck_assert_int_eq(lukv_table_get_info(t, &ti), LUKV_OK);
  ck_assert_str_eq(ti.scorer, "snapkv");
  ck_assert_str_eq(ti.model_hash, "hash-a");
  ck_assert_int_eq(ti.n_q_heads, 8);
  ck_assert_int_eq(ti.head_dim, 16);
  ck_assert_int_eq(ti.sink, 1);
  ck_assert_int_eq(ti.n_ratios, 2);
  ck_assert(ti.ratios[1] == 0.5f);
  ck_assert_str_eq(lukv_table_errmsg(t), "");

  int32_t keep[12];
  ck_assert_int_eq(lukv_table_keep(t, 0.25, 13, keep), LUKV_OK);
  const int32_t want[12] = {5, 8, 6, 2, 4, 3, 3, 3, 2, 2, 13, 6};
  for (int i = 0; i < 12; i++) ck_assert_msg(keep[i] == want[i], "keep[%d] = %d, want %d", i, keep[i], want[i]);
  /* a ratio within 1e-6 is the same row */
  ck_assert_int_eq(lukv_table_keep(t, 0.25 + 5e-7, 13, keep), LUKV_OK);
  ck_assert_int_eq(keep[0], 5);

  /* Every T from 1 to 300 at both ratios, against the naive rule; and the
   * same fractions in a table with s = w = 0 (no clamp) must fill each layer
   * with exactly floor(sum_h x_h) tokens, the clamped table being that
   * lifted to min(T, s + w). */
  tspec ts0 = ts;
  ts0.sink = ts0.window = 0;
  write_table(tpath(1), &ts0);
  lukv_table *t0 = open_table(tpath(1));
  int32_t keep0[12];
  for (int r = 0; r < 2; r++)
    for (int T = 1; T <= 300; T++) {
      ck_assert_int_eq(lukv_table_keep(t, rho[r], T, keep), LUKV_OK);
      ck_assert_int_eq(lukv_table_keep(t0, rho[r], T, keep0), LUKV_OK);
      const int lo = T < 2 ? T : 2;
      for (int l = 0; l < 3; l++) {
        int32_t nv[4];
        const float *f = frac + (r * 3 + l) * 4;
        naive_rule(f, 4, T, 1, 1, nv);
        double sx = 0.0;
        int64_t sum0 = 0;
        for (int h = 0; h < 4; h++) {
          const int i = l * 4 + h;
          ck_assert_msg(keep[i] == nv[h], "T %d l %d h %d: %d vs naive %d", T, l, h, keep[i],
                        nv[h]);
          ck_assert_int_eq(keep[i], keep0[i] < lo ? lo : keep0[i]);
          ck_assert_int_le(keep[i], T);
          ck_assert_int_ge(keep0[i], (int32_t)floor((double)f[h] * T));
          ck_assert_int_le(keep0[i], (int32_t)floor((double)f[h] * T) + 1);
          sx += (double)f[h] * T;
          sum0 += keep0[i];
        }
        ck_assert_int_eq(sum0, (int64_t)floor(sx + 1e-9 * (sx > 1 ? sx : 1)));
      }
    }
  lukv_table_close(t0);

  ck_assert_int_eq(lukv_table_keep(t, 0.3, 13, keep), LUKV_ERR_NOTFOUND);
  ck_assert_ptr_nonnull(strstr(lukv_table_errmsg(t), "not in the table"));
  ck_assert_int_eq(lukv_table_keep(t, NAN, 13, keep), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_keep(t, 0.25, 0, keep), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_keep(t, 0.25, 13, NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_keep(NULL, 0.25, 13, keep), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_shape(t, NULL, &H), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_shape(NULL, &L, &H), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_get_info(t, NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_get_info(NULL, &ti), LUKV_ERR_INVALID);
  /* the message stays after a success */
  ck_assert_int_eq(lukv_table_keep(t, 0.25, 13, keep), LUKV_OK);
  ck_assert_str_ne(lukv_table_errmsg(t), "");
  lukv_table_close(t);
  lukv_table_close(NULL);
}
END_TEST

START_TEST(table_open_errors) {
  lukv_table *t = (lukv_table *)&t; /* must be overwritten with NULL */
  ck_assert_int_eq(lukv_table_open(NULL, &t), LUKV_ERR_INVALID);
  ck_assert_ptr_null(t);
  ck_assert_ptr_nonnull(strstr(lukv_table_errmsg(NULL), "NULL"));
  ck_assert_int_eq(lukv_table_open(tpath(0), NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_table_open(tpath(1), &t), LUKV_ERR_IO);
  ck_assert_ptr_null(t);
  ck_assert_ptr_nonnull(strstr(lukv_table_errmsg(NULL), tpath(1)));
  const char *junk = lukv_test_path("junk.h5");
  lukv_test_write_text(junk, "not hdf5\n");
  ck_assert_int_eq(lukv_table_open(junk, &t), LUKV_ERR_FORMAT);
  ck_assert_ptr_null(t);
  ck_assert_ptr_nonnull(strstr(lukv_table_errmsg(NULL), "junk.h5"));
}
END_TEST

START_TEST(table_mismatch_refused) {
  const float rho[1] = {0.5f}, frac[2 * 2] = {0.5f, 0.5f, 0.5f, 0.5f};
  tspec ts = {.L = 2, .H = 2, .Hq = 4, .d = 8, .sink = 2, .window = 4, .R = 1, .rho = rho,
              .frac = frac};
  write_table(tpath(0), &ts);
  lukv_table *t = open_table(tpath(0));
  struct {
    int L, H, Hq, d;
    const char *what;
  } bad[] = {{3, 2, 4, 8, "n_layers"}, {2, 1, 4, 8, "n_kv_heads"}, {2, 2, 8, 8, "n_q_heads"},
             {2, 2, 4, 16, "head_dim"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lukv_cache *c = make_cache(bad[i].L, bad[i].H, bad[i].Hq, bad[i].d, 1, 64, 0);
    EXPECT(c, lukv_cache_check_table(c, t), LUKV_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), bad[i].what));
    /* compress refuses it too, before reading any tensor */
    uint16_t dummy[8] = {0};
    lukv_compress_args a;
    lukv_compress_args_init(&a);
    a.k = a.v = a.q_window = dummy;
    a.t_max = 1;
    a.table = t;
    a.ratio = 0.5;
    EXPECT(c, lukv_compress(c, &a), LUKV_ERR_SHAPE);
    lukv_cache_destroy(c);
  }
  /* model hash */
  lukv_cache_config cfg;
  lukv_cache_config_init(&cfg);
  cfg.n_layers = 2, cfg.n_kv_heads = 2, cfg.n_q_heads = 4, cfg.head_dim = 8, cfg.batch = 1;
  cfg.max_context = 64;
  char hash[16] = "hash-b";
  cfg.model_hash = hash;
  lukv_cache *c = NULL;
  ck_assert_int_eq(lukv_cache_create(&cfg, &c), LUKV_OK);
  strcpy(hash, "hash-a"); /* the cache keeps its own copy */
  EXPECT(c, lukv_cache_check_table(c, t), LUKV_ERR_INVALID);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), "model_hash"));
  lukv_cache_destroy(c);
  cfg.model_hash = "hash-a";
  ck_assert_int_eq(lukv_cache_create(&cfg, &c), LUKV_OK);
  EXPECT(c, lukv_cache_check_table(c, t), LUKV_OK);
  EXPECT(c, lukv_cache_check_table(c, NULL), LUKV_ERR_INVALID);

  /* scorer / sink / window disagreeing with the table */
  int32_t T[1] = {40};
  batch x = make_batch(1, 2, 4, 8, 40, 4, T);
  lukv_compress_args a = args_for(&x, 0);
  a.table = t;
  a.ratio = 0.5;
  a.scorer = "keydiff";
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_INVALID);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), "keydiff"));
  a.scorer = "snapkv";
  a.sink = 3;
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_INVALID);
  a.sink = 2;
  a.window = 32;
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_INVALID);
  a.window = 4;
  EXPECT(c, lukv_compress(c, &a), LUKV_OK);
  a.ratio = 0.25;
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_NOTFOUND);
  lukv_cache_destroy(c);
  free_batch(&x);
  lukv_table_close(t);
  /* a table whose scorer the runtime does not have */
  ts.scorer = "expected";
  write_table(tpath(1), &ts);
  t = open_table(tpath(1));
  c = make_cache(2, 2, 4, 8, 1, 64, 0);
  x = make_batch(1, 2, 4, 8, 40, 4, T);
  a = args_for(&x, 0);
  a.table = t;
  a.ratio = 0.5;
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_NOTFOUND);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), "expected"));
  lukv_cache_destroy(c);
  free_batch(&x);
  lukv_table_close(t);
}
END_TEST

/* ---- bad arguments ------------------------------------------------------------ */

START_TEST(create_errors) {
  lukv_cache_config good;
  lukv_cache_config_init(&good);
  good.n_layers = 2, good.n_kv_heads = 2, good.n_q_heads = 4, good.head_dim = 8, good.batch = 1;
  good.max_context = 64;
  lukv_cache *c = (lukv_cache *)&c;
  ck_assert_int_eq(lukv_cache_create(NULL, &c), LUKV_ERR_INVALID);
  ck_assert_ptr_null(c);
  ck_assert_int_eq(lukv_cache_create(&good, NULL), LUKV_ERR_INVALID);
  struct {
    int field, value, status;
  } bad[] = {{0, 0, LUKV_ERR_INVALID},  {1, 0, LUKV_ERR_INVALID},  {2, 0, LUKV_ERR_INVALID},
             {2, 3, LUKV_ERR_INVALID},  {3, -1, LUKV_ERR_INVALID}, {4, 0, LUKV_ERR_INVALID},
             {5, 0, LUKV_ERR_INVALID},  {6, -1, LUKV_ERR_INVALID}, {7, 1, LUKV_ERR_UNSUPPORTED},
             {7, 9, LUKV_ERR_INVALID},  {8, 3, LUKV_ERR_INVALID},
             {5, INT32_MAX, LUKV_ERR_TOO_LARGE}, {4, 1 << 30, LUKV_ERR_TOO_LARGE}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lukv_cache_config cfg = good;
    int *f[] = {&cfg.n_layers, &cfg.n_kv_heads, &cfg.n_q_heads, &cfg.head_dim, &cfg.batch,
                &cfg.max_context, &cfg.decode_reserve};
    if (bad[i].field < 7)
      *f[bad[i].field] = bad[i].value;
    else if (bad[i].field == 7) {
      cfg.backend = (lukv_backend_kind)bad[i].value;
      /* CUDA needs head_dim % 8 == 0: unsupported in every build, device or not. */
      if (cfg.backend == LUKV_BACKEND_CUDA) cfg.head_dim = 4;
    }
    else
      cfg.dtype = (lukv_kv_dtype)bad[i].value;
    if (bad[i].field == 5 && bad[i].value == INT32_MAX) cfg.decode_reserve = 1;
    c = (lukv_cache *)&c;
    int rc = lukv_cache_create(&cfg, &c);
    ck_assert_msg(rc == bad[i].status, "case %zu: %d (%s)", i, rc, lukv_cache_errmsg(NULL));
    ck_assert_ptr_null(c);
    ck_assert_str_ne(lukv_cache_errmsg(NULL), "");
  }
  ck_assert_int_eq(lukv_cache_create(&good, &c), LUKV_OK);
  ck_assert_str_eq(lukv_cache_errmsg(c), "");
  lukv_cache_destroy(c);
  lukv_cache_destroy(NULL);
}
END_TEST

START_TEST(null_and_bad_arguments) {
  const int L = 2, H = 2, Hq = 4, d = 8, B = 2, tm = 40, w = 4;
  int32_t T[2] = {40, 30};
  batch x = make_batch(B, H, Hq, d, tm, w, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 64, 2);
  uint16_t buf[256] = {0};
  int32_t pos[64];
  uint64_t held, full;
  lukv_segment sg;
  void *kp;
  int64_t rows;
  float scores[2 * 2 * 40];

  /* NULL handle: a status, nothing else */
  lukv_compress_args a = args_for(&x, 0);
  ck_assert_int_eq(lukv_compress(NULL, &a), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_compress_scores(NULL, &a, scores), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_append(NULL, 0, buf, buf), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_decode_attention(NULL, 0, buf, buf, 0), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_memory(NULL, &held, &full), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_segment(NULL, 0, 0, 0, &sg), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_read_segment(NULL, 0, 0, 0, buf, buf, pos, 64), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_layer_buffers(NULL, 0, &kp, &kp, &rows), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_reset(NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_cache_check_table(NULL, NULL), LUKV_ERR_INVALID);
  lukv_cache_config_init(NULL);
  lukv_compress_args_init(NULL);

  /* Layer not compressed yet */
  EXPECT(c, lukv_append(c, 0, buf, buf), LUKV_ERR_INVALID);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), "not been compressed"));
  EXPECT(c, lukv_decode_attention(c, 0, buf, buf, 0), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, 0, 0, &sg), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_read_segment(c, 0, 0, 0, buf, buf, pos, 64), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_layer_buffers(c, 0, &kp, &kp, &rows), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_memory(c, &held, &full), LUKV_OK);
  ck_assert_uint_eq(held, 0);
  ck_assert_uint_eq(full, 0);

  /* compress: each argument broken in turn (baseline: uniform, keydiff) */
  lukv_compress_args base = args_for(&x, 0);
  base.window = w; /* q_window holds w rows */
  base.policy = LUKV_KEEP_UNIFORM;
  base.ratio = 0.5;
  EXPECT(c, lukv_compress(c, NULL), LUKV_ERR_INVALID);
  EXPECT(c, lukv_compress_scores(c, NULL, scores), LUKV_ERR_INVALID);
  EXPECT(c, lukv_compress_scores(c, &base, NULL), LUKV_ERR_INVALID);
  int32_t Tbad[2] = {40, 0}, Tbig[2] = {40, 41}, keep_bad[4] = {40, 40, 30, 3};
  int32_t keep_big[4] = {40, 41, 30, 30};
  struct {
    int what;
    int status;
  } cases[] = {{0, LUKV_ERR_INVALID},  {1, LUKV_ERR_INVALID},  {2, LUKV_ERR_INVALID},
               {3, LUKV_ERR_INVALID},  {4, LUKV_ERR_INVALID},  {5, LUKV_ERR_RANGE},
               {6, LUKV_ERR_RANGE},    {7, LUKV_ERR_NOTFOUND}, {8, LUKV_ERR_INVALID},
               {9, LUKV_ERR_INVALID},  {10, LUKV_ERR_INVALID}, {11, LUKV_ERR_INVALID},
               {12, LUKV_ERR_INVALID}, {13, LUKV_ERR_INVALID}, {14, LUKV_ERR_INVALID},
               {15, LUKV_ERR_INVALID}, {16, LUKV_ERR_INVALID}, {17, LUKV_ERR_INVALID},
               {18, LUKV_ERR_INVALID}, {19, LUKV_ERR_INVALID}, {20, LUKV_ERR_RANGE},
               {21, LUKV_ERR_RANGE},   {22, LUKV_ERR_INVALID}, {23, LUKV_ERR_RANGE},
               {24, LUKV_ERR_INVALID}, {25, LUKV_ERR_INVALID}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    a = base;
    switch (cases[i].what) {
    case 0: a.layer = -1; break;
    case 1: a.layer = L; break;
    case 2: a.k = NULL; break;
    case 3: a.v = NULL; break;
    case 4: a.t_max = 0; break;
    case 5: a.context_len = Tbad; break;
    case 6: a.context_len = Tbig; break;
    case 7: a.scorer = "h2o"; break;
    case 8: a.pool_kernel = 6; break;
    case 9: a.pool_kernel = 0; break;
    case 10: a.scale = NAN; break;
    case 11: a.scale = -1.0f; break;
    case 12: a.sink = -2; break;
    case 13: a.window = -5; break;
    case 14: a.q_window = NULL; break; /* snapkv needs it */
    case 15: a.policy = LUKV_KEEP_TABLE; break; /* no table */
    case 16: a.policy = (lukv_keep_policy)99; break;
    case 17: a.ratio = 1.5; break;
    case 18: a.ratio = NAN; break;
    case 19: a.policy = LUKV_KEEP_ADAKV, a.adakv_alpha = 2.0; break;
    case 20: a.policy = LUKV_KEEP_EXPLICIT, a.keep = keep_bad; break; /* 3 < s + w */
    case 21: a.policy = LUKV_KEEP_EXPLICIT, a.keep = keep_big; break; /* 41 > T */
    case 22: a.policy = LUKV_KEEP_EXPLICIT, a.keep = NULL; break;
    case 23: a.context_len = NULL, a.t_max = 65; break; /* > max_context */
    case 24: a.policy = LUKV_KEEP_PYRAMID, a.pyramid_beta = 0.0; break;
    case 25: a.scale = INFINITY; break;
    }
    int rc = lukv_compress(c, &a);
    ck_assert_msg(rc == cases[i].status, "case %d: %d (%s), expected %d", cases[i].what, rc,
                  lukv_cache_errmsg(c), cases[i].status);
    ck_assert_str_ne(lukv_cache_errmsg(c), "");
    EXPECT(c, lukv_cache_segment(c, 0, 0, 0, &sg), LUKV_ERR_INVALID); /* nothing half-made */
  }

  /* now a good layer, and the decode-side arguments */
  EXPECT(c, lukv_compress(c, &base), LUKV_OK);
  EXPECT(c, lukv_append(c, 0, NULL, buf), LUKV_ERR_INVALID);
  EXPECT(c, lukv_append(c, 0, buf, NULL), LUKV_ERR_INVALID);
  EXPECT(c, lukv_append(c, -1, buf, buf), LUKV_ERR_INVALID);
  EXPECT(c, lukv_append(c, L, buf, buf), LUKV_ERR_INVALID);
  EXPECT(c, lukv_decode_attention(c, 0, NULL, buf, 0), LUKV_ERR_INVALID);
  EXPECT(c, lukv_decode_attention(c, 0, buf, NULL, 0), LUKV_ERR_INVALID);
  EXPECT(c, lukv_decode_attention(c, 0, buf, buf, NAN), LUKV_ERR_INVALID);
  EXPECT(c, lukv_decode_attention(c, 0, buf, buf, -1.0f), LUKV_ERR_INVALID);
  EXPECT(c, lukv_decode_attention(c, 5, buf, buf, 0), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, 2, 0, &sg), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, 0, 2, &sg), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, -1, 0, &sg), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, 0, 0, NULL), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_segment(c, 0, 0, 0, &sg), LUKV_OK);
  EXPECT(c, lukv_cache_read_segment(c, 0, 0, 0, buf, buf, pos, sg.length - 1), LUKV_ERR_RANGE);
  EXPECT(c, lukv_cache_read_segment(c, 0, 0, 0, NULL, NULL, NULL, sg.length), LUKV_OK);
  EXPECT(c, lukv_cache_layer_buffers(c, 0, NULL, NULL, NULL), LUKV_OK);
  EXPECT(c, lukv_cache_layer_buffers(c, 1, &kp, NULL, NULL), LUKV_ERR_INVALID);
  EXPECT(c, lukv_cache_memory(c, NULL, NULL), LUKV_OK);

  /* a refused call leaves a compressed layer as it was */
  a = base;
  a.ratio = 2.0;
  EXPECT(c, lukv_compress(c, &a), LUKV_ERR_INVALID);
  lukv_segment sg2;
  EXPECT(c, lukv_cache_segment(c, 0, 0, 0, &sg2), LUKV_OK);
  ck_assert_int_eq(sg2.keep, sg.keep);
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

/* ---- scorers ------------------------------------------------------------------- */

START_TEST(scores_match_naive) {
  seed(11);
  const int B = 2, H = 2, Hq = 6, d = 8, tm = 48, w = 5;
  int32_t T[2] = {48, 29};
  batch x = make_batch(B, H, Hq, d, tm, w, T);
  /* a zero key: keydiff must score it 0, not NaN */
  memset(x.k + ((size_t)(1 * H + 1) * tm + 3) * d, 0, sizeof(uint16_t) * d);
  lukv_cache *c = make_cache(1, H, Hq, d, B, 64, 0);
  float *sc = malloc(sizeof *sc * (size_t)B * H * tm);
  double *ref = malloc(sizeof *ref * (size_t)tm);
  const int kernels[3] = {7, 3, 1};
  for (int pass = 0; pass < 4; pass++) {
    lukv_compress_args a = args_for(&x, 0);
    a.window = w;
    a.sink = 2;
    a.scorer = pass < 3 ? "snapkv" : "keydiff";
    if (pass < 3) a.pool_kernel = kernels[pass];
    if (pass == 1) a.scale = 0.7f;
    OK(c, lukv_compress_scores(c, &a, sc));
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++) {
        if (pass < 3)
          naive_snapkv(x.k, x.qw, b, h, H, Hq, tm, d, T[b], w, a.pool_kernel,
                       pass == 1 ? 0.7f : 1.0 / sqrt((double)d), ref);
        else
          naive_keydiff(x.k, b, h, H, tm, d, T[b], ref);
        const float *got = sc + ((size_t)b * H + h) * tm;
        for (int t = 0; t < tm; t++) {
          if (t >= T[b]) {
            ck_assert(isinf(got[t]) && got[t] < 0);
            continue;
          }
          ck_assert_msg(fabs(got[t] - ref[t]) <= 1e-6 + 1e-5 * fabs(ref[t]),
                        "pass %d b %d h %d t %d: %g vs naive %g", pass, b, h, t, (double)got[t],
                        ref[t]);
        }
      }
  }
  /* w = 0: snapkv has no evidence and scores 0 */
  lukv_compress_args a = args_for(&x, 0);
  a.window = 0;
  a.q_window = NULL;
  OK(c, lukv_compress_scores(c, &a, sc));
  ck_assert(sc[0] == 0.0f && sc[tm - 1] == 0.0f);
  free(sc), free(ref);
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

/* ---- selection ------------------------------------------------------------------ */

START_TEST(compress_selects_top_tokens) {
  seed(5);
  const int L = 2, H = 3, Hq = 6, d = 8, B = 3, tm = 80, s = 3, w = 6;
  int32_t T[3] = {80, 31, 9}; /* the last is shorter than s + w: kept whole */
  batch x = make_batch(B, H, Hq, d, tm, w, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 100, 0);
  const char *scorers[2] = {"snapkv", "keydiff"};
  for (int si = 0; si < 2; si++) {
    /* explicit counts, including the extremes s + w and T */
    int32_t keep[9] = {s + w, 40, 80, 20, s + w + 1, 31, 9, 9, 9};
    lukv_compress_args a = args_for(&x, si);
    a.scorer = scorers[si];
    a.sink = s, a.window = w;
    a.policy = LUKV_KEEP_EXPLICIT;
    a.keep = keep;
    OK(c, lukv_compress(c, &a));
    for (int i = 0; i < B * H; i++) {
      lukv_segment sg;
      OK(c, lukv_cache_segment(c, si, i / H, i % H, &sg));
      ck_assert_int_eq(sg.keep, keep[i]);
    }
    check_selection(c, &x, &a, s, w);
    /* the baselines pick their counts, selection is the same rule */
    const lukv_keep_policy pol[3] = {LUKV_KEEP_UNIFORM, LUKV_KEEP_PYRAMID, LUKV_KEEP_ADAKV};
    for (int p = 0; p < 3; p++) {
      a.policy = pol[p];
      a.ratio = 0.6;
      OK(c, lukv_compress(c, &a));
      check_selection(c, &x, &a, s, w);
    }
  }
  /* Ties: identical keys score identically, so the lowest mid positions win. */
  for (size_t i = 0; i < (size_t)B * H * tm * d; i++) x.k[i] = lukv_bf16_from_float(0.5f);
  lukv_compress_args a = args_for(&x, 0);
  a.scorer = "keydiff";
  a.sink = s, a.window = w;
  a.policy = LUKV_KEEP_UNIFORM;
  a.ratio = 0.5;
  OK(c, lukv_compress(c, &a));
  int32_t pos[80];
  lukv_segment sg;
  OK(c, lukv_cache_segment(c, 0, 0, 0, &sg));
  OK(c, lukv_cache_read_segment(c, 0, 0, 0, NULL, NULL, pos, 80));
  ck_assert_int_eq(sg.keep, 40);
  for (int i = 0; i < sg.keep - w; i++) ck_assert_int_eq(pos[i], i);
  check_selection(c, &x, &a, s, w);
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

/* Table policy: every segment's count is lukv_table_keep at its own T_b. */
START_TEST(compress_with_table_batch) {
  seed(9);
  const int L = 3, H = 2, Hq = 4, d = 16, B = 3, tm = 120, s = 4, w = 8, R = 3;
  const float rho[3] = {0.25f, 0.5f, 0.75f};
  float *frac = random_fracs(R, L, H);
  tspec ts = {.L = L, .H = H, .Hq = Hq, .d = d, .sink = s, .window = w, .R = R, .rho = rho,
              .frac = frac};
  write_table(tpath(0), &ts);
  lukv_table *t = open_table(tpath(0));
  int32_t T[3] = {120, 57, 12};
  batch x = make_batch(B, H, Hq, d, tm, w, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 128, 4);
  int32_t want[3][6];
  for (int b = 0; b < B; b++) ck_assert_int_eq(lukv_table_keep(t, 0.5, T[b], want[b]), LUKV_OK);
  for (int l = 0; l < L; l++) {
    lukv_compress_args a = args_for(&x, l);
    a.table = t;
    a.ratio = 0.5;
    OK(c, lukv_compress(c, &a));
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++) {
        lukv_segment sg;
        OK(c, lukv_cache_segment(c, l, b, h, &sg));
        ck_assert_int_eq(sg.keep, want[b][l * H + h]);
        ck_assert_int_eq(sg.capacity, sg.keep + 4);
      }
    check_selection(c, &x, &a, s, w);
  }
  lukv_cache_destroy(c);
  lukv_table_close(t); /* the cache never held on to it */
  free_batch(&x);
  free(frac);
}
END_TEST

/* ---- append and decode --------------------------------------------------------- */

START_TEST(append_never_moves) {
  seed(3);
  const int L = 1, H = 2, Hq = 4, d = 8, B = 2, tm = 60, reserve = 5;
  int32_t T[2] = {60, 45};
  batch x = make_batch(B, H, Hq, d, tm, 4, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 64, reserve);
  lukv_compress_args a = args_for(&x, 0);
  a.policy = LUKV_KEEP_PYRAMID;
  a.ratio = 0.7;
  OK(c, lukv_compress(c, &a));
  void *k0, *v0;
  int64_t rows0;
  OK(c, lukv_cache_layer_buffers(c, 0, &k0, &v0, &rows0));
  lukv_segment before[4];
  uint16_t *snap = bf16_alloc((size_t)rows0 * d * 2);
  memcpy(snap, k0, sizeof(uint16_t) * rows0 * d);
  memcpy(snap + (size_t)rows0 * d, v0, sizeof(uint16_t) * rows0 * d);
  int64_t total = 0;
  for (int i = 0; i < B * H; i++) {
    OK(c, lukv_cache_segment(c, 0, i / H, i % H, &before[i]));
    ck_assert_int_eq(before[i].offset, total); /* packed, in (b, h) order */
    total += before[i].capacity;
  }
  ck_assert_int_eq(total, rows0);
  uint16_t kn[2 * 2 * 8], vn[2 * 2 * 8];
  uint16_t (*sent)[2 * 2 * 8] = malloc(sizeof *sent * 2 * reserve);
  for (int step = 0; step < reserve; step++) {
    fill(kn, sizeof kn / 2, 2.0);
    fill(vn, sizeof vn / 2, 2.0);
    memcpy(sent[2 * step], kn, sizeof kn);
    memcpy(sent[2 * step + 1], vn, sizeof vn);
    OK(c, lukv_append(c, 0, kn, vn));
    void *k1, *v1;
    int64_t rows1;
    OK(c, lukv_cache_layer_buffers(c, 0, &k1, &v1, &rows1));
    ck_assert_ptr_eq(k1, k0);
    ck_assert_ptr_eq(v1, v0);
    ck_assert_int_eq(rows1, rows0);
    for (int i = 0; i < B * H; i++) {
      lukv_segment sg;
      OK(c, lukv_cache_segment(c, 0, i / H, i % H, &sg));
      ck_assert_int_eq(sg.offset, before[i].offset);
      ck_assert_int_eq(sg.capacity, before[i].capacity);
      ck_assert_int_eq(sg.length, before[i].keep + step + 1);
      /* every earlier row is byte-identical: the prompt's rows to the
       * snapshot, the rows appended before to what was sent */
      const uint16_t *K = k0, *V = v0;
      for (int row = 0; row < sg.length - 1; row++) {
        const size_t o = (size_t)(sg.offset + row) * d;
        const uint16_t *wk = row < sg.keep ? snap + o : sent[2 * (row - sg.keep)] + (size_t)i * d;
        const uint16_t *wv = row < sg.keep ? snap + (size_t)rows0 * d + o
                                           : sent[2 * (row - sg.keep) + 1] + (size_t)i * d;
        ck_assert(!memcmp(K + o, wk, sizeof *K * d));
        ck_assert(!memcmp(V + o, wv, sizeof *V * d));
      }
    }
  }
  /* the appended rows and their positions */
  uint16_t kr[70 * 8], vr[70 * 8];
  int32_t pos[70];
  for (int i = 0; i < B * H; i++) {
    lukv_segment sg;
    OK(c, lukv_cache_segment(c, 0, i / H, i % H, &sg));
    ck_assert_int_eq(sg.length, sg.capacity);
    OK(c, lukv_cache_read_segment(c, 0, i / H, i % H, kr, vr, pos, 70));
    for (int step = 0; step < reserve; step++) {
      const int row = sg.keep + step;
      ck_assert_int_eq(pos[row], T[i / H] + step);
      ck_assert(!memcmp(kr + (size_t)row * d, sent[2 * step] + (size_t)i * d, 2 * d));
      ck_assert(!memcmp(vr + (size_t)row * d, sent[2 * step + 1] + (size_t)i * d, 2 * d));
    }
  }
  /* full: refused, nothing written */
  EXPECT(c, lukv_append(c, 0, kn, vn), LUKV_ERR_RANGE);
  ck_assert_ptr_nonnull(strstr(lukv_cache_errmsg(c), "full"));
  for (int i = 0; i < B * H; i++) {
    lukv_segment sg;
    OK(c, lukv_cache_segment(c, 0, i / H, i % H, &sg));
    ck_assert_int_eq(sg.length, sg.capacity);
  }
  free(sent);
  free(snap);
  lukv_cache_destroy(c);
  /* no reserve: the first append is already refused */
  c = make_cache(L, H, Hq, d, B, 64, 0);
  OK(c, lukv_compress(c, &a));
  EXPECT(c, lukv_append(c, 0, kn, vn), LUKV_ERR_RANGE);
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

/* out [B, Hq, d] against naive attention over the kept prompt rows (taken
 * from the ORIGINAL tensors at the kept positions) plus the appended rows. */
static void check_decode(lukv_cache *c, const batch *x, int layer, const uint16_t *appended_k,
                         const uint16_t *appended_v, int n_app, const uint16_t *q,
                         const uint16_t *out, double scale, int expect_full) {
  const int H = x->H, Hq = x->Hq, d = x->d, group = Hq / H;
  int32_t *pos = malloc(sizeof *pos * (size_t)(x->tm + n_app));
  const uint16_t **kr = malloc(sizeof *kr * (size_t)(x->tm + n_app));
  const uint16_t **vr = malloc(sizeof *vr * (size_t)(x->tm + n_app));
  double ref[64];
  for (int b = 0; b < x->B; b++)
    for (int qh = 0; qh < Hq; qh++) {
      const int h = qh / group;
      lukv_segment sg;
      OK(c, lukv_cache_segment(c, layer, b, h, &sg));
      OK(c, lukv_cache_read_segment(c, layer, b, h, NULL, NULL, pos, x->tm + n_app));
      if (expect_full) ck_assert_int_eq(sg.keep, x->T[b]);
      int n = 0;
      for (int i = 0; i < sg.keep; i++, n++) {
        const size_t src = (((size_t)b * H + h) * x->tm + pos[i]) * d;
        kr[n] = x->k + src, vr[n] = x->v + src;
      }
      for (int s = 0; s < n_app; s++, n++) {
        kr[n] = appended_k + ((size_t)s * x->B * H + (size_t)b * H + h) * d;
        vr[n] = appended_v + ((size_t)s * x->B * H + (size_t)b * H + h) * d;
      }
      ck_assert_int_eq(n, sg.length);
      const size_t qo = ((size_t)b * Hq + qh) * d;
      naive_attention(q + qo, kr, vr, n, d, scale, ref);
      for (int e = 0; e < d; e++) {
        double got = bf(out[qo + e]);
        ck_assert_msg(fabs(got - ref[e]) <= 2e-3 + 8e-3 * fabs(ref[e]),
                      "b %d q %d e %d: %g vs naive %g", b, qh, e, got, ref[e]);
      }
    }
  free(pos), free(kr), free(vr);
}

START_TEST(decode_matches_naive) {
  seed(21);
  const int L = 2, H = 2, Hq = 8, d = 16, B = 3, tm = 96, steps = 3;
  int32_t T[3] = {96, 50, 20};
  batch x = make_batch(B, H, Hq, d, tm, 8, T);
  const float rho[1] = {0.6f};
  float *frac = random_fracs(1, L, H);
  tspec ts = {.L = L, .H = H, .Hq = Hq, .d = d, .sink = 4, .window = 8, .R = 1, .rho = rho,
              .frac = frac};
  write_table(tpath(0), &ts);
  lukv_table *t = open_table(tpath(0));
  uint16_t *ak = bf16_alloc((size_t)steps * B * H * d), *av = bf16_alloc((size_t)steps * B * H * d);
  uint16_t *q = bf16_alloc((size_t)B * Hq * d), *out = bf16_alloc((size_t)B * Hq * d);
  fill(ak, (size_t)steps * B * H * d, 1.0);
  fill(av, (size_t)steps * B * H * d, 1.0);
  fill(q, (size_t)B * Hq * d, 3.0); /* peaked softmax: a wrong row would show */
  for (int full = 0; full < 2; full++) {
    lukv_cache *c = make_cache(L, H, Hq, d, B, 100, steps);
    for (int l = 0; l < L; l++) {
      lukv_compress_args a = args_for(&x, l);
      a.table = t;
      a.ratio = 0.6;
      if (full) a.policy = LUKV_KEEP_UNIFORM, a.ratio = 0.0; /* nothing evicted */
      OK(c, lukv_compress(c, &a));
    }
    /* decode right after compression, then after each append */
    for (int s = 0; s <= steps; s++) {
      if (s > 0)
        OK(c, lukv_append(c, 1, ak + (size_t)(s - 1) * B * H * d, av + (size_t)(s - 1) * B * H * d));
      OK(c, lukv_decode_attention(c, 1, q, out, 0.0f));
      check_decode(c, &x, 1, ak, av, s, q, out, 1.0 / sqrt((double)d), full);
    }
    OK(c, lukv_decode_attention(c, 0, q, out, 0.3f));
    check_decode(c, &x, 0, ak, av, 0, q, out, 0.3f, full);
    uint64_t held, full_b;
    OK(c, lukv_cache_memory(c, &held, &full_b));
    if (full) ck_assert_uint_eq(held, full_b);
    else ck_assert_uint_lt(held, full_b);
    lukv_cache_destroy(c);
  }
  free(ak), free(av), free(q), free(out), free(frac);
  lukv_table_close(t);
  free_batch(&x);
}
END_TEST

/* No sink, no window, nothing kept: decode over an empty segment gives zeros;
 * after one append the softmax has one term and out is that value row. */
START_TEST(empty_segment) {
  seed(2);
  const int H = 1, Hq = 2, d = 8, B = 1, tm = 10;
  int32_t T[1] = {10};
  batch x = make_batch(B, H, Hq, d, tm, 0, T);
  lukv_cache *c = make_cache(1, H, Hq, d, B, 10, 1);
  lukv_compress_args a = args_for(&x, 0);
  int32_t keep[1] = {0};
  a.sink = 0, a.window = 0;
  a.policy = LUKV_KEEP_EXPLICIT;
  a.keep = keep;
  OK(c, lukv_compress(c, &a));
  uint16_t q[16], out[16], kn[8], vn[8];
  fill(q, 16, 1.0);
  fill(kn, 8, 1.0);
  fill(vn, 8, 1.0);
  OK(c, lukv_decode_attention(c, 0, q, out, 0.0f));
  for (int e = 0; e < 16; e++) ck_assert_uint_eq(out[e], 0);
  OK(c, lukv_append(c, 0, kn, vn));
  OK(c, lukv_decode_attention(c, 0, q, out, 0.0f));
  for (int e = 0; e < 16; e++) ck_assert_uint_eq(out[e], vn[e % 8]);
  int32_t pos[1];
  OK(c, lukv_cache_read_segment(c, 0, 0, 0, NULL, NULL, pos, 1));
  ck_assert_int_eq(pos[0], 10);
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

/* ---- memory -------------------------------------------------------------------- */

START_TEST(memory_exact) {
  seed(4);
  const int L = 3, H = 2, Hq = 2, d = 12, B = 2, tm = 70, reserve = 7, R = 2;
  const float rho[2] = {0.3f, 0.8f};
  float *frac = random_fracs(R, L, H);
  tspec ts = {.L = L, .H = H, .Hq = Hq, .d = d, .sink = 4, .window = 8, .R = R, .rho = rho,
              .frac = frac};
  write_table(tpath(0), &ts);
  lukv_table *t = open_table(tpath(0));
  int32_t T[2] = {70, 33};
  batch x = make_batch(B, H, Hq, d, tm, 8, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 80, reserve);
  int32_t k0[6], k1[6];
  ck_assert_int_eq(lukv_table_keep(t, 0.8, T[0], k0), LUKV_OK);
  ck_assert_int_eq(lukv_table_keep(t, 0.8, T[1], k1), LUKV_OK);
  const uint64_t row = 2ull * d * 2; /* K and V, bf16 */
  uint64_t want_held = 0, want_full = 0, held, full;
  for (int l = 0; l < 2; l++) { /* layer 2 stays uncompressed: counts nothing */
    lukv_compress_args a = args_for(&x, l);
    a.table = t;
    a.ratio = 0.8;
    OK(c, lukv_compress(c, &a));
    for (int h = 0; h < H; h++) {
      want_held += (uint64_t)(k0[l * H + h] + reserve + k1[l * H + h] + reserve) * row;
      want_full += (uint64_t)(T[0] + reserve + T[1] + reserve) * row;
    }
    OK(c, lukv_cache_memory(c, &held, &full));
    ck_assert_uint_eq(held, want_held);
    ck_assert_uint_eq(full, want_full);
    int64_t rows;
    OK(c, lukv_cache_layer_buffers(c, l, NULL, NULL, &rows));
  }
  /* appends use the reserve: nothing changes */
  uint16_t kn[2 * 2 * 12] = {0};
  OK(c, lukv_append(c, 0, kn, kn));
  OK(c, lukv_cache_memory(c, &held, NULL));
  ck_assert_uint_eq(held, want_held);
  /* held is exactly the layer buffers */
  uint64_t rows_total = 0;
  for (int l = 0; l < 2; l++) {
    int64_t rows;
    OK(c, lukv_cache_layer_buffers(c, l, NULL, NULL, &rows));
    rows_total += (uint64_t)rows;
  }
  ck_assert_uint_eq(rows_total * row, want_held);
  /* recompressing layer 0 with a shorter batch replaces its share */
  int32_t T2[2] = {20, 15};
  lukv_compress_args a = args_for(&x, 0);
  a.context_len = T2;
  a.table = t;
  a.ratio = 0.8;
  OK(c, lukv_compress(c, &a));
  ck_assert_int_eq(lukv_table_keep(t, 0.8, 15, k1), LUKV_OK);
  ck_assert_int_eq(lukv_table_keep(t, 0.8, 20, k0), LUKV_OK);
  uint64_t l1_held = 0, l1_full = 0;
  int32_t k0b[6], k1b[6];
  ck_assert_int_eq(lukv_table_keep(t, 0.8, T[0], k0b), LUKV_OK);
  ck_assert_int_eq(lukv_table_keep(t, 0.8, T[1], k1b), LUKV_OK);
  for (int h = 0; h < H; h++) {
    l1_held += (uint64_t)(k0b[H + h] + reserve + k1b[H + h] + reserve) * row;
    l1_full += (uint64_t)(T[0] + T[1] + 2 * reserve) * row;
    l1_held += (uint64_t)(k0[h] + reserve + k1[h] + reserve) * row;
    l1_full += (uint64_t)(20 + 15 + 2 * reserve) * row;
  }
  OK(c, lukv_cache_memory(c, &held, &full));
  ck_assert_uint_eq(held, l1_held);
  ck_assert_uint_eq(full, l1_full);
  OK(c, lukv_cache_reset(c));
  OK(c, lukv_cache_memory(c, &held, &full));
  ck_assert_uint_eq(held, 0);
  ck_assert_uint_eq(full, 0);
  lukv_cache_destroy(c);
  lukv_table_close(t);
  free(frac);
  free_batch(&x);
}
END_TEST

/* ---- allocators ------------------------------------------------------------------ */

START_TEST(allocators_sum_to_budget) {
  const int H = 4, s = 4, w = 8;
  int32_t keep[16 * 4];
  /* PyramidKV, hand-checked: L 4, H 2, T 1000, ratio 0.5, beta 20 -> the
   * line 975, 658.33, 341.67, 25; floors sum 3998 of 4000, the two units to
   * the largest fraction (.67, layer 2). */
  ck_assert_int_eq(lukv_rt_keep_pyramid(4, 2, 1000, 0.5, s, w, 20.0, keep), LUKV_OK);
  const int32_t want[8] = {975, 975, 658, 658, 342, 342, 25, 25};
  for (int i = 0; i < 8; i++) ck_assert_int_eq(keep[i], want[i]);

  const int Ts[6] = {12, 13, 50, 97, 256, 1001};
  const double ratios[7] = {0.0, 0.1, 0.3, 0.5, 0.8, 0.95, 1.0};
  seed(8);
  float *sc = malloc(sizeof *sc * (size_t)H * 1001);
  for (int ti = 0; ti < 6; ti++)
    for (int ri = 0; ri < 7; ri++)
      for (int L = 1; L <= 16; L += 5) {
        const int T = Ts[ti];
        const double rho = ratios[ri];
        const int lo = s + w < T ? s + w : T;
        const int64_t Bl = budget(H, T, rho);
        const int feasible_l = Bl >= (int64_t)H * lo && Bl <= (int64_t)H * T;
        /* uniform: per layer */
        ck_assert_int_eq(lukv_rt_keep_uniform(H, T, rho, s, w, keep), LUKV_OK);
        int64_t sum = 0;
        for (int h = 0; h < H; h++) {
          ck_assert(keep[h] >= lo && keep[h] <= T);
          if (h) ck_assert_int_le(keep[h], keep[h - 1]);
          sum += keep[h];
        }
        if (feasible_l) ck_assert_int_eq(sum, Bl);
        /* pyramid: over all layers */
        ck_assert_int_eq(lukv_rt_keep_pyramid(L, H, T, rho, s, w, 20.0, keep), LUKV_OK);
        sum = 0;
        for (int i = 0; i < L * H; i++) {
          ck_assert(keep[i] >= lo && keep[i] <= T);
          sum += keep[i];
        }
        if (feasible_l) ck_assert_msg(sum == L * Bl, "pyramid T %d rho %g L %d: %lld vs %lld", T, rho, L, (long long)sum, (long long)(L * Bl));
        for (int l = 1; l < L; l++) /* depth never gains (the remainder aside) */
          ck_assert_int_le(keep[l * H], keep[(l - 1) * H] + 1);
        /* adakv: per layer, random scores */
        for (int i = 0; i < H * T; i++) sc[i] = (float)urand();
        ck_assert_int_eq(lukv_rt_keep_adakv(H, T, rho, s, w, 0.2, sc, T, keep), LUKV_OK);
        sum = 0;
        for (int h = 0; h < H; h++) {
          ck_assert(keep[h] >= lo && keep[h] <= T);
          sum += keep[h];
        }
        if (feasible_l) ck_assert_int_eq(sum, Bl);
      }
  free(sc);
}
END_TEST

/* Ada-KV: the guaranteed share and the global top scores, by brute force. */
START_TEST(adakv_matches_brute_force) {
  seed(13);
  const int H = 3, T = 60, s = 2, w = 4, n = T - s - w;
  float sc[3 * 60];
  for (int i = 0; i < H * T; i++) sc[i] = (float)urand();
  /* head 2 is dull: its scores are all low, so it gets only its guarantee */
  for (int j = 0; j < T; j++) sc[2 * T + j] *= 0.01f;
  sc[5] = NAN; /* ranks last */
  const double alphas[3] = {0.0, 0.2, 1.0};
  for (int ai = 0; ai < 3; ai++) {
    const double rho = 0.6, alpha = alphas[ai];
    int32_t keep[3];
    ck_assert_int_eq(lukv_rt_keep_adakv(H, T, rho, s, w, alpha, sc, T, keep), LUKV_OK);
    const int64_t Bl = budget(H, T, rho);
    const int64_t M = Bl - H * (s + w);
    const int64_t g = (int64_t)floor(alpha * M / H + 1e-9);
    /* brute force: mark each head's top g, then the best of the rest overall */
    unsigned char taken[3 * 60] = {0};
    int64_t want[3] = {s + w + g, s + w + g, s + w + g};
    for (int h = 0; h < H; h++)
      for (int r = 0; r < g; r++) {
        int best = -1;
        for (int j = s; j < T - w; j++) {
          float k = isnan(sc[h * T + j]) ? -INFINITY : sc[h * T + j];
          float bk = best < 0 ? 0 : (isnan(sc[h * T + best]) ? -INFINITY : sc[h * T + best]);
          if (!taken[h * T + j] && (best < 0 || k > bk)) best = j;
        }
        taken[h * T + best] = 1;
      }
    for (int64_t r = 0; r < M - H * g; r++) {
      int bh = -1, bj = -1;
      float bk = 0;
      for (int h = 0; h < H; h++)
        for (int j = s; j < T - w; j++) {
          float k = isnan(sc[h * T + j]) ? -INFINITY : sc[h * T + j];
          if (!taken[h * T + j] && (bh < 0 || k > bk)) bh = h, bj = j, bk = k;
        }
      taken[bh * T + bj] = 1;
      want[bh]++;
    }
    for (int h = 0; h < H; h++)
      ck_assert_msg(keep[h] == want[h], "alpha %g head %d: %d vs brute force %lld", alpha, h,
                    keep[h], (long long)want[h]);
    ck_assert_int_eq(keep[0] + keep[1] + keep[2], Bl);
    if (alpha == 1.0) /* all guaranteed: uniform mid shares */
      ck_assert(keep[0] - keep[2] <= 1 && keep[2] - keep[0] <= 1);
    (void)n;
  }
  /* Equal scores everywhere: the shares beyond the guarantee go to the lower
   * heads first (M = 60 - 18 = 42, g = floor(0.2 * 42 / 3) = 2, 36 left:
   * head 0 takes its 52 other mid tokens up to 36). */
  for (int i = 0; i < H * T; i++) sc[i] = 0.5f;
  int32_t keep[3];
  ck_assert_int_eq(lukv_rt_keep_adakv(H, T, 2.0 / 3.0, s, w, 0.2, sc, T, keep), LUKV_OK);
  ck_assert_int_eq(keep[0], s + w + 2 + 36);
  ck_assert_int_eq(keep[1], s + w + 2);
  ck_assert_int_eq(keep[2], s + w + 2);
}
END_TEST

/* The allocators through lukv_compress: one sequence's counts over all
 * layers sum to L * floor(H (1 - rho) T). */
START_TEST(allocators_through_compress) {
  seed(17);
  const int L = 4, H = 2, Hq = 4, d = 8, B = 2, tm = 90;
  int32_t T[2] = {90, 61};
  batch x = make_batch(B, H, Hq, d, tm, 32, T);
  lukv_cache *c = make_cache(L, H, Hq, d, B, 128, 0);
  const lukv_keep_policy pol[3] = {LUKV_KEEP_UNIFORM, LUKV_KEEP_PYRAMID, LUKV_KEEP_ADAKV};
  for (int p = 0; p < 3; p++) {
    int64_t sum[2] = {0, 0};
    for (int l = 0; l < L; l++) {
      lukv_compress_args a = args_for(&x, l); /* default sink 4, window 32 */
      a.policy = pol[p];
      a.ratio = 0.4;
      OK(c, lukv_compress(c, &a));
      for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
          lukv_segment sg;
          OK(c, lukv_cache_segment(c, l, b, h, &sg));
          sum[b] += sg.keep;
        }
      check_selection(c, &x, &a, 4, 32);
    }
    for (int b = 0; b < B; b++)
      ck_assert_int_eq(sum[b], (int64_t)L * budget(H, T[b], 0.4));
  }
  lukv_cache_destroy(c);
  free_batch(&x);
}
END_TEST

static Suite *runtime_suite(void) {
  Suite *s = suite_create("runtime");
  const lukv_test_case groups[] = {
      {"status_and_bf16", status_and_bf16},
      {"table_keep_rule", table_keep_rule},
      {"table_open_errors", table_open_errors},
      {"table_mismatch_refused", table_mismatch_refused},
      {"create_errors", create_errors},
      {"null_and_bad_arguments", null_and_bad_arguments},
      {"scores_match_naive", scores_match_naive},
      {"compress_selects_top_tokens", compress_selects_top_tokens},
      {"compress_with_table_batch", compress_with_table_batch},
      {"append_never_moves", append_never_moves},
      {"decode_matches_naive", decode_matches_naive},
      {"empty_segment", empty_segment},
      {"memory_exact", memory_exact},
      {"allocators_sum_to_budget", allocators_sum_to_budget},
      {"adakv_matches_brute_force", adakv_matches_brute_force},
      {"allocators_through_compress", allocators_through_compress},
  };
  lukv_test_add_cases(s, groups, sizeof groups / sizeof groups[0], 60, setup, lukv_test_tmpdir_teardown);
  return s;
}

int main(void) {
  return lukv_test_run(runtime_suite(), CK_NORMAL);
}

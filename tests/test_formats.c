/* corpus.h5, profile.h5, budgets.h5: round trips, the h5py-written fixture,
 * and every kind of bad input a user can hand us (docs/formats.md).
 *
 * Each test works in its own mkdtemp directory. Bad files are made by writing
 * a good one with our writer and then breaking one thing with the raw HDF5
 * API, so each test names exactly the defect it exercises.
 */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"
#include "h5util.h"
#include "testutil.h"

/* ---- temporary directory ------------------------------------------------ */

static void setup(void) { lukv_test_tmpdir_setup("lukv-formats"); }

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Asserts status, also in err->status, and that the message is one line
 * containing every given substring (NULL-terminated list). */
static void expect_err(const lukv_error *err, int rc, int status, ...) {
  va_list ap;
  va_start(ap, status);
  lukv_test_expect_errv(err, rc, status, ap);
  va_end(ap);
  ck_assert_int_eq(err->status, status);
}

/* ---- raw HDF5 edits used to break good files ---------------------------- */

static hid_t h5_rw(const char *path) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert_int_ge(f, 0);
  return f;
}

static void h5_del_attr(const char *path, const char *name) {
  hid_t f = h5_rw(path);
  ck_assert_int_ge(H5Adelete(f, name), 0);
  H5Fclose(f);
}

/* Replaces attribute `name` with a scalar of file type ftype. */
static void h5_set_attr(const char *path, const char *name, hid_t ftype, hid_t mtype,
                        const void *value) {
  hid_t f = h5_rw(path);
  if (H5Aexists(f, name) > 0) ck_assert_int_ge(H5Adelete(f, name), 0);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert_int_ge(a, 0);
  ck_assert_int_ge(H5Awrite(a, mtype, value), 0);
  H5Aclose(a);
  H5Sclose(s);
  H5Fclose(f);
}

static void h5_set_attr_i64(const char *path, const char *name, long long v) {
  int64_t x = v;
  h5_set_attr(path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &x);
}

static void h5_set_attr_str(const char *path, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  h5_set_attr(path, name, t, t, &v);
  H5Tclose(t);
}

/* Fixed-length string exactly strlen(v) bytes, padded as `pad` says: with
 * NULLPAD there is no terminator at all (numpy 'S' from h5py). */
static void h5_set_attr_fixed(const char *path, const char *name, const char *v, H5T_str_t pad) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v));
  H5Tset_strpad(t, pad);
  h5_set_attr(path, name, t, t, v);
  H5Tclose(t);
}

static void h5_del_link(const char *path, const char *name) {
  hid_t f = h5_rw(path);
  ck_assert_int_ge(H5Ldelete(f, name, H5P_DEFAULT), 0);
  H5Fclose(f);
}

/* Replaces dataset `name` by one of file type ftype and dims [rank]. */
static void h5_put_dataset(const char *path, const char *name, hid_t ftype, hid_t mtype, int rank,
                           const hsize_t *dims, const void *data) {
  hid_t f = h5_rw(path);
  if (H5Lexists(f, name, H5P_DEFAULT) > 0) ck_assert_int_ge(H5Ldelete(f, name, H5P_DEFAULT), 0);
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ck_assert_int_ge(d, 0);
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  if (n) ck_assert_int_ge(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
}

/* Sets one element (flat index k) of a float dataset, in place. */
static void h5_poke_f64(const char *path, const char *name, hsize_t k, double v) {
  hid_t f = h5_rw(path);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  ck_assert_int_ge(d, 0);
  hid_t fs = H5Dget_space(d);
  hsize_t dims[8];
  int r = H5Sget_simple_extent_ndims(fs);
  H5Sget_simple_extent_dims(fs, dims, NULL);
  hsize_t coord[8];
  for (int i = r - 1; i >= 0; i--) {
    coord[i] = k % dims[i];
    k /= dims[i];
  }
  ck_assert_int_ge(H5Sselect_elements(fs, H5S_SELECT_SET, 1, coord), 0);
  hsize_t one = 1;
  hid_t ms = H5Screate_simple(1, &one, NULL);
  ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &v), 0);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  H5Fclose(f);
}

/* ---- well-formed structs ------------------------------------------------ */

enum { TS = 3, TL = 2, TH = 3, TG = 8, TR = 4 };

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void make_corpus(lukv_corpus *c) {
  memset(c, 0, sizeof *c);
  c->n_samples = 3;
  c->n_tokens = 10;
  c->vocab_size = 256;
  c->tokens = xmalloc(10 * sizeof *c->tokens);
  for (int i = 0; i < 10; i++) c->tokens[i] = (i * 37) % 256;
  c->tokens[9] = 255;
  c->offsets = xmalloc(4 * sizeof *c->offsets);
  int64_t off[4] = {0, 4, 4, 10}; /* sample 1 is empty: allowed */
  memcpy(c->offsets, off, sizeof off);
  c->tokenizer = strdup("bytes");
  c->source = strdup("unit test \xc3\xa9t\xc3\xa9"); /* UTF-8 survives */
}

/* Curves loss(g) = total * (1 - g/G)^k, k differing per scorer, so every
 * value is distinct enough to catch a transposed index. */
static void make_profile(lukv_profile *p) {
  memset(p, 0, sizeof *p);
  p->model.model_name = strdup("test-model");
  p->model.model_hash = strdup("0123abcd");
  p->model.n_layers = TL;
  p->model.n_kv_heads = TH;
  p->model.n_q_heads = 2 * TH;
  p->model.head_dim = 16;
  p->mode = strdup("generate");
  p->utility = strdup("sum");
  p->context_len = 512;
  p->future_len = 64;
  p->sink = 4;
  p->window = 8;
  p->pool_kernel = 7;
  p->grid = TG;
  p->n_samples = TS;
  p->n_scorers = 2;
  p->scorer_names = xmalloc(2 * sizeof(char *));
  /* Deliberately unsorted: the reader returns them sorted by name. */
  p->scorer_names[0] = strdup("snapkv");
  p->scorer_names[1] = strdup("keydiff");
  size_t n = (size_t)TS * TL * TH * (TG + 1);
  p->curves = xmalloc(2 * sizeof(float *));
  p->curves[0] = xmalloc(n * sizeof(float));
  p->curves[1] = xmalloc(n * sizeof(float));
  p->oracle = xmalloc(n * sizeof(float));
  p->utility_total = xmalloc((size_t)TS * TL * TH * sizeof(float));
  p->sample_context_len = xmalloc(TS * sizeof(int32_t));
  for (int s = 0; s < TS; s++) {
    p->sample_context_len[s] = 400 + 50 * s;
    for (int l = 0; l < TL; l++)
      for (int h = 0; h < TH; h++) {
        float tot = 1.0f + 0.25f * s + 0.5f * l + 0.125f * h;
        p->utility_total[(s * TL + l) * TH + h] = tot;
        for (int g = 0; g <= TG; g++) {
          size_t k = (((size_t)s * TL + l) * TH + h) * (TG + 1) + g;
          float x = 1.0f - (float)g / TG;
          p->oracle[k] = tot * x * x * x;
          p->curves[0][k] = tot * x * x;
          p->curves[1][k] = tot * x;
        }
      }
  }
}

static void make_budgets(lukv_budgets *b) {
  memset(b, 0, sizeof *b);
  b->model.model_name = strdup("test-model");
  b->model.model_hash = strdup("0123abcd");
  b->model.n_layers = TL;
  b->model.n_kv_heads = TH;
  b->model.n_q_heads = TH;
  b->model.head_dim = 64;
  b->scorer = strdup("snapkv");
  b->aggregation = strdup("mean-of-solutions");
  b->solver = strdup("hull-greedy");
  b->sink = 4;
  b->window = 32;
  b->grid = 256;
  b->min_keep_index = 9;
  b->context_len = 900;
  b->n_ratios = TR;
  b->compression = xmalloc(TR * sizeof(float));
  b->keep_fraction = xmalloc((size_t)TR * TL * TH * sizeof(float));
  double **rep[5] = {&b->report_greedy, &b->report_lp_bound, &b->report_exact, &b->report_uniform,
                     &b->report_pyramid};
  for (int i = 0; i < 5; i++) *rep[i] = xmalloc(TR * sizeof(double));
  for (int r = 0; r < TR; r++) {
    b->compression[r] = 0.2f * (r + 1);
    for (int k = 0; k < TL * TH; k++)
      b->keep_fraction[r * TL * TH + k] = (1.0f - b->compression[r]) * (0.5f + 0.1f * k);
    b->report_greedy[r] = 1.0 + r;
    b->report_lp_bound[r] = 0.9 + r;
    b->report_exact[r] = NAN; /* not computed: must survive */
    b->report_uniform[r] = 2.0 + r;
    b->report_pyramid[r] = -0.0 + 3 * r;
  }
  double feas[TR] = {1, 1, 1, 0}, gap[TR] = {0, INFINITY, NAN, 1e-9};
  ck_assert_int_eq(lukv_budgets_add_extra(b, "feasible", feas), LUKV_OK);
  ck_assert_int_eq(lukv_budgets_add_extra(b, "mip_gap", gap), LUKV_OK);
}

static void good_corpus(const char *path) {
  lukv_corpus c;
  lukv_error err = {0};
  make_corpus(&c);
  ck_assert_int_eq(lukv_corpus_write(path, &c, &err), LUKV_OK);
  lukv_corpus_free(&c);
}

static void good_profile(const char *path) {
  lukv_profile p;
  lukv_error err = {0};
  make_profile(&p);
  int rc = lukv_profile_write(path, &p, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  lukv_profile_free(&p);
}

static void good_budgets(const char *path) {
  lukv_budgets b;
  lukv_error err = {0};
  make_budgets(&b);
  int rc = lukv_budgets_write(path, &b, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  lukv_budgets_free(&b);
}

/* Same bits, so NaN == NaN and -0 != +0 would show up. */
static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ====================================================================== */
/* corpus.h5                                                                */

START_TEST(corpus_roundtrip) {
  lukv_corpus c, r;
  lukv_error err = {0};
  make_corpus(&c);
  const char *path = lukv_test_path("corpus.h5");
  ck_assert_int_eq(lukv_corpus_write(path, &c, &err), LUKV_OK);
  ck_assert(!file_exists(lukv_test_path("corpus.h5.tmp")));
  int rc = lukv_corpus_read(path, &r, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_int_eq(r.n_tokens, c.n_tokens);
  ck_assert_int_eq(r.n_samples, c.n_samples);
  ck_assert_int_eq(r.vocab_size, c.vocab_size);
  ck_assert_str_eq(r.tokenizer, c.tokenizer);
  ck_assert_str_eq(r.source, c.source);
  ck_assert_mem_eq(r.tokens, c.tokens, 10 * sizeof(int32_t));
  ck_assert_mem_eq(r.offsets, c.offsets, 4 * sizeof(int64_t));
  lukv_corpus_free(&c);
  lukv_corpus_free(&r);
  lukv_corpus_free(&r); /* idempotent on a zeroed struct */
  lukv_corpus_free(NULL);
}
END_TEST

START_TEST(corpus_missing_file) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("nope.h5");
  char want[1100];
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_IO, NULL);
  ck_assert_str_eq(err.msg, want);
  lukv_corpus_free(&c);
}
END_TEST

START_TEST(corpus_not_hdf5) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("text.h5");
  lukv_test_write_text(path, "this is not HDF5\n");
  char want[1100];
  snprintf(want, sizeof want, "%s: not an HDF5 file", path);
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, NULL);
  ck_assert_str_eq(err.msg, want);
  /* An empty file is not HDF5 either. */
  lukv_error_clear(&err);
  lukv_test_write_text(path, "");
  expect_err(&err, lukv_corpus_read(path, &c, &err), LUKV_ERR_FORMAT, "not an HDF5 file", NULL);
  /* A directory is not a file. */
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_read(lukv_test_tmpdir(), &c, &err), LUKV_ERR_IO, lukv_test_tmpdir(),
             "cannot open", NULL);
}
END_TEST

START_TEST(corpus_wrong_format) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, path, "\"lukv-profile\"", "\"lukv-corpus\"", NULL);
  /* An HDF5 file that is not a lukv file at all. */
  const char *other = lukv_test_path("other.h5");
  hid_t f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  lukv_error_clear(&err);
  rc = lukv_corpus_read(other, &c, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, other, "format", "missing attribute", NULL);
}
END_TEST

START_TEST(corpus_newer_version) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  good_corpus(path);
  h5_set_attr_i64(path, "format_version", 2);
  char want[1100];
  snprintf(want, sizeof want, "%s: format_version 2 is newer than this build reads (1)", path);
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_VERSION, NULL);
  ck_assert_str_eq(err.msg, want);
  h5_set_attr_i64(path, "format_version", 0);
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_read(path, &c, &err), LUKV_ERR_VERSION, "format_version 0", NULL);
}
END_TEST

START_TEST(corpus_missing_objects) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  good_corpus(path);
  h5_del_link(path, "/offsets");
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, NULL);
  char want[1100];
  snprintf(want, sizeof want, "%s: /offsets: missing dataset", path);
  ck_assert_str_eq(err.msg, want);

  good_corpus(path);
  h5_del_attr(path, "vocab_size");
  lukv_error_clear(&err);
  rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, path, "vocab_size", "missing attribute", NULL);
}
END_TEST

START_TEST(corpus_bad_offsets) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  hsize_t d4[1] = {4}, d1[1] = {1}, d0[1] = {0};
  int64_t first[4] = {1, 4, 4, 10}, decr[4] = {0, 6, 4, 10}, last[4] = {0, 4, 4, 9}, zero[1] = {0};
  struct {
    const int64_t *v;
    const hsize_t *d;
    int status;
    const char *what;
  } cases[] = {
      {first, d4, LUKV_ERR_RANGE, "offsets[0] is 1"},
      {decr, d4, LUKV_ERR_RANGE, "index 2"},
      {last, d4, LUKV_ERR_RANGE, "last offset is 9"},
      {zero, d1, LUKV_ERR_SHAPE, "zero samples"},
      {zero, d0, LUKV_ERR_SHAPE, "shape [0]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    good_corpus(path);
    h5_put_dataset(path, "/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, cases[i].d, cases[i].v);
    lukv_error_clear(&err);
    int rc = lukv_corpus_read(path, &c, &err);
    expect_err(&err, rc, cases[i].status, path, "/offsets", cases[i].what, NULL);
    ck_assert_ptr_null(c.tokens);
  }
}
END_TEST

START_TEST(corpus_bad_tokens) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  hsize_t d[1] = {10};
  int32_t tok[10] = {0, 1, 2, 3, 4, 5, 6, 256, 8, 9};
  good_corpus(path);
  h5_put_dataset(path, "/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d, tok);
  int rc = lukv_corpus_read(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_RANGE, path, "/tokens", "256", "index 7", "vocab_size=256", NULL);
  tok[7] = 7;
  tok[2] = -1;
  h5_put_dataset(path, "/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d, tok);
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_read(path, &c, &err), LUKV_ERR_RANGE, "/tokens", "index 2", NULL);
  /* Stored as int64 (numpy's default) is fine while the values fit ... */
  int64_t big[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  h5_put_dataset(path, "/tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, big);
  lukv_error_clear(&err);
  rc = lukv_corpus_read(path, &c, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_int_eq(c.tokens[9], 9);
  lukv_corpus_free(&c);
  /* ... but a value int32 cannot hold is an error, not silently clipped. */
  big[3] = 5000000000LL;
  h5_put_dataset(path, "/tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d, big);
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_read(path, &c, &err), LUKV_ERR_RANGE, "/tokens", "does not fit",
             NULL);
  /* Tokens stored as floats are the wrong type. */
  double fl[10] = {0};
  h5_put_dataset(path, "/tokens", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d, fl);
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_read(path, &c, &err), LUKV_ERR_FORMAT, "/tokens", "float",
             "integer", NULL);
}
END_TEST

START_TEST(corpus_write_validates) {
  lukv_corpus c;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  make_corpus(&c);
  c.tokens[5] = 300;
  int rc = lukv_corpus_write(path, &c, &err);
  expect_err(&err, rc, LUKV_ERR_RANGE, path, "/tokens", "index 5", NULL);
  ck_assert(!file_exists(path));
  ck_assert(!file_exists(lukv_test_path("corpus.h5.tmp")));
  lukv_corpus_free(&c);
}
END_TEST

/* ====================================================================== */
/* profile.h5                                                               */

static void compare_profiles(const lukv_profile *a, const lukv_profile *b) {
  ck_assert_str_eq(a->model.model_name, b->model.model_name);
  ck_assert_str_eq(a->model.model_hash, b->model.model_hash);
  ck_assert_int_eq(a->model.n_layers, b->model.n_layers);
  ck_assert_int_eq(a->model.n_kv_heads, b->model.n_kv_heads);
  ck_assert_int_eq(a->model.n_q_heads, b->model.n_q_heads);
  ck_assert_int_eq(a->model.head_dim, b->model.head_dim);
  ck_assert_str_eq(a->mode, b->mode);
  ck_assert_str_eq(a->utility, b->utility);
  ck_assert_int_eq(a->context_len, b->context_len);
  ck_assert_int_eq(a->future_len, b->future_len);
  ck_assert_int_eq(a->sink, b->sink);
  ck_assert_int_eq(a->window, b->window);
  ck_assert_int_eq(a->pool_kernel, b->pool_kernel);
  ck_assert_int_eq(a->grid, b->grid);
  ck_assert_int_eq(a->n_samples, b->n_samples);
  ck_assert_int_eq(a->n_scorers, b->n_scorers);
  size_t S = (size_t)a->n_samples, LH = (size_t)a->model.n_layers * a->model.n_kv_heads;
  size_t nc = S * LH * (size_t)(a->grid + 1);
  for (int i = 0; i < a->n_scorers; i++) {
    const float *other = lukv_profile_curves(b, a->scorer_names[i]);
    ck_assert_ptr_nonnull(other);
    ck_assert_mem_eq(a->curves[i], other, nc * sizeof(float));
  }
  ck_assert_mem_eq(a->oracle, b->oracle, nc * sizeof(float));
  ck_assert_mem_eq(a->utility_total, b->utility_total, S * LH * sizeof(float));
  ck_assert_mem_eq(a->sample_context_len, b->sample_context_len, S * sizeof(int32_t));
}

START_TEST(profile_roundtrip) {
  lukv_profile p, r;
  lukv_error err = {0};
  make_profile(&p);
  const char *path = lukv_test_path("profile.h5");
  ck_assert_int_eq(lukv_profile_write(path, &p, &err), LUKV_OK);
  ck_assert(!file_exists(lukv_test_path("profile.h5.tmp")));
  int rc = lukv_profile_read(path, &r, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  compare_profiles(&p, &r);
  /* Sorted by name whatever order they were written in. */
  ck_assert_str_eq(r.scorer_names[0], "keydiff");
  ck_assert_str_eq(r.scorer_names[1], "snapkv");
  ck_assert_ptr_eq(lukv_profile_curves(&r, "oracle"), r.oracle);
  ck_assert_ptr_eq(lukv_profile_curves(&r, "snapkv"), r.curves[1]);
  ck_assert_ptr_null(lukv_profile_curves(&r, "expected"));
  ck_assert_ptr_null(lukv_profile_curves(NULL, "snapkv"));
  /* Writing what was read gives the same file content again. */
  const char *again = lukv_test_path("again.h5");
  ck_assert_int_eq(lukv_profile_write(again, &r, &err), LUKV_OK);
  lukv_profile r2;
  ck_assert_int_eq(lukv_profile_read(again, &r2, &err), LUKV_OK);
  compare_profiles(&r, &r2);
  lukv_profile_free(&p);
  lukv_profile_free(&r);
  lukv_profile_free(&r2);
  lukv_profile_free(NULL);
}
END_TEST

/* The optional provenance attributes: absent in a zeroed struct and in
 * files without them, written when set, refused when inconsistent (by the
 * writer before creating anything, and by the reader). */
START_TEST(profile_provenance) {
  lukv_profile p, r;
  lukv_error err = {0};
  make_profile(&p);
  const char *path = lukv_test_path("prov.h5");
  ck_assert_int_eq(lukv_profile_write(path, &p, &err), LUKV_OK);
  ck_assert_int_eq(lukv_profile_read(path, &r, &err), LUKV_OK);
  ck_assert(!r.has_first_sample && r.shard_count == 0 && r.precision == NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert(f >= 0);
  ck_assert(H5Aexists(f, "first_sample") == 0 && H5Aexists(f, "shard_count") == 0 &&
            H5Aexists(f, "precision") == 0);
  H5Fclose(f);
  lukv_profile_free(&r);

  p.has_first_sample = 1;
  p.first_sample = 96;
  p.shard_index = 3;
  p.shard_count = 4;
  p.precision = strdup("bf16");
  ck_assert_int_eq(lukv_profile_write(path, &p, &err), LUKV_OK);
  ck_assert_int_eq(lukv_profile_read(path, &r, &err), LUKV_OK);
  ck_assert(r.has_first_sample && r.first_sample == 96 && r.shard_index == 3 && r.shard_count == 4);
  ck_assert_str_eq(r.precision, "bf16");
  compare_profiles(&p, &r);
  lukv_profile_free(&r);

  /* Inconsistent values: the writer refuses and leaves the old file. */
  p.shard_index = 5;
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_write(path, &p, &err), LUKV_ERR_RANGE, path, "shard_index 5 of shard_count 4", NULL);
  p.shard_index = 0;
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_write(path, &p, &err), LUKV_ERR_RANGE, path, "shard_index", NULL);
  p.shard_index = 4;
  p.first_sample = -1;
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_write(path, &p, &err), LUKV_ERR_RANGE, path, "first_sample", NULL);
  p.first_sample = 0;
  free(p.precision);
  p.precision = strdup("fp8");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_write(path, &p, &err), LUKV_ERR_RANGE, path, "precision", "fp8", NULL);
  ck_assert_int_eq(lukv_profile_read(path, &r, &err), LUKV_OK);
  ck_assert(r.first_sample == 96 && r.shard_index == 3);
  lukv_profile_free(&r);

  /* The reader checks what another tool may have written. */
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  ck_assert(H5Adelete(f, "precision") >= 0);
  ck_assert_int_eq(lukv_h5_write_attr_str(f, path, "precision", "int4", &err), LUKV_OK);
  H5Fclose(f);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &r, &err), LUKV_ERR_RANGE, path, "precision", "int4", NULL);
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(H5Adelete(f, "precision") >= 0 && H5Adelete(f, "shard_index") >= 0);
  H5Fclose(f);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &r, &err), LUKV_ERR_FORMAT, path, "shard_index", NULL);
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert_int_eq(lukv_h5_write_attr_int(f, path, "shard_index", 7, &err), LUKV_OK);
  H5Fclose(f);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &r, &err), LUKV_ERR_RANGE, path, "shard_index 7 of shard_count 4", NULL);
  lukv_profile_free(&p);
}
END_TEST

/* What we write is what h5py reads naturally: scalar attributes, strings as
 * variable-length UTF-8, integers as int64. */
START_TEST(profile_written_types) {
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  const char *strs[] = {"format", "created_by", "model_name", "mode", "utility"};
  for (size_t i = 0; i < 5; i++) {
    hid_t a = H5Aopen(f, strs[i], H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    ck_assert_int_eq(H5Tget_class(t), H5T_STRING);
    ck_assert_int_gt(H5Tis_variable_str(t), 0);
    ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    ck_assert_int_eq(H5Sget_simple_extent_type(s), H5S_SCALAR);
    H5Sclose(s), H5Tclose(t), H5Aclose(a);
  }
  hid_t a = H5Aopen(f, "grid", H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
  ck_assert(H5Tequal(t, H5T_STD_I64LE) > 0);
  ck_assert_int_eq(H5Sget_simple_extent_type(s), H5S_SCALAR);
  H5Sclose(s), H5Tclose(t), H5Aclose(a);
  hid_t d = H5Dopen2(f, "/curves/oracle", H5P_DEFAULT);
  t = H5Dget_type(d);
  ck_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0);
  H5Tclose(t), H5Dclose(d);
  char *cb = NULL;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_h5_read_attr_str(f, path, "created_by", &cb, &err), LUKV_OK);
  ck_assert_msg(strncmp(cb, "lukv ", 5) == 0, "created_by = %s", cb);
  free(cb);
  H5Fclose(f);
}
END_TEST

/* The fixture was written by h5py (tools/make_profile_fixture.py): chunked,
 * gzip + shuffle, int64 attributes, variable-length str attributes. */
START_TEST(profile_h5py_fixture) {
  const char *fx = getenv("LUKV_FIXTURES");
  ck_assert_msg(fx != NULL, "LUKV_FIXTURES is not set");
  char path[1024];
  snprintf(path, sizeof path, "%s/profile-small.h5", fx);
  lukv_profile p;
  lukv_error err = {0};
  int rc = lukv_profile_read(path, &p, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_str_eq(p.model.model_name, "fixture-synthetic");
  ck_assert_int_eq(p.model.n_layers, 6);
  ck_assert_int_eq(p.model.n_kv_heads, 2);
  ck_assert_int_eq(p.model.n_q_heads, 8);
  ck_assert_int_eq(p.model.head_dim, 32);
  ck_assert_int_eq(p.grid, 64);
  ck_assert_int_eq(p.n_samples, 12);
  ck_assert_int_eq(p.sink, 4);
  ck_assert_int_eq(p.window, 32);
  ck_assert_str_eq(p.mode, "teacher");
  ck_assert_str_eq(p.utility, "max");
  ck_assert_int_eq(p.n_scorers, 2);
  ck_assert_str_eq(p.scorer_names[0], "keydiff");
  ck_assert_str_eq(p.scorer_names[1], "snapkv");
  int G = p.grid;
  size_t heads = (size_t)p.n_samples * 6 * 2;
  for (size_t k = 0; k < heads; k++) {
    const float *o = p.oracle + k * (G + 1);
    ck_assert_float_eq(o[0], p.utility_total[k]); /* nothing kept: all utility lost */
    ck_assert_float_eq(o[G], 0.0f);               /* everything kept: nothing lost */
    for (int i = 0; i < p.n_scorers; i++) {
      const float *c = p.curves[i] + k * (G + 1);
      ck_assert_float_eq(c[G], 0.0f);
      for (int g = 0; g <= G; g++) {
        ck_assert(c[g] >= o[g]);
        if (g) ck_assert(c[g] <= c[g - 1]);
      }
    }
  }
  for (int s = 0; s < p.n_samples; s++) {
    ck_assert_int_ge(p.sample_context_len[s], 1024);
    ck_assert_int_le(p.sample_context_len[s], 2048);
  }
  lukv_profile_free(&p);
}
END_TEST

START_TEST(profile_missing_objects) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  const char *datasets[] = {"/curves/oracle", "/utility_total", "/sample_context_len"};
  for (size_t i = 0; i < 3; i++) {
    good_profile(path);
    h5_del_link(path, datasets[i]);
    lukv_error_clear(&err);
    int rc = lukv_profile_read(path, &p, &err);
    expect_err(&err, rc, LUKV_ERR_FORMAT, NULL);
    char want[1100];
    snprintf(want, sizeof want, "%s: %s: missing dataset", path, datasets[i]);
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_null(p.oracle);
  }
  good_profile(path);
  h5_del_link(path, "/curves");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_FORMAT, path, "/curves",
             "missing group", NULL);
  /* Only the oracle left: nothing a runtime could use. */
  good_profile(path);
  h5_del_link(path, "/curves/snapkv");
  h5_del_link(path, "/curves/keydiff");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_FORMAT, path, "/curves",
             "no scorer", NULL);
  const char *attrs[] = {"model_name", "model_hash", "n_layers", "n_kv_heads", "n_q_heads",
                         "head_dim", "mode", "context_len", "future_len", "sink",
                         "window", "pool_kernel", "utility", "grid", "format_version"};
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    good_profile(path);
    h5_del_attr(path, attrs[i]);
    lukv_error_clear(&err);
    int rc = lukv_profile_read(path, &p, &err);
    char want[1100];
    snprintf(want, sizeof want, "%s: %s: missing attribute", path, attrs[i]);
    expect_err(&err, rc, LUKV_ERR_FORMAT, NULL);
    ck_assert_str_eq(err.msg, want);
  }
}
END_TEST

START_TEST(profile_shape_mismatch) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  h5_set_attr_i64(path, "grid", 16);
  int rc = lukv_profile_read(path, &p, &err);
  expect_err(&err, rc, LUKV_ERR_SHAPE, path, "/curves/keydiff", "shape [3,2,3,9]",
             "expected [3,2,3,17]", NULL);
  good_profile(path);
  h5_set_attr_i64(path, "n_layers", 4);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_SHAPE, "/utility_total",
             "shape [3,2,3]", "expected [3,4,3]", NULL);
  /* One sample fewer in a curve than in /sample_context_len. */
  good_profile(path);
  hsize_t d[4] = {2, TL, TH, TG + 1};
  float *zeros = calloc(TS * TL * TH * (TG + 1), sizeof(float));
  h5_put_dataset(path, "/curves/snapkv", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, d, zeros);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_SHAPE, "/curves/snapkv",
             "shape [2,2,3,9]", "expected [3,2,3,9]", NULL);
  /* Wrong rank. */
  hsize_t d2[2] = {3, TL * TH * (TG + 1)};
  h5_put_dataset(path, "/curves/snapkv", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, zeros);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_SHAPE, "/curves/snapkv",
             "shape [3,54]", "expected [3,2,3,9]", NULL);
  free(zeros);
}
END_TEST

START_TEST(profile_bad_curve_values) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  /* Flat index of [s,l,h,g] = [1,0,2,5]. */
  hsize_t k = (((hsize_t)1 * TL + 0) * TH + 2) * (TG + 1) + 5;
  double bad[] = {NAN, INFINITY, -INFINITY, -0.5};
  const char *shown[] = {"nan", "inf", "-inf", "-0.5"};
  for (int i = 0; i < 4; i++) {
    good_profile(path);
    h5_poke_f64(path, "/curves/snapkv", k, bad[i]);
    lukv_error_clear(&err);
    int rc = lukv_profile_read(path, &p, &err);
    expect_err(&err, rc, LUKV_ERR_RANGE, path, "/curves/snapkv", "[1,0,2,5]", shown[i], NULL);
  }
  good_profile(path);
  h5_poke_f64(path, "/curves/oracle", 0, NAN);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "/curves/oracle",
             "[0,0,0,0]", NULL);
  good_profile(path);
  h5_poke_f64(path, "/utility_total", 4, -1.0);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "/utility_total",
             "[0,1,1]", NULL);
  /* Float64 curves that do not fit float32 are an error, not an inf. */
  good_profile(path);
  hsize_t d[4] = {TS, TL, TH, TG + 1};
  size_t n = (size_t)TS * TL * TH * (TG + 1);
  double *big = calloc(n, sizeof(double));
  big[7] = 1e300;
  h5_put_dataset(path, "/curves/snapkv", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, d, big);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "/curves/snapkv", NULL);
  free(big);
}
END_TEST

START_TEST(profile_zero_samples) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  hsize_t d0[1] = {0}, du[3] = {0, TL, TH}, dc[4] = {0, TL, TH, TG + 1};
  h5_put_dataset(path, "/sample_context_len", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d0, NULL);
  h5_put_dataset(path, "/utility_total", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, du, NULL);
  h5_put_dataset(path, "/curves/snapkv", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dc, NULL);
  h5_put_dataset(path, "/curves/keydiff", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dc, NULL);
  h5_put_dataset(path, "/curves/oracle", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dc, NULL);
  int rc = lukv_profile_read(path, &p, &err);
  expect_err(&err, rc, LUKV_ERR_SHAPE, path, "/sample_context_len", "zero samples", NULL);
  /* The writer refuses to make such a file in the first place. */
  make_profile(&p);
  p.n_samples = 0;
  lukv_error_clear(&err);
  const char *out = lukv_test_path("zero.h5");
  expect_err(&err, lukv_profile_write(out, &p, &err), LUKV_ERR_SHAPE, "zero samples", NULL);
  ck_assert(!file_exists(out));
  p.n_samples = TS;
  lukv_profile_free(&p);
}
END_TEST

START_TEST(profile_bad_attributes) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  struct {
    const char *name;
    long long v;
    const char *what;
  } ints[] = {
      {"grid", 0, "grid: 0 but must be >= 1"},
      {"n_layers", 0, "n_layers: 0"},
      {"n_kv_heads", -3, "n_kv_heads: -3"},
      {"n_q_heads", 7, "not a multiple of n_kv_heads"},
      {"sink", -1, "sink: -1"},
      {"grid", 5000000000LL, "grid: 5000000000"},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    good_profile(path);
    h5_set_attr_i64(path, ints[i].name, ints[i].v);
    lukv_error_clear(&err);
    int rc = lukv_profile_read(path, &p, &err);
    expect_err(&err, rc, LUKV_ERR_RANGE, path, ints[i].what, NULL);
  }
  good_profile(path);
  h5_set_attr_str(path, "mode", "teach");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "mode", "\"teach\"",
             "teacher", "generate", NULL);
  good_profile(path);
  h5_set_attr_str(path, "utility", "mean");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "utility", "\"mean\"", NULL);
  /* Each sample must be longer than sink + window = 12. */
  good_profile(path);
  hsize_t d[1] = {TS};
  int32_t scl[TS] = {500, 12, 600};
  h5_put_dataset(path, "/sample_context_len", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d, scl);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_RANGE, "/sample_context_len",
             "index 1", NULL);
  /* A string where an integer belongs, and the other way round. */
  good_profile(path);
  h5_set_attr_str(path, "grid", "8");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_FORMAT, "grid", "string",
             "integer", NULL);
  good_profile(path);
  h5_set_attr_i64(path, "model_name", 3);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_FORMAT, "model_name", "integer",
             "string", NULL);
}
END_TEST

/* h5py writes numpy bytes as fixed-length strings, and numpy integer scalars
 * in their own width: both must read. */
START_TEST(profile_attribute_variants) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  h5_set_attr_fixed(path, "model_name", "fixed-name", H5T_STR_NULLPAD);
  h5_set_attr_fixed(path, "mode", "teacher", H5T_STR_NULLTERM);
  h5_set_attr_fixed(path, "utility", "max", H5T_STR_SPACEPAD);
  uint8_t g8 = TG;
  int16_t s16 = 4;
  uint32_t w32 = 8;
  h5_set_attr(path, "grid", H5T_STD_U8LE, H5T_NATIVE_UINT8, &g8);
  h5_set_attr(path, "sink", H5T_STD_I16BE, H5T_NATIVE_INT16, &s16);
  h5_set_attr(path, "window", H5T_STD_U32LE, H5T_NATIVE_UINT32, &w32);
  /* Curves as float64 (a user forgetting dtype=float32). */
  lukv_profile ref;
  make_profile(&ref);
  size_t n = (size_t)TS * TL * TH * (TG + 1);
  double *c64 = xmalloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) c64[i] = ref.curves[1][i];
  hsize_t d[4] = {TS, TL, TH, TG + 1};
  h5_put_dataset(path, "/curves/keydiff", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 4, d, c64);
  free(c64);
  int rc = lukv_profile_read(path, &p, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_str_eq(p.model.model_name, "fixed-name");
  ck_assert_str_eq(p.mode, "teacher");
  ck_assert_str_eq(p.utility, "max");
  ck_assert_int_eq(p.grid, TG);
  ck_assert_int_eq(p.sink, 4);
  ck_assert_int_eq(p.window, 8);
  ck_assert_mem_eq(lukv_profile_curves(&p, "keydiff"), ref.curves[1], n * sizeof(float));
  lukv_profile_free(&p);
  lukv_profile_free(&ref);
  /* A non-scalar attribute of two elements is refused. */
  hid_t f = h5_rw(path);
  H5Adelete(f, "grid");
  hsize_t two = 2;
  hid_t s = H5Screate_simple(1, &two, NULL);
  int64_t v[2] = {8, 8};
  hid_t a = H5Acreate2(f, "grid", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, v);
  H5Aclose(a), H5Sclose(s), H5Fclose(f);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(path, &p, &err), LUKV_ERR_FORMAT, "grid", "2 elements", NULL);
}
END_TEST

START_TEST(profile_curves_group_member) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  good_profile(path);
  hid_t f = h5_rw(path);
  hid_t g = H5Gcreate2(f, "/curves/extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g), H5Fclose(f);
  int rc = lukv_profile_read(path, &p, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, path, "/curves/extra", "not a dataset", NULL);
  /* A new scorer needs no schema change: it is simply discovered. */
  good_profile(path);
  lukv_profile ref;
  make_profile(&ref);
  hsize_t d[4] = {TS, TL, TH, TG + 1};
  h5_put_dataset(path, "/curves/expected", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, d, ref.curves[0]);
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_profile_read(path, &p, &err), LUKV_OK);
  ck_assert_int_eq(p.n_scorers, 3);
  ck_assert_str_eq(p.scorer_names[0], "expected");
  ck_assert_str_eq(p.scorer_names[1], "keydiff");
  ck_assert_str_eq(p.scorer_names[2], "snapkv");
  lukv_profile_free(&p);
  lukv_profile_free(&ref);
}
END_TEST

START_TEST(profile_wrong_format_and_version) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("budgets.h5");
  good_budgets(path);
  int rc = lukv_profile_read(path, &p, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, path, "\"lukv-budgets\"", "\"lukv-profile\"", NULL);
  const char *pp = lukv_test_path("profile.h5");
  good_profile(pp);
  h5_set_attr_i64(pp, "format_version", 7);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(pp, &p, &err), LUKV_ERR_VERSION,
             "format_version 7 is newer than this build reads (1)", NULL);
  h5_set_attr_str(pp, "format_version", "1");
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_read(pp, &p, &err), LUKV_ERR_FORMAT, "format_version", NULL);
}
END_TEST

START_TEST(profile_write_validates) {
  lukv_profile p;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  struct {
    int which;
    int status;
    const char *what;
  } cases[] = {
      {0, LUKV_ERR_RANGE, "/curves/keydiff"}, {1, LUKV_ERR_INVALID, "\"oracle\""},
      {2, LUKV_ERR_INVALID, "appears twice"}, {3, LUKV_ERR_RANGE, "mode"},
      {4, LUKV_ERR_INVALID, "'/'"},           {5, LUKV_ERR_RANGE, "/sample_context_len"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    make_profile(&p);
    switch (cases[i].which) {
    case 0: p.curves[1][17] = NAN; break;
    case 1: free(p.scorer_names[0]), p.scorer_names[0] = strdup("oracle"); break;
    case 2: free(p.scorer_names[0]), p.scorer_names[0] = strdup("keydiff"); break;
    case 3: free(p.mode), p.mode = NULL; break;
    case 4: free(p.scorer_names[1]), p.scorer_names[1] = strdup("a/b"); break;
    case 5: p.sample_context_len[2] = 3; break;
    }
    lukv_error_clear(&err);
    int rc = lukv_profile_write(path, &p, &err);
    expect_err(&err, rc, cases[i].status, path, cases[i].what, NULL);
    ck_assert(!file_exists(path));
    ck_assert(!file_exists(lukv_test_path("profile.h5.tmp")));
    lukv_profile_free(&p);
  }
}
END_TEST

/* ---- writers: PATH.tmp then rename -------------------------------------- */

START_TEST(write_unwritable) {
  lukv_profile p;
  lukv_budgets b;
  lukv_corpus c;
  lukv_error err = {0};
  make_profile(&p);
  make_budgets(&b);
  make_corpus(&c);
  const char *path = lukv_test_path("no-such-dir/out.h5");
  int rc = lukv_profile_write(path, &p, &err);
  expect_err(&err, rc, LUKV_ERR_IO, path, "No such file or directory", NULL);
  ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0, "%s", err.msg);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_write(path, &b, &err), LUKV_ERR_IO, path, NULL);
  lukv_error_clear(&err);
  expect_err(&err, lukv_corpus_write(path, &c, &err), LUKV_ERR_IO, path, NULL);
  ck_assert(!file_exists(path));
  ck_assert(!file_exists(lukv_test_path("no-such-dir/out.h5.tmp")));
  /* The target is a directory: everything is written, the rename fails, and
   * the .tmp must not be left behind. */
  const char *dir = lukv_test_path("is-a-dir");
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  lukv_error_clear(&err);
  expect_err(&err, lukv_profile_write(dir, &p, &err), LUKV_ERR_IO, dir, "rename", NULL);
  ck_assert(!file_exists(lukv_test_path("is-a-dir.tmp")));
  /* A read-only directory (meaningless for root, who may write anyway). */
  if (geteuid() != 0) {
    const char *ro = lukv_test_path("ro");
    ck_assert_int_eq(mkdir(ro, 0500), 0);
    const char *out = lukv_test_path("ro/out.h5");
    lukv_error_clear(&err);
    expect_err(&err, lukv_profile_write(out, &p, &err), LUKV_ERR_IO, out, "Permission denied",
               NULL);
    ck_assert(!file_exists(out));
    ck_assert(!file_exists(lukv_test_path("ro/out.h5.tmp")));
  }
  lukv_profile_free(&p);
  lukv_budgets_free(&b);
  lukv_corpus_free(&c);
}
END_TEST

START_TEST(write_replaces_atomically) {
  lukv_profile p, r;
  lukv_error err = {0};
  const char *path = lukv_test_path("profile.h5");
  /* A stale .tmp from a crashed run is simply overwritten. */
  lukv_test_write_text(lukv_test_path("profile.h5.tmp"), "stale");
  good_profile(path);
  ck_assert(!file_exists(lukv_test_path("profile.h5.tmp")));
  /* A failed write leaves the previous file intact. */
  make_profile(&p);
  p.oracle[3] = -1.0f;
  ck_assert_int_eq(lukv_profile_write(path, &p, &err), LUKV_ERR_RANGE);
  p.oracle[3] = 0.0f;
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_profile_read(path, &r, &err), LUKV_OK);
  ck_assert_float_ne(r.oracle[3], 0.0f);
  lukv_profile_free(&r);
  /* A successful one replaces it. */
  ck_assert_int_eq(lukv_profile_write(path, &p, &err), LUKV_OK);
  ck_assert_int_eq(lukv_profile_read(path, &r, &err), LUKV_OK);
  ck_assert_float_eq(r.oracle[3], 0.0f);
  lukv_profile_free(&r);
  lukv_profile_free(&p);
}
END_TEST

/* ====================================================================== */
/* budgets.h5                                                               */

START_TEST(budgets_roundtrip) {
  lukv_budgets b, r;
  lukv_error err = {0};
  make_budgets(&b);
  const char *path = lukv_test_path("budgets.h5");
  ck_assert_int_eq(lukv_budgets_write(path, &b, &err), LUKV_OK);
  ck_assert(!file_exists(lukv_test_path("budgets.h5.tmp")));
  int rc = lukv_budgets_read(path, &r, &err);
  ck_assert_msg(rc == LUKV_OK, "%s", err.msg);
  ck_assert_str_eq(r.model.model_name, b.model.model_name);
  ck_assert_str_eq(r.model.model_hash, b.model.model_hash);
  ck_assert_int_eq(r.model.n_layers, TL);
  ck_assert_int_eq(r.model.n_kv_heads, TH);
  ck_assert_int_eq(r.model.n_q_heads, b.model.n_q_heads);
  ck_assert_int_eq(r.model.head_dim, 64);
  ck_assert_str_eq(r.scorer, "snapkv");
  ck_assert_str_eq(r.aggregation, "mean-of-solutions");
  ck_assert_str_eq(r.solver, "hull-greedy");
  ck_assert_int_eq(r.sink, 4);
  ck_assert_int_eq(r.window, 32);
  ck_assert_int_eq(r.grid, 256);
  ck_assert_int_eq(r.min_keep_index, 9);
  ck_assert_int_eq(r.context_len, 900);
  ck_assert_int_eq(r.n_ratios, TR);
  ck_assert_mem_eq(r.compression, b.compression, TR * sizeof(float));
  ck_assert_mem_eq(r.keep_fraction, b.keep_fraction, (size_t)TR * TL * TH * sizeof(float));
  for (int i = 0; i < TR; i++) {
    ck_assert(same_double(r.report_greedy[i], b.report_greedy[i]));
    ck_assert(same_double(r.report_lp_bound[i], b.report_lp_bound[i]));
    ck_assert(isnan(r.report_exact[i]));
    ck_assert(same_double(r.report_uniform[i], b.report_uniform[i]));
    ck_assert(same_double(r.report_pyramid[i], b.report_pyramid[i]));
  }
  ck_assert_int_eq(r.n_extra, 2);
  ck_assert_str_eq(r.extra_names[0], "feasible");
  ck_assert_str_eq(r.extra_names[1], "mip_gap");
  const double *gap = lukv_budgets_extra(&r, "mip_gap");
  ck_assert_ptr_nonnull(gap);
  ck_assert(gap[0] == 0.0 && isinf(gap[1]) && isnan(gap[2]) && gap[3] == 1e-9);
  ck_assert(lukv_budgets_extra(&r, "feasible")[3] == 0.0);
  ck_assert_ptr_null(lukv_budgets_extra(&r, "greedy"));
  ck_assert_ptr_null(lukv_budgets_extra(&r, "nope"));
  ck_assert_int_eq(lukv_budgets_find_ratio(&r, 0.4), 1);
  ck_assert_int_eq(lukv_budgets_find_ratio(&r, 0.8000004), 3);
  ck_assert_int_eq(lukv_budgets_find_ratio(&r, 0.5), -1);
  ck_assert_int_eq(lukv_budgets_find_ratio(NULL, 0.4), -1);
  /* calibration_samples is optional: absent reads as 0, present round-trips, < 1 is refused. */
  ck_assert_int_eq(r.calibration_samples, 0);
  lukv_budgets_free(&r);
  b.calibration_samples = 17;
  ck_assert_int_eq(lukv_budgets_write(path, &b, &err), LUKV_OK);
  ck_assert_int_eq(lukv_budgets_read(path, &r, &err), LUKV_OK);
  ck_assert_int_eq(r.calibration_samples, 17);
  lukv_budgets_free(&r);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  ck_assert(f >= 0);
  ck_assert(H5Adelete(f, "calibration_samples") >= 0);
  ck_assert_int_eq(lukv_h5_write_attr_int(f, path, "calibration_samples", 0, &err), LUKV_OK);
  H5Fclose(f);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &r, &err), LUKV_ERR_RANGE, path, "calibration_samples", NULL);
  lukv_budgets_free(&b);
  lukv_budgets_free(&r);
  lukv_budgets_free(&r);
  lukv_budgets_free(NULL);
}
END_TEST

START_TEST(budgets_add_extra) {
  lukv_budgets b;
  make_budgets(&b);
  double v[TR] = {1, 2, 3, 4};
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "mip_gap", v), LUKV_ERR_INVALID); /* twice */
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "greedy", v), LUKV_ERR_INVALID);  /* standard */
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "a/b", v), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "", v), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_budgets_add_extra(&b, NULL, v), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "x", NULL), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_budgets_add_extra(NULL, "x", v), LUKV_ERR_INVALID);
  ck_assert_int_eq(lukv_budgets_add_extra(&b, "heldout_mean_curve", v), LUKV_OK);
  v[0] = 99; /* a copy was taken */
  ck_assert(lukv_budgets_extra(&b, "heldout_mean_curve")[0] == 1.0);
  ck_assert_int_eq(b.n_extra, 3);
  lukv_budgets_free(&b);
}
END_TEST

START_TEST(budgets_missing_objects) {
  lukv_budgets b;
  lukv_error err = {0};
  const char *path = lukv_test_path("budgets.h5");
  const char *datasets[] = {"/compression", "/keep_fraction", "/report/greedy", "/report/lp_bound",
                            "/report/exact", "/report/uniform", "/report/pyramid"};
  for (size_t i = 0; i < sizeof datasets / sizeof datasets[0]; i++) {
    good_budgets(path);
    h5_del_link(path, datasets[i]);
    lukv_error_clear(&err);
    int rc = lukv_budgets_read(path, &b, &err);
    char want[1100];
    snprintf(want, sizeof want, "%s: %s: missing dataset", path, datasets[i]);
    expect_err(&err, rc, LUKV_ERR_FORMAT, NULL);
    ck_assert_str_eq(err.msg, want);
  }
  good_budgets(path);
  h5_del_link(path, "/report");
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_FORMAT,
             "/report/greedy: missing dataset", NULL);
  const char *attrs[] = {"model_name", "model_hash", "n_layers", "n_kv_heads", "n_q_heads",
                         "head_dim", "scorer", "aggregation", "solver", "sink",
                         "window", "grid", "min_keep_index", "context_len", "format"};
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    good_budgets(path);
    h5_del_attr(path, attrs[i]);
    lukv_error_clear(&err);
    int rc = lukv_budgets_read(path, &b, &err);
    expect_err(&err, rc, LUKV_ERR_FORMAT, path, attrs[i], "missing attribute", NULL);
  }
}
END_TEST

START_TEST(budgets_bad_values) {
  lukv_budgets b;
  lukv_error err = {0};
  const char *path = lukv_test_path("budgets.h5");
  struct {
    const char *ds;
    hsize_t k;
    double v;
    const char *what;
  } cases[] = {
      {"/compression", 2, 0.3, "not strictly increasing at index 2"},
      {"/compression", 1, 0.2, "not strictly increasing at index 1"},
      {"/compression", 3, 1.0, "must be in (0, 1)"},
      {"/compression", 0, 0.0, "index 0"},
      {"/compression", 0, NAN, "nan"},
      /* [r,l,h] = [2,1,0] */
      {"/keep_fraction", (2 * TL + 1) * TH + 0, 1.5, "[2,1,0]"},
      {"/keep_fraction", 0, -0.1, "[0,0,0]"},
      {"/keep_fraction", 5, NAN, "[0,1,2]"},
      {"/report/greedy", 1, INFINITY, "/report/greedy"},
      {"/report/pyramid", 3, -INFINITY, "/report/pyramid"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    good_budgets(path);
    h5_poke_f64(path, cases[i].ds, cases[i].k, cases[i].v);
    lukv_error_clear(&err);
    int rc = lukv_budgets_read(path, &b, &err);
    expect_err(&err, rc, LUKV_ERR_RANGE, path, cases[i].ds, cases[i].what, NULL);
  }
  /* NaN in a report means "not computed" and is fine; so is a negative LP
   * value from rounding. */
  good_budgets(path);
  h5_poke_f64(path, "/report/lp_bound", 0, NAN);
  h5_poke_f64(path, "/report/uniform", 0, -1e-15);
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_budgets_read(path, &b, &err), LUKV_OK);
  ck_assert(isnan(b.report_lp_bound[0]));
  lukv_budgets_free(&b);
  good_budgets(path);
  h5_set_attr_str(path, "aggregation", "median");
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_RANGE, "aggregation", "\"median\"",
             NULL);
  good_budgets(path);
  h5_set_attr_i64(path, "min_keep_index", 300);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_RANGE, "min_keep_index",
             "exceeds grid 256", NULL);
}
END_TEST

START_TEST(budgets_shapes) {
  lukv_budgets b;
  lukv_error err = {0};
  const char *path = lukv_test_path("budgets.h5");
  good_budgets(path);
  h5_set_attr_i64(path, "n_kv_heads", 2);
  h5_set_attr_i64(path, "n_q_heads", 2);
  int rc = lukv_budgets_read(path, &b, &err);
  expect_err(&err, rc, LUKV_ERR_SHAPE, path, "/keep_fraction", "shape [4,2,3]",
             "expected [4,2,2]", NULL);
  good_budgets(path);
  hsize_t d3[1] = {3};
  double v[3] = {0};
  h5_put_dataset(path, "/report/exact", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d3, v);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_SHAPE, "/report/exact",
             "shape [3]", "expected [4]", NULL);
  /* An extra report is optional but, when present, must be float64 [R]. */
  good_budgets(path);
  h5_put_dataset(path, "/report/mip_gap", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d3, v);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_SHAPE, "/report/mip_gap",
             "expected [4]", NULL);
  good_budgets(path);
  hsize_t d0[1] = {0};
  h5_put_dataset(path, "/compression", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d0, NULL);
  lukv_error_clear(&err);
  expect_err(&err, lukv_budgets_read(path, &b, &err), LUKV_ERR_SHAPE, "/compression",
             "at least one ratio", NULL);
  /* An extra report removed: still a valid file, just without it. */
  good_budgets(path);
  h5_del_link(path, "/report/feasible");
  lukv_error_clear(&err);
  ck_assert_int_eq(lukv_budgets_read(path, &b, &err), LUKV_OK);
  ck_assert_int_eq(b.n_extra, 1);
  ck_assert_ptr_null(lukv_budgets_extra(&b, "feasible"));
  lukv_budgets_free(&b);
}
END_TEST

START_TEST(budgets_wrong_format_and_version) {
  lukv_budgets b;
  lukv_error err = {0};
  const char *path = lukv_test_path("corpus.h5");
  good_corpus(path);
  int rc = lukv_budgets_read(path, &b, &err);
  expect_err(&err, rc, LUKV_ERR_FORMAT, path, "\"lukv-corpus\"", "\"lukv-budgets\"", NULL);
  const char *bp = lukv_test_path("budgets.h5");
  good_budgets(bp);
  h5_set_attr_i64(bp, "format_version", 2);
  lukv_error_clear(&err);
  char want[1100];
  snprintf(want, sizeof want, "%s: format_version 2 is newer than this build reads (1)", bp);
  expect_err(&err, lukv_budgets_read(bp, &b, &err), LUKV_ERR_VERSION, NULL);
  ck_assert_str_eq(err.msg, want);
  lukv_error_clear(&err);
  lukv_test_write_text(bp, "{\"json\": true}\n");
  expect_err(&err, lukv_budgets_read(bp, &b, &err), LUKV_ERR_FORMAT, "not an HDF5 file", NULL);
  lukv_error_clear(&err);
  unlink(bp);
  expect_err(&err, lukv_budgets_read(bp, &b, &err), LUKV_ERR_IO, "No such file", NULL);
}
END_TEST

START_TEST(budgets_write_validates) {
  lukv_budgets b;
  lukv_error err = {0};
  const char *path = lukv_test_path("budgets.h5");
  for (int which = 0; which < 5; which++) {
    make_budgets(&b);
    const char *what = NULL;
    switch (which) {
    case 0: b.compression[1] = b.compression[0], what = "/compression"; break;
    case 1: b.keep_fraction[3] = 2.0f, what = "/keep_fraction"; break;
    case 2: free(b.report_uniform), b.report_uniform = NULL, what = "/report/uniform"; break;
    case 3: b.n_ratios = 0, what = "/compression"; break;
    case 4: free(b.aggregation), b.aggregation = strdup("x"), what = "aggregation"; break;
    }
    lukv_error_clear(&err);
    int rc = lukv_budgets_write(path, &b, &err);
    ck_assert_int_lt(rc, 0);
    expect_err(&err, rc, rc, path, what, NULL);
    ck_assert(!file_exists(path));
    ck_assert(!file_exists(lukv_test_path("budgets.h5.tmp")));
    if (which == 3) b.n_ratios = TR;
    lukv_budgets_free(&b);
  }
}
END_TEST

/* ====================================================================== */
/* h5util                                                                    */

START_TEST(h5util_helpers) {
  const char *path = lukv_test_path("util.h5");
  lukv_h5_writer w;
  lukv_error err = {0};
  ck_assert_int_eq(lukv_h5_create(&w, path, "lukv-test", 1, &err), LUKV_OK);
  ck_assert(file_exists(lukv_test_path("util.h5.tmp")));
  ck_assert(!file_exists(path));
  float f32 = 2.5f;
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(w.file, "half", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_FLOAT, &f32);
  H5Aclose(a), H5Sclose(s);
  ck_assert_int_eq(lukv_h5_write_attr_int(w.file, path, "count", -7, &err), LUKV_OK);
  ck_assert_int_eq(lukv_h5_commit(&w, &err), LUKV_OK);
  ck_assert(!file_exists(lukv_test_path("util.h5.tmp")));

  hid_t f;
  ck_assert_int_eq(lukv_h5_open_read(path, &f, &err), LUKV_OK);
  ck_assert_int_eq(lukv_h5_check_header(f, path, "lukv-test", 1, &err), LUKV_OK);
  double d = 0;
  ck_assert_int_eq(lukv_h5_read_attr_float(f, path, "half", &d, &err), LUKV_OK);
  ck_assert(d == 2.5);
  ck_assert_int_eq(lukv_h5_read_attr_float(f, path, "count", &d, &err), LUKV_OK);
  ck_assert(d == -7.0);
  int64_t i = 0;
  ck_assert_int_eq(lukv_h5_read_attr_int(f, path, "count", &i, &err), LUKV_OK);
  ck_assert_int_eq(i, -7);
  int32_t i32 = 0;
  expect_err(&err, lukv_h5_read_attr_i32(f, path, "count", 0, 10, &i32, &err), LUKV_ERR_RANGE,
             "count: -7 but must be in [0, 10]", NULL);
  lukv_error_clear(&err);
  expect_err(&err, lukv_h5_read_attr_int(f, path, "half", &i, &err), LUKV_ERR_FORMAT,
             "half: attribute is float but expected an integer", NULL);
  lukv_error_clear(&err);
  char *str = NULL;
  expect_err(&err, lukv_h5_read_attr_str(f, path, "nothing", &str, &err), LUKV_ERR_FORMAT,
             "nothing: missing attribute", NULL);
  ck_assert_ptr_null(str);
  ck_assert_int_eq(lukv_h5_exists(f, "/a/b/c"), 0);
  ck_assert_int_eq(lukv_h5_exists(f, "/"), 1);
  lukv_error_clear(&err);
  void *buf = NULL;
  expect_err(&err,
             lukv_h5_read_dataset(f, path, "/a/b/c", H5T_FLOAT, H5T_NATIVE_FLOAT, 1, NULL, NULL,
                                  &buf, &err),
             LUKV_ERR_FORMAT, "/a/b/c: missing dataset", NULL);
  lukv_error_clear(&err);
  expect_err(&err, lukv_h5_check_header(f, path, "lukv-test", 0, &err), LUKV_ERR_VERSION,
             "format_version 1 is newer than this build reads (0)", NULL);
  H5Fclose(f);
  /* The innermost HDF5 error is appended when HDF5 itself fails. */
  lukv_h5_quiet();
  hid_t bad = H5Dopen2(-1, "/x", H5P_DEFAULT);
  ck_assert_int_lt(bad, 0);
  lukv_error_clear(&err);
  lukv_h5_fail(&err, LUKV_ERR_IO, "p.h5", "/x", "cannot open");
  ck_assert_msg(strncmp(err.msg, "p.h5: /x: cannot open: ", 23) == 0 && strlen(err.msg) > 23,
                "%s", err.msg);
  /* An aborted writer leaves nothing. */
  ck_assert_int_eq(lukv_h5_create(&w, path, "lukv-test", 1, &err), LUKV_OK);
  lukv_h5_abort(&w);
  lukv_h5_abort(&w);
  ck_assert(!file_exists(lukv_test_path("util.h5.tmp")));
  ck_assert(file_exists(path)); /* the committed one is untouched */
  char dims[64];
  hsize_t dd[3] = {2, LUKV_H5_ANY, 5};
  lukv_h5_dims_str(dims, sizeof dims, 3, dd);
  ck_assert_str_eq(dims, "[2,*,5]");
}
END_TEST

START_TEST(error_first_wins) {
  lukv_error err = {0};
  lukv_error_set(&err, LUKV_ERR_IO, "first");
  lukv_error_set(&err, LUKV_ERR_RANGE, "second");
  ck_assert_int_eq(err.status, LUKV_ERR_IO);
  ck_assert_str_eq(err.msg, "first");
  /* Readers accept a NULL err. */
  lukv_profile p;
  ck_assert_int_eq(lukv_profile_read(lukv_test_path("nope.h5"), &p, NULL), LUKV_ERR_IO);
  ck_assert_int_eq(lukv_profile_read(NULL, &p, NULL), LUKV_ERR_INVALID);
}
END_TEST

static Suite *formats_suite(void) {
  Suite *s = suite_create("formats");
  const lukv_test_case groups[] = {
      {"corpus_roundtrip", corpus_roundtrip},
      {"corpus_missing_file", corpus_missing_file},
      {"corpus_not_hdf5", corpus_not_hdf5},
      {"corpus_wrong_format", corpus_wrong_format},
      {"corpus_newer_version", corpus_newer_version},
      {"corpus_missing_objects", corpus_missing_objects},
      {"corpus_bad_offsets", corpus_bad_offsets},
      {"corpus_bad_tokens", corpus_bad_tokens},
      {"corpus_write_validates", corpus_write_validates},
      {"profile_roundtrip", profile_roundtrip},
      {"profile_provenance", profile_provenance},
      {"profile_written_types", profile_written_types},
      {"profile_h5py_fixture", profile_h5py_fixture},
      {"profile_missing_objects", profile_missing_objects},
      {"profile_shape_mismatch", profile_shape_mismatch},
      {"profile_bad_curve_values", profile_bad_curve_values},
      {"profile_zero_samples", profile_zero_samples},
      {"profile_bad_attributes", profile_bad_attributes},
      {"profile_attribute_variants", profile_attribute_variants},
      {"profile_curves_group_member", profile_curves_group_member},
      {"profile_wrong_format_and_version", profile_wrong_format_and_version},
      {"profile_write_validates", profile_write_validates},
      {"write_unwritable", write_unwritable},
      {"write_replaces_atomically", write_replaces_atomically},
      {"budgets_roundtrip", budgets_roundtrip},
      {"budgets_add_extra", budgets_add_extra},
      {"budgets_missing_objects", budgets_missing_objects},
      {"budgets_bad_values", budgets_bad_values},
      {"budgets_shapes", budgets_shapes},
      {"budgets_wrong_format_and_version", budgets_wrong_format_and_version},
      {"budgets_write_validates", budgets_write_validates},
      {"h5util_helpers", h5util_helpers},
      {"error_first_wins", error_first_wins},
  };
  lukv_test_add_cases(s, groups, sizeof groups / sizeof groups[0], 60, setup,
                      lukv_test_tmpdir_teardown);
  return s;
}

int main(void) {
  return lukv_test_run(formats_suite(), CK_NORMAL);
}

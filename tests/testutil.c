/* Helpers shared by the Check test programs: see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- per-test temporary directory ---------------------------------------- */

static char tmpdir[512];

void lukv_test_rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      struct stat st;
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
        chmod(sub, 0700);
        lukv_test_rm_tree(sub);
      } else {
        unlink(sub);
      }
    }
    closedir(d);
  }
  rmdir(path);
}

void lukv_test_tmpdir_setup(const char *prefix) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

void lukv_test_tmpdir_teardown(void) { lukv_test_rm_tree(tmpdir); }

const char *lukv_test_tmpdir(void) { return tmpdir; }

const char *lukv_test_path(const char *name) {
  static char bufs[4][1024];
  static int at;
  char *b = bufs[at++ % 4];
  snprintf(b, 1024, "%s/%s", tmpdir, name);
  return b;
}

/* ---- whole files ----------------------------------------------------------- */

void lukv_test_write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  if (n) ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

void lukv_test_write_text(const char *path, const char *text) { lukv_test_write_bytes(path, text, strlen(text)); }

uint8_t *lukv_test_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}

/* ---- errors ------------------------------------------------------------------- */

void lukv_test_expect_errv(const lukv_error *err, int rc, int status, va_list substrings) {
  ck_assert_msg(rc == status, "status %d (%s), expected %d (%s); message: %s", rc, lukv_strerror(rc), status,
                lukv_strerror(status), err->msg);
  ck_assert_msg(err->msg[0] && !strchr(err->msg, '\n'), "message not one line: \"%s\"", err->msg);
  for (const char *s; (s = va_arg(substrings, const char *));)
    ck_assert_msg(strstr(err->msg, s), "message \"%s\" lacks \"%s\"", err->msg, s);
}

void lukv_test_expect_err(const lukv_error *err, int rc, int status, ...) {
  va_list ap;
  va_start(ap, status);
  lukv_test_expect_errv(err, rc, status, ap);
  va_end(ap);
}

/* ---- golden transformers fixtures ------------------------------------------- */

const char *lukv_test_golden_path(const char *rel) {
  static char bufs[4][1024];
  static int at;
  const char *src = getenv("LUKV_SOURCE");
  char *b = bufs[at++ % 4];
  snprintf(b, 1024, "%s/tests/golden/%s", src && *src ? src : ".", rel);
  return b;
}

static int read_ids(char *line, int32_t *out, int max) {
  int n = 0;
  for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n")) {
    ck_assert_int_lt(n, max);
    out[n++] = (int32_t)atoi(tok);
  }
  return n;
}

void lukv_test_golden_load(const char *name, lukv_test_golden *g) {
  memset(g, 0, sizeof *g);
  char path[1200], line[8192], lname[256] = "";
  snprintf(path, sizeof path, "%s/golden.txt", lukv_test_golden_path(name));
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  while (fgets(line, sizeof line, f)) {
    int i, off;
    if (sscanf(line, "logits %255s %d %d %d", lname, &g->n_prompts, &g->T, &g->V) == 4) continue;
    if (sscanf(line, "max_abs_logit %lf", &g->scale) == 1) continue;
    if (sscanf(line, "prompt %d %n", &i, &off) == 1) {
      ck_assert(i >= 0 && i < LUKV_TEST_MAXP);
      ck_assert_int_eq(read_ids(line + off, g->prompt[i], LUKV_TEST_MAXT), g->T);
    } else if (sscanf(line, "greedy %d %n", &i, &off) == 1) {
      ck_assert(i >= 0 && i < LUKV_TEST_MAXP);
      g->n_gen = read_ids(line + off, g->greedy[i], LUKV_TEST_MAXT);
    }
  }
  fclose(f);
  ck_assert(g->n_prompts > 0 && g->T > 0 && g->V > 0 && g->n_gen > 0 && g->scale > 0);
  snprintf(path, sizeof path, "%s/%s", lukv_test_golden_path(name), lname);
  size_t n = (size_t)g->n_prompts * g->T * g->V;
  g->logits = malloc(n * sizeof(float));
  ck_assert_ptr_nonnull(g->logits);
  f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  ck_assert_uint_eq(fread(g->logits, sizeof(float), n, f), n);
  fclose(f);
}

double lukv_test_max_abs_diff(const float *a, const float *b, size_t n) {
  double mx = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= mx)) mx = d; /* NaN propagates */
  }
  return mx;
}

/* ---- random numbers ---------------------------------------------------------- */

uint64_t lukv_test_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- running ------------------------------------------------------------------ */

void lukv_test_add_cases(Suite *s, const lukv_test_case *cases, size_t n, int timeout_s, SFun setup,
                         SFun teardown) {
  for (size_t i = 0; i < n; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout_s);
    tcase_add_test(tc, cases[i].fn);
    suite_add_tcase(s, tc);
  }
}

int lukv_test_run(Suite *s, enum print_output mode) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, mode);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

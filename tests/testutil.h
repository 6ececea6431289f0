/* Helpers shared by the Check test programs (tests/test_*.c): a per-test
 * temporary directory, whole-file reads and writes, one-line error checks,
 * the golden transformers fixtures, a splitmix64 step and the runner.
 *
 * Every helper that can fail asserts with Check, so it is meant to be called
 * inside a test (or a checked fixture), never from main().
 */
#ifndef LUKV_TESTUTIL_H
#define LUKV_TESTUTIL_H

#include <check.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- per-test temporary directory ---------------------------------------- */

/* Makes a fresh directory $TMPDIR/<prefix>-XXXXXX (/tmp when TMPDIR is unset
 * or empty); pass as part of a checked fixture: a one-line setup calls it. */
void lukv_test_tmpdir_setup(const char *prefix);

/* Removes the directory and everything under it (directories made read-only
 * by a test are made writable first). Fits tcase_add_checked_fixture. */
void lukv_test_tmpdir_teardown(void);

/* The directory of the running test. */
const char *lukv_test_tmpdir(void);

/* tmpdir/name, in one of four rotating buffers, so that up to four can be
 * live at once. */
const char *lukv_test_path(const char *name);

/* Removes path and, if it is a directory, all it holds. */
void lukv_test_rm_tree(const char *path);

/* ---- whole files ----------------------------------------------------------- */

/* Writes n bytes (n may be 0) to path, replacing it. */
void lukv_test_write_bytes(const char *path, const void *data, size_t n);

/* Writes the string text (no terminator) to path, replacing it. */
void lukv_test_write_text(const char *path, const char *text);

/* The whole file in a malloc'd buffer (one spare byte at the end); its
 * length in *n. */
uint8_t *lukv_test_read_file(const char *path, size_t *n);

/* ---- errors ------------------------------------------------------------------- */

/* Asserts rc == status and that err's message is one non-empty line holding
 * every given substring (a NULL-terminated list). */
void lukv_test_expect_err(const lukv_error *err, int rc, int status, ...);
void lukv_test_expect_errv(const lukv_error *err, int rc, int status, va_list substrings);

/* ---- golden transformers fixtures (tests/golden, tools/make_golden.py) ------- */

enum { LUKV_TEST_MAXP = 4, LUKV_TEST_MAXT = 64 };

typedef struct lukv_test_golden {
  int n_prompts, T, V, n_gen;
  int32_t prompt[LUKV_TEST_MAXP][LUKV_TEST_MAXT];
  int32_t greedy[LUKV_TEST_MAXP][LUKV_TEST_MAXT];
  float *logits; /* [P, T, V], malloc'd: the caller frees it */
  double scale;  /* max |logit| */
} lukv_test_golden;

/* $LUKV_SOURCE/tests/golden/rel ("." when LUKV_SOURCE is unset), in one of
 * four rotating buffers. */
const char *lukv_test_golden_path(const char *rel);

/* Reads tests/golden/<name>/golden.txt and the logits file it names. */
void lukv_test_golden_load(const char *name, lukv_test_golden *g);

/* max |a[i] - b[i]|; a NaN anywhere makes it NaN. */
double lukv_test_max_abs_diff(const float *a, const float *b, size_t n);

/* ---- random numbers ---------------------------------------------------------- */

/* One splitmix64 step: advances *state, returns the next 64 bits
 * (deterministic across platforms). */
uint64_t lukv_test_splitmix64(uint64_t *state);

/* ---- running ------------------------------------------------------------------ */

typedef struct lukv_test_case {
  const char *name;
  const TTest *fn;
} lukv_test_case;

/* Adds one TCase per case, named after it, each with the checked fixture
 * (setup, teardown) and the timeout. */
void lukv_test_add_cases(Suite *s, const lukv_test_case *cases, size_t n, int timeout_s, SFun setup,
                         SFun teardown);

/* Runs the suite (and frees it): EXIT_SUCCESS when every test passed,
 * EXIT_FAILURE otherwise. */
int lukv_test_run(Suite *s, enum print_output mode);

#endif

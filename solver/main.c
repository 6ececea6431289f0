/* lukv-solve: budget tables from a profile (DESIGN §3 "Allocation problem").
 *
 *   lukv-solve PROFILE -o BUDGETS [options]   solve and write budgets.h5
 *   lukv-solve show BUDGETS [--ratio R]       per-layer x head keep table
 *   lukv-solve export BUDGETS --npy OUT.npy   kvpress prune-ratio array
 *   lukv-solve evaluate BUDGETS PROFILE       a table's loss on other samples
 *
 * Exit status: 0 success, 1 bad input or failure (one line on stderr naming
 * the file, the object and the problem), 2 usage error.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "formats.h"
#include "lukv_config.h"
#include "npy.h"
#include "progress.h"
#include "solver.h"

#define PROG "lukv-solve"
#define MAX_RATIOS 1000

static const char USAGE[] =
    "usage: " PROG " PROFILE -o BUDGETS [options]\n"
    "       " PROG " show BUDGETS [--ratio R]\n"
    "       " PROG " export BUDGETS --npy OUT.npy\n"
    "       " PROG " evaluate BUDGETS PROFILE [--samples FROM:TO] [--ratios LIST]\n"
    "\n"
    "Allocates a KV-cache budget to every (layer, KV head) from the loss curves of a\n"
    "profile (lukv-profile): lower convex hulls + one greedy pass for every ratio,\n"
    "certified against the LP bound and an exact optimum.\n"
    "\n"
    "solve options:\n"
    "  -o, --output FILE        budgets.h5 to write (required)\n"
    "  --scorer NAME            curves to solve: snapkv (default), keydiff, oracle, ...\n"
    "  --aggregation A          mean-curve (default) | mean-of-solutions\n"
    "  --ratios LIST            compression ratios in (0,1): 0.5,0.8,0.9 or FROM:TO:STEP;\n"
    "                           default 0.01:0.99:0.01 (99 ratios)\n"
    "  --exact M                dp (default) | mip (GLPK branch-and-cut) | none\n"
    "  --lp                     also solve GLPK's LP relaxation for every ratio\n"
    "  --time-limit SECONDS     per GLPK call (default 60)\n"
    "  --folds K                K-fold held-out loss of both aggregations (K >= 2)\n"
    "  --pyramid-beta B         PyramidKV schedule parameter (default 20)\n"
    "  --samples FROM:TO        calibrate on the profile's samples FROM..TO-1 only\n"
    "                           (0-based; FROM: or :TO leave that end open)\n"
    "  -q, --quiet              no progress line\n"
    "\n"
    "show options:\n"
    "  --ratio R                the compression ratio to print (default 0.8)\n"
    "\n"
    "export options:\n"
    "  --npy FILE               write float32 [99, L, H] = 1 - keep for ratios 0.01..0.99\n"
    "\n"
    "evaluate: the table's loss on PROFILE's curves (e.g. held-out calibration samples)\n"
    "against the best table for those curves (the greedy solved on them), uniform and\n"
    "PyramidKV budgets. Options: --samples FROM:TO, --ratios LIST (rows of the table;\n"
    "default all), --pyramid-beta B.\n"
    "\n"
    "  -h, --help               this text\n"
    "  --version                print the version\n";

/* Parses a double that must use the whole string. */
static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno) return -1;
  *out = v;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "0.5,0.8" or "FROM:TO:STEP" -> sorted unique ratios. Returns the count,
 * -2 for a syntax error (usage), -1 for a value outside (0, 1). */
static int parse_ratios(const char *spec, double *out, int cap, char *bad, size_t badlen) {
  int n = 0;
  const char *colon = strchr(spec, ':');
  if (colon) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *a = strtok(buf, ":"), *b = strtok(NULL, ":"), *c = strtok(NULL, ":");
    double from, to, step;
    if (!a || !b || !c || strtok(NULL, ":") || parse_double(a, &from) || parse_double(b, &to) ||
        parse_double(c, &step) || !(step > 0) || to < from)
      return -2;
    long count = lround(floor((to - from) / step + 1e-9)) + 1;
    if (count > cap) return -2;
    for (long i = 0; i < count; i++) out[n++] = round((from + (double)i * step) * 1e9) / 1e9;
  } else {
    char buf[8192];
    if (strlen(spec) >= sizeof buf) return -2;
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
      if (n == cap) return -2;
      if (parse_double(t, &out[n])) return -2;
      n++;
    }
  }
  if (n == 0) return -2;
  for (int i = 0; i < n; i++) {
    if (!(out[i] > 0.0 && out[i] < 1.0) || !isfinite(out[i])) {
      snprintf(bad, badlen, "%g", out[i]);
      return -1;
    }
  }
  qsort(out, (size_t)n, sizeof *out, cmp_double);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (m == 0 || out[i] - out[m - 1] > 1e-9) out[m++] = out[i];
  return m;
}

/* --ratios VALUE into ratios[MAX_RATIOS] and *n. Returns 0, or the CLI exit
 * status after printing the error (2 syntax, 1 a ratio outside (0, 1)). */
static int ratios_option(const char *v, double *ratios, int *n) {
  char bad[64] = "";
  int k = parse_ratios(v, ratios, MAX_RATIOS, bad, sizeof bad);
  if (k == -2) return lukv_cli_usage(PROG, "cannot parse --ratios '%s' (0.5,0.8 or FROM:TO:STEP)", v);
  if (k == -1) {
    fprintf(stderr, PROG ": error: --ratios: ratio %s is outside (0, 1)\n", bad);
    return 1;
  }
  *n = k;
  return 0;
}

/* "FROM:TO", "FROM:" or ":TO" (0-based, TO exclusive) -> from, to; an open
 * end is -1. Returns -1 on a syntax error. */
static int parse_sample_range(const char *spec, int64_t *from, int64_t *to) {
  const char *colon = strchr(spec, ':');
  if (!colon || strchr(colon + 1, ':')) return -1;
  int64_t v[2] = {-1, -1};
  const char *part[2] = {spec, colon + 1};
  size_t len[2] = {(size_t)(colon - spec), strlen(colon + 1)};
  for (int i = 0; i < 2; i++) {
    if (len[i] == 0) continue;
    if (len[i] > 18) return -1;
    int64_t x = 0;
    for (size_t j = 0; j < len[i]; j++) {
      if (part[i][j] < '0' || part[i][j] > '9') return -1;
      x = x * 10 + (part[i][j] - '0');
    }
    v[i] = x;
  }
  if (v[0] >= 0 && v[1] >= 0 && v[1] <= v[0]) return -1;
  *from = v[0];
  *to = v[1];
  return 0;
}

/* Narrows a profile read from path to the samples of --samples (an open end
 * is -1). Returns a CLI exit status: 0 when done, else the error is printed. */
static int select_samples(const char *path, lukv_profile *prof, int64_t from, int64_t to) {
  int64_t a = from < 0 ? 0 : from, b = to < 0 ? prof->n_samples : to;
  if (a == 0 && b == prof->n_samples) return 0;
  lukv_error err, named;
  lukv_error_clear(&err);
  lukv_error_clear(&named);
  if (lukv_profile_slice(prof, a, b, &err) == LUKV_OK) return 0;
  lukv_error_set(&named, err.status, "%s: /curves: %s", path, err.msg);
  return lukv_cli_fail(PROG, &named);
}

static void on_progress(void *user, const char *stage, int done, int total) {
  lukv_progress_update((lukv_progress *)user, stage, done, total);
}

/* Prints a loss with enough digits to compare columns, or "-" when absent. */
static void print_loss(double v) {
  if (isnan(v))
    printf(" %12s", "-");
  else
    printf(" %12.6g", v);
}

static void print_table(const lukv_budgets *b, const lukv_solve_opts *o) {
  const double *feasible = lukv_budgets_extra(b, "feasible");
  const double *lp_glpk = lukv_budgets_extra(b, "lp_glpk");
  const double *exact_status = lukv_budgets_extra(b, "exact_status");
  const double *mip_gap = lukv_budgets_extra(b, "mip_gap");
  const double *ho_mc = lukv_budgets_extra(b, "heldout_mean_curve");
  const double *ho_mos = lukv_budgets_extra(b, "heldout_mean_of_solutions");
  printf("# %s: scorer %s, aggregation %s, %d layers x %d KV heads, grid %d, g_min %d (T = %d)\n",
         b->model.model_name, b->scorer, b->aggregation, b->model.n_layers, b->model.n_kv_heads,
         b->grid, b->min_keep_index, b->context_len);
  printf("# losses: utility not kept, summed over all heads on the aggregated curves\n");
  printf("%6s %12s %12s %12s %8s %12s %12s", "ratio", "greedy", "LP bound", "exact", "gap %",
         "uniform", "pyramid");
  if (o->lp) printf(" %12s", "GLPK LP");
  if (o->folds >= 2) printf(" %12s %12s", "heldout mc", "heldout mos");
  printf("\n");
  int notes = 0;
  for (int64_t r = 0; r < b->n_ratios; r++) {
    printf("%6.3g", b->compression[r]);
    print_loss(b->report_greedy[r]);
    print_loss(b->report_lp_bound[r]);
    print_loss(b->report_exact[r]);
    double ex = b->report_exact[r], gr = b->report_greedy[r];
    if (!isnan(ex) && ex > 0)
      printf(" %8.4f", 100.0 * (gr - ex) / ex);
    else if (!isnan(ex))
      printf(" %8s", gr == ex ? "0" : "inf");
    else
      printf(" %8s", "-");
    print_loss(b->report_uniform[r]);
    print_loss(b->report_pyramid[r]);
    if (o->lp) print_loss(lp_glpk ? lp_glpk[r] : NAN);
    if (o->folds >= 2) {
      print_loss(ho_mc ? ho_mc[r] : NAN);
      print_loss(ho_mos ? ho_mos[r] : NAN);
    }
    int infeasible = feasible && feasible[r] == 0.0;
    if (infeasible) {
      printf("  (budget below every head at g_min: all heads at g_min)");
      notes++;
    }
    if (!infeasible && exact_status && !isnan(exact_status[r]) && exact_status[r] != 0.0) {
      int st = (int)exact_status[r];
      printf("  (exact: %s", lukv_strerror(st));
      if (mip_gap && !isnan(mip_gap[r])) printf(", MIP gap %.3g%%", 100.0 * mip_gap[r]);
      printf(")");
      notes++;
    }
    printf("\n");
  }
  if (o->lp && lp_glpk) {
    double worst = 0.0;
    for (int64_t r = 0; r < b->n_ratios; r++) {
      if (isnan(lp_glpk[r])) continue;
      double scale = fmax(fabs(lp_glpk[r]), 1e-12);
      worst = fmax(worst, fabs(lp_glpk[r] - b->report_lp_bound[r]) / scale);
    }
    printf("# GLPK LP vs hull LP bound: max relative difference %.2e\n", worst);
  }
  if (notes) printf("# %d ratio(s) carry a note\n", notes);
}

static int cmd_solve(int argc, char **argv) {
  const char *profile_path = NULL, *out_path = NULL;
  static double ratios[MAX_RATIOS];
  lukv_solve_opts o;
  lukv_solve_opts_default(&o);
  int quiet = 0;
  int64_t s_from = -1, s_to = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                    \
  do {                                                                  \
    if (!v) return lukv_cli_usage(PROG, "option %s needs a value", a); \
    i++;                                                                \
  } while (0)
    if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      NEED_VALUE();
      out_path = v;
    } else if (!strcmp(a, "--scorer")) {
      NEED_VALUE();
      o.scorer = v;
    } else if (!strcmp(a, "--aggregation")) {
      NEED_VALUE();
      if (!strcmp(v, "mean-curve"))
        o.aggregation = LUKV_AGG_MEAN_CURVE;
      else if (!strcmp(v, "mean-of-solutions"))
        o.aggregation = LUKV_AGG_MEAN_OF_SOLUTIONS;
      else
        return lukv_cli_usage(PROG, "unknown aggregation '%s' (mean-curve or mean-of-solutions)", v);
    } else if (!strcmp(a, "--ratios")) {
      NEED_VALUE();
      int rc = ratios_option(v, ratios, &o.n_ratios);
      if (rc) return rc;
      o.ratios = ratios;
    } else if (!strcmp(a, "--exact")) {
      NEED_VALUE();
      if (!strcmp(v, "dp"))
        o.exact = LUKV_EXACT_DP;
      else if (!strcmp(v, "mip"))
        o.exact = LUKV_EXACT_MIP;
      else if (!strcmp(v, "none"))
        o.exact = LUKV_EXACT_NONE;
      else
        return lukv_cli_usage(PROG, "unknown --exact '%s' (dp, mip or none)", v);
    } else if (!strcmp(a, "--lp")) {
      o.lp = 1;
    } else if (!strcmp(a, "--time-limit")) {
      NEED_VALUE();
      if (parse_double(v, &o.time_limit_s) || !(o.time_limit_s > 0))
        return lukv_cli_usage(PROG, "--time-limit needs a positive number of seconds, not '%s'", v);
    } else if (!strcmp(a, "--folds")) {
      NEED_VALUE();
      double k;
      if (parse_double(v, &k) || k != floor(k) || k < 2 || k > 1000)
        return lukv_cli_usage(PROG, "--folds needs an integer >= 2, not '%s'", v);
      o.folds = (int)k;
    } else if (!strcmp(a, "--pyramid-beta")) {
      NEED_VALUE();
      if (parse_double(v, &o.pyramid_beta) || !(o.pyramid_beta >= 1))
        return lukv_cli_usage(PROG, "--pyramid-beta needs a number >= 1, not '%s'", v);
    } else if (!strcmp(a, "--samples")) {
      NEED_VALUE();
      if (parse_sample_range(v, &s_from, &s_to))
        return lukv_cli_usage(PROG, "cannot parse --samples '%s' (FROM:TO, FROM: or :TO, 0-based)", v);
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = 1;
    } else if (a[0] == '-' && a[1]) {
      return lukv_cli_usage(PROG, "unknown option '%s'", a);
    } else if (!profile_path) {
      profile_path = a;
    } else {
      return lukv_cli_usage(PROG, "unexpected argument '%s'", a);
    }
#undef NEED_VALUE
  }
  if (!profile_path) return lukv_cli_usage(PROG, "%s", "missing PROFILE");
  if (!out_path) return lukv_cli_usage(PROG, "%s", "missing -o BUDGETS");

  lukv_error err;
  lukv_error_clear(&err);
  lukv_profile prof;
  memset(&prof, 0, sizeof prof);
  if (lukv_profile_read(profile_path, &prof, &err) != LUKV_OK) return lukv_cli_fail(PROG, &err);
  const int64_t s_total = prof.n_samples;
  int rc = select_samples(profile_path, &prof, s_from, s_to);
  if (rc) {
    lukv_profile_free(&prof);
    return rc;
  }
  if (!lukv_profile_curves(&prof, o.scorer)) {
    char avail[1024] = "";
    size_t n = 0;
    for (int i = 0; i < prof.n_scorers; i++)
      n += (size_t)snprintf(avail + n, sizeof avail - n, "%s, ", prof.scorer_names[i]);
    snprintf(avail + n, sizeof avail - n, "oracle");
    lukv_error_set(&err, LUKV_ERR_NOTFOUND, "%s: /curves/%s: unknown scorer (available: %s)",
                   profile_path, o.scorer, avail);
    lukv_profile_free(&prof);
    return lukv_cli_fail(PROG, &err);
  }

  lukv_progress prog;
  lukv_progress_init(&prog, "ratios", quiet);
  o.progress = on_progress;
  o.progress_user = &prog;
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  int st = lukv_solve(&prof, &o, &b, &err);
  lukv_progress_end(&prog);
  const int64_t s_used = prof.n_samples;
  lukv_profile_free(&prof);
  if (st != LUKV_OK) {
    /* The solver does not know the file name: add it so the line names the file. */
    lukv_error named;
    lukv_error_clear(&named);
    lukv_error_set(&named, st, "%s: %s", profile_path, err.msg);
    lukv_budgets_free(&b);
    return lukv_cli_fail(PROG, &named);
  }
  if (lukv_budgets_write(out_path, &b, &err) != LUKV_OK) {
    lukv_budgets_free(&b);
    return lukv_cli_fail(PROG, &err);
  }
  print_table(&b, &o);
  if (s_used != s_total) {
    const int64_t a = s_from < 0 ? 0 : s_from;
    printf("# calibrated on samples %lld:%lld of the profile's %lld\n", (long long)a, (long long)(a + s_used),
           (long long)s_total);
  }
  printf("# wrote %s (%lld ratios); see: " PROG " show %s --ratio 0.8\n", out_path,
         (long long)b.n_ratios, out_path);
  lukv_budgets_free(&b);
  return 0;
}

/* The subcommands' shape: one file and one option taking a value. On a usage
 * error returns 2 (already printed); else 0 with *path / *value set (*value
 * left as given when the option is absent). */
static int parse_file_and_option(int argc, char **argv, const char *option, const char **path,
                                 const char **value) {
  *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], option)) {
      if (i + 1 >= argc) return lukv_cli_usage(PROG, "option %s needs a value", argv[i]);
      *value = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return lukv_cli_usage(PROG, "unknown option '%s'", argv[i]);
    } else if (!*path) {
      *path = argv[i];
    } else {
      return lukv_cli_usage(PROG, "unexpected argument '%s'", argv[i]);
    }
  }
  return 0;
}

/* The error for a ratio a budgets table lacks. */
static void ratio_not_in_table(lukv_error *err, const char *path, const lukv_budgets *b, double rho) {
  lukv_error_set(err, LUKV_ERR_NOTFOUND,
                 "%s: /compression: ratio %g is not in the table (%lld ratios, %g to %g)", path, rho,
                 (long long)b->n_ratios, b->compression[0], b->compression[b->n_ratios - 1]);
}

static int cmd_show(int argc, char **argv) {
  const char *path, *ratio_arg = NULL;
  double rho = 0.8;
  if (parse_file_and_option(argc, argv, "--ratio", &path, &ratio_arg)) return 2;
  if (ratio_arg && parse_double(ratio_arg, &rho))
    return lukv_cli_usage(PROG, "cannot parse --ratio '%s'", ratio_arg);
  if (!path) return lukv_cli_usage(PROG, "%s", "show: missing BUDGETS");
  lukv_error err;
  lukv_error_clear(&err);
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  if (lukv_budgets_read(path, &b, &err) != LUKV_OK) return lukv_cli_fail(PROG, &err);
  int64_t r = lukv_budgets_find_ratio(&b, rho);
  if (r < 0) {
    ratio_not_in_table(&err, path, &b, rho);
    lukv_budgets_free(&b);
    return lukv_cli_fail(PROG, &err);
  }
  int L = b.model.n_layers, H = b.model.n_kv_heads;
  const float *keep = b.keep_fraction + (size_t)r * (size_t)L * (size_t)H;
  printf("# %s: keep %% of the context per (layer, KV head) at compression %g\n", path, rho);
  printf("# model %s, scorer %s, aggregation %s, solver %s", b.model.model_name, b.scorer, b.aggregation,
         b.solver);
  if (b.calibration_samples > 0) printf(", calibrated on %lld samples", (long long)b.calibration_samples);
  printf("\n");
  printf("%5s", "layer");
  for (int h = 0; h < H; h++) printf("  h%-4d", h);
  printf("   mean\n");
  double total = 0.0;
  for (int l = 0; l < L; l++) {
    double row = 0.0;
    printf("%5d", l);
    for (int h = 0; h < H; h++) {
      printf(" %6.1f", 100.0 * keep[l * H + h]);
      row += keep[l * H + h];
    }
    printf(" %6.1f\n", 100.0 * row / H);
    total += row;
  }
  printf("# mean keep %.2f%% (target %.2f%%)\n", 100.0 * total / (L * H), 100.0 * (1.0 - rho));
  lukv_budgets_free(&b);
  return 0;
}

static int cmd_export(int argc, char **argv) {
  const char *path, *npy = NULL;
  if (parse_file_and_option(argc, argv, "--npy", &path, &npy)) return 2;
  if (!path) return lukv_cli_usage(PROG, "%s", "export: missing BUDGETS");
  if (!npy) return lukv_cli_usage(PROG, "%s", "export: missing --npy OUT.npy");
  lukv_error err;
  lukv_error_clear(&err);
  lukv_budgets b;
  memset(&b, 0, sizeof b);
  if (lukv_budgets_read(path, &b, &err) != LUKV_OK) return lukv_cli_fail(PROG, &err);
  /* kvpress indexes the array by round(100 * ratio) - 1: all 99 rows must exist. */
  size_t LH = (size_t)b.model.n_layers * (size_t)b.model.n_kv_heads;
  float *prune = malloc(99 * LH * sizeof *prune);
  if (!prune) {
    lukv_budgets_free(&b);
    lukv_error_set(&err, LUKV_ERR_NOMEM, "%s: out of memory", path);
    return lukv_cli_fail(PROG, &err);
  }
  int st = LUKV_OK;
  for (int i = 0; i < 99 && st == LUKV_OK; i++) {
    int64_t r = lukv_budgets_find_ratio(&b, (i + 1) / 100.0);
    if (r < 0) {
      st = lukv_error_set(&err, LUKV_ERR_NOTFOUND,
                          "%s: /compression: ratio %.2f is missing; the kvpress export needs all "
                          "99 ratios 0.01..0.99 (solve with the default --ratios)",
                          path, (i + 1) / 100.0);
      break;
    }
    for (size_t k = 0; k < LH; k++) prune[(size_t)i * LH + k] = 1.0f - b.keep_fraction[(size_t)r * LH + k];
  }
  if (st == LUKV_OK) {
    int64_t shape[3] = {99, b.model.n_layers, b.model.n_kv_heads};
    st = lukv_npy_write_f32(npy, prune, shape, 3, &err);
  }
  if (st == LUKV_OK)
    printf("wrote %s: float32 [99, %d, %d] prune ratios (1 - keep) for compression 0.01..0.99\n",
           npy, b.model.n_layers, b.model.n_kv_heads);
  free(prune);
  lukv_budgets_free(&b);
  return st == LUKV_OK ? 0 : lukv_cli_fail(PROG, &err);
}

/* evaluate BUDGETS PROFILE: how a table calibrated on some samples does on
 * others, against the best table for those others. */
static int cmd_evaluate(int argc, char **argv) {
  const char *paths[2] = {NULL, NULL};
  int n_paths = 0;
  static double ratios[MAX_RATIOS];
  int n_ratios = 0;
  double beta = 20.0;
  int64_t s_from = -1, s_to = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
    int takes_value = !strcmp(a, "--samples") || !strcmp(a, "--ratios") || !strcmp(a, "--pyramid-beta");
    if (takes_value && !v) return lukv_cli_usage(PROG, "option %s needs a value", a);
    if (!strcmp(a, "--samples")) {
      if (parse_sample_range(v, &s_from, &s_to))
        return lukv_cli_usage(PROG, "cannot parse --samples '%s' (FROM:TO, FROM: or :TO, 0-based)", v);
    } else if (!strcmp(a, "--ratios")) {
      int rc = ratios_option(v, ratios, &n_ratios);
      if (rc) return rc;
    } else if (!strcmp(a, "--pyramid-beta")) {
      if (parse_double(v, &beta) || !(beta >= 1))
        return lukv_cli_usage(PROG, "--pyramid-beta needs a number >= 1, not '%s'", v);
    } else if (a[0] == '-' && a[1]) {
      return lukv_cli_usage(PROG, "unknown option '%s'", a);
    } else if (n_paths < 2) {
      paths[n_paths++] = a;
      continue;
    } else {
      return lukv_cli_usage(PROG, "unexpected argument '%s'", a);
    }
    i++;
  }
  if (n_paths < 2) return lukv_cli_usage(PROG, "%s", "evaluate: needs BUDGETS and PROFILE");
  const char *bpath = paths[0], *ppath = paths[1];

  lukv_error err;
  lukv_error_clear(&err);
  lukv_budgets b;
  lukv_profile prof;
  memset(&b, 0, sizeof b);
  memset(&prof, 0, sizeof prof);
  lukv_eval_row *rows = NULL;
  int rc = 0;
  if (lukv_budgets_read(bpath, &b, &err) != LUKV_OK) return lukv_cli_fail(PROG, &err);
  if (lukv_profile_read(ppath, &prof, &err) != LUKV_OK) {
    rc = lukv_cli_fail(PROG, &err);
    goto done;
  }
  const int64_t s_total = prof.n_samples, s_first = s_from < 0 ? 0 : s_from;
  rc = select_samples(ppath, &prof, s_from, s_to);
  if (rc) goto done;
  for (int i = 0; i < n_ratios; i++)
    if (lukv_budgets_find_ratio(&b, ratios[i]) < 0) {
      ratio_not_in_table(&err, bpath, &b, ratios[i]);
      rc = lukv_cli_fail(PROG, &err);
      goto done;
    }
  rows = malloc(sizeof *rows * (size_t)b.n_ratios);
  if (!rows) {
    lukv_error_set(&err, LUKV_ERR_NOMEM, "%s: out of memory", bpath);
    rc = lukv_cli_fail(PROG, &err);
    goto done;
  }
  if (lukv_evaluate_table(&prof, &b, beta, rows, &err) != LUKV_OK) {
    lukv_error named;
    lukv_error_clear(&named);
    lukv_error_set(&named, err.status, "%s: %s: %s", bpath, ppath, err.msg);
    rc = lukv_cli_fail(PROG, &named);
    goto done;
  }
  const int32_t T = lukv_profile_min_context(&prof);
  printf("# table %s: %s, scorer %s, aggregation %s (calibrated at T = %d", bpath, b.model.model_name,
         b.scorer, b.aggregation, b.context_len);
  if (b.calibration_samples > 0) printf(" on %lld samples", (long long)b.calibration_samples);
  printf(")\n");
  printf("# read on %s: samples %lld:%lld of %lld, T = %d, mean %s curves\n", ppath, (long long)s_first,
         (long long)(s_first + prof.n_samples), (long long)s_total, T, b.scorer);
  printf("# losses: utility not kept, summed over heads; best = the greedy solved on these samples;\n"
         "# regret = (table - best) / best; lost = table / all utility;\n"
         "# keep diff = mean |keep - keep(best)|\n");
  printf("%6s %12s %12s %9s %12s %12s %8s %10s\n", "ratio", "table", "best", "regret %", "uniform",
         "pyramid", "lost %", "keep diff");
  for (int64_t r = 0; r < b.n_ratios; r++) {
    int wanted = n_ratios == 0;
    for (int i = 0; i < n_ratios && !wanted; i++) wanted = fabs(ratios[i] - b.compression[r]) <= 1e-6;
    if (!wanted) continue;
    const lukv_eval_row *w = &rows[r];
    printf("%6.3g", w->compression);
    print_loss(w->table);
    print_loss(w->best);
    if (w->best > 0)
      printf(" %9.3f", 100.0 * (w->table - w->best) / w->best);
    else
      printf(" %9s", w->table == w->best ? "0" : "inf");
    print_loss(w->uniform);
    print_loss(w->pyramid);
    if (w->total > 0)
      printf(" %8.3f", 100.0 * w->table / w->total);
    else
      printf(" %8s", "-");
    printf(" %9.2f%%\n", 100.0 * w->keep_l1);
  }
done:
  free(rows);
  lukv_profile_free(&prof);
  lukv_budgets_free(&b);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    fputs(USAGE, stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf(PROG " %s\n", LUKV_VERSION);
    return 0;
  }
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(USAGE, stdout);
      return 0;
    }
  if (!strcmp(argv[1], "show")) return cmd_show(argc - 1, argv + 1);
  if (!strcmp(argv[1], "export")) return cmd_export(argc - 1, argv + 1);
  if (!strcmp(argv[1], "evaluate")) return cmd_evaluate(argc - 1, argv + 1);
  return cmd_solve(argc, argv);
}

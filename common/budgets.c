/* budgets.h5: per-head keep fractions for a list of compression ratios,
 * plus the loss report that certifies them (docs/formats.md, "budgets.h5"). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "h5util.h"

/* The reports every budgets.h5 carries, in struct order. */
#define N_STD 5
static const char *const STD_NAMES[N_STD] = {"greedy", "lp_bound", "exact", "uniform", "pyramid"};

static double **std_slot(lukv_budgets *b, int i) {
  double **slots[N_STD] = {&b->report_greedy, &b->report_lp_bound, &b->report_exact,
                           &b->report_uniform, &b->report_pyramid};
  return slots[i];
}

static const double *std_get(const lukv_budgets *b, int i) {
  const double *v[N_STD] = {b->report_greedy, b->report_lp_bound, b->report_exact,
                            b->report_uniform, b->report_pyramid};
  return v[i];
}

static int is_std_name(const char *name) {
  for (int i = 0; i < N_STD; i++)
    if (strcmp(name, STD_NAMES[i]) == 0) return 1;
  return 0;
}

void lukv_budgets_free(lukv_budgets *b) {
  if (!b) return;
  free(b->model.model_name);
  free(b->model.model_hash);
  free(b->scorer);
  free(b->aggregation);
  free(b->solver);
  free(b->compression);
  free(b->keep_fraction);
  for (int i = 0; i < N_STD; i++) free(*std_slot(b, i));
  for (int i = 0; i < b->n_extra; i++) {
    if (b->extra_names) free(b->extra_names[i]);
    if (b->extra) free(b->extra[i]);
  }
  free(b->extra_names);
  free(b->extra);
  memset(b, 0, sizeof *b);
}

int64_t lukv_budgets_find_ratio(const lukv_budgets *b, double rho) {
  if (!b || !b->compression) return -1;
  for (int64_t r = 0; r < b->n_ratios; r++)
    if (fabs((double)b->compression[r] - rho) <= 1e-6) return r;
  return -1;
}

const double *lukv_budgets_extra(const lukv_budgets *b, const char *name) {
  if (!b || !name || !b->extra_names) return NULL;
  for (int i = 0; i < b->n_extra; i++)
    if (b->extra_names[i] && strcmp(b->extra_names[i], name) == 0) return b->extra[i];
  return NULL;
}

/* An extra report's name becomes an HDF5 link name under /report. */
static int extra_name_ok(const char *name) {
  return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && !is_std_name(name);
}

int lukv_budgets_add_extra(lukv_budgets *b, const char *name, const double *values) {
  if (!b || !values || b->n_ratios < 0 || !extra_name_ok(name) || lukv_budgets_extra(b, name))
    return LUKV_ERR_INVALID;
  size_t r = (size_t)b->n_ratios;
  char *nm = lukv_h5_strdup(name);
  double *v = malloc(r ? r * sizeof *v : 1);
  char **names = realloc(b->extra_names, (size_t)(b->n_extra + 1) * sizeof *names);
  if (names) b->extra_names = names;
  double **extra = names ? realloc(b->extra, (size_t)(b->n_extra + 1) * sizeof *extra) : NULL;
  if (extra) b->extra = extra;
  if (!nm || !v || !names || !extra) {
    free(nm);
    free(v);
    return LUKV_ERR_NOMEM;
  }
  if (r) memcpy(v, values, r * sizeof *v);
  b->extra_names[b->n_extra] = nm;
  b->extra[b->n_extra] = v;
  b->n_extra++;
  return LUKV_OK;
}

static int check_min(const char *path, const char *name, int32_t v, int32_t lo, lukv_error *err) {
  if (v < lo)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %d but must be >= %d", path, name, (int)v,
                          (int)lo);
  return LUKV_OK;
}

/* Struct-level checks shared by the reader (after loading) and the writer
 * (before creating anything). */
static int budgets_validate(const char *path, const lukv_budgets *b, lukv_error *err) {
  int rc;
  if ((rc = lukv_h5_check_model_id(path, &b->model, err)) ||
      (rc = check_min(path, "sink", b->sink, 0, err)) ||
      (rc = check_min(path, "window", b->window, 0, err)) ||
      (rc = check_min(path, "grid", b->grid, 1, err)) ||
      (rc = check_min(path, "min_keep_index", b->min_keep_index, 0, err)) ||
      (rc = check_min(path, "context_len", b->context_len, 1, err)))
    return rc;
  if (b->min_keep_index > b->grid)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: min_keep_index: %d exceeds grid %d", path,
                          (int)b->min_keep_index, (int)b->grid);
  if (!b->scorer || !b->scorer[0])
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: scorer: empty", path);
  if (!b->aggregation ||
      (strcmp(b->aggregation, "mean-curve") != 0 && strcmp(b->aggregation, "mean-of-solutions") != 0))
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "%s: aggregation: \"%s\" but must be \"mean-curve\" or "
                          "\"mean-of-solutions\"",
                          path, b->aggregation ? b->aggregation : "(null)");
  if (b->n_ratios < 1)
    return lukv_error_set(err, LUKV_ERR_SHAPE, "%s: /compression: no ratios; need at least one",
                          path);
  int64_t R = b->n_ratios, L = b->model.n_layers, H = b->model.n_kv_heads;
  if (R > INT64_MAX / L / H || (uint64_t)(R * L * H) > SIZE_MAX / sizeof(float))
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: /keep_fraction: [R,L,H] too large", path);
  if (!b->compression || !b->keep_fraction)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: budgets arrays are NULL", path);
  for (int i = 0; i < N_STD; i++)
    if (!std_get(b, i))
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /report/%s: NULL", path, STD_NAMES[i]);
  for (int i = 0; i < b->n_extra; i++) {
    const char *nm = b->extra_names ? b->extra_names[i] : NULL;
    if (!extra_name_ok(nm) || !b->extra || !b->extra[i])
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /report: invalid extra report \"%s\"", path,
                            nm ? nm : "(null)");
    for (int j = 0; j < i; j++)
      if (strcmp(b->extra_names[j], nm) == 0)
        return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /report/%s: appears twice", path, nm);
  }
  for (int64_t r = 0; r < R; r++) {
    float c = b->compression[r];
    if (!(c > 0.0f && c < 1.0f))
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /compression: %g at index %lld but must be in (0, 1)", path,
                            (double)c, (long long)r);
    if (r > 0 && !(c > b->compression[r - 1]))
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /compression: not strictly increasing at index %lld (%g after %g)",
                            path, (long long)r, (double)c, (double)b->compression[r - 1]);
  }
  for (int64_t k = 0; k < R * L * H; k++) {
    float v = b->keep_fraction[k];
    if (!(v >= 0.0f && v <= 1.0f))
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /keep_fraction: %g at [%lld,%lld,%lld] but must be in [0, 1]", path,
                            (double)v, (long long)(k / (L * H)), (long long)(k / H % L),
                            (long long)(k % H));
  }
  /* NaN means "not computed"; an infinity means a bug upstream. */
  for (int i = 0; i < N_STD; i++) {
    const double *v = std_get(b, i);
    for (int64_t r = 0; r < R; r++)
      if (isinf(v[r]))
        return lukv_error_set(err, LUKV_ERR_RANGE,
                              "%s: /report/%s: %g at index %lld; must be finite or NaN", path,
                              STD_NAMES[i], v[r], (long long)r);
  }
  return LUKV_OK;
}

int lukv_budgets_read(const char *path, lukv_budgets *out, lukv_error *err) {
  if (!path || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_budgets_read: NULL argument");
  memset(out, 0, sizeof *out);
  hid_t f;
  int rc = lukv_h5_open_read(path, &f, err);
  if (rc != LUKV_OK) return rc;
  lukv_budgets b = {0};
  char **names = NULL;
  int n_names = 0;
  void *buf;
  hsize_t dr[1];
  if ((rc = lukv_h5_check_header(f, path, LUKV_BUDGETS_FORMAT, LUKV_BUDGETS_VERSION, err)) ||
      (rc = lukv_h5_read_model_id(f, path, &b.model, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "scorer", &b.scorer, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "aggregation", &b.aggregation, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "solver", &b.solver, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "sink", 0, INT32_MAX, &b.sink, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "window", 0, INT32_MAX, &b.window, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "grid", 1, INT32_MAX, &b.grid, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "min_keep_index", 0, INT32_MAX, &b.min_keep_index,
                                  err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "context_len", 1, INT32_MAX, &b.context_len, err)))
    goto fail;
  if (H5Aexists(f, "calibration_samples") > 0) {
    if ((rc = lukv_h5_read_attr_int(f, path, "calibration_samples", &b.calibration_samples, err)))
      goto fail;
    if (b.calibration_samples < 1) {
      rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: calibration_samples: %lld but must be >= 1", path,
                          (long long)b.calibration_samples);
      goto fail;
    }
  }
  if ((rc = lukv_h5_read_dataset(f, path, "/compression", H5T_FLOAT, H5T_NATIVE_FLOAT, 1, NULL, dr,
                                 &buf, err)))
    goto fail;
  b.compression = buf;
  b.n_ratios = (int64_t)dr[0];
  if (b.n_ratios < 1) {
    rc = lukv_error_set(err, LUKV_ERR_SHAPE,
                        "%s: /compression: shape [0]; a budgets table needs at least one ratio",
                        path);
    goto fail;
  }
  hsize_t R = dr[0], dk[3] = {R, (hsize_t)b.model.n_layers, (hsize_t)b.model.n_kv_heads};
  if ((rc = lukv_h5_read_dataset(f, path, "/keep_fraction", H5T_FLOAT, H5T_NATIVE_FLOAT, 3, dk,
                                 NULL, &buf, err)))
    goto fail;
  b.keep_fraction = buf;
  char name[512];
  for (int i = 0; i < N_STD; i++) {
    snprintf(name, sizeof name, "/report/%s", STD_NAMES[i]);
    if ((rc = lukv_h5_read_dataset(f, path, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, 1, dr, NULL, &buf,
                                   err)))
      goto fail;
    *std_slot(&b, i) = buf;
  }
  /* Anything else under /report is an optional per-ratio figure. */
  if ((rc = lukv_h5_list_datasets(f, path, "/report", &names, &n_names, err))) goto fail;
  b.extra_names = calloc((size_t)n_names, sizeof *b.extra_names);
  b.extra = calloc((size_t)n_names, sizeof *b.extra);
  if (!b.extra_names || !b.extra) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
  }
  for (int i = 0; i < n_names; i++) {
    if (is_std_name(names[i])) continue;
    snprintf(name, sizeof name, "/report/%s", names[i]);
    if ((rc = lukv_h5_read_dataset(f, path, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, 1, dr, NULL, &buf,
                                   err)))
      goto fail;
    b.extra_names[b.n_extra] = names[i];
    names[i] = NULL; /* moved into b */
    b.extra[b.n_extra++] = buf;
  }
  if ((rc = budgets_validate(path, &b, err))) goto fail;
  lukv_h5_free_names(names, n_names);
  H5Fclose(f);
  *out = b;
  return LUKV_OK;
fail:
  lukv_h5_free_names(names, n_names);
  H5Fclose(f);
  lukv_budgets_free(&b);
  return rc;
}

int lukv_budgets_write(const char *path, const lukv_budgets *b, lukv_error *err) {
  if (!path || !b) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_budgets_write: NULL argument");
  int rc = budgets_validate(path, b, err);
  if (rc != LUKV_OK) return rc;
  lukv_h5_writer w;
  if ((rc = lukv_h5_create(&w, path, LUKV_BUDGETS_FORMAT, LUKV_BUDGETS_VERSION, err))) return rc;
  hid_t f = w.file, g = -1;
  hsize_t R = (hsize_t)b->n_ratios;
  hsize_t dr[1] = {R}, dk[3] = {R, (hsize_t)b->model.n_layers, (hsize_t)b->model.n_kv_heads};
  if ((rc = lukv_h5_write_model_id(f, path, &b->model, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "scorer", b->scorer, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "aggregation", b->aggregation, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "solver", b->solver, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "sink", b->sink, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "window", b->window, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "grid", b->grid, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "min_keep_index", b->min_keep_index, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "context_len", b->context_len, err)) ||
      (b->calibration_samples > 0 &&
       (rc = lukv_h5_write_attr_int(f, path, "calibration_samples", b->calibration_samples, err))) ||
      (rc = lukv_h5_write_dataset(f, path, "/compression", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, dr,
                                  b->compression, err)) ||
      (rc = lukv_h5_write_dataset(f, path, "/keep_fraction", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3,
                                  dk, b->keep_fraction, err)))
    goto fail;
  g = H5Gcreate2(f, "/report", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    rc = lukv_h5_fail(err, LUKV_ERR_IO, path, "/report", "cannot create group");
    goto fail;
  }
  H5Gclose(g);
  char name[512];
  for (int i = 0; i < N_STD + b->n_extra; i++) {
    const double *v = i < N_STD ? std_get(b, i) : b->extra[i - N_STD];
    snprintf(name, sizeof name, "/report/%s", i < N_STD ? STD_NAMES[i] : b->extra_names[i - N_STD]);
    if ((rc = lukv_h5_write_dataset(f, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dr, v,
                                    err)))
      goto fail;
  }
  return lukv_h5_commit(&w, err);
fail:
  lukv_h5_abort(&w);
  return rc;
}

/* profile.h5: per-head loss curves of each scorer and of the oracle
 * (docs/formats.md, "profile.h5"; DESIGN §3 "Curves"). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "h5util.h"

#define ORACLE "oracle"

void lukv_profile_free(lukv_profile *p) {
  if (!p) return;
  free(p->model.model_name);
  free(p->model.model_hash);
  free(p->mode);
  free(p->utility);
  if (p->scorer_names)
    for (int i = 0; i < p->n_scorers; i++) free(p->scorer_names[i]);
  if (p->curves)
    for (int i = 0; i < p->n_scorers; i++) free(p->curves[i]);
  free(p->scorer_names);
  free(p->curves);
  free(p->oracle);
  free(p->utility_total);
  free(p->sample_context_len);
  free(p->precision);
  memset(p, 0, sizeof *p);
}

const float *lukv_profile_curves(const lukv_profile *p, const char *scorer) {
  if (!p || !scorer) return NULL;
  if (strcmp(scorer, ORACLE) == 0) return p->oracle;
  for (int i = 0; i < p->n_scorers; i++)
    if (p->scorer_names && p->scorer_names[i] && strcmp(p->scorer_names[i], scorer) == 0)
      return p->curves ? p->curves[i] : NULL;
  return NULL;
}

/* Finite and >= 0 everywhere; the first bad element is named by its index in
 * the dataset's own shape (dims[rank]), e.g. [s,l,h,g]. */
static int check_nonneg(const char *path, const char *name, const float *v, int rank,
                        const int64_t *dims, lukv_error *err) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  for (int64_t k = 0; k < n; k++) {
    if (isfinite(v[k]) && v[k] >= 0.0f) continue;
    char idx[160];
    int64_t rem = k, at[LUKV_H5_MAX_RANK];
    for (int i = rank - 1; i >= 0; i--) {
      at[i] = rem % dims[i];
      rem /= dims[i];
    }
    size_t o = 0;
    for (int i = 0; i < rank && o < sizeof idx; i++)
      o += (size_t)snprintf(idx + o, sizeof idx - o, "%s%lld", i ? "," : "", (long long)at[i]);
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "%s: %s: value %g at [%s]; values must be finite and >= 0", path, name,
                          (double)v[k], idx);
  }
  return LUKV_OK;
}

static int check_i32(const char *path, const char *name, int32_t v, int32_t lo, lukv_error *err) {
  if (v < lo)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %d but must be >= %d", path, name, (int)v,
                          (int)lo);
  return LUKV_OK;
}

static int check_choice(const char *path, const char *name, const char *v, const char *a,
                        const char *b, lukv_error *err) {
  if (!v || (strcmp(v, a) != 0 && strcmp(v, b) != 0))
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: \"%s\" but must be \"%s\" or \"%s\"", path,
                          name, v ? v : "(null)", a, b);
  return LUKV_OK;
}

/* A scorer name becomes an HDF5 link name under /curves. */
static int check_scorer_name(const char *path, const lukv_profile *p, int i, lukv_error *err) {
  const char *s = p->scorer_names ? p->scorer_names[i] : NULL;
  if (!s || !s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, ORACLE) == 0)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: /curves: invalid scorer name \"%s\" (empty, contains '/' or is "
                          "\"oracle\")",
                          path, s ? s : "(null)");
  for (int j = 0; j < i; j++)
    if (strcmp(p->scorer_names[j], s) == 0)
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /curves: scorer \"%s\" appears twice", path,
                            s);
  return LUKV_OK;
}

/* The optional attributes, when present. */
static int check_provenance(const char *path, const lukv_profile *p, lukv_error *err) {
  if (p->has_first_sample && p->first_sample < 0)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: first_sample: %lld but must be >= 0", path,
                          (long long)p->first_sample);
  if (p->shard_count < 0 || (p->shard_count > 0 && (p->shard_index < 1 || p->shard_index > p->shard_count)))
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "%s: shard_index %d of shard_count %d: need 1 <= shard_index <= shard_count", path,
                          (int)p->shard_index, (int)p->shard_count);
  if (p->precision && strcmp(p->precision, "bf16") && strcmp(p->precision, "f32"))
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: precision: \"%s\" but must be \"bf16\" or \"f32\"", path,
                          p->precision);
  return LUKV_OK;
}

/* Everything that can be checked on the struct alone, shared by the reader
 * (after loading) and the writer (before creating anything). */
static int profile_validate(const char *path, const lukv_profile *p, lukv_error *err) {
  int rc;
  if ((rc = lukv_h5_check_model_id(path, &p->model, err)) ||
      (rc = check_choice(path, "mode", p->mode, "teacher", "generate", err)) ||
      (rc = check_choice(path, "utility", p->utility, "max", "sum", err)) ||
      (rc = check_i32(path, "context_len", p->context_len, 1, err)) ||
      (rc = check_i32(path, "future_len", p->future_len, 0, err)) ||
      (rc = check_i32(path, "sink", p->sink, 0, err)) ||
      (rc = check_i32(path, "window", p->window, 0, err)) ||
      (rc = check_i32(path, "pool_kernel", p->pool_kernel, 1, err)) ||
      (rc = check_i32(path, "grid", p->grid, 1, err)))
    return rc;
  if (p->n_samples < 1)
    return lukv_error_set(err, LUKV_ERR_SHAPE,
                          "%s: /sample_context_len: zero samples; a profile needs at least one",
                          path);
  if (p->n_scorers < 1)
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: /curves: no scorer curves (only the oracle); need at least one", path);
  int64_t S = p->n_samples, L = p->model.n_layers, H = p->model.n_kv_heads, G1 = (int64_t)p->grid + 1;
  if (S > INT64_MAX / L / H / G1 || (uint64_t)(S * L * H * G1) > SIZE_MAX / sizeof(float))
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: /curves: [S,L,H,G+1] too large", path);
  if (!p->scorer_names || !p->curves || !p->oracle || !p->utility_total || !p->sample_context_len)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: profile arrays are NULL", path);
  for (int i = 0; i < p->n_scorers; i++) {
    if ((rc = check_scorer_name(path, p, i, err))) return rc;
    if (!p->curves[i])
      return lukv_error_set(err, LUKV_ERR_INVALID, "%s: /curves/%s: NULL curves", path,
                            p->scorer_names[i]);
  }
  int32_t min_t = p->sink + p->window;
  for (int64_t s = 0; s < S; s++)
    if (p->sample_context_len[s] <= min_t)
      return lukv_error_set(err, LUKV_ERR_RANGE,
                            "%s: /sample_context_len: %d at index %lld but must exceed sink + "
                            "window = %d",
                            path, (int)p->sample_context_len[s], (long long)s, (int)min_t);
  int64_t dc[4] = {S, L, H, G1};
  char name[512];
  for (int i = 0; i < p->n_scorers; i++) {
    snprintf(name, sizeof name, "/curves/%s", p->scorer_names[i]);
    if ((rc = check_nonneg(path, name, p->curves[i], 4, dc, err))) return rc;
  }
  if ((rc = check_nonneg(path, "/curves/" ORACLE, p->oracle, 4, dc, err))) return rc;
  if ((rc = check_nonneg(path, "/utility_total", p->utility_total, 3, dc, err))) return rc;
  return check_provenance(path, p, err);
}

int lukv_profile_read(const char *path, lukv_profile *out, lukv_error *err) {
  if (!path || !out) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_profile_read: NULL argument");
  memset(out, 0, sizeof *out);
  hid_t f;
  int rc = lukv_h5_open_read(path, &f, err);
  if (rc != LUKV_OK) return rc;
  lukv_profile p = {0};
  char **names = NULL;
  int n_names = 0;
  void *buf;
  hsize_t ds[1];
  if ((rc = lukv_h5_check_header(f, path, LUKV_PROFILE_FORMAT, LUKV_PROFILE_VERSION, err)) ||
      (rc = lukv_h5_read_model_id(f, path, &p.model, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "mode", &p.mode, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "context_len", 1, INT32_MAX, &p.context_len, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "future_len", 0, INT32_MAX, &p.future_len, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "sink", 0, INT32_MAX, &p.sink, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "window", 0, INT32_MAX, &p.window, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "pool_kernel", 1, INT32_MAX, &p.pool_kernel, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "utility", &p.utility, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "grid", 1, INT32_MAX, &p.grid, err)))
    goto fail;
  /* Optional provenance: absent in older files and in files other tools wrote. */
  if (H5Aexists(f, "first_sample") > 0) {
    if ((rc = lukv_h5_read_attr_int(f, path, "first_sample", &p.first_sample, err))) goto fail;
    p.has_first_sample = 1;
  }
  if (H5Aexists(f, "shard_count") > 0 &&
      ((rc = lukv_h5_read_attr_i32(f, path, "shard_count", 1, INT32_MAX, &p.shard_count, err)) ||
       (rc = lukv_h5_read_attr_i32(f, path, "shard_index", 1, INT32_MAX, &p.shard_index, err))))
    goto fail;
  if (H5Aexists(f, "precision") > 0 && (rc = lukv_h5_read_attr_str(f, path, "precision", &p.precision, err)))
    goto fail;
  if ((rc = lukv_h5_read_dataset(f, path, "/sample_context_len", H5T_INTEGER, H5T_NATIVE_INT32, 1,
                                 NULL, ds, &buf, err)))
    goto fail;
  p.sample_context_len = buf;
  p.n_samples = (int64_t)ds[0];
  if (p.n_samples < 1) {
    rc = lukv_error_set(err, LUKV_ERR_SHAPE,
                        "%s: /sample_context_len: zero samples (shape [0]); a profile needs at "
                        "least one",
                        path);
    goto fail;
  }
  hsize_t S = (hsize_t)p.n_samples, L = (hsize_t)p.model.n_layers, H = (hsize_t)p.model.n_kv_heads,
          G1 = (hsize_t)p.grid + 1;
  hsize_t du[3] = {S, L, H}, dc[4] = {S, L, H, G1};
  if ((rc = lukv_h5_read_dataset(f, path, "/utility_total", H5T_FLOAT, H5T_NATIVE_FLOAT, 3, du,
                                 NULL, &buf, err)))
    goto fail;
  p.utility_total = buf;
  /* The scorers are whatever /curves holds besides the oracle, so a profile
   * written with a new scorer needs no schema change. */
  if ((rc = lukv_h5_list_datasets(f, path, "/curves", &names, &n_names, err))) goto fail;
  int has_oracle = 0;
  for (int i = 0; i < n_names; i++) has_oracle |= strcmp(names[i], ORACLE) == 0;
  if (!has_oracle) {
    rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: /curves/" ORACLE ": missing dataset", path);
    goto fail;
  }
  p.scorer_names = calloc((size_t)n_names, sizeof *p.scorer_names);
  p.curves = calloc((size_t)n_names, sizeof *p.curves);
  if (!p.scorer_names || !p.curves) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
    goto fail;
  }
  char name[512];
  for (int i = 0; i < n_names; i++) {
    snprintf(name, sizeof name, "/curves/%s", names[i]);
    if ((rc = lukv_h5_read_dataset(f, path, name, H5T_FLOAT, H5T_NATIVE_FLOAT, 4, dc, NULL, &buf,
                                   err)))
      goto fail;
    if (strcmp(names[i], ORACLE) == 0) {
      p.oracle = buf;
    } else {
      p.scorer_names[p.n_scorers] = names[i];
      names[i] = NULL; /* moved into p */
      p.curves[p.n_scorers++] = buf;
    }
  }
  if ((rc = profile_validate(path, &p, err))) goto fail;
  lukv_h5_free_names(names, n_names);
  H5Fclose(f);
  *out = p;
  return LUKV_OK;
fail:
  lukv_h5_free_names(names, n_names);
  H5Fclose(f);
  lukv_profile_free(&p);
  return rc;
}

int lukv_profile_write(const char *path, const lukv_profile *p, lukv_error *err) {
  if (!path || !p) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_profile_write: NULL argument");
  int rc = profile_validate(path, p, err);
  if (rc != LUKV_OK) return rc;
  lukv_h5_writer w;
  if ((rc = lukv_h5_create(&w, path, LUKV_PROFILE_FORMAT, LUKV_PROFILE_VERSION, err))) return rc;
  hid_t f = w.file, g = -1;
  hsize_t S = (hsize_t)p->n_samples, L = (hsize_t)p->model.n_layers,
          H = (hsize_t)p->model.n_kv_heads, G1 = (hsize_t)p->grid + 1;
  hsize_t ds[1] = {S}, du[3] = {S, L, H}, dc[4] = {S, L, H, G1};
  if ((rc = lukv_h5_write_model_id(f, path, &p->model, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "mode", p->mode, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "context_len", p->context_len, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "future_len", p->future_len, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "sink", p->sink, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "window", p->window, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "pool_kernel", p->pool_kernel, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "utility", p->utility, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "grid", p->grid, err)) ||
      (p->has_first_sample && (rc = lukv_h5_write_attr_int(f, path, "first_sample", p->first_sample, err))) ||
      (p->shard_count > 0 &&
       ((rc = lukv_h5_write_attr_int(f, path, "shard_index", p->shard_index, err)) ||
        (rc = lukv_h5_write_attr_int(f, path, "shard_count", p->shard_count, err)))) ||
      (p->precision && (rc = lukv_h5_write_attr_str(f, path, "precision", p->precision, err))) ||
      (rc = lukv_h5_write_dataset(f, path, "/sample_context_len", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                  1, ds, p->sample_context_len, err)) ||
      (rc = lukv_h5_write_dataset(f, path, "/utility_total", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3,
                                  du, p->utility_total, err)))
    goto fail;
  g = H5Gcreate2(f, "/curves", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) {
    rc = lukv_h5_fail(err, LUKV_ERR_IO, path, "/curves", "cannot create group");
    goto fail;
  }
  H5Gclose(g);
  char name[512];
  for (int i = 0; i <= p->n_scorers; i++) {
    const float *data = i < p->n_scorers ? p->curves[i] : p->oracle;
    snprintf(name, sizeof name, "/curves/%s", i < p->n_scorers ? p->scorer_names[i] : ORACLE);
    if ((rc = lukv_h5_write_dataset(f, path, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dc, data,
                                    err)))
      goto fail;
  }
  return lukv_h5_commit(&w, err);
fail:
  lukv_h5_abort(&w);
  return rc;
}

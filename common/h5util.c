#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lukv_config.h"

#ifndef LUKV_VERSION
#define LUKV_VERSION "unknown"
#endif

void lukv_h5_quiet(void) {
  /* Per-thread in thread-safe HDF5 builds, so callers repeat it at each entry. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

char *lukv_h5_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void lukv_h5_dims_str(char *buf, size_t size, int rank, const hsize_t *dims) {
  size_t at = 0;
  if (size == 0) return;
  buf[0] = '\0';
  at += (size_t)snprintf(buf + at, size - at, "[");
  for (int i = 0; i < rank && at < size; i++) {
    if (dims[i] == LUKV_H5_ANY)
      at += (size_t)snprintf(buf + at, size - at, "%s*", i ? "," : "");
    else
      at += (size_t)snprintf(buf + at, size - at, "%s%llu", i ? "," : "",
                             (unsigned long long)dims[i]);
  }
  if (at < size) snprintf(buf + at, size - at, "]");
}

/* ---- errors ------------------------------------------------------------- */

typedef struct {
  char desc[256];
  int found;
} innermost;

static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *data) {
  innermost *in = data;
  /* H5E_WALK_UPWARD starts at the most specific error: that one says why. */
  if (n == 0 && e->desc && e->desc[0]) {
    snprintf(in->desc, sizeof in->desc, "%s", e->desc);
    for (char *p = in->desc; *p; p++)
      if (*p == '\n' || *p == '\r') *p = ' ';
    in->found = 1;
  }
  return 0;
}

int lukv_h5_fail(lukv_error *err, int status, const char *path, const char *obj,
                 const char *what) {
  innermost in = {{0}, 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, &in);
  H5Eclear2(H5E_DEFAULT);
  const char *sep = obj ? ": " : "";
  if (!obj) obj = "";
  if (in.found) return lukv_error_set(err, status, "%s: %s%s%s: %s", path, obj, sep, what, in.desc);
  return lukv_error_set(err, status, "%s: %s%s%s", path, obj, sep, what);
}

/* ---- files -------------------------------------------------------------- */

/* A strong close degree makes H5Fclose close every object still open in the
 * file, so an early return on an error path can never keep the file open. */
static hid_t strong_fapl(void) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  return fapl;
}

int lukv_h5_open_read(const char *path, hid_t *file, lukv_error *err) {
  *file = -1;
  lukv_h5_quiet();
  /* Ask the OS first: "No such file or directory" beats an HDF5 trace. */
  int fd = open(path, O_RDONLY);
  if (fd < 0) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  close(fd);
  if (is_dir) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot open: %s", path, strerror(EISDIR));
  if (H5Fis_hdf5(path) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: not an HDF5 file", path);
  }
  hid_t fapl = strong_fapl();
  hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
  if (f < 0) {
    int rc = lukv_h5_fail(err, LUKV_ERR_IO, path, NULL, "cannot open as HDF5");
    if (fapl >= 0) H5Pclose(fapl);
    return rc;
  }
  H5Pclose(fapl);
  *file = f;
  return LUKV_OK;
}

static void writer_release(lukv_h5_writer *w) {
  free(w->path);
  free(w->tmp);
  w->path = w->tmp = NULL;
  w->file = -1;
}

void lukv_h5_abort(lukv_h5_writer *w) {
  if (!w) return;
  if (w->file >= 0) H5Fclose(w->file);
  if (w->tmp) unlink(w->tmp);
  H5Eclear2(H5E_DEFAULT);
  writer_release(w);
}

int lukv_h5_create(lukv_h5_writer *w, const char *path, const char *format, int version,
                   lukv_error *err) {
  w->file = -1;
  w->path = lukv_h5_strdup(path);
  size_t n = strlen(path);
  w->tmp = malloc(n + 5);
  if (!w->path || !w->tmp) {
    writer_release(w);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory", path);
  }
  memcpy(w->tmp, path, n);
  memcpy(w->tmp + n, ".tmp", 5);
  lukv_h5_quiet();
  /* Create it ourselves first so that an unwritable place reports errno
   * ("Permission denied", "No such file or directory"), not an HDF5 trace. */
  int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) {
    int e = errno;
    writer_release(w);
    return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot write %s.tmp: %s", path, path, strerror(e));
  }
  close(fd);
  hid_t fapl = strong_fapl();
  w->file = fapl >= 0 ? H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
  if (w->file < 0) {
    int rc = lukv_h5_fail(err, LUKV_ERR_IO, path, NULL, "cannot create HDF5 file");
    if (fapl >= 0) H5Pclose(fapl);
    lukv_h5_abort(w);
    return rc;
  }
  H5Pclose(fapl);
  int rc = lukv_h5_write_attr_str(w->file, path, "format", format, err);
  if (rc == LUKV_OK) rc = lukv_h5_write_attr_int(w->file, path, "format_version", version, err);
  if (rc == LUKV_OK) rc = lukv_h5_write_attr_str(w->file, path, "created_by", "lukv " LUKV_VERSION, err);
  if (rc != LUKV_OK) lukv_h5_abort(w);
  return rc;
}

int lukv_h5_commit(lukv_h5_writer *w, lukv_error *err) {
  if (!w->tmp) return lukv_error_set(err, LUKV_ERR_INVALID, "lukv_h5_commit: writer not open");
  herr_t c = H5Fclose(w->file);
  w->file = -1;
  if (c < 0) {
    int rc = lukv_h5_fail(err, LUKV_ERR_IO, w->path, NULL, "cannot close (flush) the file");
    lukv_h5_abort(w);
    return rc;
  }
  if (rename(w->tmp, w->path) != 0) {
    int e = errno;
    int rc = lukv_error_set(err, LUKV_ERR_IO, "%s: cannot rename %s.tmp into place: %s", w->path,
                            w->path, strerror(e));
    lukv_h5_abort(w);
    return rc;
  }
  writer_release(w);
  return LUKV_OK;
}

int lukv_h5_check_header(hid_t file, const char *path, const char *format, int version,
                         lukv_error *err) {
  char *found = NULL;
  if (H5Aexists(file, "format") <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return lukv_error_set(err, LUKV_ERR_FORMAT,
                          "%s: format: missing attribute (not a lukv file? expected \"%s\")", path,
                          format);
  }
  int rc = lukv_h5_read_attr_str(file, path, "format", &found, err);
  if (rc != LUKV_OK) return rc;
  if (strcmp(found, format) != 0) {
    rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: format is \"%s\" but expected \"%s\"", path,
                        found, format);
    free(found);
    return rc;
  }
  free(found);
  int64_t v = 0;
  rc = lukv_h5_read_attr_int(file, path, "format_version", &v, err);
  if (rc != LUKV_OK) return rc;
  if (v > version)
    return lukv_error_set(err, LUKV_ERR_VERSION,
                          "%s: format_version %lld is newer than this build reads (%d)", path,
                          (long long)v, version);
  if (v != version)
    return lukv_error_set(err, LUKV_ERR_VERSION,
                          "%s: format_version %lld is not one this build reads (%d)", path,
                          (long long)v, version);
  return LUKV_OK;
}

/* ---- attributes --------------------------------------------------------- */

int lukv_h5_write_attr_str(hid_t loc, const char *path, const char *name, const char *value,
                           lukv_error *err) {
  const char *v = value ? value : "";
  hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = -1;
  herr_t ok = -1;
  if (t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0) {
    a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) ok = H5Awrite(a, t, &v);
  }
  int rc = ok < 0 ? lukv_h5_fail(err, LUKV_ERR_IO, path, name, "cannot write attribute") : LUKV_OK;
  if (a >= 0) H5Aclose(a);
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  return rc;
}

int lukv_h5_write_attr_int(hid_t loc, const char *path, const char *name, int64_t value,
                           lukv_error *err) {
  /* int64 because that is what h5py writes for a Python int. */
  hid_t s = H5Screate(H5S_SCALAR), a = -1;
  herr_t ok = -1;
  if (s >= 0) {
    a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) ok = H5Awrite(a, H5T_NATIVE_INT64, &value);
  }
  int rc = ok < 0 ? lukv_h5_fail(err, LUKV_ERR_IO, path, name, "cannot write attribute") : LUKV_OK;
  if (a >= 0) H5Aclose(a);
  if (s >= 0) H5Sclose(s);
  return rc;
}

static const char *class_name(H5T_class_t c) {
  switch (c) {
  case H5T_INTEGER: return "integer";
  case H5T_FLOAT: return "float";
  case H5T_STRING: return "string";
  case H5T_BITFIELD: return "bitfield";
  case H5T_OPAQUE: return "opaque";
  case H5T_COMPOUND: return "compound";
  case H5T_REFERENCE: return "reference";
  case H5T_ENUM: return "enum";
  case H5T_VLEN: return "vlen";
  case H5T_ARRAY: return "array";
  default: return "unknown";
  }
}

/* Opens attribute `name` and checks presence, class (one of two) and that it
 * holds exactly one element (scalar, or shape [1] as some writers produce). */
static int attr_open(hid_t loc, const char *path, const char *name, H5T_class_t want,
                     H5T_class_t also, const char *want_name, hid_t *attr, hid_t *type,
                     lukv_error *err) {
  *attr = *type = -1;
  htri_t ex = H5Aexists(loc, name);
  if (ex < 0) return lukv_h5_fail(err, LUKV_ERR_FORMAT, path, name, "cannot look up attribute");
  if (ex == 0) return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing attribute", path, name);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return lukv_h5_fail(err, LUKV_ERR_FORMAT, path, name, "cannot open attribute");
  hid_t t = H5Aget_type(a);
  hid_t s = H5Aget_space(a);
  H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
  if (s >= 0) H5Sclose(s);
  int rc = LUKV_OK;
  if (c != want && c != also)
    rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: attribute is %s but expected %s", path, name,
                        class_name(c), want_name);
  else if (np != 1)
    rc = lukv_error_set(err, LUKV_ERR_FORMAT,
                        "%s: %s: attribute has %lld elements but expected one (a scalar)", path,
                        name, (long long)np);
  if (rc != LUKV_OK) {
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
  }
  *attr = a;
  *type = t;
  return LUKV_OK;
}

int lukv_h5_read_attr_str(hid_t loc, const char *path, const char *name, char **out,
                          lukv_error *err) {
  *out = NULL;
  hid_t a, t;
  int rc = attr_open(loc, path, name, H5T_STRING, H5T_STRING, "a string", &a, &t, err);
  if (rc != LUKV_OK) return rc;
  /* Memory type in the stored character set: HDF5 refuses ASCII<->UTF-8. */
  hid_t mt = H5Tcopy(H5T_C_S1);
  char *res = NULL;
  herr_t ok = -1;
  int nomem = 0;
  if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0) {
    if (H5Tis_variable_str(t) > 0) {
      /* Read variable length ourselves: H5LTget_attribute_string mis-reads
       * these on 1.10. */
      char *p = NULL;
      if (H5Tset_size(mt, H5T_VARIABLE) >= 0 && (ok = H5Aread(a, mt, &p)) >= 0) {
        res = lukv_h5_strdup(p ? p : "");
        nomem = !res;
        if (p) H5free_memory(p);
      }
    } else {
      /* Fixed length (numpy 'S', Fortran): read into size + 1 so that even a
       * null-padded string with no terminator comes back terminated. */
      size_t size = H5Tget_size(t);
      res = calloc(size + 2, 1);
      nomem = !res;
      if (res && H5Tset_size(mt, size + 1) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0)
        ok = H5Aread(a, mt, res);
      if (res) res[size] = '\0';
    }
  }
  if (nomem)
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", path, name);
  else if (ok < 0)
    rc = lukv_h5_fail(err, LUKV_ERR_FORMAT, path, name, "cannot read string attribute");
  if (mt >= 0) H5Tclose(mt);
  H5Tclose(t);
  H5Aclose(a);
  if (rc != LUKV_OK) {
    free(res);
    return rc;
  }
  *out = res;
  return LUKV_OK;
}

static int read_attr_number(hid_t loc, const char *path, const char *name, int want_int,
                            void *out, lukv_error *err) {
  hid_t a, t;
  int rc = want_int ? attr_open(loc, path, name, H5T_INTEGER, H5T_INTEGER, "an integer", &a, &t, err)
                    : attr_open(loc, path, name, H5T_FLOAT, H5T_INTEGER, "a number", &a, &t, err);
  if (rc != LUKV_OK) return rc;
  /* HDF5 converts from whatever width and sign was stored (h5py: int64). */
  if (H5Aread(a, want_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, out) < 0)
    rc = lukv_h5_fail(err, LUKV_ERR_FORMAT, path, name, "cannot read attribute");
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

int lukv_h5_read_attr_int(hid_t loc, const char *path, const char *name, int64_t *out,
                          lukv_error *err) {
  int64_t v = 0;
  int rc = read_attr_number(loc, path, name, 1, &v, err);
  if (rc == LUKV_OK) *out = v;
  return rc;
}

int lukv_h5_read_attr_i32(hid_t loc, const char *path, const char *name, int32_t lo, int32_t hi,
                          int32_t *out, lukv_error *err) {
  int64_t v = 0;
  int rc = lukv_h5_read_attr_int(loc, path, name, &v, err);
  if (rc != LUKV_OK) return rc;
  if (v < lo || v > hi) {
    if (hi == INT32_MAX)
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %lld but must be >= %d", path, name,
                            (long long)v, (int)lo);
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %lld but must be in [%d, %d]", path, name,
                          (long long)v, (int)lo, (int)hi);
  }
  *out = (int32_t)v;
  return LUKV_OK;
}

int lukv_h5_read_attr_float(hid_t loc, const char *path, const char *name, double *out,
                            lukv_error *err) {
  double v = 0;
  int rc = read_attr_number(loc, path, name, 0, &v, err);
  if (rc == LUKV_OK) *out = v;
  return rc;
}

/* ---- datasets ----------------------------------------------------------- */

int lukv_h5_exists(hid_t file, const char *name) {
  /* H5Lexists fails (rather than saying no) when a parent group is missing,
   * so test each prefix of the path in turn. */
  size_t n = strlen(name);
  char *buf = malloc(n + 1);
  if (!buf) return 0;
  memcpy(buf, name, n + 1);
  int found = 1;
  for (size_t i = 1; i <= n && found; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      found = H5Lexists(file, buf, H5P_DEFAULT) > 0;
      buf[i] = c;
    }
  }
  free(buf);
  H5Eclear2(H5E_DEFAULT);
  return found;
}

int lukv_h5_write_dataset(hid_t file, const char *path, const char *name, hid_t ftype,
                          hid_t mtype, int rank, const hsize_t *dims, const void *data,
                          lukv_error *err) {
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  hid_t s = H5Screate_simple(rank, dims, NULL), d = -1;
  herr_t ok = -1;
  if (s >= 0) {
    d = H5Dcreate2(file, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    /* HDF5 rejects a NULL buffer even for zero elements; nothing to write then. */
    if (d >= 0) ok = n == 0 ? 0 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  }
  int rc = ok < 0 ? lukv_h5_fail(err, LUKV_ERR_IO, path, name, "cannot write dataset") : LUKV_OK;
  if (d >= 0) H5Dclose(d);
  if (s >= 0) H5Sclose(s);
  return rc;
}

/* Conversion exception handler: a stored value that does not fit the memory
 * type (int64 -> int32, float64 -> float32 overflow) must fail the read, not
 * be silently clipped as HDF5 does by default. */
static H5T_conv_ret_t conv_range_abort(H5T_conv_except_t except, hid_t src, hid_t dst,
                                       void *src_buf, void *dst_buf, void *data) {
  (void)src, (void)dst, (void)src_buf, (void)dst_buf;
  if (except == H5T_CONV_EXCEPT_RANGE_HI || except == H5T_CONV_EXCEPT_RANGE_LOW) {
    *(int *)data = 1;
    return H5T_CONV_ABORT;
  }
  return H5T_CONV_UNHANDLED;
}

int lukv_h5_read_dataset(hid_t file, const char *path, const char *name, H5T_class_t cls,
                         hid_t mtype, int rank, const hsize_t *expect, hsize_t *dims_out,
                         void **out, lukv_error *err) {
  *out = NULL;
  if (!lukv_h5_exists(file, name))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing dataset", path, name);
  hid_t o = H5Oopen(file, name, H5P_DEFAULT);
  if (o < 0) return lukv_h5_fail(err, LUKV_ERR_FORMAT, path, name, "cannot open");
  if (H5Iget_type(o) != H5I_DATASET) {
    H5Oclose(o);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: is not a dataset", path, name);
  }
  hid_t d = o, t = H5Dget_type(d), s = H5Dget_space(d), dxpl = -1;
  int rc = LUKV_OK, range_hit = 0;
  void *buf = NULL;
  H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
  hsize_t dims[LUKV_H5_MAX_RANK] = {0};
  if (c != cls) {
    rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: stored as %s but expected %s", path, name,
                        class_name(c), class_name(cls));
    goto done;
  }
  if (r < 0 || r > LUKV_H5_MAX_RANK) {
    rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: %s: unsupported dataspace (rank %d)", path, name, r);
    goto done;
  }
  H5Sget_simple_extent_dims(s, dims, NULL);
  int match = r == rank;
  for (int i = 0; match && i < rank; i++)
    if (expect && expect[i] != LUKV_H5_ANY && expect[i] != dims[i]) match = 0;
  if (!match) {
    char found[160], want[160];
    hsize_t any[LUKV_H5_MAX_RANK];
    for (int i = 0; i < LUKV_H5_MAX_RANK; i++) any[i] = LUKV_H5_ANY;
    lukv_h5_dims_str(found, sizeof found, r, dims);
    lukv_h5_dims_str(want, sizeof want, rank, expect ? expect : any);
    rc = lukv_error_set(err, LUKV_ERR_SHAPE, "%s: %s: shape %s but expected %s", path, name, found,
                        want);
    goto done;
  }
  size_t es = H5Tget_size(mtype);
  hsize_t n = 1;
  for (int i = 0; i < r; i++) {
    if (dims[i] && n > (hsize_t)SIZE_MAX / es / dims[i]) {
      rc = lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: %s: too large to hold in memory", path, name);
      goto done;
    }
    n *= dims[i];
  }
  buf = malloc(n ? (size_t)n * es : 1);
  if (!buf) {
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory (%llu elements)", path, name,
                        (unsigned long long)n);
    goto done;
  }
  if (n) {
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl < 0 || H5Pset_type_conv_cb(dxpl, conv_range_abort, &range_hit) < 0 ||
        H5Dread(d, mtype, H5S_ALL, H5S_ALL, dxpl, buf) < 0) {
      if (range_hit) {
        H5Eclear2(H5E_DEFAULT);
        rc = lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: a stored value does not fit %s%zu", path,
                            name, cls == H5T_FLOAT ? "float" : "int", es * 8);
      } else {
        rc = lukv_h5_fail(err, LUKV_ERR_IO, path, name, "cannot read dataset");
      }
      goto done;
    }
  }
done:
  if (dxpl >= 0) H5Pclose(dxpl);
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  H5Dclose(d);
  if (rc != LUKV_OK) {
    free(buf);
    return rc;
  }
  if (dims_out)
    for (int i = 0; i < r; i++) dims_out[i] = dims[i];
  *out = buf;
  return LUKV_OK;
}

typedef struct {
  char **names;
  int n, cap;
  int nomem;
} name_list;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g, (void)info;
  name_list *l = data;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 8;
    char **p = realloc(l->names, (size_t)cap * sizeof *p);
    if (!p) {
      l->nomem = 1;
      return -1;
    }
    l->names = p;
    l->cap = cap;
  }
  if (!(l->names[l->n] = lukv_h5_strdup(name))) {
    l->nomem = 1;
    return -1;
  }
  l->n++;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void lukv_h5_free_names(char **names, int n) {
  if (!names) return;
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

int lukv_h5_list_datasets(hid_t file, const char *path, const char *group, char ***names,
                          int *n, lukv_error *err) {
  *names = NULL;
  *n = 0;
  if (!lukv_h5_exists(file, group))
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: missing group", path, group);
  hid_t o = H5Oopen(file, group, H5P_DEFAULT);
  if (o < 0) return lukv_h5_fail(err, LUKV_ERR_FORMAT, path, group, "cannot open");
  if (H5Iget_type(o) != H5I_GROUP) {
    H5Oclose(o);
    return lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s: is not a group", path, group);
  }
  name_list l = {NULL, 0, 0, 0};
  hsize_t idx = 0;
  herr_t it = H5Literate(o, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &l);
  int rc = LUKV_OK;
  if (l.nomem) {
    H5Eclear2(H5E_DEFAULT);
    rc = lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %s: out of memory", path, group);
  } else if (it < 0) {
    rc = lukv_h5_fail(err, LUKV_ERR_FORMAT, path, group, "cannot list members");
  }
  /* Every member must be a dataset: a stray group is a malformed file. */
  for (int i = 0; rc == LUKV_OK && i < l.n; i++) {
    hid_t m = H5Oopen(o, l.names[i], H5P_DEFAULT);
    int is_ds = m >= 0 && H5Iget_type(m) == H5I_DATASET;
    if (m >= 0) H5Oclose(m);
    H5Eclear2(H5E_DEFAULT);
    if (!is_ds)
      rc = lukv_error_set(err, LUKV_ERR_FORMAT, "%s: %s/%s: is not a dataset", path, group,
                          l.names[i]);
  }
  H5Oclose(o);
  if (rc != LUKV_OK) {
    lukv_h5_free_names(l.names, l.n);
    return rc;
  }
  /* Sorted bytewise whatever the group's own index order. */
  if (l.n > 1) qsort(l.names, (size_t)l.n, sizeof *l.names, cmp_str);
  *names = l.names;
  *n = l.n;
  return LUKV_OK;
}

/* ---- model identity (shared by profile.h5 and budgets.h5) --------------- */

static int at_least(const char *path, const char *name, int32_t v, int32_t lo, lukv_error *err) {
  if (v < lo)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: %s: %d but must be >= %d", path, name, (int)v,
                          (int)lo);
  return LUKV_OK;
}

int lukv_h5_check_model_id(const char *path, const lukv_model_id *m, lukv_error *err) {
  int rc;
  if ((rc = at_least(path, "n_layers", m->n_layers, 1, err)) ||
      (rc = at_least(path, "n_kv_heads", m->n_kv_heads, 1, err)) ||
      (rc = at_least(path, "n_q_heads", m->n_q_heads, 1, err)) ||
      (rc = at_least(path, "head_dim", m->head_dim, 1, err)))
    return rc;
  if (m->n_q_heads % m->n_kv_heads != 0)
    return lukv_error_set(err, LUKV_ERR_RANGE,
                          "%s: n_q_heads: %d is not a multiple of n_kv_heads %d", path,
                          (int)m->n_q_heads, (int)m->n_kv_heads);
  return LUKV_OK;
}

int lukv_h5_read_model_id(hid_t f, const char *path, lukv_model_id *m, lukv_error *err) {
  int rc;
  if ((rc = lukv_h5_read_attr_str(f, path, "model_name", &m->model_name, err)) ||
      (rc = lukv_h5_read_attr_str(f, path, "model_hash", &m->model_hash, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "n_layers", 1, INT32_MAX, &m->n_layers, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "n_kv_heads", 1, INT32_MAX, &m->n_kv_heads, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "n_q_heads", 1, INT32_MAX, &m->n_q_heads, err)) ||
      (rc = lukv_h5_read_attr_i32(f, path, "head_dim", 1, INT32_MAX, &m->head_dim, err)))
    return rc;
  return lukv_h5_check_model_id(path, m, err);
}

int lukv_h5_write_model_id(hid_t f, const char *path, const lukv_model_id *m, lukv_error *err) {
  int rc;
  if ((rc = lukv_h5_write_attr_str(f, path, "model_name", m->model_name, err)) ||
      (rc = lukv_h5_write_attr_str(f, path, "model_hash", m->model_hash, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "n_layers", m->n_layers, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "n_kv_heads", m->n_kv_heads, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "n_q_heads", m->n_q_heads, err)) ||
      (rc = lukv_h5_write_attr_int(f, path, "head_dim", m->head_dim, err)))
    return rc;
  return LUKV_OK;
}


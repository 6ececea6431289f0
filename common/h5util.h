/* HDF5 helpers shared by the three lukv file formats (docs/formats.md).
 *
 * Every helper takes the file's PATH only to build the one-line error
 * "PATH: OBJECT: problem"; when an HDF5 call itself fails, the innermost
 * HDF5 error description is appended, since HDF5's own stack printing is
 * turned off (a library must not write to stderr).
 *
 * Conventions of the files written here, chosen so that h5py reads them
 * naturally: strings are variable-length UTF-8 scalar attributes (read back
 * whether variable or fixed length), integer attributes are int64 scalars
 * (read back from any integer type), datasets are contiguous.
 */
#ifndef LUKV_H5UTIL_H
#define LUKV_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

#include "formats.h"
#include "status.h"

/* Wildcard for an expected dimension in lukv_h5_read_dataset. */
#define LUKV_H5_ANY ((hsize_t)-1)
#define LUKV_H5_MAX_RANK 8

/* Turns HDF5's automatic error printing off (idempotent, cheap). */
void lukv_h5_quiet(void);

/* Records `status` with "PATH: OBJ: what" plus ": <innermost HDF5 error>"
 * when the HDF5 error stack has one. obj may be NULL (then "PATH: what").
 * Returns status. */
int lukv_h5_fail(lukv_error *err, int status, const char *path, const char *obj,
                 const char *what);

/* ---- files -------------------------------------------------------------- */

/* Opens PATH read-only. A missing or unreadable file gives LUKV_ERR_IO
 * "PATH: cannot open: <strerror>", an existing non-HDF5 file
 * LUKV_ERR_FORMAT "PATH: not an HDF5 file". */
int lukv_h5_open_read(const char *path, hid_t *file, lukv_error *err);

/* A file being written as PATH.tmp, renamed to PATH by lukv_h5_commit. */
typedef struct lukv_h5_writer {
  hid_t file;   /* the open PATH.tmp, < 0 when none */
  char *path;   /* owned copies */
  char *tmp;
} lukv_h5_writer;

/* Creates PATH.tmp (truncating a stale one) and writes the root attributes
 * format, format_version and created_by. On failure nothing is left on disk
 * and w needs no cleanup. */
int lukv_h5_create(lukv_h5_writer *w, const char *path, const char *format, int version,
                   lukv_error *err);
/* Closes PATH.tmp and renames it to PATH; on failure unlinks PATH.tmp.
 * Always releases w. */
int lukv_h5_commit(lukv_h5_writer *w, lukv_error *err);
/* Closes and unlinks PATH.tmp; releases w. Safe on a released writer. */
void lukv_h5_abort(lukv_h5_writer *w);

/* Checks the root attributes `format` == expected and `format_version` ==
 * version (a higher one is LUKV_ERR_VERSION, "newer than this build reads"). */
int lukv_h5_check_header(hid_t file, const char *path, const char *format, int version,
                         lukv_error *err);

/* ---- attributes (on the root group unless loc says otherwise) ----------- */

int lukv_h5_write_attr_str(hid_t loc, const char *path, const char *name, const char *value,
                           lukv_error *err);
int lukv_h5_write_attr_int(hid_t loc, const char *path, const char *name, int64_t value,
                           lukv_error *err);

/* *out is malloc'ed (caller frees) only on LUKV_OK. */
int lukv_h5_read_attr_str(hid_t loc, const char *path, const char *name, char **out,
                          lukv_error *err);
int lukv_h5_read_attr_int(hid_t loc, const char *path, const char *name, int64_t *out,
                          lukv_error *err);
/* As lukv_h5_read_attr_int, then checks lo <= value <= hi (LUKV_ERR_RANGE). */
int lukv_h5_read_attr_i32(hid_t loc, const char *path, const char *name, int32_t lo, int32_t hi,
                          int32_t *out, lukv_error *err);
int lukv_h5_read_attr_float(hid_t loc, const char *path, const char *name, double *out,
                            lukv_error *err);

/* ---- datasets ----------------------------------------------------------- */

/* 1 if the link NAME (absolute path, e.g. "/curves/oracle") exists, else 0;
 * intermediate groups may be missing. */
int lukv_h5_exists(hid_t file, const char *name);

/* Creates a contiguous dataset NAME of file type ftype with dims [rank] and
 * writes `data` (memory type mtype). Parent groups must exist. */
int lukv_h5_write_dataset(hid_t file, const char *path, const char *name, hid_t ftype,
                          hid_t mtype, int rank, const hsize_t *dims, const void *data,
                          lukv_error *err);

/* Reads dataset NAME into a new buffer of memory type mtype (element size
 * H5Tget_size(mtype)). The stored type must be of class `cls`; the rank must
 * be `rank` and each dimension equal expect[i] unless that is LUKV_H5_ANY
 * (expect may be NULL). The dimensions found go to dims_out (may be NULL).
 * Errors: missing dataset, wrong class or rank -> LUKV_ERR_FORMAT, wrong
 * shape -> LUKV_ERR_SHAPE ("shape [..] but expected [..]"). *out is
 * malloc'ed (never NULL, even for zero elements) only on LUKV_OK. */
int lukv_h5_read_dataset(hid_t file, const char *path, const char *name, H5T_class_t cls,
                         hid_t mtype, int rank, const hsize_t *expect, hsize_t *dims_out,
                         void **out, lukv_error *err);

/* Sorted names of the members of group GROUP (absolute path), each of which
 * must be a dataset. *names is an array of *n malloc'ed strings (free with
 * lukv_h5_free_names). */
int lukv_h5_list_datasets(hid_t file, const char *path, const char *group, char ***names,
                          int *n, lukv_error *err);
void lukv_h5_free_names(char **names, int n);

/* ---- model identity: attributes model_name, model_hash, n_layers,
 * n_kv_heads, n_q_heads, head_dim (profile.h5 and budgets.h5) ------------ */

/* Counts >= 1 and n_q_heads a multiple of n_kv_heads (LUKV_ERR_RANGE). */
int lukv_h5_check_model_id(const char *path, const lukv_model_id *m, lukv_error *err);
/* Reads and checks; on error m may hold strings the caller must free. */
int lukv_h5_read_model_id(hid_t file, const char *path, lukv_model_id *m, lukv_error *err);
int lukv_h5_write_model_id(hid_t file, const char *path, const lukv_model_id *m, lukv_error *err);

/* ---- small shared helpers for the format modules ------------------------ */

/* strdup that returns NULL for NULL. */
char *lukv_h5_strdup(const char *s);
/* Formats dims as "[a,b,c]" into buf. */
void lukv_h5_dims_str(char *buf, size_t size, int rank, const hsize_t *dims);

#endif

/* lukv status codes: the one definition shared by the public API (lukv.h)
 * and every internal library (common/status.h includes this file).
 *
 * Every lukv function that can fail returns an int: LUKV_OK (0) on success,
 * one of the negative codes below on failure. Codes are stable: a code's
 * value never changes and a retired code is never reused.
 */
#ifndef LUKV_STATUS_PUBLIC_H
#define LUKV_STATUS_PUBLIC_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
  LUKV_OK = 0,
  LUKV_ERR_INVALID = -1,     /* bad argument (NULL, out-of-range option) */
  LUKV_ERR_NOMEM = -2,       /* allocation failed */
  LUKV_ERR_IO = -3,          /* file missing, unreadable or unwritable */
  LUKV_ERR_FORMAT = -4,      /* not HDF5, wrong `format`, missing object, wrong type */
  LUKV_ERR_VERSION = -5,     /* `format_version` this build does not read */
  LUKV_ERR_SHAPE = -6,       /* dataset shape disagrees with attributes or peers */
  LUKV_ERR_RANGE = -7,       /* NaN / Inf / negative value, value outside its range */
  LUKV_ERR_NOTFOUND = -8,    /* named thing (scorer, ratio) not present */
  LUKV_ERR_SOLVER = -9,      /* an LP / MIP solver failed or found no solution */
  LUKV_ERR_TIMELIMIT = -10,  /* a solver stopped at its time limit */
  LUKV_ERR_TOO_LARGE = -11,  /* problem exceeds a documented memory bound */
  LUKV_ERR_CUDA = -12,       /* a CUDA or cuBLAS call failed */
  LUKV_ERR_UNSUPPORTED = -13,/* valid input this build cannot handle */
  LUKV_ERR_INFEASIBLE = -14  /* no allocation satisfies the constraints */
};

/* Static English text for a status code ("shape mismatch"); never NULL, also
 * for an unknown code. The returned string is owned by the library. */
const char *lukv_strerror(int status);

#ifdef __cplusplus
}
#endif

#endif

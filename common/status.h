/* Status codes and error detail shared by every lukv library.
 *
 * Libraries never exit: they return an int status (LUKV_OK = 0, negative on
 * error) and, when the caller passes a lukv_error, one line of detail of the
 * form "FILE: OBJECT: problem". CLIs print that line and choose the exit code.
 */
#ifndef LUKV_STATUS_H
#define LUKV_STATUS_H

#include <stddef.h>

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

/* Static text for a status code; never NULL. */
const char *lukv_strerror(int status);

/* One line of error detail. The caller owns it (usually on the stack). */
typedef struct lukv_error {
  int status;
  char msg[1024];
} lukv_error;

/* Records status and a printf-style message in err (err may be NULL) and
 * returns status, so that `return lukv_error_set(err, ...)` reads naturally.
 * The first error recorded wins: a later call does not overwrite it unless
 * err->status is LUKV_OK. */
int lukv_error_set(lukv_error *err, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Resets err to LUKV_OK with an empty message (err may be NULL). */
void lukv_error_clear(lukv_error *err);

#endif

/* Status codes and error detail shared by every lukv library.
 *
 * Libraries never exit: they return an int status (LUKV_OK = 0, negative on
 * error) and, when the caller passes a lukv_error, one line of detail of the
 * form "FILE: OBJECT: problem". CLIs print that line and choose the exit code.
 */
#ifndef LUKV_STATUS_H
#define LUKV_STATUS_H

#include <stddef.h>

/* The status codes and lukv_strerror() are public: one definition, shared
 * with the runtime's API (runtime/include/lukv.h). The relative path lets
 * every library include it without another include directory. */
#include "../runtime/include/lukv_status.h"

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

#include "status.h"

#include <stdarg.h>
#include <stdio.h>

const char *lukv_strerror(int status) {
  switch (status) {
  case LUKV_OK: return "success";
  case LUKV_ERR_INVALID: return "invalid argument";
  case LUKV_ERR_NOMEM: return "out of memory";
  case LUKV_ERR_IO: return "input/output error";
  case LUKV_ERR_FORMAT: return "bad file format";
  case LUKV_ERR_VERSION: return "unsupported format version";
  case LUKV_ERR_SHAPE: return "shape mismatch";
  case LUKV_ERR_RANGE: return "value out of range";
  case LUKV_ERR_NOTFOUND: return "not found";
  case LUKV_ERR_SOLVER: return "solver failure";
  case LUKV_ERR_TIMELIMIT: return "time limit reached";
  case LUKV_ERR_TOO_LARGE: return "problem too large";
  case LUKV_ERR_CUDA: return "CUDA error";
  case LUKV_ERR_UNSUPPORTED: return "unsupported";
  case LUKV_ERR_INFEASIBLE: return "infeasible";
  default: return "unknown status";
  }
}

int lukv_error_set(lukv_error *err, int status, const char *fmt, ...) {
  if (err && err->status == LUKV_OK) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}

void lukv_error_clear(lukv_error *err) {
  if (err) {
    err->status = LUKV_OK;
    err->msg[0] = '\0';
  }
}

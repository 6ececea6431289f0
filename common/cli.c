#include "cli.h"

#include <stdio.h>

int lukv_cli_usage(const char *prog, const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", prog);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see '%s --help')\n", prog);
  return 2;
}

int lukv_cli_fail(const char *prog, const lukv_error *err) {
  fprintf(stderr, "%s: error: %s\n", prog, err->msg[0] ? err->msg : lukv_strerror(err->status));
  return 1;
}

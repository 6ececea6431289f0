/* What every lukv command-line program says the same way (DESIGN §8): a usage
 * error is one line plus a pointer to --help (exit 2); a failure is one line
 * "PROG: error: FILE: OBJECT: problem" (exit 1). */
#ifndef LUKV_CLI_H
#define LUKV_CLI_H

#include "status.h"

/* Prints "PROG: " + fmt (with one %s for arg) and the --help hint on stderr;
 * returns 2, the usage exit status. */
int lukv_cli_usage(const char *prog, const char *fmt, const char *arg);

/* Prints "PROG: error: " + err's message (or its status text) on stderr;
 * returns 1, the failure exit status. */
int lukv_cli_fail(const char *prog, const lukv_error *err);

#endif

#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double lukv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lukv_progress_init(lukv_progress *p, const char *unit, int quiet) {
  p->enabled = !quiet && isatty(STDERR_FILENO);
  p->t_start = lukv_now();
  p->t_last = 0.0;
  p->drawn = 0;
  p->unit = unit ? unit : "";
}

void lukv_progress_update(lukv_progress *p, const char *stage, long done, long total) {
  if (!p->enabled) return;
  double now = lukv_now();
  if (done < total && now - p->t_last < 0.1) return;
  p->t_last = now;
  double el = now - p->t_start;
  double rate = el > 0 ? (double)done / el : 0.0;
  double eta = (rate > 0 && total > done) ? (double)(total - done) / rate : 0.0;
  fprintf(stderr, "\r\033[K%s %ld/%ld %s, %.1f/s, ETA %.0fs", stage ? stage : "", done, total,
          p->unit, rate, eta);
  fflush(stderr);
  p->drawn = 1;
}

void lukv_progress_end(lukv_progress *p) {
  if (p->enabled && p->drawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
  p->drawn = 0;
}

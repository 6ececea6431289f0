/* A one-line progress display on stderr for long work ("stage  done/total
 * rate  ETA"), redrawn at most 10 times a second and only when stderr is a
 * terminal, so logs and pipes stay clean. */
#ifndef LUKV_PROGRESS_H
#define LUKV_PROGRESS_H

typedef struct lukv_progress {
  int enabled;       /* stderr is a tty and the caller did not ask for quiet */
  double t_start;    /* seconds, monotonic */
  double t_last;     /* last redraw */
  int drawn;         /* a line is on screen and needs clearing */
  const char *unit;  /* what `done` counts, e.g. "ratios" */
} lukv_progress;

/* quiet != 0 disables the display even on a terminal. */
void lukv_progress_init(lukv_progress *p, const char *unit, int quiet);
/* Redraws "stage done/total unit, rate/s, ETA" when due (always when done == total). */
void lukv_progress_update(lukv_progress *p, const char *stage, long done, long total);
/* Clears the line (call before printing results). */
void lukv_progress_end(lukv_progress *p);
/* Monotonic clock in seconds. */
double lukv_now(void);

#endif

/* GLPK on the multiple-choice knapsack: the LP relaxation (an independent
 * check of hull + greedy) and the binary MIP (an independent exact optimum).
 *
 * Model, one column per (head h, grid point g in [g_min, G]):
 *   min  sum c_hg x_hg
 *   s.t. sum_g x_hg = 1                        (row h + 1, one per head)
 *        sum (g - g_min) x_hg <= B - n g_min    (row n + 1, the budget)
 *        x_hg >= 0 (LP; x <= 1 follows from the head row) or binary (MIP)
 * with c_hg = (loss_h(g) - min_g loss_h) / scale: the per-head constant and
 * the common scale are taken out so that GLPK's absolute tolerances act on
 * the part of the objective that varies, and are put back afterwards.
 *
 * GLPK reports internal errors by abort(); a hook longjmps back instead and
 * glp_free_env() then drops everything GLPK held, as its manual prescribes.
 * GLPK keeps one environment per thread, so these functions are not
 * reentrant within a thread (they are not called from GLPK callbacks). */
#include <float.h>
#include <glpk.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "solver.h"

/* GLPK's default dual tolerance (1e-7) stops the simplex while steps that
 * save ~1e-7 of the largest head's loss range are still untaken; curve
 * tails are that flat, and the LP is meant as a check to 1e-6 relative. The
 * matrix (ones and integers up to G) is well conditioned enough for less. */
#define LUKV_GLPK_TOL_DJ 1e-10

typedef struct {
  jmp_buf jb;
  char msg[512]; /* GLPK's text for the fatal error (output is otherwise off) */
  size_t len;
} lukv_glpk_guard;

/* Swallows all GLPK terminal output; keeps what a fatal error prints. */
static int lukv_glpk_term(void *info, const char *s) {
  lukv_glpk_guard *g = info;
  for (; *s && g->len + 1 < sizeof g->msg; s++) g->msg[g->len++] = (*s == '\n') ? ' ' : *s;
  g->msg[g->len] = '\0';
  return 1;
}

static const char *lukv_glpk_text(lukv_glpk_guard *g) {
  while (g->len > 0 && g->msg[g->len - 1] == ' ') g->msg[--g->len] = '\0';
  return g->msg;
}

static void lukv_glpk_fatal(void *info) {
  longjmp(((lukv_glpk_guard *)info)->jb, 1);
}

static double lukv_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int lukv_ms(double seconds) {
  if (!(seconds > 0.0)) return INT_MAX;
  double ms = ceil(seconds * 1000.0);
  return ms >= (double)INT_MAX ? INT_MAX : (int)ms;
}

/* Model data prepared outside GLPK (so that nothing allocated here is lost
 * on a longjmp): the triplets and the objective split. */
typedef struct {
  int n, G, g_min, m; /* m = G - g_min + 1 points per head */
  int ncols, nnz;
  int *ia, *ja;   /* [nnz + 1], 1-based */
  double *ar;     /* [nnz + 1] */
  double *ymin;   /* [n] */
  double scale;
} lukv_glpk_model;

static void lukv_glpk_model_free(lukv_glpk_model *md) {
  free(md->ia), free(md->ja), free(md->ar), free(md->ymin);
}

static int lukv_glpk_model_init(lukv_glpk_model *md, const lukv_curve_set *cs, int g_min,
                                int64_t budget, const char *who, lukv_error *err) {
  memset(md, 0, sizeof *md);
  if (!cs || !cs->loss) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: NULL argument", who);
  int n = lukv_curve_set_heads(cs), G = cs->grid;
  if (cs->n_layers <= 0 || cs->n_kv_heads <= 0 || G <= 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: empty curve set", who);
  if (g_min < 0 || g_min > G)
    return lukv_error_set(err, LUKV_ERR_RANGE, "%s: g_min %d outside [0, %d]", who, g_min, G);
  int64_t cols = (int64_t)n * (G - g_min + 1);
  if (cols + (int64_t)n * (G - g_min) >= INT_MAX)
    return lukv_error_set(err, LUKV_ERR_TOO_LARGE, "%s: %lld columns exceed GLPK's int indices", who,
                          (long long)cols);
  if (budget < (int64_t)n * g_min)
    return lukv_error_set(err, LUKV_ERR_SOLVER,
                          "%s: infeasible (budget %lld below n_heads * g_min = %lld)", who,
                          (long long)budget, (long long)n * g_min);
  md->n = n, md->G = G, md->g_min = g_min, md->m = G - g_min + 1;
  md->ncols = (int)cols;
  md->nnz = (int)(cols + (int64_t)n * (G - g_min));
  md->ia = malloc(sizeof(int) * ((size_t)md->nnz + 1));
  md->ja = malloc(sizeof(int) * ((size_t)md->nnz + 1));
  md->ar = malloc(sizeof(double) * ((size_t)md->nnz + 1));
  md->ymin = malloc(sizeof(double) * (size_t)n);
  if (!md->ia || !md->ja || !md->ar || !md->ymin) {
    lukv_glpk_model_free(md);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: out of memory (%d columns)", who, md->ncols);
  }
  double spread = 0.0;
  for (int h = 0; h < n; h++) {
    const double *y = cs->loss + (size_t)h * (G + 1);
    double lo = INFINITY, hi = -INFINITY;
    for (int g = g_min; g <= G; g++) {
      if (!isfinite(y[g])) {
        lukv_glpk_model_free(md);
        return lukv_error_set(err, LUKV_ERR_RANGE, "%s: loss of head %d at g=%d is not finite", who, h,
                              g);
      }
      if (y[g] < lo) lo = y[g];
      if (y[g] > hi) hi = y[g];
    }
    md->ymin[h] = lo;
    if (hi - lo > spread) spread = hi - lo;
  }
  md->scale = spread > 0.0 ? spread : 1.0;
  int k = 1;
  for (int h = 0; h < n; h++)
    for (int g = g_min; g <= G; g++) {
      int j = 1 + h * md->m + (g - g_min);
      md->ia[k] = h + 1, md->ja[k] = j, md->ar[k] = 1.0, k++;
      if (g > g_min) md->ia[k] = n + 1, md->ja[k] = j, md->ar[k] = (double)(g - g_min), k++;
    }
  return LUKV_OK;
}

/* Everything that calls into GLPK; may longjmp out through the guard. */
static glp_prob *lukv_glpk_build(const lukv_glpk_model *md, const lukv_curve_set *cs, int64_t budget,
                                 int binary) {
  glp_prob *P = glp_create_prob();
  glp_set_obj_dir(P, GLP_MIN);
  glp_add_rows(P, md->n + 1);
  for (int h = 0; h < md->n; h++) glp_set_row_bnds(P, h + 1, GLP_FX, 1.0, 1.0);
  glp_set_row_bnds(P, md->n + 1, GLP_UP, 0.0, (double)(budget - (int64_t)md->n * md->g_min));
  glp_add_cols(P, md->ncols);
  for (int h = 0; h < md->n; h++) {
    const double *y = cs->loss + (size_t)h * (md->G + 1);
    for (int g = md->g_min; g <= md->G; g++) {
      int j = 1 + h * md->m + (g - md->g_min);
      if (binary)
        glp_set_col_kind(P, j, GLP_BV);
      else
        glp_set_col_bnds(P, j, GLP_LO, 0.0, 0.0);
      glp_set_obj_coef(P, j, (y[g] - md->ymin[h]) / md->scale);
    }
  }
  glp_load_matrix(P, md->nnz, md->ia, md->ja, md->ar);
  glp_scale_prob(P, GLP_SF_AUTO);
  return P;
}

static double lukv_glpk_unshift(const lukv_glpk_model *md, double z) {
  double s = 0.0;
  for (int h = 0; h < md->n; h++) s += md->ymin[h];
  return s + md->scale * z;
}

static const char *lukv_glpk_ret_text(int ret) {
  switch (ret) {
  case GLP_EBADB: return "invalid initial basis";
  case GLP_ESING: return "singular basis matrix";
  case GLP_ECOND: return "ill-conditioned basis matrix";
  case GLP_EBOUND: return "incorrect bounds";
  case GLP_EFAIL: return "solver failure";
  case GLP_EOBJLL: return "objective lower limit reached";
  case GLP_EOBJUL: return "objective upper limit reached";
  case GLP_EITLIM: return "iteration limit exceeded";
  case GLP_ETMLIM: return "time limit exceeded";
  case GLP_ENOPFS: return "no primal feasible solution";
  case GLP_ENODFS: return "no dual feasible solution";
  case GLP_EROOT: return "root LP optimum not provided";
  case GLP_ESTOP: return "search terminated by application";
  case GLP_EMIPGAP: return "relative MIP gap tolerance reached";
  default: return "unknown GLPK return code";
  }
}

static const char *lukv_glpk_status_text(int st) {
  switch (st) {
  case GLP_OPT: return "optimal";
  case GLP_FEAS: return "feasible";
  case GLP_INFEAS: return "infeasible";
  case GLP_NOFEAS: return "no feasible solution";
  case GLP_UNBND: return "unbounded";
  case GLP_UNDEF: return "undefined";
  default: return "unknown status";
  }
}

/* Hooks on, terminal off; returns the previous terminal setting. */
static int lukv_glpk_enter(lukv_glpk_guard *g) {
  g->len = 0;
  g->msg[0] = '\0';
  int prev = glp_term_out(GLP_OFF);
  glp_term_hook(lukv_glpk_term, g);
  glp_error_hook(lukv_glpk_fatal, g);
  return prev;
}

static void lukv_glpk_leave(int prev_out) {
  glp_error_hook(NULL, NULL);
  glp_term_hook(NULL, NULL);
  glp_term_out(prev_out);
}

int lukv_glpk_lp(const lukv_curve_set *cs, int g_min, int64_t budget, double time_limit_s,
                 double *obj, lukv_error *err) {
  if (!obj) return lukv_error_set(err, LUKV_ERR_INVALID, "glpk lp: NULL argument");
  lukv_glpk_model md;
  int rc = lukv_glpk_model_init(&md, cs, g_min, budget, "glpk lp", err);
  if (rc != LUKV_OK) return rc;

  /* On the heap: a local changed after setjmp would be indeterminate after
   * the longjmp, and the terminal hook writes into the guard. */
  lukv_glpk_guard *guard = malloc(sizeof *guard);
  if (!guard) {
    lukv_glpk_model_free(&md);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "glpk lp: out of memory");
  }
  int prev_out = lukv_glpk_enter(guard);
  if (setjmp(guard->jb)) {
    glp_free_env();
    lukv_glpk_model_free(&md);
    rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk lp: GLPK internal error: %s", lukv_glpk_text(guard));
    free(guard);
    return rc;
  }
  glp_prob *P = lukv_glpk_build(&md, cs, budget, 0);
  glp_smcp sm;
  glp_init_smcp(&sm);
  sm.msg_lev = GLP_MSG_OFF;
  sm.presolve = GLP_ON;
  sm.tm_lim = lukv_ms(time_limit_s);
  sm.tol_dj = LUKV_GLPK_TOL_DJ;
  int ret = glp_simplex(P, &sm);
  int st = ret == 0 ? glp_get_status(P) : GLP_UNDEF;
  if (ret == 0 && st == GLP_OPT) {
    *obj = lukv_glpk_unshift(&md, glp_get_obj_val(P));
    rc = LUKV_OK;
  } else if (ret == GLP_ETMLIM) {
    rc = lukv_error_set(err, LUKV_ERR_TIMELIMIT, "glpk lp: time limit of %g s reached", time_limit_s);
  } else if (ret != 0) {
    rc =
        lukv_error_set(err, LUKV_ERR_SOLVER, "glpk lp: glp_simplex failed: %s", lukv_glpk_ret_text(ret));
  } else {
    rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk lp: solution status %s, not optimal",
                        lukv_glpk_status_text(st));
  }
  glp_delete_prob(P);
  lukv_glpk_leave(prev_out);
  free(guard);
  lukv_glpk_model_free(&md);
  return rc;
}

typedef struct {
  const double *warm_x; /* [ncols + 1] or NULL */
  int warm_given;
  int have_bound;
  double bound; /* best local bound among active nodes (shifted objective) */
} lukv_mip_cb;

static void lukv_glpk_mip_callback(glp_tree *T, void *info) {
  lukv_mip_cb *c = info;
  if (glp_ios_reason(T) == GLP_IHEUR && c->warm_x && !c->warm_given) {
    c->warm_given = 1;
    glp_ios_heur_sol(T, c->warm_x);
  }
  int p = glp_ios_best_node(T);
  if (p != 0) {
    c->bound = glp_ios_node_bound(T, p);
    c->have_bound = 1;
  }
}

int lukv_glpk_mip(const lukv_curve_set *cs, int g_min, int64_t budget, double time_limit_s,
                  const int32_t *warm, int32_t *alloc, double *obj, double *gap, lukv_error *err) {
  if (!alloc || !obj || !gap) return lukv_error_set(err, LUKV_ERR_INVALID, "glpk mip: NULL argument");
  *obj = NAN;
  *gap = NAN;
  lukv_glpk_model md;
  int rc = lukv_glpk_model_init(&md, cs, g_min, budget, "glpk mip", err);
  if (rc != LUKV_OK) return rc;
  const int n = md.n, S = md.G + 1;
  double warm_loss = NAN;
  double *x = NULL;
  if (warm) {
    int64_t used = 0;
    warm_loss = 0.0;
    for (int h = 0; h < n; h++) {
      if (warm[h] < g_min || warm[h] > md.G) {
        lukv_glpk_model_free(&md);
        return lukv_error_set(err, LUKV_ERR_INVALID, "glpk mip: warm[%d] = %d outside [%d, %d]", h,
                              (int)warm[h], g_min, md.G);
      }
      used += warm[h];
      warm_loss += cs->loss[(size_t)h * S + warm[h]];
    }
    if (used > budget) {
      lukv_glpk_model_free(&md);
      return lukv_error_set(err, LUKV_ERR_INVALID, "glpk mip: warm allocation uses %lld > budget %lld",
                            (long long)used, (long long)budget);
    }
    x = calloc((size_t)md.ncols + 1, sizeof(double));
    if (!x) {
      lukv_glpk_model_free(&md);
      return lukv_error_set(err, LUKV_ERR_NOMEM, "glpk mip: out of memory");
    }
    for (int h = 0; h < n; h++) x[1 + h * md.m + (warm[h] - g_min)] = 1.0;
  }
  int32_t *sol = malloc(sizeof(int32_t) * (size_t)n);
  if (!sol) {
    free(x);
    lukv_glpk_model_free(&md);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "glpk mip: out of memory");
  }
  const double t0 = lukv_now();

  lukv_glpk_guard *guard = malloc(sizeof *guard);
  if (!guard) {
    free(x), free(sol);
    lukv_glpk_model_free(&md);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "glpk mip: out of memory");
  }
  lukv_mip_cb cb = {x, 0, 0, 0.0};
  int prev_out = lukv_glpk_enter(guard);
  if (setjmp(guard->jb)) {
    glp_free_env();
    free(x), free(sol);
    lukv_glpk_model_free(&md);
    rc =
        lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: GLPK internal error: %s", lukv_glpk_text(guard));
    free(guard);
    return rc;
  }
  glp_prob *P = lukv_glpk_build(&md, cs, budget, 1);
  glp_iocp io;
  glp_init_iocp(&io);
  io.msg_lev = GLP_MSG_OFF;
  io.mip_gap = 0.0;
  io.tol_obj = 1e-10; /* prune only nodes that cannot improve the incumbent at all */
  io.cb_func = lukv_glpk_mip_callback;
  io.cb_info = &cb;
  /* GLPK's MIP presolver hands the callback its *transformed* problem, whose
   * columns no longer match ours, so a warm incumbent can only be given to
   * an unpresolved search; that search needs the root LP solved first. */
  io.presolve = warm ? GLP_OFF : GLP_ON;
  int ret = 0, lp_done = 0;
  double lp_z = NAN;
  if (warm) {
    glp_smcp sm;
    glp_init_smcp(&sm);
    sm.msg_lev = GLP_MSG_OFF;
    sm.presolve = GLP_ON;
    sm.tm_lim = lukv_ms(time_limit_s);
    sm.tol_dj = LUKV_GLPK_TOL_DJ;
    ret = glp_simplex(P, &sm);
    if (ret == 0 && glp_get_status(P) == GLP_OPT) {
      lp_done = 1;
      lp_z = glp_get_obj_val(P);
    }
  }
  int have_sol = 0, proven = 0;
  if (warm && !lp_done) {
    /* Root LP not solved: keep the warm allocation as the incumbent. */
    if (ret == GLP_ETMLIM) {
      rc = lukv_error_set(err, LUKV_ERR_TIMELIMIT, "glpk mip: time limit of %g s reached in the root LP",
                          time_limit_s);
      memcpy(sol, warm, sizeof(int32_t) * (size_t)n);
      have_sol = 1;
    } else if (ret != 0) {
      rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: root LP failed: %s", lukv_glpk_ret_text(ret));
    } else {
      rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: root LP status %s",
                          lukv_glpk_status_text(glp_get_status(P)));
    }
  } else {
    double left = time_limit_s > 0.0 ? time_limit_s - (lukv_now() - t0) : 0.0;
    if (time_limit_s > 0.0 && left <= 0.0) {
      ret = GLP_ETMLIM;
    } else {
      io.tm_lim = lukv_ms(left);
      ret = glp_intopt(P, &io);
    }
    int st = glp_mip_status(P);
    int readable = (ret == 0 || ret == GLP_ETMLIM) && (st == GLP_OPT || st == GLP_FEAS);
    int bad_head = -1;
    if (readable) {
      /* Read the 0/1 columns back; each head must pick exactly one point. */
      for (int h = 0; h < n && bad_head < 0; h++) {
        int pick = -1, count = 0;
        for (int g = g_min; g <= md.G; g++)
          if (glp_mip_col_val(P, 1 + h * md.m + (g - g_min)) > 0.5) pick = g, count++;
        if (count != 1) bad_head = h;
        sol[h] = pick;
      }
    }
    if (bad_head >= 0) {
      rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: head %d does not pick exactly one point",
                          bad_head);
    } else if (ret == 0 && st == GLP_OPT) {
      rc = LUKV_OK;
      have_sol = proven = 1;
    } else if (ret == GLP_ETMLIM) {
      rc = lukv_error_set(err, LUKV_ERR_TIMELIMIT, "glpk mip: time limit of %g s reached", time_limit_s);
      if (readable) {
        have_sol = 1;
      } else if (warm) {
        memcpy(sol, warm, sizeof(int32_t) * (size_t)n);
        have_sol = 1;
      }
    } else if (ret != 0) {
      rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: glp_intopt failed: %s",
                          lukv_glpk_ret_text(ret));
    } else {
      rc = lukv_error_set(err, LUKV_ERR_SOLVER, "glpk mip: solution status %s",
                          lukv_glpk_status_text(st));
    }
  }
  glp_delete_prob(P);
  lukv_glpk_leave(prev_out);
  free(guard);

  if (have_sol) {
    double l = 0.0;
    for (int h = 0; h < n; h++) l += cs->loss[(size_t)h * S + sol[h]];
    if (warm && l > warm_loss) { /* never worse than the incumbent we offered */
      memcpy(sol, warm, sizeof(int32_t) * (size_t)n);
      l = warm_loss;
    }
    memcpy(alloc, sol, sizeof(int32_t) * (size_t)n);
    *obj = l;
    if (proven) {
      *gap = 0.0;
    } else {
      double bz = cb.have_bound ? cb.bound : lp_z;
      if (isfinite(bz)) {
        double b = lukv_glpk_unshift(&md, bz);
        *gap = fabs(l - b) / (fabs(l) + DBL_EPSILON);
      }
    }
  }
  free(x), free(sol);
  lukv_glpk_model_free(&md);
  return rc;
}

"""The shared harness of the CLI tests (test_solve_cli.py, test_profile_cli.py,
test_eval_cli.py, test_cli_gpu.py): a check counter, a subprocess runner, the
"bad input -> error, no output" check, and the comparison of a lukv-profile run
with the independent reference fixtures. Imported as `clitest` (tests/ is
sys.path[0] when meson runs /usr/bin/python3 tests/test_X.py)."""
import os
import subprocess

# The settings of tools/reference_profile.py's fixtures (its docstring):
# tests/fixtures/ref-profile.h5 (--utility max), ref-profile-sum.h5 (sum), on
# the corpus ref-corpus.h5 and the golden model llama3_rope.
REF_PROFILE_ARGS = ["--context-len", "160", "--future-len", "48", "--samples", "2", "--sink", "4",
                    "--window", "16", "--pool", "7", "--grid", "32", "--scorers", "snapkv,keydiff"]
# attributes that define what the reference computed
REF_PROFILE_ATTRS = ("model_hash", "n_layers", "n_kv_heads", "n_q_heads", "head_dim", "mode", "utility",
                     "context_len", "future_len", "sink", "window", "pool_kernel", "grid")


def runner(exe, cwd=None, timeout=240):
    """run(*args, cwd=cwd) -> (returncode, stdout, stderr) of EXE ARGS..."""
    def run(*args, cwd=cwd):
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)
        return p.returncode, p.stdout, p.stderr
    return run


class Checks:
    def __init__(self):
        self.count = 0
        self.failures = []

    def check(self, cond, what):
        self.count += 1
        if not cond:
            self.failures.append(what)
            print(f"FAIL: {what}")

    def finish(self):
        """Print the summary line; return the exit code (1 on any failure)."""
        print(f"{self.count - len(self.failures)} passed, {len(self.failures)} failed")
        return 1 if self.failures else 0

    def expect_error(self, run, name, args, code, must_contain=(), out=None, *,
                     error_prefix=None, joint_prefix=False, usage_prefix=None,
                     no_stdout=False, extra_outputs=None, joint_outputs=False, **run_kw):
        """run(*ARGS) fails with exit CODE, an error message holding every string
        of MUST_CONTAIN, and leaves neither OUT nor OUT.tmp behind. Exit 1 (data
        error) means exactly one stderr line; usage errors (exit 2) may add a
        "(see --help)" hint.

        error_prefix: exit 1's line starts with it ("PROG: error: "): its own
          check, or with joint_prefix part of the one-line check.
        usage_prefix: other exits: the first stderr line starts with it.
        no_stdout: nothing at all on stdout.
        extra_outputs: OUT -> further paths that must not exist (OUT.csv...).
        joint_outputs: one check for all the output paths, not one each.
        run_kw: passed to run (cwd=...). Returns stderr."""
        rc, so, se = run(*args, **run_kw)
        lines = [l for l in se.splitlines() if l.strip()]
        self.check(rc == code, f"{name}: exit {rc}, expected {code} (stderr: {se.strip()!r})")
        if code == 1:
            if error_prefix is not None and joint_prefix:
                self.check(len(lines) == 1 and lines[0].startswith(error_prefix),
                           f"{name}: expected one {error_prefix!r} line, got {lines}")
            else:
                self.check(len(lines) == 1, f"{name}: {len(lines)} stderr lines, expected 1: {se!r}")
                if error_prefix is not None:
                    self.check(se.startswith(error_prefix), f"{name}: stderr {se!r}")
        elif usage_prefix is not None:
            self.check(lines and lines[0].startswith(usage_prefix), f"{name}: usage line {lines}")
        if no_stdout:
            self.check(so == "", f"{name}: partial output on stdout: {so[:200]!r}")
        for s in must_contain:
            self.check(s in se, f"{name}: stderr lacks {s!r}: {se.strip()!r}")
        if out:
            paths = [out, out + ".tmp", *(extra_outputs(out) if extra_outputs else ())]
            if joint_outputs:
                self.check(not any(os.path.exists(p) for p in paths),
                           f"{name}: output file left behind ({paths})")
            else:
                for p in paths:
                    self.check(not os.path.exists(p), f"{name}: {p} exists after failure")
        return se


def profile_arrays(path):
    """({"utility_total", "sample_context_len", "curves/NAME"...: array}, attrs) of a profile."""
    import h5py
    with h5py.File(path, "r") as f:
        out = {"utility_total": f["utility_total"][()],
               "sample_context_len": f["sample_context_len"][()]}
        for k in f["curves"]:
            out["curves/" + k] = f["curves/" + k][()]
        return out, dict(f.attrs)


def compare_profiles(checks, got_path, ref_path, tol, label):
    """Every dataset of GOT_PATH within TOL * max|ref| of REF_PATH's, the same
    datasets and the same defining attributes; prints each measured deviation."""
    import numpy as np
    mine, ma = profile_arrays(got_path)
    ref, ra = profile_arrays(ref_path)
    name = os.path.basename(ref_path)
    for key in REF_PROFILE_ATTRS:
        checks.check(ma.get(key) == ra.get(key), f"{label} vs {name}: attribute {key}: {ma.get(key)} vs {ra.get(key)}")
    checks.check(sorted(mine) == sorted(ref), f"{label} vs {name}: datasets {sorted(mine)} vs {sorted(ref)}")
    for key in sorted(ref):
        if key not in mine:
            continue
        x, y = mine[key].astype(np.float64), ref[key].astype(np.float64)
        if x.shape != y.shape:
            checks.check(False, f"{label} vs {name}: {key} shape {x.shape} vs {y.shape}")
            continue
        scale = np.abs(y).max()
        err = np.abs(x - y).max()
        rel = err / scale if scale > 0 else err
        print(f"{label} vs {name} {key}: max |x-ref| / max|ref| = {rel:.3g} (tolerance {tol:g})")
        checks.check(err <= tol * scale, f"{label} vs {name}: {key} differs by {err:.3g} > {tol:g} * {scale:.3g}")

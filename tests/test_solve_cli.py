#!/usr/bin/python3
"""lukv-solve as a user meets it: a good run and its invariants, show, export,
plots, and every bad input -> one error line naming the file and the object,
exit 1 (2 for usage), and no output file (not even NAME.tmp).

Run by meson as: /usr/bin/python3 test_solve_cli.py PATH/TO/lukv-solve
(env LUKV_FIXTURES, LUKV_SOURCE). Exits 77 when h5py/numpy are absent.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from clitest import Checks, runner

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py/numpy missing: skipped")
    sys.exit(77)

SOLVE = os.path.abspath(sys.argv[1])
FIX = os.environ.get("LUKV_FIXTURES", os.path.join(os.path.dirname(__file__), "fixtures"))
SRC = os.environ.get("LUKV_SOURCE", os.path.join(os.path.dirname(__file__), ".."))
PROFILE = os.path.join(FIX, "profile-small.h5")
C = Checks()
check = C.check
run = runner(SOLVE)


def expect_error(name, args, code, must_contain, out=None):
    C.expect_error(run, name, args, code, must_contain, out)


def variant(tmp, name, edit):
    """Copy of the fixture profile with one edit applied through h5py."""
    path = os.path.join(tmp, name + ".h5")
    shutil.copy(PROFILE, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def main():
    tmp = tempfile.mkdtemp(prefix="lukv-cli-")
    try:
        good(tmp)
        bad(tmp)
    finally:
        shutil.rmtree(tmp)
    sys.exit(C.finish())


def good(tmp):
    out = os.path.join(tmp, "budgets.h5")
    rc, so, se = run(PROFILE, "-o", out, "--lp", "--time-limit", "30", "-q")
    check(rc == 0, f"solve: exit {rc}: {se}")
    rows = [l for l in so.splitlines() if l and not l.startswith("#") and not l.lstrip().startswith("ratio")]
    check(len(rows) == 99, f"solve: {len(rows)} table rows, expected 99")
    with h5py.File(out, "r") as f:
        check(f.attrs["format"] == "lukv-budgets", "budgets: format attribute")
        comp = f["compression"][()]
        keep = f["keep_fraction"][()]
        L, H = int(f.attrs["n_layers"]), int(f.attrs["n_kv_heads"])
        G = int(f.attrs["grid"])
        gmin = int(f.attrs["min_keep_index"])
        check(keep.shape == (99, L, H), f"keep_fraction shape {keep.shape}")
        check(np.allclose(comp, np.arange(1, 100) / 100, atol=1e-6), "compression 0.01..0.99")
        g = np.rint(keep.astype(np.float64) * G)
        check(np.allclose(g, keep * G, atol=1e-3), "keep fractions on the grid")
        check((g >= gmin).all() and (g <= G).all(), "g_min <= g <= G")
        feas = f["report/feasible"][()]
        budget = np.rint((1 - comp.astype(np.float64)) * G * L * H)
        used = g.reshape(99, -1).sum(axis=1)
        check(((used <= budget) | (feas == 0)).all(), "sum of g <= budget on feasible ratios")
        check((np.diff(g, axis=0) <= 0).all(), "allocations nested: more compression never keeps more")
        gr, lp, ex = (f["report/" + k][()] for k in ("greedy", "lp_bound", "exact"))
        tol = 1e-9 * np.maximum(1.0, np.abs(gr))
        ok = feas == 1
        check(ok.sum() >= 90, f"{ok.sum()} feasible ratios of 99")
        check((lp[ok] <= ex[ok] + tol[ok]).all() and (ex[ok] <= gr[ok] + tol[ok]).all(),
              "LP bound <= exact <= greedy")
        # Below every head at g_min there is nothing to optimise: all heads sit at g_min.
        check((g[~ok] == gmin).all(), "infeasible ratios put every head at g_min")
        lpg = f["report/lp_glpk"][()]
        ok = ~np.isnan(lpg) & (feas == 1)
        check(ok.any(), "GLPK LP ran")
        check(np.allclose(lpg[ok], lp[ok], rtol=1e-6, atol=1e-9), "GLPK LP equals the hull LP bound")
        uni = f["report/uniform"][()]
        check((gr <= uni + tol).all(), "greedy never worse than uniform")

    rc, so, se = run("show", out, "--ratio", "0.8")
    check(rc == 0 and "mean keep" in so, f"show: exit {rc}: {se}")
    check(len([l for l in so.splitlines() if l[:5].strip().isdigit()]) == L, "show: one row per layer")
    expect_error("show missing ratio", ["show", out, "--ratio", "0.555"], 1, [out, "/compression", "0.555"])

    npy = os.path.join(tmp, "prune.npy")
    rc, so, se = run("export", out, "--npy", npy)
    check(rc == 0, f"export: exit {rc}: {se}")
    arr = np.load(npy)
    check(arr.dtype == np.float32 and arr.shape == (99, L, H), f"npy {arr.dtype} {arr.shape}")
    check(np.allclose(arr, 1 - keep, atol=1e-7), "npy = 1 - keep_fraction")

    part = os.path.join(tmp, "part.h5")
    rc, so, se = run(PROFILE, "-o", part, "--ratios", "0.5,0.8,0.9", "--exact", "mip",
                     "--aggregation", "mean-of-solutions", "--folds", "3", "--scorer", "keydiff", "-q")
    check(rc == 0, f"solve mip/mos/folds: exit {rc}: {se}")
    with h5py.File(part, "r") as f:
        check(f["keep_fraction"].shape[0] == 3, "three ratios")
        check(f.attrs["aggregation"] == "mean-of-solutions", "aggregation attribute")
        for k in ("heldout_mean_curve", "heldout_mean_of_solutions"):
            check(not np.isnan(f["report/" + k][()]).any(), f"{k} reported")
    expect_error("export partial table", ["export", part, "--npy", os.path.join(tmp, "p.npy")], 1,
                 [part, "/compression", "0.01"], os.path.join(tmp, "p.npy"))

    plot = os.path.join(SRC, "tools", "lukv-plot")
    try:
        import matplotlib  # noqa: F401
        for args in (["keep", out, "--ratio", "0.8"], ["losses", out]):
            png = os.path.join(tmp, args[0] + ".png")
            p = subprocess.run([sys.executable, plot, *args, "-o", png], capture_output=True, text=True)
            check(p.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n",
                  f"lukv-plot {args[0]}: {p.stderr}")
    except ImportError:
        print("matplotlib missing: plot checks skipped")


def bad(tmp):
    out = os.path.join(tmp, "never.h5")
    missing = os.path.join(tmp, "missing.h5")
    expect_error("missing file", [missing, "-o", out], 1, [missing, "No such file"], out)

    text = os.path.join(tmp, "text.h5")
    with open(text, "w") as fh:
        fh.write("this is not HDF5\n")
    expect_error("not HDF5", [text, "-o", out], 1, [text, "not an HDF5 file"], out)

    def set_attr(name, value):
        return lambda f: f.attrs.__setitem__(name, value)

    def replace(name, fn):
        def edit(f):
            data = fn(f[name][()])
            del f[name]
            f[name] = data
        return edit

    def poke(value):
        def fn(a):
            a = a.copy()
            a[0, 1, 1, 3] = value
            return a
        return fn

    cases = [
        ("wrong format", set_attr("format", "lukv-budgets"), ["format"]),
        ("newer version", set_attr("format_version", 2), ["format_version"]),
        ("missing dataset", lambda f: f.__delitem__("curves/oracle"), ["/curves/oracle"]),
        ("missing attribute", lambda f: f.attrs.__delitem__("grid"), ["grid"]),
        ("shape mismatch", replace("utility_total", lambda a: a[:, :, :1]), ["/utility_total"]),
        ("NaN loss", replace("curves/snapkv", poke(np.nan)), ["/curves/snapkv"]),
        ("Inf loss", replace("curves/snapkv", poke(np.inf)), ["/curves/snapkv"]),
        ("negative loss", replace("curves/snapkv", poke(-1.0)), ["/curves/snapkv"]),
    ]
    for name, edit, words in cases:
        path = variant(tmp, name.replace(" ", "-"), edit)
        expect_error(name, [path, "-o", out], 1, [path] + words, out)

    def zero_samples(f):
        for key in ["curves/" + k for k in f["curves"]] + ["utility_total", "sample_context_len"]:
            a = f[key][()]
            del f[key]
            f[key] = a[:0]
    path = variant(tmp, "zero-samples", zero_samples)
    expect_error("zero samples", [path, "-o", out], 1, [path], out)

    expect_error("ratio 0", [PROFILE, "-o", out, "--ratios", "0,0.5"], 1, ["ratio", "outside (0, 1)"], out)
    expect_error("ratio 1.5", [PROFILE, "-o", out, "--ratios", "1.5"], 1, ["1.5", "outside (0, 1)"], out)
    expect_error("unknown scorer", [PROFILE, "-o", out, "--scorer", "h2o"], 1,
                 [PROFILE, "/curves/h2o", "unknown scorer", "snapkv"], out)
    expect_error("unwritable output", [PROFILE, "-o", "/nonexistent-dir/b.h5", "--exact", "none"], 1,
                 ["/nonexistent-dir/b.h5"], "/nonexistent-dir/b.h5")
    expect_error("unknown option", [PROFILE, "-o", out, "--frobnicate"], 2, ["--frobnicate"], out)
    expect_error("missing -o", [PROFILE], 2, ["-o"], None)
    expect_error("bad ratios syntax", [PROFILE, "-o", out, "--ratios", "a,b"], 2, ["--ratios"], out)
    expect_error("bad exact", [PROFILE, "-o", out, "--exact", "magic"], 2, ["magic"], out)
    rc, so, se = run("--help")
    check(rc == 0 and "usage:" in so, "--help")


if __name__ == "__main__":
    main()

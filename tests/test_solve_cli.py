#!/usr/bin/python3
"""lukv-solve as a user meets it: a good run and its invariants, show, export,
plots, calibration on part of the samples and `evaluate` on the rest, and every bad input -> one error line naming the file and the object,
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
        samples_and_evaluate(tmp)
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


def table_rows(stdout):
    """evaluate's rows as {ratio: [table, best, regret, uniform, pyramid, lost, keep diff]}."""
    rows = {}
    for line in stdout.splitlines():
        if not line.strip() or line.startswith("#") or line.lstrip().startswith("ratio"):
            continue
        f = line.split()
        rows[float(f[0])] = [float(x.rstrip("%")) for x in f[1:]]
    return rows


def samples_and_evaluate(tmp):
    """--samples calibrates on a block of the profile's samples; evaluate reads a
    table on other samples. Checked against a profile cut by h5py and numpy."""
    ratios = "0.3,0.5,0.8,0.9"
    solve = ["-q", "--exact", "none", "--ratios", ratios]

    def cut(a, b):
        def edit(f):
            for key in ["curves/" + k for k in f["curves"]] + ["utility_total", "sample_context_len"]:
                data = f[key][()][a:b]
                del f[key]
                f[key] = data
        return variant(tmp, f"cut-{a}-{b}", edit)

    def arrays(path):
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in ("keep_fraction", "report/greedy", "report/uniform", "report/pyramid")}

    # --samples FROM:TO is the same solve as a profile holding only those samples.
    t_part = os.path.join(tmp, "t-part.h5")
    rc, so, se = run(PROFILE, "-o", t_part, "--samples", "4:10", *solve)
    check(rc == 0 and "samples 4:10 of the profile's 12" in so, f"solve --samples 4:10: exit {rc}: {se}")
    check("note" not in so and "exact:" not in so, f"--exact none: no exact-status notes: {so}")
    t_cut = os.path.join(tmp, "t-cut.h5")
    rc, so, se = run(cut(4, 10), "-o", t_cut, *solve)
    check(rc == 0, f"solve cut profile: exit {rc}: {se}")
    with h5py.File(t_part, "r") as f:
        check(int(f.attrs["calibration_samples"]) == 6, "budgets record calibration_samples = 6")
    a, b = arrays(t_part), arrays(t_cut)
    check(all(np.array_equal(a[k], b[k]) for k in a), "--samples 4:10 equals the profile cut to samples 4..9")
    for spec, same in (("8:", "8:12"), (":4", "0:4"), ("0:", None)):
        o1, o2 = os.path.join(tmp, "s1.h5"), os.path.join(tmp, "s2.h5")
        rc1, _, se1 = run(PROFILE, "-o", o1, "--samples", spec, *solve)
        rc2, _, se2 = run(PROFILE, "-o", o2, *(["--samples", same] if same else []), *solve)
        check(rc1 == 0 and rc2 == 0, f"--samples {spec}: {se1}{se2}")
        if rc1 == 0 and rc2 == 0:
            a, b = arrays(o1), arrays(o2)
            check(all(np.array_equal(a[k], b[k]) for k in a), f"--samples {spec} equals {same or 'all'}")

    # In sample, a table is the best table for its own curves.
    t06 = os.path.join(tmp, "t-0-6.h5")
    rc, so, se = run(PROFILE, "-o", t06, "--samples", "0:6", *solve)
    check(rc == 0, f"solve 0:6: exit {rc}: {se}")
    rc, so, se = run("evaluate", t06, PROFILE, "--samples", "0:6")
    rows = table_rows(so)
    check(rc == 0 and sorted(rows) == [0.3, 0.5, 0.8, 0.9], f"evaluate in sample: exit {rc}: {se}{so}")
    greedy = arrays(t06)["report/greedy"]
    for i, r in enumerate(sorted(rows)):
        t, best, regret, _, _, _, diff = rows[r]
        check(regret == 0 and diff == 0 and np.isclose(t, greedy[i], rtol=1e-5) and np.isclose(t, best, rtol=1e-5),
              f"in sample at {r}: table {t}, best {best}, greedy {greedy[i]}, keep diff {diff}")

    # Out of sample: the table's loss on samples 6..11 (numpy), and the best
    # table for them = solve --samples 6:12.
    rc, so, se = run("evaluate", t06, PROFILE, "--samples", "6:")
    rows = table_rows(so)
    check(rc == 0 and "samples 6:12 of 12" in so, f"evaluate 6: exit {rc}: {se}")
    t612 = os.path.join(tmp, "t-6-12.h5")
    rc, _, se = run(PROFILE, "-o", t612, "--samples", "6:12", *solve)
    other = arrays(t612)
    with h5py.File(PROFILE, "r") as f:
        G = int(f.attrs["grid"])
        mean = f["curves/snapkv"][()][6:12].astype(np.float64).mean(axis=0).reshape(-1, G + 1)
    keep = arrays(t06)["keep_fraction"].reshape(4, -1).astype(np.float64)
    worse = 0
    for i, r in enumerate(sorted(rows)):
        t, best, regret, uni, pyr, lost, diff = rows[r]
        want = sum(np.interp(k * G, np.arange(G + 1), c) for k, c in zip(keep[i], mean))
        check(np.isclose(t, want, rtol=2e-5), f"held-out loss at {r}: printed {t}, numpy {want}")
        check(np.isclose(best, other["report/greedy"][i], rtol=2e-5), f"best at {r} = solve 6:12's greedy")
        check(np.isclose(uni, other["report/uniform"][i], rtol=2e-5) and
              np.isclose(pyr, other["report/pyramid"][i], rtol=2e-5), f"baselines at {r}")
        check(t >= best * (1 - 1e-5), f"no table beats the greedy on its own curves ({r}: {t} < {best})")
        check(np.isclose(lost, 100 * t / mean[:, 0].sum(), rtol=1e-3), f"lost % at {r}")
        worse += t > best
    check(worse > 0, "samples 0..5 and 6..11 differ: some ratio has a positive regret")
    rc, so, se = run("evaluate", t06, PROFILE, "--ratios", "0.8")
    check(rc == 0 and sorted(table_rows(so)) == [0.8], f"evaluate --ratios 0.8: exit {rc}: {se}")

    # Bad input: one line naming the files and the object.
    expect_error("samples beyond the profile", [PROFILE, "-o", os.path.join(tmp, "x.h5"), "--samples", "10:20"],
                 1, [PROFILE, "samples 10:20", "0:12"], os.path.join(tmp, "x.h5"))
    for spec in ("5:3", "a:b", "7", "1:2:3", "-1:4"):
        expect_error(f"--samples {spec}", [PROFILE, "-o", os.path.join(tmp, "x.h5"), "--samples", spec],
                     2, ["--samples"], os.path.join(tmp, "x.h5"))
    other_model = variant(tmp, "other-model", lambda f: f.attrs.__setitem__("model_hash", "f" * 64))
    expect_error("evaluate on another model", ["evaluate", t06, other_model], 1, [t06, other_model, "model_hash"])
    other_sink = variant(tmp, "other-sink", lambda f: f.attrs.__setitem__("sink", 8))
    expect_error("evaluate on another sink", ["evaluate", t06, other_sink], 1, [other_sink, "sink is 4", "8"])
    kd = os.path.join(tmp, "t-kd.h5")
    run(PROFILE, "-o", kd, "--scorer", "keydiff", *solve)
    no_kd = variant(tmp, "no-keydiff", lambda f: f.__delitem__("curves/keydiff"))
    expect_error("evaluate without the table's scorer", ["evaluate", kd, no_kd], 1, [no_kd, "keydiff"])
    expect_error("evaluate a ratio not in the table", ["evaluate", t06, PROFILE, "--ratios", "0.7"], 1,
                 [t06, "/compression", "0.7"])
    expect_error("evaluate samples beyond", ["evaluate", t06, PROFILE, "--samples", "3:13"], 1,
                 [PROFILE, "3:13"])
    expect_error("evaluate one file", ["evaluate", t06], 2, ["BUDGETS and PROFILE"])
    expect_error("evaluate ratio 1.5", ["evaluate", t06, PROFILE, "--ratios", "1.5"], 1, ["1.5", "outside (0, 1)"])
    expect_error("evaluate bad ratios", ["evaluate", t06, PROFILE, "--ratios", "x"], 2, ["--ratios"])
    expect_error("evaluate unknown option", ["evaluate", t06, PROFILE, "--exact", "dp"], 2, ["--exact"])
    expect_error("evaluate a profile as table", ["evaluate", PROFILE, PROFILE], 1, [PROFILE, "format"])

    # tools/lukv-samples: one table per block of S calibration samples, read on the held-out half.
    tool = os.path.join(SRC, "tools", "lukv-samples")

    def samples_tool(*args):
        p = subprocess.run([sys.executable, tool, *args, "--solve", SOLVE], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    rc, so, se = samples_tool(PROFILE, "--ratios", "0.5,0.8")
    rows = [l.split() for l in so.splitlines() if l and not l.startswith("#") and not l.lstrip().startswith("S ")]
    check(rc == 0 and [r[:2] for r in rows] == [["1", "6"], ["2", "3"], ["4", "1"], ["6", "1"], ["uni", "-"]],
          f"lukv-samples: exit {rc}: {se}{so}")
    rc2, so2, _ = run("evaluate", t06, PROFILE, "--samples", "6:12", "--ratios", "0.5,0.8")
    ev = table_rows(so2)
    if rc == 0 and rc2 == 0 and len(rows) == 5:
        # The S = 6 row is the table of samples 0..5 read on 6..11: regret mean = worst = evaluate's.
        full = rows[3]
        check(float(full[2]) == float(full[4]) and abs(float(full[2]) - ev[0.5][2]) < 0.006 and
              abs(float(full[6]) - ev[0.8][2]) < 0.006, f"lukv-samples S=6 {full} vs evaluate {ev}")
        uni = 100 * (ev[0.8][3] - ev[0.8][1]) / ev[0.8][1]
        check(abs(float(rows[4][3]) - uni) < 0.006, f"lukv-samples uniform regret {rows[4]} vs {uni:.2f}")
    try:
        import matplotlib  # noqa: F401
        png = os.path.join(tmp, "samples.png")
        rc, so, se = samples_tool(PROFILE, "--sizes", "1,3", "--plot", png)
        check(rc == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"lukv-samples --plot: {se}")
    except ImportError:
        print("matplotlib missing: lukv-samples --plot skipped")
    for name, args, words in (("calib beyond", ["--calib", "0:20"], ["--calib 0:20", "0:12"]),
                              ("overlap", ["--calib", "0:8", "--test", "6:12"], [PROFILE, "overlap"]),
                              ("size too large", ["--sizes", "1,9"], ["--sizes", "1..6"])):
        rc, so, se = samples_tool(PROFILE, *args)
        lines = se.strip().splitlines()
        check(rc == 1 and len(lines) == 1 and lines[0].startswith("lukv-samples: error: ") and
              all(w in se for w in words), f"lukv-samples {name}: exit {rc}: {se!r}")


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

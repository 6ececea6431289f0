#!/usr/bin/python3
"""./scripts/demo, the README's first command, on the build under test: the
whole pipeline on the bundled model (retrieval calibration, KeyDiff, 20 needle
prompts at rho 0.8 and 0.9) writes every file it announces, a results table
with every (task, length, allocator, ratio) row, and the answers
docs/results.md reports: the full cache answers all 20, and the LU-KV table at
rho 0.8 keeps at least 18 and no fewer than uniform's (measured 2026-11-24:
20, uniform 19). Bad LUKV_DEMO_* values -> one line, exit 2, nothing written.
make_tasks.py --name-by-sample changes the task names only.

Run by meson as: /usr/bin/python3 test_demo.py BUILD_ROOT (about a minute on
a 2-core CPU in a release or debugoptimized build; not run under the
sanitizers). Exits 77 when h5py/numpy/matplotlib are absent.
"""
import csv
import os
import subprocess
import sys
import tempfile

from clitest import Checks

try:
    import h5py
    import matplotlib  # noqa: F401
    import numpy
except ImportError:
    print("h5py/numpy/matplotlib missing: skipped")
    sys.exit(77)

BUILD = os.path.abspath(sys.argv[1])
SRC = os.path.abspath(os.environ.get("LUKV_SOURCE", os.path.join(os.path.dirname(__file__), "..")))
DEMO = os.path.join(SRC, "scripts", "demo")
C = Checks()
check = C.check


def demo(out, **env):
    e = dict(os.environ, LUKV_DEMO_BUILD=BUILD, LUKV_DEMO_OUT=out, LUKV_DEMO_DEVICE="cpu",
             LUKV_PYTHON=sys.executable, **env)
    p = subprocess.run([DEMO], capture_output=True, text=True, timeout=900, env=e, cwd=SRC)
    return p.returncode, p.stdout, p.stderr


with tempfile.TemporaryDirectory() as tmp:
    for var, bad in (("LUKV_DEMO_SCORER", "h2o"), ("LUKV_DEMO_CALIB", "books"), ("LUKV_DEMO_MODEL", "gpt2")):
        out = os.path.join(tmp, "bad-" + var)
        rc, so, se = demo(out, **{var: bad})
        lines = [l for l in se.splitlines() if l.strip()]
        check(rc == 2, f"{var}={bad}: exit {rc}, expected 2 ({se.strip()!r})")
        check(len(lines) == 1 and var in lines[0] and bad in lines[0],
              f"{var}={bad}: expected one line naming it, got {lines}")
        check(not os.path.exists(os.path.join(out, "profile.h5")), f"{var}={bad}: profile.h5 written")

    # The demo's task maker: --name-by-sample renames the tasks and nothing else.
    mk = os.path.join(SRC, "tools", "organism", "make_tasks.py")
    files = {}
    for tag, extra in (("plain", []), ("named", ["--name-by-sample"])):
        files[tag] = os.path.join(tmp, tag + ".h5")
        p = subprocess.run([sys.executable, mk, "-o", files[tag], "--contexts", "1024", "--samples", "2", *extra],
                           capture_output=True, text=True, cwd=SRC)
        check(p.returncode == 0, f"make_tasks.py {extra}: exit {p.returncode} ({p.stderr.strip()!r})")
    if all(os.path.isfile(f) for f in files.values()):
        with h5py.File(files["plain"]) as a, h5py.File(files["named"]) as b:
            names = [t.decode() for t in b["task"][()]]
            check(names == ["niah_single#000", "niah_single#001", "niah_multikey#000", "niah_multikey#001"],
                  f"make_tasks.py --name-by-sample: names {names}")
            check(all(numpy.array_equal(a[k][()], b[k][()]) for k in a if k != "task"),
                  "make_tasks.py --name-by-sample: contexts, questions or answers differ")

    out = os.path.join(tmp, "demo")
    rc, so, se = demo(out)
    check(rc == 0, f"demo: exit {rc}; stderr tail {se[-2000:]!r}")
    check("Done in " in so, "demo: no 'Done in' line")
    for f in ("calib-retrieval.h5", "tasks.h5", "profile.h5", "profile-show.txt", "budgets.h5",
              "budgets-all.h5", "results.h5", "results.csv", "keep-0.8.png", "losses.png",
              "fidelity.png", "accuracy.png"):
        path = os.path.join(out, f)
        check(os.path.isfile(path) and os.path.getsize(path) > 0, f"demo: {f} missing or empty")
    rows = []
    if os.path.isfile(os.path.join(out, "results.csv")):
        with open(os.path.join(out, "results.csv")) as fh:
            rows = list(csv.DictReader(fh))
    cells = {(t, T) for t in ("niah_single", "niah_multikey") for T in ("1024", "2048")}
    arms = {("full", "0")} | {(a, r) for a in ("uniform", "pyramid", "adakv", "lukv") for r in ("0.8", "0.9")}
    got = {(r["task"], r["context_len"], r["allocator"], r["ratio"]) for r in rows}
    check(got == {c + a for c in cells for a in arms} and len(rows) == len(got),
          f"demo: results.csv rows {sorted(got)}")
    check(all(r["scorer"] in ("keydiff", "-") for r in rows), "demo: a row not scored by keydiff")

    def answers(alloc, ratio):
        return sum(round(float(r["accuracy"]) * int(r["samples"])) for r in rows
                   if r["allocator"] == alloc and r["ratio"] == ratio)

    if rows:
        full, lukv, uni = answers("full", "0"), answers("lukv", "0.8"), answers("uniform", "0.8")
        print(f"full {full}/20, lukv@0.8 {lukv}/20, uniform@0.8 {uni}/20")
        check(full == 20, f"demo: the full cache answered {full}/20")
        check(lukv >= 18 and lukv >= uni, f"demo: lukv at 0.8 answered {lukv}/20 (uniform {uni})")

sys.exit(C.finish())

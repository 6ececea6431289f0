"""tools/lukv-compare as a user meets it: the paired counts, the exact McNemar
p-value and the paired NLL difference on hand-made lukv-eval results, and one
error line for every bad input, with nothing on stdout.

  /usr/bin/python3 tests/test_compare_cli.py   (meson passes nothing; exit 77 without h5py)
"""
import math
import os
import sys
import tempfile

from clitest import Checks, runner

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py/numpy missing: skipped")
    sys.exit(77)

SRC = os.path.abspath(os.environ.get("LUKV_SOURCE", os.path.join(os.path.dirname(__file__), "..")))
COMPARE = os.path.join(SRC, "tools", "lukv-compare")
C = Checks()
check = C.check
run = runner(sys.executable, cwd=SRC)


def compare(*args):
    return run(COMPARE, *args)


def write_results(path, rows, tasks="tasks.h5", protocol="query-agnostic", fmt="lukv-eval-results"):
    """A results.h5 as lukv-eval writes it (docs/formats.md §6); ROWS are
    (task, allocator, scorer, ratio, correct, nll), one sample each."""
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update(format=fmt, format_version=1, tasks=tasks, protocol=protocol, seed=1, model_hash="x")
        f.create_dataset("task", data=[r[0] for r in rows], dtype=s)
        f.create_dataset("allocator", data=[r[1] for r in rows], dtype=s)
        f.create_dataset("scorer", data=[r[2] for r in rows], dtype=s)
        f["ratio"] = np.array([r[3] for r in rows], dtype=np.float64)
        f["context_len"] = np.full(len(rows), 64, dtype=np.int32)
        f["samples"] = np.ones(len(rows), dtype=np.int32)
        f["accuracy"] = np.array([1.0 if r[4] else 0.0 for r in rows])
        f["nll"] = np.array([r[5] for r in rows], dtype=np.float64)


def table_row(out, a, b):
    """The cells of the pair table's row for arms A, B."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] == a and cells[1] == b and cells[2].isdigit():
            return cells
    return None


def main():
    n = 12
    names = [f"niah#{i:03d}" for i in range(n)]
    # A right on 0..6, B right on 0..4 and 7..11: both 5, A only 2 (5, 6), B only 5 (7..11), neither 0
    a_hit = [i < 7 for i in range(n)]
    b_hit = [i < 5 or i >= 7 for i in range(n)]
    full_hit = [i != 3 for i in range(n)]
    a_nll = [0.1 * i for i in range(n)]
    b_nll = [0.1 * i + (0.5 if i % 2 else -0.1) for i in range(n)]
    with tempfile.TemporaryDirectory() as d:
        fa, fb, fc = (os.path.join(d, x) for x in ("a.h5", "b.h5", "c.h5"))
        write_results(fa, [(t, "full", "-", 0.0, h, 0.05) for t, h in zip(names, full_hit)]
                      + [(t, "lukv", "snapkv", 0.8, h, v) for t, h, v in zip(names, a_hit, a_nll)]
                      + [(t, "uniform", "snapkv", 0.8, False, 3.0) for t in names])
        write_results(fb, [(t, "lukv", "snapkv", r, h, v) for r in (0.8, 0.9) for t, h, v in zip(names, b_hit, b_nll)])

        rc, out, err = compare(fa, fb, "--names", "A,B", "--list")
        check(rc == 0, f"two arms: exit {rc} ({err.strip()})")
        check("## niah, ratio 0.8 (12 paired samples)" in out, f"one section per task and shared ratio: {out}")
        check("ratio 0.9" not in out, "0.9 is not shared by both arms, so it is left out")
        check("| A | 7/12 |" in out and "| B | 10/12 |" in out, f"per-arm counts: {out}")
        row = table_row(out, "A", "B")
        check(row is not None and row[2:6] == ["5", "2", "5", "0"], f"both / A only / B only / neither: {row}")
        p = 2 * (1 + 7 + 21) / 2 ** 7  # exact two-sided McNemar, b = 2, c = 5
        check(row is not None and abs(float(row[6]) - p) < 1e-3 * p, f"McNemar p {row and row[6]} != {p:.4f}")
        diff = [y - x for x, y in zip(a_nll, b_nll)]
        mean = sum(diff) / n
        se = math.sqrt(sum((v - mean) ** 2 for v in diff) / (n - 1) / n)
        check(row is not None and row[7] == f"{mean:+.3f} ({se:.3f})", f"paired NLL {row and row[7]} != {mean:+.3f} ({se:.3f})")
        check("- A right, B wrong: niah#005, niah#006" in out, f"--list names A's wins: {out}")
        check("- B right, A wrong: niah#007, niah#008, niah#009, niah#010, niah#011" in out, "--list names B's wins")

        # full is the uncompressed cache: compared at every ratio of the other arms; default labels
        rc, out, err = compare(f"{fa}:full", fb, "--ratios", "0.8,0.9")
        check(rc == 0, f"full against lukv: exit {rc} ({err.strip()})")
        check("ratio 0.8" in out and "ratio 0.9" in out, "both asked ratios")
        row = table_row(out, "a:full", "b:lukv")
        check(row is not None and row[2:6] == ["9", "2", "1", "0"], f"default labels, full vs B: {row}")
        check(row is not None and float(row[6]) == 1.0, "b = 2, c = 1 gives p = 1")

        # a file with several compressed allocators: :ALLOCATOR picks; the default is lukv
        rc, out, _ = compare(f"{fa}:uniform", f"{fa}:lukv", "--names", "u,l")
        check(rc == 0 and "| u | 0/12 |" in out and table_row(out, "u", "l")[2:6] == ["0", "0", "7", "5"],
              f"two allocators of one file: {out}")

        def bad(name, args, code, *must):
            C.expect_error(compare, name, args, code, must, error_prefix="lukv-compare: error: ",
                           no_stdout=True)

        bad("one arm", [fa], 2)
        bad("names count", [fa, fb, "--names", "x"], 2, "--names")
        bad("ratios parse", [fa, fb, "--ratios", "x"], 2, "--ratios")
        bad("missing file", [fa, os.path.join(d, "nope.h5")], 1, "nope.h5", "no such file")
        with open(fc, "w") as f:
            f.write("not hdf5")
        bad("not hdf5", [fa, fc], 1, "c.h5", "not an HDF5 file")
        write_results(fc, [(t, "lukv", "snapkv", 0.8, True, 0.1) for t in names], fmt="lukv-profile")
        bad("not results", [fa, fc], 1, "c.h5", "'format'")
        write_results(fc, [("niah", "lukv", "snapkv", 0.8, True, 0.1)])
        bad("aggregate rows only", [fa, fc], 1, "c.h5", "--name-by-sample")
        write_results(fc, [(t, "lukv", "snapkv", 0.8, True, 0.1) for t in names[:-1]])
        bad("other samples", [fa, fc], 1, "c.h5", "other samples", "niah#011")
        write_results(fc, [(t, "lukv", "snapkv", 0.8, True, 0.1) for t in names], tasks="other.h5")
        bad("other task file", [fa, fc], 1, "c.h5", "'tasks'", "other.h5")
        write_results(fc, [(t, "lukv", "snapkv", 0.8, True, 0.1) for t in names], protocol="query-aware")
        bad("other protocol", [fa, fc], 1, "c.h5", "'protocol'")
        bad("unknown allocator", [f"{fa}:adakv", fb], 1, "a.h5", "adakv")
        bad("ratio absent", [fa, fb, "--ratios", "0.9"], 1, "a.h5", "0.9")
        write_results(fc, [(t, "lukv", s, 0.8, True, 0.1) for s in ("snapkv", "keydiff") for t in names])
        bad("two scorers", [fa, fc], 1, "c.h5", "--scorer")
        bad("scorer absent", [fa, fc, "--scorer", "keydiff"], 1, "a.h5", "keydiff")
        rc, out, err = compare(fc, fb, "--scorer", "snapkv")
        check(rc == 0 and "ratio 0.8" in out, f"--scorer picks: {err.strip()}")
        write_results(fc, [(t, "lukv", "snapkv", 0.8, True, 0.1) for t in names + names[:1]])
        bad("duplicate rows", [fa, fc], 1, "c.h5", "two rows", "niah#000")
    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

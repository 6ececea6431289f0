"""h5py <-> lukv interchange, both directions, through the lukv-solve CLI.

    /usr/bin/python3 tests/test_h5py_interop.py PATH/TO/lukv-solve

1. writes a profile.h5 the way a Python user would (h5py, str attributes,
   Python ints, numpy arrays), including a FIXED-length string attribute, as
   numpy bytes produce, which the C reader must accept as well as h5py's
   default variable-length strings;
2. runs `lukv-solve PROFILE -o BUDGETS --exact none`;
3. opens BUDGETS with h5py and checks that everything reads naturally:
   strings as str, integers as numpy integers, the dataset shapes and dtypes of
   docs/formats.md, and the report semantics (--exact none -> /report/exact NaN).

Exit 77 (skip) when h5py or numpy is not importable. Uses LUKV_FIXTURES,
LUKV_BUILD, LUKV_SOURCE from the environment only for messages.
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError as e:  # Debian's python3-h5py missing: skip, not fail
    print(f"skip: {e}")
    sys.exit(77)

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f"FAIL: {what}")


def write_profile(path, L=3, H=2, G=32, S=4, sink=4, window=16):
    rng = np.random.default_rng(1)
    T = rng.integers(300, 600, size=S).astype(np.int32)
    g = np.arange(G + 1) / G
    # Convex decreasing losses with a per-head rate; scorer >= oracle.
    rate = rng.uniform(1.0, 12.0, size=(L, H))
    tot = rng.uniform(0.05, 0.5, size=(S, L, H)).astype(np.float32)
    oracle = tot[..., None] * np.exp(-rate[None, :, :, None] * g) * (1 - g)
    snap = np.maximum(oracle, tot[..., None] * (1 - g) ** rng.uniform(1.0, 3.0, size=(L, H))[..., None])
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "lukv-profile"
        f.attrs["format_version"] = 1
        f.attrs["created_by"] = "tests/test_h5py_interop.py"
        # Fixed-length, null-padded (numpy bytes): the C reader must take it.
        f.attrs["model_name"] = np.bytes_(b"interop-model")
        f.attrs["model_hash"] = "feedface"
        f.attrs["n_layers"] = L
        f.attrs["n_kv_heads"] = H
        f.attrs["n_q_heads"] = np.int32(2 * H)  # not int64: any integer type reads
        f.attrs["head_dim"] = 16
        f.attrs["mode"] = "teacher"
        f.attrs["context_len"] = 600
        f.attrs["future_len"] = 32
        f.attrs["sink"] = sink
        f.attrs["window"] = window
        f.attrs["pool_kernel"] = 7
        f.attrs["utility"] = "max"
        f.attrs["grid"] = G
        f["sample_context_len"] = T
        f["utility_total"] = tot
        f["curves/oracle"] = oracle.astype(np.float32)
        f["curves/snapkv"] = snap.astype(np.float32)
    with h5py.File(path, "r") as f:
        info = h5py.check_string_dtype(f.attrs.get_id("model_name").dtype)
    check(info is not None and info.length == len("interop-model"),
          "the profile really has a fixed-length string attribute")
    return L, H, G


def main():
    if len(sys.argv) != 2:
        print("usage: test_h5py_interop.py PATH/TO/lukv-solve", file=sys.stderr)
        return 2
    solve = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="lukv-interop-") as tmp:
        prof = os.path.join(tmp, "profile.h5")
        bud = os.path.join(tmp, "budgets.h5")
        L, H, G = write_profile(prof)

        r = subprocess.run([solve, prof, "-o", bud, "--exact", "none", "-q"],
                           capture_output=True, text=True, timeout=240)
        if r.returncode != 0:
            print(f"FAIL: lukv-solve exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
            return 1
        check(os.path.exists(bud), "budgets file written")
        check(not os.path.exists(bud + ".tmp"), "no .tmp left behind")

        with h5py.File(bud, "r") as f:
            a = f.attrs
            for key in ("format", "created_by", "model_name", "model_hash", "scorer",
                        "aggregation", "solver"):
                check(key in a, f"attribute {key} present")
                check(isinstance(a.get(key), str), f"attribute {key} reads as str "
                      f"(got {type(a.get(key)).__name__})")
            for key in ("format_version", "n_layers", "n_kv_heads", "n_q_heads", "head_dim",
                        "sink", "window", "grid", "min_keep_index", "context_len"):
                check(key in a, f"attribute {key} present")
                check(isinstance(a.get(key), np.integer), f"attribute {key} reads as a numpy "
                      f"integer (got {type(a.get(key)).__name__})")
                check(np.ndim(a.get(key)) == 0, f"attribute {key} is a scalar")
            check(a.get("format") == "lukv-budgets", "format is lukv-budgets")
            check(a.get("format_version") == 1, "format_version is 1")
            check(a.get("model_name") == "interop-model", "fixed-length model_name came through")
            check(a.get("model_hash") == "feedface", "model_hash came through")
            check(a.get("scorer") == "snapkv", "default scorer is snapkv")
            check(a.get("aggregation") in ("mean-curve", "mean-of-solutions"), "aggregation")
            check((a.get("n_layers"), a.get("n_kv_heads"), a.get("n_q_heads"), a.get("grid"))
                  == (L, H, 2 * H, G), "model identity and grid copied from the profile")
            check(a.get("sink") == 4 and a.get("window") == 16, "sink and window copied")
            check(0 <= a.get("min_keep_index") <= G, "min_keep_index in [0, G]")

            comp = f["compression"][()]
            R = comp.shape[0]
            check(f["compression"].dtype == np.float32, "compression is float32")
            check(comp.ndim == 1 and R >= 1, "compression is [R]")
            check(bool(np.all(np.diff(comp) > 0)) and comp[0] > 0 and comp[-1] < 1,
                  "compression strictly increasing in (0, 1)")
            check(R == 99 and np.allclose(comp, np.arange(1, 100) / 100, atol=1e-6),
                  "default ratios are 0.01..0.99")
            keep = f["keep_fraction"][()]
            check(f["keep_fraction"].dtype == np.float32, "keep_fraction is float32")
            check(keep.shape == (R, L, H), f"keep_fraction shape {keep.shape} == {(R, L, H)}")
            check(bool(np.all((keep >= 0) & (keep <= 1))), "keep_fraction in [0, 1]")
            for name in ("greedy", "lp_bound", "exact", "uniform", "pyramid"):
                key = "report/" + name
                check(key in f, f"/{key} present")
                if key in f:
                    check(f[key].dtype == np.float64 and f[key].shape == (R,),
                          f"/{key} is float64 [R]")
            if "report/exact" in f:
                check(bool(np.all(np.isnan(f["report/exact"][()]))),
                      "--exact none leaves /report/exact NaN (not computed)")
            if "report/greedy" in f:
                gr = f["report/greedy"][()]
                check(bool(np.all(np.isfinite(gr) & (gr >= 0))), "greedy loss finite and >= 0")
            if "report/feasible" in f and a.get("aggregation") == "mean-curve":
                # Budget in grid units B = round((1 - rho) G H_total) (solver/solver.h);
                # sum_h g_h <= B wherever the ratio is feasible.
                feas = f["report/feasible"][()] == 1
                used = np.rint(keep.reshape(R, -1) * G).sum(axis=1)
                budget = np.floor((1 - comp.astype(np.float64)) * G * L * H + 0.5)
                check(bool(np.all(used[feas] <= budget[feas])),
                      "sum of g_h within the budget wherever feasible")
            for name, ds in f["report"].items():
                check(isinstance(ds, h5py.Dataset) and ds.shape == (R,),
                      f"/report/{name} is a dataset of shape [R]")

    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        return 1
    print("h5py interop: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

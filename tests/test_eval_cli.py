#!/usr/bin/python3
"""lukv-eval as a user meets it: a tiny end-to-end run on the golden
llama3_rope (vocab 256, so the byte-level tasks work) with a budgets table
lukv-solve makes from tests/fixtures/ref-profile.h5 (a profile of that very
model, so the identity matches) -> results.h5, results.csv and a markdown
table; every bad input -> one error line, exit 1 (2 for usage), no output.

Run by meson as: /usr/bin/python3 test_eval_cli.py lukv-eval lukv-solve
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

EVAL = os.path.abspath(sys.argv[1])
SOLVE = os.path.abspath(sys.argv[2])
SRC = os.path.abspath(os.environ.get("LUKV_SOURCE", os.path.join(os.path.dirname(__file__), "..")))
FIX = os.path.abspath(os.environ.get("LUKV_FIXTURES", os.path.join(SRC, "tests", "fixtures")))
MODEL = os.path.join(SRC, "tests", "golden", "llama3_rope")
OTHER = os.path.join(SRC, "tests", "golden", "qwen2_bias")
HAY = os.path.join(SRC, "data", "corpora", "heldout.h5")
C = Checks()
check = C.check
run = runner(EVAL, cwd=SRC)


def expect_error(name, args, code, must_contain, out=None):
    C.expect_error(run, name, args, code, must_contain, out, error_prefix="lukv-eval: error: ",
                   no_stdout=True, extra_outputs=lambda o: [o[:-3] + ".csv"])


def write_tasks(path, names, ctx, q, ans):
    """A byte-level tasks.h5 (docs/formats.md §5): per sample a name and
    context / question / answer token lists."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "lukv-tasks"
        f.attrs["format_version"] = 1
        f.attrs["created_by"] = "test_eval_cli.py"
        f.attrs["tokenizer"] = "bytes"
        f.attrs["vocab_size"] = 256
        for name, parts in (("context", ctx), ("question", q), ("answer", ans)):
            f[name] = np.array(sum(parts, []), dtype=np.int32)
            f[name + "_offsets"] = np.cumsum([0] + [len(x) for x in parts]).astype(np.int64)
        f.create_dataset("task", data=names, dtype=h5py.string_dtype())


def cuda_usable():
    """This build has CUDA (lukv_config.h) and a GPU answers nvidia-smi."""
    try:
        with open(os.path.join(os.environ.get("LUKV_BUILD", ""), "lukv_config.h")) as f:
            if "LUKV_HAVE_CUDA 1" not in f.read():
                return False
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def main():
    tmp = tempfile.mkdtemp(prefix="lukv-eval-cli-")
    try:
        budgets = os.path.join(tmp, "budgets.h5")
        p = subprocess.run([SOLVE, os.path.join(FIX, "ref-profile.h5"), "-o", budgets, "--ratios", "0.5,0.8",
                            "--exact", "none", "-q"], capture_output=True, text=True)
        check(p.returncode == 0, f"lukv-solve failed: {p.stderr}")
        out = os.path.join(tmp, "results.h5")
        base = ["--model", MODEL, "--budgets", budgets, "--haystack", HAY, "--context-lens", "128",
                "--samples", "2", "--ratios", "0.5,0.8", "-q"]

        # ---- a good run ----
        rc, so, se = run(*base, "--tasks", "niah_single,vt,cwe,fwe,ppl", "-o", out)
        check(rc == 0, f"good run: exit {rc}: {se}")
        check(so.startswith("| task | T | allocator"), f"good run: no markdown table: {so[:200]!r}")
        with h5py.File(out, "r") as f:
            check(f.attrs["format"] == "lukv-eval-results", "results.h5 format attr")
            n = len(f["task"])
            # 5 tasks x (full + 4 allocators x 2 ratios)
            check(n == 5 * 9, f"results.h5 has {n} rows, expected 45")
            alloc = [a.decode() if isinstance(a, bytes) else a for a in f["allocator"][()]]
            ratio, kv = f["ratio"][()], f["kv_bytes"][()]
            kvf, acc = f["kv_full_bytes"][()], f["accuracy"][()]
            check(set(alloc) == {"full", "uniform", "pyramid", "adakv", "lukv"}, f"allocators {set(alloc)}")
            check(np.all((acc >= 0) & (acc <= 1)), "accuracy in [0, 1]")
            check(np.all(f["samples"][()] == 2), "2 samples per row")
            check(np.all(np.isfinite(f["nll"][()])) and np.all(f["nll"][()] > 0), "nll finite and > 0")
            check(np.all(f["decode_ms_per_token"][()] > 0), "decode ms/token > 0")
            for i, a in enumerate(alloc):
                if a == "full":
                    check(kv[i] == kvf[i] and ratio[i] == 0, f"row {i}: full holds everything")
                else:
                    check(kv[i] < kvf[i], f"row {i}: {a} at {ratio[i]} holds {kv[i]} of {kvf[i]}")
            # more compression, fewer bytes
            t = [x.decode() if isinstance(x, bytes) else x for x in f["task"][()]]
            for a in ("uniform", "lukv"):
                r5 = [kv[i] for i in range(n) if alloc[i] == a and t[i] == "ppl" and abs(ratio[i] - 0.5) < 1e-9]
                r8 = [kv[i] for i in range(n) if alloc[i] == a and t[i] == "ppl" and abs(ratio[i] - 0.8) < 1e-9]
                check(r5 and r8 and r8[0] < r5[0], f"{a}: 0.8 holds less than 0.5 ({r5}, {r8})")
        csv = out[:-3] + ".csv"
        check(os.path.exists(csv), "results.csv beside results.h5")
        with open(csv) as fh:
            rows = fh.read().strip().splitlines()
        check(len(rows) == 1 + 45 and rows[0].startswith("task,context_len,allocator"), "csv rows")
        # deterministic: a second run gives the same accuracy and NLL
        out2 = os.path.join(tmp, "again.h5")
        rc, _, se = run(*base, "--tasks", "niah_single,vt,cwe,fwe,ppl", "-o", out2)
        with h5py.File(out, "r") as a, h5py.File(out2, "r") as b:
            check(np.array_equal(a["nll"][()], b["nll"][()]), "same seed, same NLL")
        # a pre-tokenized tasks file works the same way
        tf = os.path.join(tmp, "tasks.h5")
        ctx = [list(b"The key is 42. " * 10), list(b"abcdefghij" * 14)]
        q = [list(b" The key is "), []]
        ans = [list(b"42."), list(b"abcdefghij")]
        write_tasks(tf, ["key", "copy"], ctx, q, ans)
        rc, so, se = run("--model", MODEL, "--budgets", budgets, "--tasks", tf, "--ratios", "0.5", "-q")
        check(rc == 0, f"tasks file: exit {rc}: {se}")
        check("| key | 150 |" in so and "| copy | 140 |" in so, f"tasks file rows: {so!r}")
        # --protocol query-aware == the question moved into the context by hand, run query-agnostic
        moved = os.path.join(tmp, "moved.h5")
        write_tasks(moved, ["key", "copy"], [c + x for c, x in zip(ctx, q)], [[], []], ans)
        aware, by_hand = os.path.join(tmp, "aware.h5"), os.path.join(tmp, "by-hand.h5")
        common = ["--model", MODEL, "--budgets", budgets, "--ratios", "0.5,0.8", "-q"]
        rc, so, se = run(*common, "--tasks", tf, "--protocol", "query-aware", "-o", aware)
        check(rc == 0, f"--protocol query-aware: exit {rc}: {se}")
        check("| key | 162 |" in so, f"query-aware: the question is part of the context: {so!r}")
        rc, _, se = run(*common, "--tasks", moved, "-o", by_hand)
        check(rc == 0, f"moved question: exit {rc}: {se}")
        with h5py.File(aware, "r") as a, h5py.File(by_hand, "r") as b:
            check(a.attrs["protocol"] == "query-aware" and b.attrs["protocol"] == "query-agnostic",
                  "protocol attribute")
            for k in ("context_len", "accuracy", "nll", "kv_bytes"):
                check(np.array_equal(a[k][()], b[k][()]), f"query-aware {k} == question moved by hand")

        # ---- default context lengths fit the model (max_position_embeddings 256) ----
        dflt = os.path.join(tmp, "default-lens.h5")
        rc, so, se = run("--model", MODEL, "--haystack", HAY, "--tasks", "niah_single,ppl", "--samples", "1",
                         "--allocators", "full", "-q", "-o", dflt)
        check(rc == 0, f"default --context-lens: exit {rc}: {se}")
        check("default context length 4096 capped at 128" in se, f"default lens: no note: {se!r}")
        if rc == 0:
            with h5py.File(dflt, "r") as f:
                lens = sorted(set(int(x) for x in f["context_len"][()]))
            check(lens == [128], f"default lens on a 256-position model: {lens}, expected [128] once")

        # ---- bad inputs ----
        bad = os.path.join(tmp, "bad.h5")
        other_budgets = os.path.join(tmp, "other.h5")
        shutil.copy(budgets, other_budgets)
        with h5py.File(other_budgets, "r+") as f:
            f.attrs["model_hash"] = "0" * 64
        expect_error("budgets for another model (hash)", [*base, "--budgets", other_budgets, "--tasks", "ppl",
                     "-o", bad], 1, ["model_hash", other_budgets], bad)
        expect_error("budgets for another model (shape)", ["--model", OTHER, "--budgets", budgets, "--tasks",
                     "ppl", "--context-lens", "128", "--ratios", "0.5", "-o", bad], 1, ["the table is for llama3_rope", "qwen2_bias"], bad)
        expect_error("ratio not in the table", [*base, "--ratios", "0.7", "--tasks", "ppl", "-o", bad], 1,
                     ["ratio 0.7 is not in the table", budgets], bad)
        expect_error("context too long", [*base, "--context-lens", "1024", "--tasks", "ppl", "-o", bad], 1,
                     ["max_position_embeddings 256"], bad)
        expect_error("unknown task", [*base, "--tasks", "niah_single,sudoku", "-o", bad], 1,
                     ["sudoku: unknown task"], bad)
        expect_error("unknown allocator", [*base, "--allocators", "full,h2o", "-o", bad], 1,
                     ["h2o: unknown allocator"], bad)
        expect_error("unknown scorer", [*base, "--scorers", "magic", "-o", bad], 1, ["magic: unknown scorer"], bad)
        expect_error("lukv with another scorer", [*base, "--scorers", "keydiff", "--tasks", "ppl", "-o", bad], 1,
                     ["solved for snapkv"], bad)
        expect_error("missing budgets file", [*base, "--budgets", os.path.join(tmp, "nope.h5"), "-o", bad], 1,
                     ["nope.h5"], bad)
        expect_error("missing model", [*base, "--model", os.path.join(tmp, "nomodel"), "-o", bad], 1,
                     ["nomodel"], bad)
        expect_error("bad tasks file", [*base, "--tasks", budgets, "-o", bad], 1, ["format"], bad)
        expect_error("lukv without budgets", ["--model", MODEL, "--tasks", "ppl"], 2, ["--budgets"])
        expect_error("no model", ["--tasks", "ppl"], 2, ["--model"])
        expect_error("bad seed", [*base, "--seed", "7"], 2, ["--seed"])
        expect_error("bad option", [*base, "--frobnicate"], 2, ["--frobnicate"])
        expect_error("bad protocol", [*base, "--protocol", "oracle"], 2, ["--protocol", "oracle"])
        if cuda_usable():
            rc, so, se = run(*base, "--device", "cuda", "-o", bad)
            check(rc == 0 and "| task |" in so, "--device cuda runs on the GPU: " + se.strip()[-200:])
        else:  # a build without CUDA, or no device: one line naming the option
            expect_error("cuda", [*base, "--device", "cuda", "-o", bad], 1, ["--device cuda"], bad)
        rc, so, _ = run("--help")
        check(rc == 0 and "usage: lukv-eval" in so, "--help")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(C.finish())


if __name__ == "__main__":
    main()

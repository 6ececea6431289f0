#!/usr/bin/python3
"""lukv-profile as a user meets it (issue 5's CLI, CPU device).

- agreement with the independent Python reference (tools/reference_profile.py):
  tests/fixtures/ref-profile.h5 (utility max) and ref-profile-sum.h5 (utility
  sum), every curve and utility_total within 1e-3 * max(|ref|) of the dataset;
- shards 1/2 + 2/2 merged (in either argument order) == the unsharded run,
  byte-for-byte equal arrays; merge refuses a different context_len naming the
  attribute and both files, and a different engine precision (files without the
  optional attribute merge, and the result then has none); merge --corpora
  joins profiles of different corpora (overlapping first_sample) in argument
  order, without first_sample;
- bad inputs -> one error line, exit 1 (2 for usage), no output file (nor .tmp);
- show prints one row per (layer, KV head); generate mode gives a valid profile;
  --dump-tokens writes the ids used.

Run by meson as: /usr/bin/python3 test_profile_cli.py PATH/TO/lukv-profile
(env LUKV_FIXTURES, LUKV_SOURCE). Exits 77 when h5py/numpy are absent.
"""
import os
import shutil
import sys
import tempfile

from clitest import REF_PROFILE_ARGS as REF_ARGS, Checks, compare_profiles, profile_arrays as arrays, runner

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py/numpy missing: skipped")
    sys.exit(77)

PROF = os.path.abspath(sys.argv[1])
FIX = os.environ.get("LUKV_FIXTURES", os.path.join(os.path.dirname(__file__), "fixtures"))
SRC = os.environ.get("LUKV_SOURCE", os.path.join(os.path.dirname(__file__), ".."))
MODEL = os.path.join(SRC, "tests", "golden", "llama3_rope")  # GQA 4/2, bf16, vocab 256
SWA_MODEL = os.path.join(SRC, "tests", "golden", "mistral_gqa")  # sliding_window 24
REF_CORPUS = os.path.join(FIX, "ref-corpus.h5")
SMALL = ["--context-len", "40", "--future-len", "8", "--sink", "2", "--window", "4",
         "--grid", "16", "-q"]
C = Checks()
check = C.check
run = runner(PROF)


def write_corpus(path, samples, vocab=256):
    tok = np.concatenate([np.asarray(s, dtype=np.int32) for s in samples])
    off = np.cumsum([0] + [len(s) for s in samples]).astype(np.int64)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="lukv-corpus", format_version=1, created_by="test_profile_cli.py",
                       tokenizer="random-ids", vocab_size=vocab, source="test")
        f["tokens"] = tok
        f["offsets"] = off


def expect_error(what, args, out, code=1, needle=None, cwd=None):
    """One error line, exit `code`, no output file nor OUT.tmp."""
    return C.expect_error(run, what, args, code, [needle] if needle else [], out,
                          error_prefix="lukv-profile: error: ", joint_prefix=True,
                          usage_prefix="lukv-profile: ", joint_outputs=True, cwd=cwd)


def valid_profile(path, what):
    a, attrs = arrays(path)
    ut = a["utility_total"]
    o = a["curves/oracle"]
    check(np.all(np.isfinite(o)) and np.all(o >= 0), f"{what}: oracle finite, >= 0")
    check(np.array_equal(o[..., 0], ut), f"{what}: oracle[...,0] == utility_total")
    check(np.all(o[..., -1] == 0), f"{what}: oracle[...,G] == 0")
    for k, v in a.items():
        if k.startswith("curves/") and k != "curves/oracle":
            check(np.all(v >= o), f"{what}: oracle <= {k}")
            check(np.all(np.diff(v, axis=-1) <= 0), f"{what}: {k} non-increasing")
            check(np.array_equal(v[..., 0], ut), f"{what}: {k}[...,0] == utility_total")
    check(float(ut.sum()) > 0, f"{what}: some utility")
    return a, attrs


def compare_ref(ref_path, utility, tmp):
    if not os.path.exists(ref_path):
        print(f"note: {ref_path} not there yet: reference comparison skipped")
        return
    out = os.path.join(tmp, f"ref-{utility}.h5")
    rc, so, se = run("--model", MODEL, "--corpus", REF_CORPUS, *REF_ARGS, "--utility", utility,
                     "-q", "-o", out)
    check(rc == 0, f"reference run ({utility}): exit {rc}: {se.strip()}")
    if rc:
        return
    compare_profiles(C, out, ref_path, 1e-3, "cpu")


def main():
    tmp = tempfile.mkdtemp(prefix="lukv-profile-test-")
    try:
        # ---- the independent reference (issue 5: "matches it to 1e-3 relative")
        compare_ref(os.path.join(FIX, "ref-profile.h5"), "max", tmp)
        compare_ref(os.path.join(FIX, "ref-profile-sum.h5"), "sum", tmp)

        rng = np.random.default_rng(5)
        corpus = os.path.join(tmp, "corpus.h5")
        samples = [rng.integers(0, 256, size=48 + extra) for extra in (0, 3, 7, 1, 5)]
        write_corpus(corpus, samples)

        # ---- a plain run, --dump-tokens, show
        full = os.path.join(tmp, "full.h5")
        dump = os.path.join(tmp, "tokens.txt")
        rc, so, se = run("--model", MODEL, "--corpus", corpus, *SMALL, "-o", full,
                         "--dump-tokens", dump)
        check(rc == 0, f"plain run: exit {rc}: {se.strip()}")
        check("tokens/s" in so, "plain run reports tokens/s")
        a_full, attrs = valid_profile(full, "plain run")
        check(a_full["utility_total"].shape == (5, 2, 2), "plain run: [S, L, H] = [5, 2, 2]")
        check(attrs["mode"] == "teacher" and attrs["model_name"] == "llama3_rope",
              f"plain run attributes {attrs.get('mode')} {attrs.get('model_name')}")
        with open(dump) as f:
            rows = [list(map(int, l.split())) for l in f.read().splitlines()]
        check(rows == [list(s[:48]) for s in samples], "dump-tokens: the first T+F ids of each sample")

        rc, so, se = run("show", full)
        check(rc == 0, f"show: exit {rc}: {se.strip()}")
        check("engine f32" in so.splitlines()[0], f"show names the engine precision: {so.splitlines()[:1]}")
        body = [l for l in so.splitlines() if l and not l.startswith("#")]
        check(len(body) == 1 + 2 * 2, f"show: header + one row per (layer, head), got {len(body)}")
        pairs = {tuple(map(int, l.split()[:2])) for l in body[1:]}
        check(pairs == {(l, h) for l in range(2) for h in range(2)}, f"show rows {pairs}")
        cols = body[0].split()
        check(cols[:3] == ["layer", "head", "utility_total"] and set(cols[3:]) == {"snapkv", "keydiff"},
              f"show columns {cols}")
        for l in body[1:]:
            gaps = [float(x) for x in l.split()[3:]]
            check(all(0 <= g <= 1 for g in gaps), f"show gaps in [0, 1]: {l}")

        # ---- shards: 1/2 + 2/2 merged == unsharded, whatever the argument order
        sh = [os.path.join(tmp, f"shard{i}.h5") for i in (1, 2)]
        for i in (1, 2):
            rc, so, se = run("--model", MODEL, "--corpus", corpus, *SMALL, "--shard", f"{i}/2",
                             "-o", sh[i - 1])
            check(rc == 0, f"shard {i}/2: exit {rc}: {se.strip()}")
        # provenance: each shard says where it starts and which shard it is; show prints it
        with h5py.File(sh[1], "r") as f:
            n1 = h5py.File(sh[0], "r")["sample_context_len"].shape[0]
            check((f.attrs.get("first_sample"), f.attrs.get("shard_index"), f.attrs.get("shard_count"))
                  == (n1, 2, 2), f"shard 2/2 attributes: {dict(f.attrs)}")
            n2 = f["sample_context_len"].shape[0]
        rc, so, se = run("show", sh[1])
        check(rc == 0 and f"(corpus samples {n1}..{n1 + n2 - 1}), shard 2/2" in so.splitlines()[0],
              f"show of shard 2/2: {so.splitlines()[:1]} {se.strip()}")
        for order, name in ((sh, "merged.h5"), (sh[::-1], "merged-rev.h5")):
            merged = os.path.join(tmp, name)
            rc, so, se = run("merge", *order, "-o", merged)
            check(rc == 0, f"merge {name}: exit {rc}: {se.strip()}")
            if rc == 0:
                a_m, _ = arrays(merged)
                check(sorted(a_m) == sorted(a_full), f"merge {name}: datasets")
                with h5py.File(merged, "r") as f:
                    check(f.attrs.get("first_sample") == 0 and "shard_index" not in f.attrs
                          and "shard_count" not in f.attrs, f"merge {name}: provenance {dict(f.attrs)}")
                for k in a_full:
                    check(k in a_m and a_m[k].dtype == a_full[k].dtype
                          and a_m[k].tobytes() == a_full[k].tobytes(),
                          f"merge {name}: {k} not byte-for-byte equal to the unsharded run")
        # shards with a gap between them merge, but the result claims no first_sample
        sh3 = [os.path.join(tmp, f"shard{i}of3.h5") for i in (1, 3)]
        for i, path in zip((1, 3), sh3):
            rc, so, se = run("--model", MODEL, "--corpus", corpus, *SMALL, "--shard", f"{i}/3", "-o", path)
            check(rc == 0, f"shard {i}/3: exit {rc}: {se.strip()}")
        gap = os.path.join(tmp, "merged-gap.h5")
        rc, so, se = run("merge", sh3[1], sh3[0], "-o", gap)
        check(rc == 0, f"merge 1/3 + 3/3: exit {rc}: {se.strip()}")
        if rc == 0:
            with h5py.File(gap, "r") as f, h5py.File(sh3[0], "r") as g1:
                check("first_sample" not in f.attrs and
                      f["sample_context_len"].shape[0] == g1["sample_context_len"].shape[0]
                      + h5py.File(sh3[1], "r")["sample_context_len"].shape[0],
                      f"merge with a gap: {dict(f.attrs)}")
        # the same shard twice overlaps
        expect_error("merge of a shard with itself", ["merge", sh[0], sh[0], "-o",
                     os.path.join(tmp, "dup.h5")], os.path.join(tmp, "dup.h5"), needle="overlaps")
        # --corpora: profiles of different corpora (both start at corpus sample 0)
        # join in argument order, and the result claims no first_sample
        mixed = os.path.join(tmp, "mixed.h5")
        rc, so, se = run("merge", "--corpora", sh[1], sh[0], sh[1], "-o", mixed)
        check(rc == 0, f"merge --corpora: exit {rc}: {se.strip()}")
        if rc == 0:
            a_x, _ = arrays(mixed)
            a_1, _ = arrays(sh[0])
            a_2, _ = arrays(sh[1])
            check(sorted(a_x) == sorted(a_1), f"merge --corpora: datasets {sorted(a_x)}")
            for k in a_1:
                want = np.concatenate([a_2[k], a_1[k], a_2[k]])
                check(k in a_x and a_x[k].tobytes() == want.tobytes(),
                      f"merge --corpora: {k} is not the inputs in argument order")
            with h5py.File(mixed, "r") as f:
                check("first_sample" not in f.attrs and "shard_index" not in f.attrs,
                      f"merge --corpora: provenance {dict(f.attrs)}")
        # different protocol: refused, naming the attribute and both files
        other = os.path.join(tmp, "other.h5")
        args = list(SMALL)
        args[1] = "36"
        rc, so, se = run("--model", MODEL, "--corpus", corpus, *args, "--shard", "2/2", "-o", other)
        check(rc == 0, f"context 36 shard: exit {rc}: {se.strip()}")
        bad = os.path.join(tmp, "bad-merge.h5")
        se = expect_error("merge with another context_len", ["merge", sh[0], other, "-o", bad], bad,
                          needle="context_len is 36 but")
        check(other in se and sh[0] in se, f"merge error names both files: {se.strip()}")
        # the engine's precision: recorded, kept by merge, never mixed; files without it merge
        check(h5py.File(sh[0], "r").attrs.get("precision") == "f32", "cpu profile: precision attribute f32")
        bf16, legacy = os.path.join(tmp, "bf16.h5"), os.path.join(tmp, "legacy.h5")
        shutil.copy(sh[1], bf16)
        shutil.copy(sh[1], legacy)
        with h5py.File(bf16, "a") as f:
            f.attrs["precision"] = "bf16"
        with h5py.File(legacy, "a") as f:
            del f.attrs["precision"]
        se = expect_error("merge of f32 and bf16 profiles", ["merge", sh[0], bf16, "-o", bad], bad,
                          needle='precision is "bf16" but')
        check(sh[0] in se and bf16 in se, f"precision error names both files: {se.strip()}")
        se = expect_error("merge of f32 and bf16 profiles after one without the attribute",
                          ["merge", legacy, sh[0], bf16, "-o", bad], bad, needle='precision is "bf16" but')
        for order, keeps in (([sh[0], sh[1]], True), ([sh[0], legacy], False)):
            rc, so, se = run("merge", *order, "-o", bad)
            check(rc == 0, f"merge {order}: exit {rc}: {se.strip()}")
            if rc == 0:
                with h5py.File(bad, "r") as f:
                    got = f.attrs.get("precision")
                check(got == ("f32" if keeps else None), f"merge {order}: precision {got}")
                os.remove(bad)

        # ---- --random-init: seeded weights and tokens; shards of it merge into the whole run
        cfgj = os.path.join(MODEL, "config.json")
        rnd = [os.path.join(tmp, f"rnd{i}.h5") for i in range(4)]
        for i, extra in enumerate((["--samples", "2"], ["--samples", "2", "--shard", "1/2"],
                                   ["--samples", "2", "--shard", "2/2"], ["--samples", "2", "--seed", "5"])):
            rc, so, se = run("--random-init", cfgj, *SMALL, *extra, "-o", rnd[i])
            check(rc == 0, f"random-init {extra}: exit {rc}: {se.strip()}")
        rm = os.path.join(tmp, "rnd-merged.h5")
        rc, so, se = run("merge", rnd[1], rnd[2], "-o", rm)
        check(rc == 0, f"random-init merge: exit {rc}: {se.strip()}")
        if rc == 0:
            a_r, r_attrs = valid_profile(rnd[0], "random-init")
            a_rm, _ = arrays(rm)
            check(all(a_rm[k].tobytes() == a_r[k].tobytes() for k in a_r), "random-init shards merged != whole run")
            check(r_attrs["model_name"] == "random-init config.json seed 0", f"random-init name {r_attrs['model_name']}")
            a_5, attrs_5 = arrays(rnd[3])
            check(attrs_5["model_hash"] != r_attrs["model_hash"], "random-init: another seed, another model_hash")
            check(a_5["curves/oracle"].tobytes() != a_r["curves/oracle"].tobytes(), "random-init: another seed, other curves")
        expect_error("--model with --random-init", ["--model", MODEL, "--random-init", cfgj, *SMALL, "-o", rm + "x"],
                     rm + "x", code=2, needle="not both")

        # ---- generate mode
        gen = os.path.join(tmp, "gen.h5")
        gdump = os.path.join(tmp, "gen-tokens.txt")
        rc, so, se = run("--model", MODEL, "--corpus", corpus, *SMALL, "--mode", "generate",
                         "--samples", "2", "-o", gen, "--dump-tokens", gdump)
        check(rc == 0, f"generate: exit {rc}: {se.strip()}")
        if rc == 0:
            a_g, g_attrs = valid_profile(gen, "generate")
            check(g_attrs["mode"] == "generate", "generate: mode attribute")
            check(a_g["utility_total"].shape == (2, 2, 2), "generate: 2 samples")
            with open(gdump) as f:
                rows = [list(map(int, l.split())) for l in f.read().splitlines()]
            check(len(rows) == 2 and all(len(r) == 48 for r in rows), "generate dump: 2 x (T+F)")
            check(all(r[:40] == list(s[:40]) for r, s in zip(rows, samples)),
                  "generate dump: context = the corpus")
            check(not np.array_equal(a_g["utility_total"], a_full["utility_total"][:2]),
                  "generate: a future other than the corpus continuation")

        # ---- a GGUF model file (--model X.gguf): model_hash = sha256 of the file's
        # bytes, model_name = its general.name, else the file name without .gguf
        import hashlib
        gguf_src = os.path.join(SRC, "tests", "golden", "gguf_q8_0", "model.gguf")  # 2 layers, 4/2 heads
        with open(gguf_src, "rb") as f:
            gbytes = f.read()
        gprof = os.path.join(tmp, "gguf.h5")
        rc, so, se = run("--model", gguf_src, "--corpus", corpus, *SMALL, "--samples", "2", "-o", gprof)
        check(rc == 0, f"gguf run: exit {rc}: {se.strip()}")
        if rc == 0:
            a_g, g_attrs = valid_profile(gprof, "gguf run")
            check(a_g["utility_total"].shape == (2, 2, 2), "gguf run: [S, L, H] = [2, 2, 2]")
            check(g_attrs["model_hash"] == hashlib.sha256(gbytes).hexdigest(),
                  f"gguf run: model_hash {g_attrs.get('model_hash')} is the file's sha256")
            check(g_attrs["model_name"] == "lukv tiny random llama",
                  f"gguf run: model_name {g_attrs.get('model_name')!r} = general.name")
            check((g_attrs["n_layers"], g_attrs["n_kv_heads"], g_attrs["n_q_heads"], g_attrs["head_dim"])
                  == (2, 2, 4, 16), "gguf run: shape attributes")
            rc, so, se = run("show", gprof)
            check(rc == 0 and "lukv tiny random llama" in so, f"show of the gguf profile: {se.strip()}")
        # the same file without general.name (key renamed in place, same length)
        check(gbytes.count(b"general.name") == 1, "gguf fixture holds general.name once")
        noname = os.path.join(tmp, "tiny-q8.gguf")
        with open(noname, "wb") as f:
            f.write(gbytes.replace(b"general.name", b"general.nome"))
        nprof = os.path.join(tmp, "gguf-noname.h5")
        rc, so, se = run("--model", noname, "--corpus", corpus, *SMALL, "--samples", "1", "-o", nprof)
        check(rc == 0, f"gguf without general.name: exit {rc}: {se.strip()}")
        if rc == 0:
            _, n_attrs = valid_profile(nprof, "gguf without general.name")
            check(n_attrs["model_name"] == "tiny-q8",
                  f"gguf without general.name: model_name {n_attrs.get('model_name')!r}, expected 'tiny-q8'")
            with open(noname, "rb") as f:
                check(n_attrs["model_hash"] == hashlib.sha256(f.read()).hexdigest(),
                      "gguf without general.name: model_hash")
        gout = os.path.join(tmp, "gguf-bad.h5")
        expect_error("missing .gguf", ["--model", os.path.join(tmp, "nope.gguf"), "--corpus", corpus,
                     *SMALL, "-o", gout], gout, needle="nope.gguf")

        # ---- bad inputs: one line, non-zero exit, no output
        out = os.path.join(tmp, "out.h5")
        base = ["--model", MODEL, "--corpus", corpus, *SMALL, "-o", out]
        short = os.path.join(tmp, "short.h5")
        write_corpus(short, [samples[0], samples[1][:30]])
        se = expect_error("sample shorter than T+F", ["--model", MODEL, "--corpus", short, *SMALL,
                          "-o", out], out, needle=short)
        check("sample 1" in se and "30 tokens" in se, f"short sample message: {se.strip()}")
        for spec in ("3/2", "0/2", "1/0", "a/b", "2"):
            expect_error(f"--shard {spec}", base + ["--shard", spec], out, code=2)
        expect_error("empty shard", ["--model", MODEL, "--corpus", corpus, *SMALL, "--samples", "1",
                     "--shard", "1/2", "-o", out], out, needle="empty")
        unwritable = os.path.join(tmp, "no-such-dir", "p.h5")
        expect_error("unwritable output", base[:-1] + [unwritable], unwritable, needle=unwritable)
        missing = os.path.join(tmp, "missing.h5")
        expect_error("missing corpus", ["--model", MODEL, "--corpus", missing, *SMALL, "-o", out],
                     out, needle=missing)
        bigvocab = os.path.join(tmp, "bigvocab.h5")
        s2 = samples[1].copy()
        s2[5] = 300
        write_corpus(bigvocab, [samples[0], s2], vocab=1000)
        se = expect_error("token id >= vocab", ["--model", MODEL, "--corpus", bigvocab, *SMALL,
                          "-o", out], out, needle=bigvocab)
        check("300" in se and "sample 1" in se, f"token message: {se.strip()}")
        expect_error("sliding window < T+F", ["--model", SWA_MODEL, "--corpus", corpus, *SMALL,
                     "-o", out], out, needle="sliding window")
        expect_error("missing model", ["--model", os.path.join(tmp, "nomodel"), "--corpus", corpus,
                     *SMALL, "-o", out], out)
        expect_error("bundled model absent", ["-o", out], out, needle="not trained yet", cwd=tmp)
        expect_error("unknown scorer", base + ["--scorers", "snapkv,bogus"], out, code=2)
        expect_error("context <= sink + window", base + ["--context-len", "6"], out, code=2)
        expect_error("even pool", base + ["--pool", "4"], out, code=2)
        expect_error("missing -o", base[:-2], out, code=2)
        for dev in ("cuda", "cuda-f32"):
            rc, so, se = run(*base, "--device", dev)
            if rc != 0:  # a build without CUDA (or no device): one line, no output
                expect_error(f"--device {dev}", base + ["--device", dev], out, needle="CUDA")
            else:
                os.remove(out)
        expect_error("unknown device", base + ["--device", "gpu"], out, code=2, needle="cuda-f32")
        expect_error("show of a missing file", ["show", missing], out)
        expect_error("merge of a corpus file", ["merge", corpus, "-o", out], out, needle=corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

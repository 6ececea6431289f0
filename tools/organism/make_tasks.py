#!/usr/bin/env python3
"""Write a tasks.h5 (docs/formats.md section 5) of needle prompts in the bundled
model's own format, for `lukv-eval --tasks FILE` on data/models/lukv-tiny.

    /usr/bin/python3 tools/organism/make_tasks.py -o data/tasks/tiny-niah.h5 \\
        [--contexts 1024,2048,3968] [--keys 1,4] [--samples 50]

Why a file: lukv-eval's built-in generator (eval/tasks.c) writes RULER-style
prompts in its own words (" The special magic number for X is: V." inline,
"... Answer: "); lukv-tiny, 4.4 M parameters, was trained on tasks.py's
templates only and does not transfer to other wording (full cache, CUDA,
10 samples per cell: niah_single 10-50%, every other generated task 0%,
where tools/organism/needle_eval.py measures 97-100% in its own format).
This file asks it exactly what it was trained to answer, so that what
compression loses is what the table is judged on.

Each sample: the needle lines "One of the special magic numbers for <key> is:
<7 digits>." at random line starts of a held-out haystack (tasks.Builder, the
code training used), n_keys needles, one of them asked. Split for lukv-eval's
query-agnostic protocol:

  context   BOS + haystack with the needles: exactly C tokens for every
            sample of a cell (so lukv-eval reports one row per cell)
  question  "\\n\\nWhat is the special magic number for <key>?\\nThe special
            magic number for <key> is: "
  answer    the 7 digits

Task names: niah_single (1 key) and niah_multikey (4 keys; other counts
"niah_<k>keys"); --name-by-sample makes them "<task>#<i>" (i: the sample's
index in its cell), so that lukv-eval reports every sample on a row of its
own, for tools/lukv-compare. Haystack: the bytes of data/corpora/heldout.h5, the
evaluation half of the held-out split (never trained on; the calibration
file calib.h5 is the other half). Seeds: SeedSequence([4, C, keys, i]),
i = 0..samples-1 (domain 4: training is 1, needle_eval.py 2, train.py's
probe 3).

Calibration samples (docs/results.md, "lukv-tiny"): --corpus-future F writes
a corpus.h5 for lukv-profile instead, one sequence of C + F tokens per
prompt: the context, then the question, the answer and "\n" as the start of
the future, the rest of the future natural text from another place of the
haystack, so that the profile's utility includes the answer's attention to
the needle. Use it with --heldout data/corpora/calib.h5 (the calibration
half) and --seed-domain 5, so that nothing of the evaluation prompts
appears in calibration. Interpreter: /usr/bin/python3 (Debian h5py + numpy).
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lukv_h5  # noqa: E402
import tasks  # noqa: E402

TASKS_DOMAIN = 4


def die(msg):
    sys.exit("make_tasks.py: error: " + msg)


def int_list(s, what):
    try:
        v = [int(x) for x in s.split(",")]
    except ValueError:
        die("%s: '%s' is not a comma list of integers" % (what, s))
    if not v or min(v) < 1:
        die("%s: '%s': every value must be >= 1" % (what, s))
    return v


def sample(b, rng, C, n_keys):
    """(context [C] int32, question int32, answer int32) of one prompt."""
    keys = tasks.distinct(rng, n_keys, tasks.pseudo_word)
    vals = [tasks.value7(rng) for _ in keys]
    target = int(rng.integers(n_keys))
    q = tasks.question_prefix(keys[target])
    # _assemble puts "\n\n" + q after the haystack; asking for C + that many
    # tokens leaves a context of exactly C.
    L = C + 2 + len(q.encode())
    out = b._assemble(rng, L, [tasks.needle_line(k, v) for k, v in zip(keys, vals)], [(q, False)], eos=False)
    if out is None:
        die("a %d-token context is too short for %d needles" % (C, n_keys))
    tok = out[0].astype(np.int32)
    return tok[:C], tok[C:], np.frombuffer(vals[target].encode(), dtype=np.uint8).astype(np.int32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--heldout", default="data/corpora/heldout.h5", help="corpus.h5 of bytes (haystack)")
    ap.add_argument("--contexts", default="1024,2048,3968", help="context tokens per cell (BOS included)")
    ap.add_argument("--keys", default="1,4", help="needles per prompt, one cell each")
    ap.add_argument("--samples", type=int, default=50, help="prompts per (context, keys) cell")
    ap.add_argument("--corpus-future", type=int, default=0, metavar="F",
                    help="write a corpus.h5 of C + F tokens per prompt (calibration) instead of a tasks.h5")
    ap.add_argument("--name-by-sample", action="store_true",
                    help='task names "<task>#<i>": lukv-eval then reports every sample (tools/lukv-compare)')
    ap.add_argument("--seed-domain", type=int, default=TASKS_DOMAIN,
                    help="first SeedSequence entropy word (default %d; 1-3 are training's)" % TASKS_DOMAIN)
    a = ap.parse_args()
    if a.seed_domain in (1, 2, 3):
        die("--seed-domain %d is used by training or its probes" % a.seed_domain)
    contexts = int_list(a.contexts, "--contexts")
    keys = int_list(a.keys, "--keys")
    if a.samples < 1:
        die("--samples: %d is not >= 1" % a.samples)
    if a.corpus_future < 0:
        die("--corpus-future: %d is not >= 0" % a.corpus_future)
    try:
        with h5py.File(a.heldout, "r") as f:
            ids = f["tokens"][()]
            if f.attrs.get("tokenizer") != "bytes":
                die("%s: tokenizer: %r, not bytes" % (a.heldout, f.attrs.get("tokenizer")))
    except (OSError, KeyError) as e:
        die("%s: cannot read /tokens: %s" % (a.heldout, e))
    text = ids[ids < 256].astype(np.uint8)  # the BOS of each sample dropped
    if len(text) <= 8192 + max(contexts):
        die("%s: %d bytes of text, too few for %d-token contexts" % (a.heldout, len(text), max(contexts)))
    b = tasks.Builder(text)

    names, ctx, qs, ans = [], [], [], []
    for C in contexts:
        for k in keys:
            name = {1: "niah_single", 4: "niah_multikey"}.get(k, "niah_%dkeys" % k)
            for i in range(a.samples):
                rng = tasks.rng_for(a.seed_domain, C, k, i)
                c, q, an = sample(b, rng, C, k)
                names.append("%s#%03d" % (name, i) if a.name_by_sample else name)
                ctx.append(c), qs.append(q), ans.append(an)
                if a.corpus_future:
                    fut = np.concatenate([q, an, [10]]).astype(np.int32)
                    if len(fut) > a.corpus_future:
                        die("--corpus-future %d is shorter than question + answer (%d tokens)"
                            % (a.corpus_future, len(fut)))
                    filler = b._window(rng, a.corpus_future - len(fut)).astype(np.int32)
                    ctx[-1] = np.concatenate([c, fut, filler])

    if a.corpus_future:
        lukv_h5.write_corpus(a.output, ctx, dict(
            created_by="lukv tools/organism/make_tasks.py", tokenizer="bytes", vocab_size=tasks.VOCAB,
            source="lukv-tiny needle prompts (tasks.py templates) as calibration sequences: "
                   "context + question + answer + filler to C + %d; contexts %s, keys %s, %d per "
                   "cell, haystack %s, seeds SeedSequence([%d, C, keys, i])"
                   % (a.corpus_future, a.contexts, a.keys, a.samples, os.path.basename(a.heldout), a.seed_domain)))
        print("%s: corpus of %d sequences" % (a.output, len(ctx)), file=sys.stderr)
        return
    lukv_h5.write_tasks(a.output, names, ctx, qs, ans, dict(
        created_by="lukv tools/organism/make_tasks.py", tokenizer="bytes", vocab_size=tasks.VOCAB,
        source="lukv-tiny needle prompts (tasks.py templates), contexts %s, keys %s, %d per cell, "
               "haystack %s, seeds SeedSequence([%d, C, keys, i])"
               % (a.contexts, a.keys, a.samples, os.path.basename(a.heldout), a.seed_domain)))
    print("%s: %d samples (contexts %s x keys %s x %d)" % (a.output, len(names), a.contexts, a.keys, a.samples),
          file=sys.stderr)


if __name__ == "__main__":
    main()

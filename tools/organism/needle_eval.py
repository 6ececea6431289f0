#!/usr/bin/env python3
"""Full-cache needle-in-a-haystack retrieval accuracy of a byte-level model,
run through Hugging Face transformers (LlamaForCausalLM, no KV compression).

    python3 tools/organism/needle_eval.py --model data/models/lukv-tiny \\
        --heldout build-organism/corpus/heldout.bin

For each context length C (default 1024, 2048, 4096) and each task (1 key:
a single needle; 4 keys: four needles, one of them asked), TRIALS prompts of
exactly C - 8 tokens are built from the held-out text (never trained on):
BOS, haystack with the needle line(s) "One of the special magic numbers for
<key> is: <7 digits>." at random line starts, then "What is the special magic
number for <key>?\\nThe special magic number for <key> is: ". The model decodes
7 tokens greedily with its full KV cache (prompt + answer <= C); a trial
counts when all 7 digits match exactly. Prints a markdown table.

Seeds: trial t of cell (C, keys) uses SeedSequence([2, C, keys, t]),
t = 0..TRIALS-1. Training used SeedSequence([1, run_seed, step]) and
train.py's own probe [3, C, keys, t]; the leading domain tag differs, so no
evaluation prompt shares a random stream with training. Keys are random
pseudo-words, values random 7-digit numbers (tasks.py).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402


def greedy(model, x, n):
    """Greedy decode n tokens with the KV cache. x [B, T] -> [B, n]."""
    out = model(input_ids=x, use_cache=True)
    pkv = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    got = [nxt]
    for _ in range(n - 1):
        out = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
        pkv = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        got.append(nxt)
    return torch.cat(got, dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model folder (config.json, model.safetensors)")
    ap.add_argument("--heldout", default="build-organism/corpus/heldout.bin", help="haystack text (raw bytes)")
    ap.add_argument("--contexts", default="1024,2048,4096")
    ap.add_argument("--keys", default="1,4")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp32"],
                    help="default: bf16 on GPU, fp32 on CPU")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    from transformers import LlamaForCausalLM

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype or ("bf16" if dev.type == "cuda" else "fp32")]
    model = LlamaForCausalLM.from_pretrained(a.model).to(dev, dt).eval()
    hay = np.fromfile(a.heldout, dtype=np.uint8)
    b = tasks.Builder(hay)
    contexts = [int(x) for x in a.contexts.split(",")]
    keys = [int(x) for x in a.keys.split(",")]
    maxpos = model.config.max_position_embeddings
    t0 = time.time()
    res, examples = {}, {}
    for C in contexts:
        if C > maxpos:
            print("needle_eval: context %d > max_position_embeddings %d" % (C, maxpos), file=sys.stderr)
            sys.exit(2)
        for k in keys:
            prompts, answers = [], []
            for t in range(a.trials):
                tok, ans = b.eval_prompt(tasks.rng_for(tasks.EVAL_DOMAIN, C, k, t), C - 8, k)
                prompts.append(tok)
                answers.append(ans)
            n = len(answers[0])
            assert all(len(x) == n for x in answers)
            hits = 0
            for i in range(0, a.trials, a.batch):
                x = torch.from_numpy(np.stack(prompts[i:i + a.batch])).to(dev)
                with torch.no_grad():
                    g = greedy(model, x, n).cpu().numpy()
                for j, row in enumerate(g):
                    pred = "".join(chr(v) if v < 128 else "?" for v in row)
                    ok = pred == answers[i + j]
                    hits += ok
                    if i + j < 3:
                        examples.setdefault("%d/%d" % (C, k), []).append([answers[i + j], pred])
            res[(C, k)] = hits / a.trials
            print("context %5d, %d key%s: %3d/%d" % (C, k, "" if k == 1 else "s", hits, a.trials),
                  file=sys.stderr, flush=True)

    print("Full-cache retrieval accuracy (exact match of all 7 digits, %d trials per cell, "
          "haystack: %s, %s, %s, %.0fs)" % (a.trials, os.path.basename(a.heldout), dev,
                                             str(dt).replace("torch.", ""), time.time() - t0))
    print()
    print("| context | " + " | ".join("%d key%s" % (k, "" if k == 1 else "s") for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for C in contexts:
        print("| %d | " % C + " | ".join("%.0f%%" % (100 * res[(C, k)]) for k in keys) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "heldout": a.heldout, "trials": a.trials, "device": str(dev),
                       "dtype": str(dt), "accuracy": {"%d/%d" % ck: v for ck, v in res.items()},
                       "examples": examples}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

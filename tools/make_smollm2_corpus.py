#!/usr/bin/python3
"""Write the text of the two halves of the lukv-tiny held-out split as UTF-8
files, for tokenising with a real model's tokenizer (tools/lukv-tokenize).

    /usr/bin/python3 tools/make_smollm2_corpus.py [--corpus build-organism/corpus] -o DIR

Writes DIR/calib.txt and DIR/heldout.txt: the held-out documents of
build-organism/corpus/heldout.bin (tools/organism/make_corpus.sh) divided
exactly as tools/organism/make_calib.py divides them (within each source,
alternately in the order of sha256(SALT + source/name): even -> calibration,
odd -> evaluation), so the two files share no document and have the same
documents as data/corpora/calib.h5 and heldout.h5 -- but all of each
document's text, not 32 windows of 8191 bytes. Documents are joined in that
hash order, separated by a blank line; bytes that are not UTF-8 are dropped.

Then, e.g. for SmolLM2 (docs/results.md):
    .venv/bin/python tools/lukv-tokenize --gguf "$M" --chunk 2304 -o calib.h5 DIR/calib.txt
"""
import argparse
import hashlib
import json
import os
import sys

SALT = "lukv-organism-calib-v1:"  # = tools/organism/make_calib.py


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(root, "build-organism", "corpus"))
    ap.add_argument("-o", "--outdir", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.corpus, "manifest.json")) as f:
        held = json.load(f)["splits"]["heldout"]
    with open(os.path.join(a.corpus, "heldout.bin"), "rb") as f:
        blob = f.read()
    if len(blob) != held["bytes"] or hashlib.sha256(blob).hexdigest() != held["sha256"]:
        sys.exit("make_smollm2_corpus: heldout.bin does not match manifest.json")
    by_src = {}
    for src, _kind, name, off, n in held["documents"]:
        key = hashlib.sha256((SALT + src + "/" + name).encode()).hexdigest()
        by_src.setdefault(src, []).append((key, name, off, n))
    sets = {"calib": [], "heldout": []}
    for src in sorted(by_src):
        for i, d in enumerate(sorted(by_src[src])):
            sets["calib" if i % 2 == 0 else "heldout"].append((d[0], src, d[2], d[3]))
    os.makedirs(a.outdir, exist_ok=True)
    for which, docs in sets.items():
        docs.sort()
        text = "\n\n".join(blob[off:off + n].decode("utf-8", "ignore") for _, _, off, n in docs)
        path = os.path.join(a.outdir, which + ".txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("%s: %d documents from %s, %d characters"
              % (path, len(docs), ", ".join(sorted({s for _, s, _, _ in docs})), len(text)))


if __name__ == "__main__":
    main()

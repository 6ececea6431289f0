#!/usr/bin/python3
"""Write data/corpora/calib.h5 and data/corpora/heldout.h5 (corpus.h5 format,
docs/formats.md) from the HELD-OUT split of the lukv-tiny corpus only.

    /usr/bin/python3 tools/organism/make_calib.py [--corpus build-organism/corpus]

Runs with Debian's python3 (h5py + numpy from Debian packages).

The held-out documents (manifest.json) are divided into two disjoint sets,
within each source alternately in the order of sha256(SALT + source/name):
even -> calibration, odd -> held-out evaluation, so both sets cover every
source and share no document. Each set's documents are concatenated (in that
hash order) into one byte stream; SAMPLES samples of SAMPLE_LEN tokens are
cut from it at evenly spaced, non-overlapping offsets: BOS (256) followed by
SAMPLE_LEN - 1 bytes. A sample may span a document boundary, like packed
training text.

/tokens int32 [N], /offsets int64 [S+1]; root attributes format="lukv-corpus",
format_version=1, created_by, tokenizer="bytes", vocab_size=264 (the model's,
tasks.VOCAB), source. No timestamps are stored, so reruns are byte-identical.
"""
import argparse
import hashlib
import json
import os
import sys

import h5py
import numpy as np

BOS = 256
VOCAB = 264  # must equal tasks.VOCAB (train.py's vocab_size)
SALT = "lukv-organism-calib-v1:"


def write(path, samples, source):
    tokens = np.concatenate(samples).astype(np.int32)
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in samples])
    assert tokens.min() >= 0 and tokens.max() < VOCAB
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        s = h5py.string_dtype("utf-8")
        f.attrs.create("format", "lukv-corpus", dtype=s)
        f.attrs["format_version"] = np.int64(1)
        f.attrs.create("created_by", "tools/organism/make_calib.py", dtype=s)
        f.attrs.create("tokenizer", "bytes", dtype=s)
        f.attrs["vocab_size"] = np.int64(VOCAB)
        f.attrs.create("source", source, dtype=s)
        f.create_dataset("tokens", data=tokens, track_times=False)  # byte-identical reruns
        f.create_dataset("offsets", data=offsets, track_times=False)
    os.replace(tmp, path)
    return os.path.getsize(path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(root, "build-organism", "corpus"))
    ap.add_argument("--outdir", default=os.path.join(root, "data", "corpora"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--sample-len", type=int, default=8192, help="tokens per sample, BOS included")
    a = ap.parse_args()

    with open(os.path.join(a.corpus, "manifest.json")) as f:
        man = json.load(f)
    held = man["splits"]["heldout"]
    blob = np.fromfile(os.path.join(a.corpus, "heldout.bin"), dtype=np.uint8)
    if len(blob) != held["bytes"] or hashlib.sha256(blob.tobytes()).hexdigest() != held["sha256"]:
        sys.exit("make_calib: heldout.bin does not match manifest.json")

    by_src = {}
    for src, _kind, name, off, n in held["documents"]:
        by_src.setdefault(src, []).append((hashlib.sha256((SALT + src + "/" + name).encode()).hexdigest(), name, off, n))
    sets = {"calib": [], "heldout": []}
    for src in sorted(by_src):
        for i, d in enumerate(sorted(by_src[src])):
            sets["calib" if i % 2 == 0 else "heldout"].append((d[0], src, d[1], d[2], d[3]))

    os.makedirs(a.outdir, exist_ok=True)
    for which, docs in sets.items():
        docs.sort()
        stream = np.concatenate([blob[off:off + n] for _, _, _, off, n in docs])
        body = a.sample_len - 1
        if len(stream) < a.samples * body:
            sys.exit("make_calib: %s set has %d bytes, need %d" % (which, len(stream), a.samples * body))
        slot = len(stream) // a.samples
        samples = [np.concatenate([[BOS], stream[i * slot:i * slot + body]]) for i in range(a.samples)]
        srcs = sorted({s for _, s, _, _, _ in docs})
        source = ("lukv-tiny corpus, held-out split (never trained on), %s half: %d documents from %s; "
                  "%d samples of BOS + %d bytes; heldout.bin sha256 %s; see tools/organism/SOURCES.md"
                  % ("calibration" if which == "calib" else "evaluation", len(docs), ", ".join(srcs),
                     a.samples, body, held["sha256"][:16]))
        path = os.path.join(a.outdir, which + ".h5")
        size = write(path, samples, source)
        print("%s: %d samples x %d tokens, %d documents, %d bytes of stream, file %d bytes"
              % (path, a.samples, a.sample_len, len(docs), len(stream), size))


if __name__ == "__main__":
    main()

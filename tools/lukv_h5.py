"""Writers of the two token files the tools make (docs/formats.md): a
corpus.h5 for lukv-profile and a tasks.h5 for lukv-eval. Shared by
tools/make_smollm2_tasks.py and tools/organism/make_tasks.py, so that the
layout is written in one place. Each writes to PATH.tmp and renames it over
PATH at the end: a failure leaves no partial file. Needs h5py and numpy.

    write_corpus(path, seqs, attrs)            /tokens int32 [N], /offsets int64 [S+1]
    write_tasks(path, names, ctx, q, a, attrs) /task (strings), /context, /question,
                                               /answer int32 and their *_offsets int64
attrs: the root attributes besides format and format_version (created_by,
tokenizer, vocab_size, source ...).
"""
import os

import h5py
import numpy as np


def _offsets(parts):
    return np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)


def _write(path, fmt, attrs, fill):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=fmt, format_version=1, **attrs)
            fill(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_corpus(path, seqs, attrs):
    """seqs: token sequences (one per sample)."""
    def fill(f):
        f["tokens"] = np.concatenate([np.asarray(s, np.int32) for s in seqs])
        f["offsets"] = _offsets(seqs)
    _write(path, "lukv-corpus", attrs, fill)


def write_tasks(path, names, contexts, questions, answers, attrs):
    """names: the task name of each sample; contexts, questions, answers: its token sequences."""
    def fill(f):
        f.create_dataset("task", data=list(names), dtype=h5py.string_dtype())
        for name, parts in (("context", contexts), ("question", questions), ("answer", answers)):
            f[name] = np.concatenate([np.asarray(p, np.int32) for p in parts])
            f[name + "_offsets"] = _offsets(parts)
    _write(path, "lukv-tasks", attrs, fill)

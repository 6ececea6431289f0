#!/usr/bin/python3
"""Build the lukv-tiny training corpus from installed Debian packages.

Called by make_corpus.sh after it has installed the packages (runs with
Debian's /usr/bin/python3, standard library only). Every source is read
through `dpkg -L PACKAGE`, never by walking /usr, so the corpus depends only
on the package versions (recorded in the manifest), not on whatever else is
installed on the machine.

Output in OUTDIR:
  train.bin      raw bytes, training documents concatenated (never contains heldout)
  heldout.bin    raw bytes, held-out documents concatenated (~3% per source)
  manifest.json  sizes, sha256, package versions, and the document table of
                 both splits: [source, name, offset, length] with offsets
                 into the split's .bin

Documents: a file (or a man page, or a Bible book) is one document; a
document longer than CHUNK bytes is cut at paragraph (else line) boundaries
into pieces of at most CHUNK bytes, each piece a document. The held-out split
takes whole documents: per source, documents are ordered by
sha256(SPLIT_SALT + source + name) and taken in that order until the
held-out bytes reach HELDOUT_FRACTION of the source's bytes.
"""
import argparse
import concurrent.futures
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

CHUNK = 64 * 1024
HELDOUT_FRACTION = 0.03
SPLIT_SALT = "lukv-organism-heldout-v1:"


def sh(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, **kw).stdout


def pkg_files(pkg):
    out = sh(["dpkg", "-L", pkg]).decode("utf-8", "replace").splitlines()
    return sorted(p for p in out if p.startswith("/"))


def pkg_version(pkg):
    return sh(["dpkg-query", "-W", "-f", "${Version}", pkg]).decode().strip()


def regular(path):
    return os.path.isfile(path) and not os.path.islink(path)


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data


def normalise(data):
    """CRLF to LF, strip trailing blanks, at most one empty line in a row."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = [ln.rstrip(b" \t") for ln in data.split(b"\n")]
    text = b"\n".join(lines)
    text = re.sub(b"\n{3,}", b"\n\n", text).strip(b"\n")
    return text + b"\n" if text else b""


def chunk(data, limit=CHUNK):
    """Cut data into pieces <= limit at paragraph, else line, boundaries."""
    pieces = []
    while len(data) > limit:
        cut = data.rfind(b"\n\n", 0, limit)
        if cut < limit // 4:
            cut = data.rfind(b"\n", 0, limit)
        if cut < limit // 4:
            cut = limit - 1
        pieces.append(data[: cut + 1])
        data = data[cut + 1 :].lstrip(b"\n")
    if data:
        pieces.append(data)
    return pieces


# ---- sources -------------------------------------------------------------
# Each returns a sorted list of (name, bytes) documents (before chunking).


def src_kjv():
    # bible-kjv-text ships a compressed database; the `bible` program of
    # bible-kjv prints it, one verse per line ("Ge1:1 In the beginning ...").
    text = sh(["bible", "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
              env={"PATH": "/usr/bin:/bin"})  # no COLUMNS: one verse per line
    books, order = {}, []
    for line in text.split(b"\n"):
        if not line.strip():
            continue
        m = re.match(rb"([0-9]?[A-Za-z]+)[0-9]+:[0-9]+ ", line)
        book = m.group(1).decode() if m else (order[-1] if order else "unknown")
        if book not in books:
            books[book] = []
            order.append(book)
        books[book].append(line)
    # name keeps canonical order visible: 01-Ge, 02-Ex, ...
    return [("%02d-%s" % (i + 1, b), b"\n".join(books[b]) + b"\n") for i, b in enumerate(order)]


def src_jargon():
    (path,) = [p for p in pkg_files("jargon-text") if p.endswith("jargon.txt.gz")]
    return [("jargon.txt", read(path))]


def src_debref():
    (path,) = [p for p in pkg_files("debian-reference-en") if p.endswith(".en.txt.gz")]
    return [("debian-reference.en.txt", read(path))]


def python_doc_pkg():
    out = sh(["dpkg-query", "-W", "-f", "${Package}\n", "python3.*-doc"]).decode().split()
    pk = sorted(p for p in out if re.fullmatch(r"python3\.[0-9]+-doc", p))
    if not pk:
        sys.exit("corpus_build: no python3.X-doc package installed")
    return pk[-1]


def src_python():
    docs = []
    for p in pkg_files(python_doc_pkg()):
        if "/html/_sources/" not in p or not p.endswith(".rst.txt") or not regular(p):
            continue
        rel = p.split("/html/_sources/", 1)[1]
        if rel.startswith("whatsnew/"):  # release notes: long change lists
            continue
        docs.append((rel, read(p)))
    return docs


def src_perl():
    docs = []
    for p in pkg_files("perl-doc"):
        name = os.path.basename(p)
        if not p.endswith(".pod") or not regular(p) or "delta" in name:
            continue  # perl*delta.pod: per-release change lists
        docs.append((name, read(p)))
    return docs


def render_man(path):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "MAN_DISABLE_SECCOMP": "1"}
    p1 = subprocess.run(["man", "-E", "UTF-8", "-l", path], env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p2 = subprocess.run(["col", "-bx"], env=env, input=p1.stdout, stdout=subprocess.PIPE, check=True)
    return p2.stdout


def src_man(jobs):
    pages = []
    for pkg in ("manpages", "manpages-dev"):
        for p in pkg_files(pkg):
            if not re.search(r"/man/man[0-9]/[^/]+\.gz$", p) or not regular(p):
                continue
            head = read(p)[:400]
            if re.search(rb"(^|\n)\.so ", head):  # alias page: renders another page
                continue
            pages.append(p)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        texts = list(ex.map(render_man, pages))
    docs = []
    for p, t in zip(pages, texts):
        sec = p.split("/")[-2]
        docs.append(("%s/%s" % (sec, os.path.basename(p)[:-3]), t))
    return docs


def src_headers():
    docs = []
    for pkg in ("libc6-dev", "linux-libc-dev"):
        for p in pkg_files(pkg):
            if p.endswith(".h") and regular(p):
                docs.append((p[len("/usr/include/"):] if p.startswith("/usr/include/") else p, read(p)))
    return docs


SOURCES = [
    # name, packages (for versions in the manifest), reader, kind
    ("kjv", ["bible-kjv-text", "bible-kjv"], src_kjv, "prose"),
    ("jargon", ["jargon-text"], src_jargon, "prose"),
    ("debian-reference", ["debian-reference-en"], src_debref, "prose"),
    ("python-doc", [None], src_python, "prose"),
    ("perl-doc", ["perl-doc"], src_perl, "prose"),
    ("man", ["manpages", "manpages-dev", "man-db", "groff-base"], None, "prose"),
    ("c-headers", ["libc6-dev", "linux-libc-dev"], src_headers, "code"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=2, help="parallel man renderers (default 2)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    splits = {"train": [], "heldout": []}
    versions, per_source = {}, {}
    for name, pkgs, fn, kind in SOURCES:
        pkgs = [python_doc_pkg() if p is None else p for p in pkgs]
        for p in pkgs:
            versions[p] = pkg_version(p)
        raw = src_man(a.jobs) if name == "man" else fn()
        docs = []
        for dname, data in sorted(raw):
            data = normalise(data)
            if len(data) < 64:
                continue
            pieces = chunk(data)
            for i, piece in enumerate(pieces):
                docs.append((dname if len(pieces) == 1 else "%s#%03d" % (dname, i), piece))
        total = sum(len(d) for _, d in docs)
        order = sorted(docs, key=lambda d: hashlib.sha256((SPLIT_SALT + name + "/" + d[0]).encode()).hexdigest())
        held, hb = set(), 0
        for dname, data in order:
            if hb >= HELDOUT_FRACTION * total:
                break
            held.add(dname)
            hb += len(data)
        for dname, data in docs:
            splits["heldout" if dname in held else "train"].append((name, kind, dname, data))
        per_source[name] = {"kind": kind, "packages": pkgs, "documents": len(docs), "bytes": total,
                            "heldout_documents": len(held), "heldout_bytes": hb}
        print("%-17s %5d docs %10d bytes  (held out %3d docs, %8d bytes)" % (name, len(docs), total, len(held), hb),
              file=sys.stderr)

    manifest = {"format": "lukv-organism-corpus", "format_version": 1,
                "created_by": "tools/organism/make_corpus.sh", "chunk_bytes": CHUNK,
                "heldout_fraction": HELDOUT_FRACTION, "split_salt": SPLIT_SALT,
                "packages": versions, "sources": per_source, "splits": {}}
    for split, docs in splits.items():
        blob, table, off = [], [], 0
        for src, kind, dname, data in docs:
            table.append([src, kind, dname, off, len(data)])
            blob.append(data)
            off += len(data)
        blob = b"".join(blob)
        path = os.path.join(a.out, split + ".bin")
        with open(path + ".tmp", "wb") as f:
            f.write(blob)
        os.replace(path + ".tmp", path)
        manifest["splits"][split] = {"file": split + ".bin", "bytes": len(blob),
                                     "sha256": hashlib.sha256(blob).hexdigest(),
                                     "documents_columns": ["source", "kind", "name", "offset", "length"],
                                     "documents": table}
        print("%s.bin: %d bytes, %d documents, sha256 %s" % (split, len(blob), len(table),
                                                            manifest["splits"][split]["sha256"]), file=sys.stderr)
    path = os.path.join(a.out, "manifest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()

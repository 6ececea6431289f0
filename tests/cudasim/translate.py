#!/usr/bin/env python3
"""Turns a .cu file into C++ that g++ compiles against cudasim (tests/cudasim/README.md).

Usage: translate.py IN.cu OUT.cc

Only two CUDA constructs are not plain C++ once cudasim.h is force-included:
  kernel<<<grid, block[, smem[, stream]]>>>(args)
      -> ::cudasim::launch_kernel("kernel", kernel, ::cudasim::launch_config(grid, block, ...), args)
  extern __shared__ [__align__(N)] T name[];
      -> T *name = reinterpret_cast<T *>(::cudasim::dynamic_smem());
Comments and string literals are left alone. Line numbers are kept (a #line
directive names the .cu), so compiler, ASan and UBSan messages point at the
original source. Any python3 runs this (standard library only).
"""
import re
import sys


def mask_comments_and_strings(src):
    """The source with comments, string and char literals blanked (same length, newlines kept)."""
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def match_forward(m, i, open_c, close_c):
    """Index just past the bracket closing the one at m[i]."""
    depth = 0
    for j in range(i, len(m)):
        if m[j] == open_c:
            depth += 1
        elif m[j] == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
    raise SyntaxError(f"unbalanced {open_c!r} at offset {i}")


def callee_start(m, end):
    """Start of the kernel expression ending at m[end - 1]: identifiers, ::, <template args>."""
    p = end - 1
    while p >= 0 and m[p].isspace():
        p -= 1
    while p >= 0:
        if m[p] == ">":
            depth = 0
            while p >= 0:
                if m[p] == ">":
                    depth += 1
                elif m[p] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                p -= 1
            p -= 1
        elif m[p].isalnum() or m[p] in "_:":
            p -= 1
        else:
            break
    return p + 1


def split_top_level(s):
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def translate_launches(src):
    m = mask_comments_and_strings(src)
    edits = []  # (start, end, replacement)
    pos = 0
    while True:
        i = m.find("<<<", pos)
        if i < 0:
            break
        start = callee_start(m, i)
        callee = src[start:i].strip()
        if not callee:
            raise SyntaxError(f"launch without a kernel name at line {src.count(chr(10), 0, i) + 1}")
        depth, j = 0, i + 3
        while j < len(m):
            if m[j] in "([{":
                depth += 1
            elif m[j] in ")]}":
                depth -= 1
            elif depth == 0 and m.startswith(">>>", j):
                break
            j += 1
        config = src[i + 3:j]
        k = j + 3
        while m[k].isspace():
            k += 1
        if m[k] != "(":
            raise SyntaxError(f"kernel launch without arguments at line {src.count(chr(10), 0, i) + 1}")
        close = match_forward(m, k, "(", ")")
        args = src[k + 1:close - 1]
        name = re.sub(r"\s+", " ", callee)
        rep = f'::cudasim::launch_kernel("{name}", {callee}, ::cudasim::launch_config({config})'
        rep += f", {args})" if args.strip() else ")"
        edits.append((start, close, rep))
        pos = close
    for start, end, rep in reversed(edits):
        src = src[:start] + rep + src[end:]
    return src


EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\w+\s*\)\s+)?"
    r"([A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*?)\s+(\w+)\s*\[\s*\]\s*;")


def translate(src):
    src = translate_launches(src)
    return EXTERN_SHARED.sub(r"\1 *\2 = reinterpret_cast<\1 *>(::cudasim::dynamic_smem());", src)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: translate.py IN.cu OUT.cc")
    path, out = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        src = f.read()
    try:
        text = translate(src)
    except SyntaxError as e:
        sys.exit(f"{path}: {e}")
    with open(out, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{path}"\n')
        f.write(text)


if __name__ == "__main__":
    main()

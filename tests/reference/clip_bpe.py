#!/usr/bin/python3
"""Independent reference for weft's CLIP tokenizer (nodes/sd/clip_tokenizer.c) and ComfyUI
prompt weighting (nodes/sd/prompt_weights.c), used to compute the check values hard-coded in
tests/unit/test_nodes_clipt.c. Not run by CI. Written for weft from the algorithm description
in shared/docs/sd15-reference.md §4.2-§4.3; it uses Python's unicodedata tables (not glibc's),
so agreement with the C code is a real cross-check of the character classes.

Usage:
  /usr/bin/python3 tests/reference/clip_bpe.py DIR 'text' ...        ids (no BOS/EOS)
  /usr/bin/python3 tests/reference/clip_bpe.py DIR --rows 'prompt'   ComfyUI rows + weights
  /usr/bin/python3 tests/reference/clip_bpe.py DIR --jsonl < in      one JSON string per line
                                                                     -> one JSON id list per line
DIR holds vocab.json and merges.txt (../shared/clip_tokenizer).
"""
import json
import os
import sys
import unicodedata

MAX_MERGES = 49152 - 256 - 2
SPECIALS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def byte_symbols():
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


def load(d):
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    ranks = {}
    first = True
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if first and line.startswith("#version"):
            first = False
            continue
        first = False
        if len(ranks) >= MAX_MERGES:
            break
        a, b = line.split()
        ranks[(a, b)] = len(ranks)
    return vocab, ranks


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def clean(text):
    """BERT BasicTokenizer as HF's CLIPTokenizer uses it when ftfy is absent."""
    out = []
    for ch in text:
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat == "Zs":
            out.append(" ")
        elif cp == 0 or cp == 0xFFFD or cat.startswith("C"):
            continue
        elif is_cjk(cp):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    words = unicodedata.normalize("NFC", "".join(out)).split()
    return " ".join(w.lower() for w in words).lower()


def cls(ch):
    c = unicodedata.category(ch)
    if ch.isspace():
        return "s"
    if c[0] == "L":
        return "L"
    if c[0] == "N":
        return "N"
    return "o"


def pretokenize(text):
    """The CLIP regex, by hand (the stdlib `re` has no \\p{L})."""
    pieces = []
    i = 0
    n = len(text)
    while i < n:
        hit = None
        for lit in SPECIALS + CONTRACTIONS:
            if text.startswith(lit, i):
                hit = lit
                break
        if hit:
            pieces.append(hit)
            i += len(hit)
            continue
        k = cls(text[i])
        if k == "s":
            i += 1
            continue
        j = i + 1
        if k == "L":
            while j < n and cls(text[j]) == "L":
                j += 1
        elif k == "o":
            while j < n and cls(text[j]) == "o":
                j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


def bpe(word, ranks):
    syms = list(word[:-1]) + [word[-1] + "</w>"]
    while len(syms) > 1:
        best = None
        for a, b in zip(syms, syms[1:]):
            r = ranks.get((a, b))
            if r is not None and (best is None or r < best[0]):
                best = (r, a, b)
        if best is None:
            break
        _, a, b = best
        merged = []
        i = 0
        while i < len(syms):
            if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                merged.append(a + b)
                i += 2
            else:
                merged.append(syms[i])
                i += 1
        syms = merged
    return syms


def encode(text, vocab, ranks):
    bs = byte_symbols()
    ids = []
    # HF splits the exact special-token strings out before cleaning.
    chunks = [text]
    for sp in SPECIALS:
        nxt = []
        for c in chunks:
            if c in SPECIALS:
                nxt.append(c)
                continue
            parts = c.split(sp)
            for k, p in enumerate(parts):
                if k:
                    nxt.append(sp)
                nxt.append(p)
        chunks = nxt
    for c in chunks:
        if c in SPECIALS:
            ids.append(vocab[c])
            continue
        for piece in pretokenize(clean(c)):
            if piece in SPECIALS:
                ids.append(vocab[piece])
                continue
            word = "".join(bs[b] for b in piece.encode("utf-8"))
            for s in bpe(word, ranks):
                ids.append(vocab.get(s, vocab["<|endoftext|>"]))
    return ids


# ----------------------------------------------------------------- ComfyUI weighting


def split_groups(s):
    out = []
    cur = ""
    depth = 0
    for ch in s:
        if ch == "(":
            if depth == 0:
                if cur:
                    out.append(cur)
                cur = "("
            else:
                cur += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out.append(cur + ")")
                cur = ""
            else:
                cur += ch
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def weighted(s, w):
    out = []
    for x in split_groups(s):
        if len(x) >= 2 and x[0] == "(" and x[-1] == ")":
            inner = x[1:-1]
            nw = w * 1.1
            c = inner.rfind(":")
            if c > 0:
                try:
                    nw = float(inner[c + 1:])
                    inner = inner[:c]
                except ValueError:
                    pass
            out += weighted(inner, nw)
        else:
            out.append((x, w))
    return out


def rows(prompt, vocab, ranks):
    text = prompt.replace("\\)", "\0\1").replace("\\(", "\0\2")
    groups = []
    for seg, w in weighted(text, 1.0):
        seg = seg.replace("\0\1", ")").replace("\0\2", "(")
        # (no embedding: words in the prompts this script is used for)
        groups.append([(t, w) for t in encode(seg, vocab, ranks)])
    out = []
    row = [(49406, 1.0)]
    out.append(row)
    for g in groups:
        large = len(g) >= 8
        while g:
            if len(g) + len(row) > 76:
                room = 77 - len(row) - 1
                if large:
                    row.extend(g[:room])
                    row.append((49407, 1.0))
                    g = g[room:]
                else:
                    row.append((49407, 1.0))
                    row.extend([(49407, 1.0)] * room)
                row = [(49406, 1.0)]
                out.append(row)
            else:
                row.extend(g)
                g = []
    row.append((49407, 1.0))
    row.extend([(49407, 1.0)] * (77 - len(row)))
    return out


def main():
    d = sys.argv[1]
    vocab, ranks = load(d)
    args = sys.argv[2:]
    if args and args[0] == "--jsonl":
        for line in sys.stdin:
            print(json.dumps(encode(json.loads(line), vocab, ranks)))
    elif args and args[0] == "--rows":
        for r in rows(args[1], vocab, ranks):
            print([t for t, _ in r])
            print([w for _, w in r])
    else:
        for t in args:
            print(json.dumps(t, ensure_ascii=True), encode(t, vocab, ranks))


if __name__ == "__main__":
    main()

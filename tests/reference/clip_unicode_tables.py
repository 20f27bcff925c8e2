#!/usr/bin/python3
"""Prints the Unicode range tables used by nodes/sd/clip_tokenizer.c (pasted there by hand):
general categories N* (numbers: the CLIP regex's \\p{N}), M* (combining marks, which glibc's
iswalpha counts as alphabetic but \\p{L} does not) and Cf (format characters, dropped by the
BERT-style cleaner). Python 3.11's unicodedata = Unicode 14.0, the same version as glibc 2.36.
Not run by CI."""
import sys
import unicodedata


def ranges(pred):
    out = []
    start = None
    for cp in range(0x110000):
        if pred(cp):
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def emit(name, rs):
    print("/* %d ranges, Unicode %s */" % (len(rs), unicodedata.unidata_version))
    print("static const urange_t %s[] = {" % name)
    line = "   "
    for a, b in rs:
        item = " {0x%X, 0x%X}," % (a, b)
        if len(line) + len(item) > 96:
            print(line)
            line = "   "
        line += item
    print(line)
    print("};")


def cat(cp):
    return unicodedata.category(chr(cp))


which = sys.argv[1:] or ["N", "M", "Cf"]
for w in which:
    if w == "N":
        emit("uni_number", ranges(lambda c: cat(c)[0] == "N" and not 0x30 <= c <= 0x39))
    elif w == "M":
        emit("uni_mark", ranges(lambda c: cat(c)[0] == "M"))
    elif w == "Cf":
        emit("uni_format", ranges(lambda c: cat(c) == "Cf"))

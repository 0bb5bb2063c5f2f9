"""Regenerates the tables that src/tokenizer_clip/{text_clean,mojibake}.rs embed, from the
Python implementations they port. Run with CPython 3.11 and ftfy 6.3.1 (the versions the
tokenizer fixture was checked against):

    python gen_tables.py

html5_entities.tsv       `html.entities.html5` (what `html.unescape` knows): `name<TAB>codepoints`
                         per line, codepoints in hex, space separated.
ftfy_entities_extra.tsv  the entries of `ftfy.chardata.HTML_ENTITIES` that are not `"&" + name`
                         of html5 (ftfy's upper-case variants such as `&NTILDE;`), same format,
                         name without the leading `&`.
ftfy_charmaps.tsv        for each of `ftfy.chardata.CHARMAP_ENCODINGS`: `encoding<TAB>` and the
                         256 code points (hex) that bytes 0x00..0xFF decode to.
ftfy_badness.regex       `ftfy.badness.BADNESS_RE` and
ftfy_utf8_detector.regex `ftfy.chardata.UTF8_DETECTOR_RE`, rewritten from Python's VERBOSE
                         syntax to a plain pattern for Rust's regex / fancy-regex: whitespace and
                         comments outside classes dropped, spaces inside classes as `\x20`,
                         `\s` -> Python's `str.isspace` set, `\w` -> `[\p{L}\p{N}_]` (Python's
                         `str.isalnum() or '_'`). The script checks on random text that Python
                         itself finds the same matches with the rewritten pattern.
"""
import html.entities
import random
import re

import ftfy.bad_codecs  # noqa: F401  (registers the sloppy-* codecs)
import ftfy.badness
import ftfy.chardata


def cps(s):
    return " ".join(f"{ord(c):X}" for c in s)


with open("html5_entities.tsv", "w", encoding="utf-8", newline="\n") as f:
    for name, value in sorted(html.entities.html5.items()):
        f.write(f"{name}\t{cps(value)}\n")

html5 = html.entities.html5
with open("ftfy_entities_extra.tsv", "w", encoding="utf-8", newline="\n") as f:
    for ent, value in sorted(ftfy.chardata.HTML_ENTITIES.items()):
        name = ent[1:]
        if html5.get(name) != value:
            f.write(f"{name}\t{cps(value)}\n")

with open("ftfy_charmaps.tsv", "w", encoding="utf-8", newline="\n") as f:
    for enc in ftfy.chardata.CHARMAP_ENCODINGS:
        table = bytes(range(256)).decode(enc)
        assert len(table) == 256
        f.write(f"{enc}\t{cps(table)}\n")

PY_SPACE = r"\t-\r\x1c-\x1f\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def deverbose(p, for_python):
    """VERBOSE pattern -> plain pattern (Rust syntax, or Python syntax to self-check)."""
    out, i, in_class = [], 0, False
    space = PY_SPACE if for_python else r"\t-\r\x1c-\x1f\p{White_Space}"
    word = r"\w" if for_python else r"\p{L}\p{N}_"
    while i < len(p):
        c = p[i]
        if c == "\\":
            esc = p[i : i + 2]
            if esc == "\\x":
                out.append(p[i : i + 4])
                i += 4
                continue
            if esc == "\\s":
                out.append(space if in_class else f"[{space}]")
            elif esc == "\\w":
                out.append(word if in_class else f"[{word}]")
            else:
                raise ValueError(f"unhandled escape {esc!r}")
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append(c)
            elif c == " ":
                out.append(r"\x20")
            elif c in "[&~" and not for_python:
                out.append("\\" + c)
            elif c == "-" and p[i + 1] == "-":
                raise ValueError("'--' in a class")
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            # a leading ']' or '^' is literal / negation: copy as is
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == "#":
            while i < len(p) and p[i] != "\n":
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


rng = random.Random(0)
for name, rx in [("ftfy_badness.regex", ftfy.badness.BADNESS_RE), ("ftfy_utf8_detector.regex", ftfy.chardata.UTF8_DETECTOR_RE)]:
    assert rx.flags & re.VERBOSE
    plain_py = re.compile(deverbose(rx.pattern, True))
    chars = sorted(set(c for c in rx.pattern if ord(c) > 0x7F)) + list("aAzZ .,?!-_\n\t1")
    for _ in range(20000):
        s = "".join(rng.choice(chars) for _ in range(rng.randint(1, 12)))
        assert [m.span() for m in rx.finditer(s)] == [m.span() for m in plain_py.finditer(s)], s
    with open(name, "w", encoding="utf-8", newline="\n") as f:
        f.write(deverbose(rx.pattern, False))
print("ok")

"""Regenerates clip_cases.json: extra reference cases for the CLIP tokenizer port (beyond
tests/fixtures/tokenizer_clip), computed by the Python implementations themselves.

Needs CPython 3.11 with ftfy 6.3.1, regex, transformers 4.45.2 (tokenizers 0.20) and the
`open_clip/tokenizer.py` + `bpe_simple_vocab_16e6.txt.gz` of open_clip_torch 3.3.0
(`pip download open_clip_torch==3.3.0 --no-deps`, unzipped into OPEN_CLIP_DIR; torch is not
needed: it is stubbed while the module is imported).

    OPEN_CLIP_DIR=/path/to/unzipped/wheel python gen_clip_cases.py

Each case: `text`, `ftfy` (ftfy.fix_text), `unescape` (html.unescape), `openclip`
(SimpleTokenizer.encode: BPE ids without SOT/EOT), `hf_slow` / `hf_fast` (CLIPTokenizer /
CLIPTokenizerFast(tokenizer.json) ids with add_special_tokens=False).
"""
import html
import importlib.util
import json
import os
import random
import sys
import tempfile
import types

from transformers import CLIPTokenizer  # import before the torch stub
from tokenizers import Tokenizer
import ftfy

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "../../../../tests/fixtures/tokenizer_clip/tokenizer.json")
OC = os.environ["OPEN_CLIP_DIR"]

sys.modules["torch"] = types.SimpleNamespace(LongTensor=object, Tensor=object)
spec = importlib.util.spec_from_file_location("octok", os.path.join(OC, "open_clip/tokenizer.py"))
octok = importlib.util.module_from_spec(spec)
spec.loader.exec_module(octok)
del sys.modules["torch"]

tj = json.load(open(FIX, encoding="utf-8"))
tmp = tempfile.mkdtemp()
json.dump(tj["model"]["vocab"], open(os.path.join(tmp, "vocab.json"), "w"))
with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n")
    for m in tj["model"]["merges"]:
        f.write((m if isinstance(m, str) else " ".join(m)) + "\n")
oc = octok.SimpleTokenizer()
slow = CLIPTokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
fast = Tokenizer.from_file(FIX)

texts = [
    # HTML
    "&amp; &AMP; &Amp; &NTILDE; &ntilde; &Ntilde; &#233; &#xE9; &#XE9; &#128; &#0; &#13; &#1;",
    "&amp;amp;amp;amp; &lt;b&gt; &quot;q&quot; &apos;",
    "<b>&amp;</b> &lt;",
    "first &amp;\nsecond <i>\nthird &amp; &ntilde;",
    "&copy &notit; &ampx &#65 &#x41 &#; &#x; &zz; & && &#9999999999; &#xD800; &#x110000;",
    "&#12ab; &#x41g; &abcdefghijklmnopqrstuvwxyz0123456789; &CounterClockwiseContourIntegral;",
    "&#1234567890123456789012345; &#x1F600; &#128512; &#xFDD0; &#xFFFE; &#x1FFFF; &#127;",
    # ftfy fixers
    "ﬁne ﬂoat ĳ ǅ ﬀ ﬃ ﬄ ﬅ ﬆ ŉ",
    "“double” ‘single’ ‛rev‟ ʼapostrophe ‚low„",
    "ＡＢＣ　ｘｙｚ１２３！＃＄％ half ｶﾀｶﾅ ￠￡￥ ￨￭ ﾠ",
    "\x1b[31mred\x1b[0m \x1b[1;32mbold\x1b[m \x1b[x",
    "windows\r\nline\rmac\u2028ls\u2029ps\x85nel",
    "\ufeffbom \u200bzero\u200cwidth\u200djoiner \u2060wj \u206aiss \ufff9ann",
    "ctrl\x00\x01\x02\x07\x08\x0b\x0e\x1f\x7f end",
    "c1 \x80 \x85 \x91\x92 \x93\x94 \x81 \x8d \x9d \x9f",
    "cafe\u0301 n\u0303 A\u030a \u1100\u1161\u11a8",
    # mojibake
    "cafÃ©", "Ã©tÃ© Ã  Paris", "âœ” No problems", "The Mona Lisa doesnâ€™t have eyebrows.",
    "voilÃ le travail", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Ã¼ber naÃ¯ve", "dÃ©jÃ vu â€œquoteâ€\x9d",
    "&macr;\\_(ã\x83\x84)_/&macr;", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!",
    "ÃƒÂ©", "Ã¢â‚¬â„¢", "naïve café façade", "£100 €50 ¥20 ©2024 ®™ °C ±½ ×÷",
    "Ð”Ð¾Ð±Ñ€Ð¾", "â€” dash â€“", "It's Ã©lÃ¨ve", "Ã\xa0 la carte",
    # unicode
    "ΟΔΟΣ ΣΟΦΟΣ Σ ΑΣ. ΑΣ-Β", "İstanbul ıI", "STRASSE ß ẞ", "\u0345 \u0399\u0345",
    "'ſ 'S 'T 'RE 'VE 'M 'LL 'D", "Kelvin \u212a Ohm \u2126 Å",
    "Ⅻ ⅻ x² ⓐⒶ ½ ① ٣٤٥ ߁ ໒ 𝟘", "𝐀𝐁𝐂 𝒶𝒷 ℌ", "日本語 中文 한국어 ᄀ ㄱ",
    "العربية עברית हिन्दी ไทย", "क्षत्रिय मानक", "emoji 👩‍👩‍👧‍👦 🇫🇷 1️⃣ 👍🏿 ❤️‍🔥",
    "\ue000 private \U000F0000 \ufdd0 \uffff \U0001FFFE", "\u0378 unassigned \U000E0001 tag",
    "a\u0300\u0301\u0302\u0303\u0304", "\u0300start", "x\u20dd y\u20e3",
    # special tokens
    "<|startoftext|> <|endoftext|>", "<|ENDOFTEXT|> <|EndOfText|>", "<start_of_text><end_of_text>",
    "<END_OF_TEXT> <Start_Of_Text>", "a<end_of_text>b !<end_of_text> x<|endoftext|>y",
    "<|endoftext|><|endoftext|><|startoftext|>", "<|endof<|endoftext|>text|>", "<|ſtartoftext|>",
    "<|endoftext|>", "<end_of_text>", " <|endoftext|> ",
    # contractions / punctuation
    "it's I'M we'LL they'D you'RE I'VE don'T", "''s 's's rock'n'roll y'all'd've",
    "'", "''", "' s", "!!!'s", "a-b_c.d/e\\f|g~h`i^j", "(((nested))) [[x]] {{y}}",
    # numbers
    "1234567890", "3.14e-10 1,000,000 -5", "１２３ ٣ ४२",
    # whitespace
    "", " ", "\t\n\r", "\x1c\x1d\x1e\x1f", "a\x1cb\x1dc", "\u3000", "\u2003em\u2009thin\u200a",
    "\u180emongolian\u180e", "\xa0nbsp\xa0", "  a  \n\n  b  ",
    # length
    " ".join(["a"] * 74), " ".join(["a"] * 75), " ".join(["a"] * 76), " ".join(["a"] * 77),
    "supercalifragilisticexpialidocious " * 20, "x" * 300, "ab" * 200, "日本" * 100,
    "word, " * 60,
]

rng = random.Random(0)
pool = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" \t\n  ''\".,;:!?-_()[]{}<>/&#@%*+=|\\~`^$")
    + list("éèêëàâäôöûüçñßøåæœÉÈÀÇÑ")
    + list("αβγΣσςΩдлжЖЯ日本語中文한국어ภาษาहिन्दी")
    + ["&amp;", "&lt;", "&#233;", "&#x41;", "<|endoftext|>", "<end_of_text>", "'s", "'T"]
    + list("\u0301\u0308\u200b\u200d\ufe0f\u00a0\u3000\uff21\uff41\uff11\ufb01\u201c\u201d\u2018\u2019")
    + ["😀", "🔥", "👍🏽", "❤️", "🇯🇵", "\x1b[1m", "\r\n", "\x00", "\x85", "\x93", "Ã©", "â€™"]
)
for _ in range(200):
    n = rng.randint(0, 40)
    texts.append("".join(rng.choice(pool) for _ in range(n)))

cases = []
for t in texts:
    cases.append(
        {
            "text": t,
            "ftfy": ftfy.fix_text(t),
            "unescape": html.unescape(t),
            "openclip": oc.encode(t),
            "hf_slow": slow.encode(t, add_special_tokens=False),
            "hf_fast": fast.encode(t, add_special_tokens=False).ids,
        }
    )
meta = {
    "generator": "assets/testdata/gen_clip_cases.py",
    "versions": {
        "python": sys.version.split()[0],
        "ftfy": ftfy.__version__,
        "transformers": __import__("transformers").__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "open_clip": "3.3.0 (tokenizer.py)",
    },
    "cases": cases,
}
with open(os.path.join(HERE, "clip_cases.json"), "w", encoding="utf-8") as f:
    json.dump(meta, f, ensure_ascii=True, indent=0)
print(len(cases), "cases")

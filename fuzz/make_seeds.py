#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (small, valid and near-valid inputs).

Needs torch and Pillow. Run from the repository root: `python3 fuzz/make_seeds.py`.
The files are committed; rerunning rewrites them (torch versions may change the bytes).
The seeds of target `gguf` are not written here but by faceclip-core's own GGUF writer:
`FACECLIP_WRITE_GGUF_SEEDS=1 cargo test -p faceclip-core --test gguf` (that test also checks
that the committed ones are what the writer gives).
"""

import io
import json
import os
import shutil
import struct
import zipfile

import torch
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- safetensors
def st(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] in order."""
    header, blob, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blob += data
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
out("safetensors", "f32_2x3", st([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))]))
out("safetensors", "mixed", st([
    ("a.weight", "F16", [2], struct.pack("<2e", 1.5, -2.0)),
    ("a.bias", "BF16", [2], b"\x80\x3f\x00\xc0"),
    ("b", "F64", [1], struct.pack("<d", 3.25)),
    ("ids", "I64", [3], struct.pack("<3q", 1, -2, 3)),
    ("i32", "I32", [1], struct.pack("<i", 7)),
    ("mask", "BOOL", [2], b"\x01\x00"),
    ("u8", "U8", [2], b"\x05\xff"),
    ("i8", "I8", [1], b"\xfe"),
    ("u16", "U16", [1], b"\x01\x00"),
    ("fp8", "F8_E4M3", [2], b"\x38\x40"),
], metadata={"format": "pt"}))
out("safetensors", "scalar_and_empty", st([("s", "F32", [], f32(2.0)), ("e", "F32", [0, 4], b"")]))
out("safetensors", "no_tensors", st([], metadata={}))
good = st([("w", "F32", [2, 2], f32(1, 2, 3, 4))])
out("safetensors", "truncated", good[:-3])
out("safetensors", "header_past_end", struct.pack("<Q", 1 << 40) + good[8:])
bad = json.dumps({"w": {"dtype": "F32", "shape": [1 << 62, 8], "data_offsets": [0, 16]}}).encode()
out("safetensors", "shape_overflow", struct.pack("<Q", len(bad)) + bad + b"\0" * 16)
bad = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}).encode()
out("safetensors", "offsets_past_end", struct.pack("<Q", len(bad)) + bad + b"\0" * 16)

# ---------------------------------------------------------------- pytorch
def save(obj, **kw):
    b = io.BytesIO()
    torch.save(obj, b, **kw)
    return b.getvalue()


torch.manual_seed(0)
out("pytorch", "f32_state_dict", save({"w": torch.randn(2, 3), "b": torch.zeros(2)}))
out("pytorch", "mixed_dtypes", save({
    "h": torch.ones(2, dtype=torch.float16), "bf": torch.ones(2, dtype=torch.bfloat16),
    "d": torch.ones(1, dtype=torch.float64), "l": torch.arange(3), "m": torch.tensor([True, False]),
    "u8": torch.tensor([1, 255], dtype=torch.uint8), "i8": torch.tensor([-1], dtype=torch.int8),
    "i16": torch.tensor([-2], dtype=torch.int16), "i32": torch.tensor([3], dtype=torch.int32),
    "s": torch.tensor(1.5)}))
x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
out("pytorch", "views", save({"t": x.t(), "row": x[1], "pos": torch.arange(5).expand(1, -1)}))
out("pytorch", "nested", save({"state_dict": {"enc": {"w": torch.ones(2)}}, "epoch": 3, "cfg": {"lr": 0.1, "name": "x"}}))
out("pytorch", "legacy", save({"w": torch.ones(2, 2)}, _use_new_zipfile_serialization=False))
out("pytorch", "param", save({"p": torch.nn.Parameter(torch.ones(3))}))
out("pytorch", "linear_module", save(torch.nn.Linear(2, 2)))
reader_data = os.path.expanduser("~/.cargo/registry/src")
for d in os.listdir(reader_data):
    src = os.path.join(reader_data, d, "pytorch-reader-0.22.1/src/tests/test_data")
    if os.path.isdir(src):
        for name in ["protocol4.pt", "legacy_with_offsets.pt", "legacy_shared_storage.pt", "tar_float32.tar"]:
            shutil.copy(os.path.join(src, name), os.path.join(ROOT, "pytorch", "reader_" + name.replace(".", "_")))
        break


def zip_pt(pickle_bytes, extra=()):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for n, d in extra:
            z.writestr(n, d)
    return b.getvalue()


# os.system("touch /tmp/faceclip-pwned") as the root object (GLOBAL + REDUCE, protocol 2).
HOSTILE = b"\x80\x02cos\nsystem\nq\x00X\x19\x00\x00\x00touch /tmp/faceclip-pwnedq\x01\x85q\x02Rq\x03."
out("pytorch", "hostile_os_system", zip_pt(HOSTILE))

# ---------------------------------------------------------------- tokenizers
texts = {
    "prompt": "a portrait photo of a person in a garden, 85mm, bokeh",
    "faceclip": "A photo of id, smiling",
    "unicode": "Ｆｕｌｌｗｉｄｔｈ “quotes” — ﬁ ligature café naïve 日本語 😀 \u0301e\u200b",
    "html": "&amp;amp; &lt;b&gt; &#x27;it&#39;s&#x27; &nbsp;&hellip; &notanentity;",
    "mojibake": "Ã©tÃ© â€œquotedâ€\x9d Ã¼ber",
    "specials": "<|startoftext|>hi<|endoftext|> <start_of_text> </s> <pad>",
    "long": " ".join(["word%d" % i for i in range(120)]),
    "whitespace": " \t\n\r  \u3000\u00a0 ",
    "empty": "",
}
for k, v in texts.items():
    out("tokenizers", k, v.encode())
out("tokenizers", "invalid_utf8", b"caf\xe9 \xff\xfe \xc3")

# ---------------------------------------------------------------- tokenizer.json
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
with open(os.path.join(here, "t5_tiny_tokenizer.json"), "rb") as f:
    out("tokenizer_json", "t5_tiny_tokenizer", f.read())
# The real CLIP vocabulary cut to its 512 byte symbols, 88 merges and the two specials.
with open(os.path.join(here, "..", "..", "tests", "fixtures", "tokenizer_clip", "tokenizer.json")) as f:
    clip = json.load(f)
N = 600
m = clip["model"]
m["vocab"] = {k: v for k, v in m["vocab"].items() if v < N}
m["vocab"].update({"<|startoftext|>": N, "<|endoftext|>": N + 1})
m["merges"] = m["merges"][: N - 512]
clip["added_tokens"][0]["id"], clip["added_tokens"][1]["id"] = N, N + 1
clip["post_processor"]["cls"], clip["post_processor"]["sep"] = ["<|startoftext|>", N], ["<|endoftext|>", N + 1]
out("tokenizer_json", "clip_tiny_tokenizer", json.dumps(clip, ensure_ascii=False).encode())
out("tokenizer_json", "not_json", b"{\"model\": ")

# ---------------------------------------------------------------- images
def img_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


face = Image.open(os.path.join(os.path.dirname(here), "..", "demo", "models", "face.png")).convert("RGB")
small = face.resize((24, 24))
out("image", "face_24.png", img_bytes(small, "PNG"))
out("image", "face_24.jpg", img_bytes(small, "JPEG", quality=70))
out("image", "face_24_progressive.jpg", img_bytes(small, "JPEG", quality=60, progressive=True))
out("image", "face_24.webp", img_bytes(small, "WEBP", quality=50))
out("image", "face_16_lossless.webp", img_bytes(face.resize((16, 16)), "WEBP", lossless=True))
out("image", "grey_8.png", img_bytes(small.convert("L").resize((8, 8)), "PNG"))
out("image", "rgba_8.png", img_bytes(small.convert("RGBA").resize((8, 8)), "PNG"))
out("image", "palette_8.png", img_bytes(small.resize((8, 8)).convert("P"), "PNG"))
out("image", "grey16_4.png", img_bytes(Image.new("I;16", (4, 4), 40000), "PNG"))
out("image", "one_pixel.png", img_bytes(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"))
out("image", "wide_40x3.png", img_bytes(face.resize((40, 3)), "PNG"))
print("seeds written under", ROOT)

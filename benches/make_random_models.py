#!/usr/bin/env python3
"""Writes a full-size model folder with random weights, in the layout `faceclip sdxl|flux
--models DIR` reads, from the manifests in tests/manifests (exact tensor names, shapes and
configs of the released checkpoints). For peak-memory measurements of a real generation
without downloading anything: the images are noise.

    python3 benches/make_random_models.py /tmp/faceclip-random-sdxl
    python3 benches/make_random_models.py --flux /tmp/faceclip-random-flux

Needs numpy only. SDXL: about 15 GB (f32): UNet 10.3 GB, FaceCLIP encoder, VAE. FLUX
(`--flux`, bfloat16 as released): about 36 GB: transformer 23.8 GB, FaceT5 encoder 12.5 GB,
VAE. Tensors are written one at a time, never the whole file in memory.
"""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = os.path.join(ROOT, "tests", "manifests")
DTYPES = {"float32": ("F32", np.float32), "float16": ("F16", np.float16), "bfloat16": ("F32", np.float32),
          "int64": ("I64", np.int64)}
# --flux keeps the released bfloat16 (stored as its upper 16 bits, rounded to nearest even).
BF16 = ("BF16", np.uint16)


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, seed, bf16=False):
    """Streams tensors to `path` one at a time (never the whole file in memory)."""
    rng = np.random.default_rng(seed)
    header, offset = {}, 0

    def dtype(spec):
        if bf16 and spec["dtype"] == "bfloat16":
            return BF16
        return DTYPES.get(spec["dtype"], ("F32", np.float32))

    for name, spec in tensors.items():
        st, np_t = dtype(spec)
        n = int(np.prod(spec["shape"], dtype=np.int64))
        size = n * np.dtype(np_t).itemsize
        header[name] = {"dtype": st, "shape": spec["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, spec in tensors.items():
            st, np_t = dtype(spec)
            shape = spec["shape"]
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if np_t == np.int64:
                a = np.zeros(shape or [], dtype=np.int64)
            elif name.endswith("running_var") or (len(shape) == 1 and name.endswith("weight")):
                a = 1.0 + 0.02 * rng.standard_normal(shape or [1], dtype=np.float32)
            else:
                a = rng.standard_normal(shape or [1], dtype=np.float32) / np.sqrt(max(fan_in, 1))
            f.write((to_bf16(a) if st == "BF16" else a.astype(np_t)).tobytes())
    os.replace(tmp, path)


def manifest(name):
    with open(os.path.join(MANIFESTS, name + ".json")) as f:
        return json.load(f)


def write_missing(jobs, bf16=False):
    """Writes each (path, tensors, seed) whose file does not exist yet."""
    for path, tensors, seed in jobs:
        if not os.path.exists(path):
            print(f"writing {path} ({len(tensors)} tensors)", flush=True)
            write_safetensors(path, tensors, seed, bf16=bf16)


def write_config(path, cfg):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)


def flux(out):
    """FaceT5-FLUX: FaceCLIP/model/{dit,face_t5_encoder}.safetensors, FLUX.1-dev/{transformer
    config, vae, scheduler}; the T5 tokenizer and scheduler config of the demo folder."""
    fc = os.path.join(out, "FaceCLIP", "model")
    dev = os.path.join(out, "FLUX.1-dev")
    demo = os.path.join(ROOT, "demo", "models")
    dit, vae, enc = manifest("flux_transformer"), manifest("flux_vae"), manifest("facet5_encoder_full")
    write_config(os.path.join(dev, "transformer", "config.json"), dit["config"])
    write_config(os.path.join(dev, "vae", "config.json"), vae["config"])
    for rel in ["FLUX.1-dev/scheduler/scheduler_config.json", "FaceCLIP/model/tokenizer/tokenizer.json"]:
        with open(os.path.join(demo, rel)) as f:
            text = f.read()
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), "w") as f:
            f.write(text)
    jobs = [(os.path.join(dev, "vae", "diffusion_pytorch_model.safetensors"), vae["tensors"], 4),
            (os.path.join(fc, "face_t5_encoder.safetensors"), enc["tensors"], 5),
            (os.path.join(fc, "dit.safetensors"), dit["tensors"], 6)]
    write_missing(jobs, bf16=True)
    print(out)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--flux"] and len(args) == 2:
        return flux(args[1])
    if len(args) != 1:
        sys.exit(__doc__)
    out = args[0]
    fc = os.path.join(out, "FaceCLIP", "model")
    sdxl = os.path.join(out, "stable-diffusion-xl-base-1.0")
    for d in [fc, os.path.join(sdxl, "unet"), os.path.join(sdxl, "vae"), os.path.join(sdxl, "scheduler")]:
        os.makedirs(d, exist_ok=True)
    unet, vae, enc = manifest("sdxl_unet"), manifest("sdxl_vae"), manifest("faceclip_encoder_full")
    for path, cfg in [(os.path.join(sdxl, "unet", "config.json"), unet["config"]),
                      (os.path.join(sdxl, "vae", "config.json"), vae["config"])]:
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
    with open(os.path.join(sdxl, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                   "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "epsilon",
                   "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear",
                   "use_karras_sigmas": False}, f, indent=1)
    jobs = [(os.path.join(sdxl, "vae", "diffusion_pytorch_model.safetensors"), vae["tensors"], 1),
            (os.path.join(fc, "face_clip_encoder.safetensors"), enc["tensors"], 2),
            (os.path.join(fc, "unet.safetensors"), unet["tensors"], 3)]
    write_missing(jobs)
    print(out)


if __name__ == "__main__":
    main()

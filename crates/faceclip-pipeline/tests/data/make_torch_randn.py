#!/usr/bin/env python3
"""Writes torch_randn.safetensors: reference `torch.randn` outputs on the CPU generator.

Checked by crates/faceclip-pipeline/tests/torch_rng.rs against `TorchGenerator`.

PyTorch's CPU `normal_` has two float32 kernels for tensors of 16 or more elements: the AVX2
one (any x86-64 CPU with AVX2 + FMA; AVX-512 CPUs use it too) and the portable one
(`ATEN_CPU_CAPABILITY=default`, non-x86 builds). Smaller tensors take a float64 scalar path.
This script records both kernels: it runs itself a second time in a child process with
`ATEN_CPU_CAPABILITY=default`.

Tensors are named `<kernel>/<case>/<draw>`; the `cases` metadata entry (JSON) lists every
case: its kernel, seed and the names of its consecutive draws from one generator.

    python3 make_torch_randn.py            # writes torch_randn.safetensors beside this file
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

SEEDS = [453563, 0, 2**32 + 5, 0xDEADBEEF_CAFEF00D]
SHAPES = [[1], [2], [7], [15], [16], [17], [31], [100], [1000], [1, 4, 8, 8], [1, 16, 8, 8]]
# consecutive draws from one generator (the scalar path caches its second normal)
SEQUENCES = [
    [[5], [20]],
    [[20], [5]],
    [[3], [3], [1]],
    [[5], [20], [5]],
    [[17], [17]],
    [[1], [16], [1]],
]
BIG = [1, 16, 32, 32]
UPSTREAM_SEED = 453563
NOISE_SHAPE = [4, 8, 8]  # per-image [C, H, W] for the diffusers-style batch of two


def shape_name(shape):
    return "x".join(str(d) for d in shape)


def cases_for(kernel):
    """(name, seed, [shapes]) of every case, and the tensors of one kernel."""
    tensors, cases = {}, []

    def run(name, seed, shapes):
        g = torch.Generator().manual_seed(seed)
        draws = []
        for i, shape in enumerate(shapes):
            key = f"{kernel}/{name}/{i}"
            tensors[key] = torch.randn(shape, generator=g, dtype=torch.float32).contiguous()
            draws.append(key)
        cases.append({"kernel": kernel, "name": name, "seed": seed, "draws": draws})

    for seed in SEEDS:
        for shape in SHAPES:
            run(f"seed{seed}_{shape_name(shape)}", seed, [shape])
    for seq in SEQUENCES:
        run(f"seq_{'_'.join(shape_name(s) for s in seq)}", UPSTREAM_SEED, seq)
    run(f"seed{UPSTREAM_SEED}_{shape_name(BIG)}", UPSTREAM_SEED, [BIG])

    # diffusers `randn_tensor` with one generator per image: image i from seed + i
    key = f"{kernel}/noise_n2/0"
    tensors[key] = torch.cat(
        [
            torch.randn([1, *NOISE_SHAPE], generator=torch.Generator().manual_seed(UPSTREAM_SEED + i))
            for i in range(2)
        ]
    )
    cases.append({"kernel": kernel, "name": "noise_n2", "seed": UPSTREAM_SEED, "draws": [key],
                  "initial_noise": {"n": 2, "chw": NOISE_SHAPE}})
    return tensors, cases


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        # child: the portable kernel, forced by ATEN_CPU_CAPABILITY=default
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        tensors, cases = cases_for("default")
        save_file(tensors, sys.argv[2], metadata={"cases": json.dumps(cases)})
        return

    cap = torch.backends.cpu.get_cpu_capability()
    if cap not in ("AVX2", "AVX512"):
        sys.exit(f"needs an x86-64 CPU with AVX2 (torch reports {cap})")
    tensors, cases = cases_for("avx2")
    with tempfile.TemporaryDirectory() as tmp:
        child_out = os.path.join(tmp, "default.safetensors")
        env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
        subprocess.run([sys.executable, __file__, "--child", child_out], env=env, check=True)
        from safetensors import safe_open

        with safe_open(child_out, "pt") as f:
            child_cases = json.loads(f.metadata()["cases"])
        tensors.update(load_file(child_out))
        cases += child_cases

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_randn.safetensors")
    meta = {"cases": json.dumps(cases), "torch": torch.__version__}
    save_file(tensors, out, metadata=meta)
    print(f"wrote {out}: {len(tensors)} tensors, {len(cases)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()

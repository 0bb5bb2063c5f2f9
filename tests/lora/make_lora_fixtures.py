#!/usr/bin/env python3
"""Writes the LoRA fixtures under tests/lora/ (see README.md beside this file).

For each LoRA layout the Rust loader reads, one folder holds:

- lora.safetensors: a LoRA in that layout, random values, on the tiny base model of
  tests/fixtures/unet_sdxl or tests/fixtures/flux_transformer (their weights.safetensors is
  the base; it is not copied);
- fused.safetensors: the base tensors the LoRA touched, after diffusers'
  load_lora_weights(lora.safetensors) + fuse_lora(lora_scale=scale), float32;
- meta.json: layout, base fixture, scale, versions, and how the reference was produced.

Run from anywhere: python tests/lora/make_lora_fixtures.py
"""

import json
import os
import sys

import diffusers
import numpy
import peft
import safetensors
import torch
import transformers
from diffusers import FluxTransformer2DModel, UNet2DConditionModel
from diffusers.loaders import FluxLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
RANK = 4

VERSIONS = {
    "torch": torch.__version__,
    "diffusers": diffusers.__version__,
    "peft": peft.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": numpy.__version__,
}


# --- base models --------------------------------------------------------------------------


def base_config(name):
    with open(os.path.join(FIXTURES, name, "meta.json")) as f:
        return json.load(f)["config"]


def base_weights(name):
    return load_file(os.path.join(FIXTURES, name, "weights.safetensors"))


def new_unet():
    unet = UNet2DConditionModel(**base_config("unet_sdxl"))
    unet.load_state_dict(base_weights("unet_sdxl"), strict=True)
    return unet.eval()


def new_flux():
    model = FluxTransformer2DModel(**base_config("flux_transformer"))
    model.load_state_dict(base_weights("flux_transformer"), strict=True)
    return model.eval()


class SdxlLoras(StableDiffusionXLLoraLoaderMixin):
    """The pipeline-side LoRA entry points of StableDiffusionXLPipeline, holding a UNet only."""

    def __init__(self, unet):
        self.unet = unet
        self.text_encoder = None
        self.text_encoder_2 = None
        self.num_fused_loras = 0
        self.hf_device_map = None

    @property
    def components(self):
        return {"unet": self.unet}


class FluxLoras(FluxLoraLoaderMixin):
    """The pipeline-side LoRA entry points of FluxPipeline, holding a transformer only."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.text_encoder = None
        self.num_fused_loras = 0
        self.hf_device_map = None

    @property
    def components(self):
        return {"transformer": self.transformer}


def fused_state(model):
    """The model's weights after fuse_lora, under the base names (PEFT wrappers removed)."""
    out = {}
    for k, v in model.state_dict().items():
        if ".lora_" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v.detach().clone()
    return out


def fuse(kind, path, scale):
    """diffusers' load_lora_weights(path) + fuse_lora(lora_scale=scale) on a fresh base model."""
    if kind == "unet_sdxl":
        model = new_unet()
        loader = SdxlLoras(model)
        component = "unet"
    else:
        model = new_flux()
        loader = FluxLoras(model)
        component = "transformer"
    loader.load_lora_weights(path, adapter_name="fixture")
    loader.fuse_lora(components=[component], lora_scale=scale)
    return fused_state(model)


def touched(kind, fused):
    base = base_weights(kind)
    assert set(base) == set(fused), sorted(set(base) ^ set(fused))
    return {k: v.contiguous() for k, v in fused.items() if not torch.equal(v, base[k])}


# --- random LoRA factors ------------------------------------------------------------------


class Factors:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape):
        return (0.2 * torch.randn(*shape, generator=self.g)).float()

    def pair(self, weight_shape, rank=RANK):
        """(down, up) for a base weight: linear [out, in] or conv [out, in, kh, kw]."""
        out, inp = weight_shape[0], weight_shape[1]
        if len(weight_shape) == 4:
            return self.randn(rank, inp, *weight_shape[2:]), self.randn(out, rank, 1, 1)
        return self.randn(rank, inp), self.randn(out, rank)


def shapes(kind):
    return {k: list(v.shape) for k, v in base_weights(kind).items()}


def write(name, kind, layout, lora, scale, fused, notes):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lora.items()}, os.path.join(folder, "lora.safetensors"))
    save_file(fused, os.path.join(folder, "fused.safetensors"))
    meta = {
        "kind": "lora",
        "layout": layout,
        "base": kind,
        "scale": scale,
        "rank": RANK,
        "reference": "diffusers load_lora_weights + fuse_lora(lora_scale=scale) on the base "
        "fixture's model; fused.safetensors holds the base tensors the LoRA changed",
        "notes": notes,
        "versions": VERSIONS,
        "touched": sorted(fused),
    }
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{name}: {len(lora)} LoRA tensors, {len(fused)} fused tensors")


def check_targets(name, fused, expected):
    got = sorted(fused)
    want = sorted(f"{m}.weight" for m in expected)
    if got != want:
        sys.exit(f"{name}: diffusers touched {got}, expected {want}")


# --- SDXL UNet ----------------------------------------------------------------------------

# Diffusers module names of the tiny UNet that the SDXL fixtures target: attention
# projections, feed-forward, proj_in/out, resnet convolutions (3x3 and 1x1), time
# embedding projections, a downsampler convolution (few large convolutions: size).
SDXL_MODULES = [
    "down_blocks.0.resnets.0.conv1",
    "down_blocks.0.resnets.1.time_emb_proj",
    "down_blocks.0.downsamplers.0.conv",
    "down_blocks.1.resnets.0.conv_shortcut",
    "down_blocks.1.attentions.0.proj_in",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k",
    "down_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj",
    "down_blocks.1.attentions.1.transformer_blocks.0.ff.net.2",
    "mid_block.attentions.0.transformer_blocks.0.attn1.to_v",
    "mid_block.resnets.1.time_emb_proj",
    "up_blocks.0.attentions.2.proj_out",
    "up_blocks.0.resnets.2.conv_shortcut",
]


def sdxl_peft(tmp):
    """diffusers/PEFT layout: unet.<module>.lora_A.weight / lora_B.weight, no alpha (diffusers
    0.33.1 refuses SDXL files in this layout that carry `.alpha` keys)."""
    f, sh, lora = Factors(101), shapes("unet_sdxl"), {}
    for m in SDXL_MODULES:
        down, up = f.pair(sh[f"{m}.weight"])
        lora[f"unet.{m}.lora_A.weight"] = down
        lora[f"unet.{m}.lora_B.weight"] = up
    return lora, SDXL_MODULES, 0.7, "no alpha: alpha = rank"


def kohya_name(module):
    return "lora_unet_" + module.replace(".", "_")


def sdxl_kohya(tmp):
    """kohya layout with diffusers module names: lora_unet_<module>.lora_down/lora_up + .alpha."""
    f, sh, lora = Factors(202), shapes("unet_sdxl"), {}
    for m in SDXL_MODULES:
        # One module of rank 8; alphas: 2.0 for most, 8.0 for two non-attention modules.
        # (diffusers 0.33.1 keys the alpha of attention projections so that a per-module alpha
        # different from the file's most common one is not applied there; the fixture keeps
        # attention projections at the common alpha.)
        rank = 8 if m.endswith("ff.net.0.proj") else RANK
        down, up = f.pair(sh[f"{m}.weight"], rank)
        name = kohya_name(m)
        lora[f"{name}.lora_down.weight"] = down
        lora[f"{name}.lora_up.weight"] = up
        alpha = 8.0 if m.endswith(("ff.net.2", "conv_shortcut")) else 2.0
        lora[f"{name}.alpha"] = torch.tensor(alpha)
    return lora, SDXL_MODULES, 0.8, "alpha 2.0 (8.0 for ff.net.2 and conv_shortcut); one rank-8 module"


# Original (SGM / kohya sd-scripts SDXL) names -> diffusers modules of the tiny UNet
# (layers_per_block 2: input_blocks 1-2 / 3 (op) / 4-5, middle_block 0-2, output_blocks 0-5).
SGM_MODULES = {
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "input_blocks_2_0_emb_layers_1": "down_blocks.0.resnets.1.time_emb_proj",
    "input_blocks_3_0_op": "down_blocks.0.downsamplers.0.conv",
    "input_blocks_4_0_skip_connection": "down_blocks.1.resnets.0.conv_shortcut",
    "input_blocks_1_0_out_layers_3": "down_blocks.0.resnets.0.conv2",
    "input_blocks_4_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "input_blocks_5_1_proj_in": "down_blocks.1.attentions.1.proj_in",
    "input_blocks_5_1_transformer_blocks_1_attn2_to_out_0": "down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_out.0",
    "middle_block_0_emb_layers_1": "mid_block.resnets.0.time_emb_proj",
    "middle_block_1_transformer_blocks_0_ff_net_0_proj": "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
    "middle_block_2_emb_layers_1": "mid_block.resnets.1.time_emb_proj",
    "output_blocks_1_1_transformer_blocks_0_attn1_to_k": "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_k",
    "output_blocks_2_1_proj_out": "up_blocks.0.attentions.2.proj_out",
    "output_blocks_2_2_conv": "up_blocks.0.upsamplers.0.conv",
    "output_blocks_4_0_in_layers_2": "up_blocks.1.resnets.1.conv1",
    "output_blocks_5_0_skip_connection": "up_blocks.1.resnets.2.conv_shortcut",
}


def sdxl_kohya_sgm(tmp):
    """kohya layout with the original SGM names: lora_unet_input_blocks_4_1_..., remapped by
    diffusers' _maybe_map_sgm_blocks_to_diffusers with the UNet config."""
    f, sh, lora = Factors(303), shapes("unet_sdxl"), {}
    for sgm, m in SGM_MODULES.items():
        down, up = f.pair(sh[f"{m}.weight"])
        name = f"lora_unet_{sgm}"
        lora[f"{name}.lora_down.weight"] = down
        lora[f"{name}.lora_up.weight"] = up
        lora[f"{name}.alpha"] = torch.tensor(8.0)
    return lora, list(SGM_MODULES.values()), 0.6, "alpha 8.0 everywhere"


# --- FLUX transformer ---------------------------------------------------------------------

FLUX_PEFT_MODULES = [
    "transformer_blocks.0.attn.to_q",
    "transformer_blocks.0.attn.to_k",
    "transformer_blocks.0.attn.to_v",
    "transformer_blocks.0.attn.to_out.0",
    "transformer_blocks.0.attn.add_k_proj",
    "transformer_blocks.1.attn.to_add_out",
    "transformer_blocks.0.ff.net.0.proj",
    "transformer_blocks.1.ff_context.net.2",
    "transformer_blocks.1.norm1.linear",
    "single_transformer_blocks.1.attn.to_q",
    "single_transformer_blocks.0.proj_mlp",
    "single_transformer_blocks.0.proj_out",
    "single_transformer_blocks.1.norm.linear",
    "x_embedder",
    "context_embedder",
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.guidance_embedder.linear_2",
    "norm_out.linear",
    "proj_out",
]


def flux_peft(tmp):
    """diffusers/PEFT layout: transformer.<module>.lora_A/lora_B + transformer.<module>.alpha."""
    f, sh, lora = Factors(404), shapes("flux_transformer"), {}
    for m in FLUX_PEFT_MODULES:
        down, up = f.pair(sh[f"{m}.weight"])
        lora[f"transformer.{m}.lora_A.weight"] = down
        lora[f"transformer.{m}.lora_B.weight"] = up
        # Most modules alpha 8; a few (with names no other module ends with) alpha 2.
        alpha = 2.0 if m in ("transformer_blocks.0.attn.to_k", "single_transformer_blocks.1.norm.linear") else 8.0
        lora[f"transformer.{m}.alpha"] = torch.tensor(alpha)
    return lora, FLUX_PEFT_MODULES, 1.3, "alpha 8.0 (2.0 for two modules)"


# kohya / sd-scripts FLUX names (BFL modules) that diffusers 0.33.1 converts on a model of any
# size -> the diffusers modules they land on. Fused qkv: split in thirds.
KOHYA_FLUX_DIRECT = {
    "double_blocks_0_img_attn_qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"],
    "double_blocks_0_img_attn_proj": ["transformer_blocks.0.attn.to_out.0"],
    "double_blocks_0_img_mlp_0": ["transformer_blocks.0.ff.net.0.proj"],
    "double_blocks_1_img_mlp_2": ["transformer_blocks.1.ff.net.2"],
    "double_blocks_0_img_mod_lin": ["transformer_blocks.0.norm1.linear"],
    "double_blocks_1_txt_attn_qkv": ["transformer_blocks.1.attn.add_q_proj", "transformer_blocks.1.attn.add_k_proj", "transformer_blocks.1.attn.add_v_proj"],
    "double_blocks_1_txt_attn_proj": ["transformer_blocks.1.attn.to_add_out"],
    "double_blocks_0_txt_mlp_0": ["transformer_blocks.0.ff_context.net.0.proj"],
    "double_blocks_0_txt_mlp_2": ["transformer_blocks.0.ff_context.net.2"],
    "double_blocks_1_txt_mod_lin": ["transformer_blocks.1.norm1_context.linear"],
    "single_blocks_0_linear2": ["single_transformer_blocks.0.proj_out"],
    "single_blocks_1_modulation_lin": ["single_transformer_blocks.1.norm.linear"],
}

# kohya FLUX modules diffusers 0.33.1 does not load on this tiny model (single blocks' linear1
# is split with FLUX.1's hard-coded widths 3072/12288; the top-level modules are converted
# without the `transformer.` prefix, so the loader drops them, and without their alpha; the
# final adaLN's lora_down is half-swapped as well as its lora_up). Their reference is diffusers
# fusing the same factors written in diffusers' own layout: lora_A = lora_down, lora_B = the
# rows of lora_up that land on each module (halves swapped for norm_out.linear), alpha kept.
KOHYA_FLUX_EXTRA = {
    "single_blocks_1_linear1": ["single_transformer_blocks.1.attn.to_q", "single_transformer_blocks.1.attn.to_k", "single_transformer_blocks.1.attn.to_v", "single_transformer_blocks.1.proj_mlp"],
    "img_in": ["x_embedder"],
    "txt_in": ["context_embedder"],
    "time_in_in_layer": ["time_text_embed.timestep_embedder.linear_1"],
    "vector_in_out_layer": ["time_text_embed.text_embedder.linear_2"],
    "guidance_in_in_layer": ["time_text_embed.guidance_embedder.linear_1"],
    "final_layer_linear": ["proj_out"],
    "final_layer_adaLN_modulation_1": ["norm_out.linear"],
}


def kohya_flux_factors(f, sh, name, modules):
    """(down, up, alpha) for a kohya FLUX module whose up rows cover `modules` in order."""
    rows = [sh[f"{m}.weight"][0] for m in modules]
    inp = sh[f"{modules[0]}.weight"][1]
    if name == "double_blocks_1_txt_attn_qkv":
        # rank 12, up block-diagonal: diffusers' "sparse" split (down chunked, rank 4 each).
        rank = 3 * RANK
        down = f.randn(rank, inp)
        up = torch.zeros(sum(rows), rank)
        for j, r in enumerate(rows):
            up[j * r : (j + 1) * r, j * RANK : (j + 1) * RANK] = f.randn(r, RANK)
    else:
        rank = RANK
        down, up = f.randn(rank, inp), f.randn(sum(rows), rank)
    alpha = {"double_blocks_0_img_mlp_0": None, "double_blocks_1_txt_attn_qkv": 6.0}.get(name, 2.0)
    if name in ("single_blocks_1_linear1", "final_layer_adaLN_modulation_1", "img_in"):
        alpha = 16.0
    return down, up, alpha


def flux_kohya(tmp):
    """kohya / sd-scripts layout with BFL names: lora_unet_double_blocks_0_img_attn_qkv...,
    .lora_down/.lora_up + .alpha (one module without alpha: alpha = rank)."""
    f, sh = Factors(505), shapes("flux_transformer")
    lora, direct, extra_peft = {}, {}, {}
    for table, is_extra in ((KOHYA_FLUX_DIRECT, False), (KOHYA_FLUX_EXTRA, True)):
        for name, modules in table.items():
            down, up, alpha = kohya_flux_factors(f, sh, f"{name}", modules)
            key = f"lora_unet_{name}"
            lora[f"{key}.lora_down.weight"] = down
            lora[f"{key}.lora_up.weight"] = up
            if alpha is not None:
                lora[f"{key}.alpha"] = torch.tensor(alpha)
            if not is_extra:
                for k in ("lora_down.weight", "lora_up.weight", "alpha"):
                    if f"{key}.{k}" in lora:
                        direct[f"{key}.{k}"] = lora[f"{key}.{k}"]
                continue
            start = 0
            for m in modules:
                rows = sh[f"{m}.weight"][0]
                part = up[start : start + rows]
                if m == "norm_out.linear":
                    shift, scale = part.chunk(2, dim=0)
                    part = torch.cat([scale, shift], dim=0)
                extra_peft[f"transformer.{m}.lora_A.weight"] = down.clone()
                extra_peft[f"transformer.{m}.lora_B.weight"] = part
                extra_peft[f"transformer.{m}.alpha"] = torch.tensor(alpha if alpha is not None else float(RANK))
                start += rows
    scale = 0.9
    direct_path, extra_path = os.path.join(tmp, "kohya_direct.safetensors"), os.path.join(tmp, "kohya_extra.safetensors")
    save_file({k: v.contiguous() for k, v in direct.items()}, direct_path)
    save_file({k: v.contiguous() for k, v in extra_peft.items()}, extra_path)
    fused = touched("flux_transformer", fuse("flux_transformer", direct_path, scale))
    fused_extra = touched("flux_transformer", fuse("flux_transformer", extra_path, scale))
    assert not set(fused) & set(fused_extra)
    fused.update(fused_extra)
    modules = [m for t in (KOHYA_FLUX_DIRECT, KOHYA_FLUX_EXTRA) for ms in t.values() for m in ms]
    notes = (
        "alpha 2.0 for most modules, 16.0 for linear1 / final adaLN / img_in, none for img_mlp_0 "
        "(alpha = rank); txt_attn_qkv is rank 12 with a block-diagonal lora_up (diffusers' sparse "
        "split). Reference: diffusers on the file's double/single-block modules it converts "
        f"({', '.join(KOHYA_FLUX_DIRECT)}); for {', '.join(KOHYA_FLUX_EXTRA)} diffusers on the same "
        "factors in its own layout (see make_lora_fixtures.py: 0.33.1 cannot convert them here)"
    )
    return lora, modules, scale, notes, fused


# XLabs names -> diffusers modules (qkv: thirds of lora up).
XLABS_MODULES = {
    "double_blocks.0.processor.qkv_lora1": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"],
    "double_blocks.0.processor.proj_lora1": ["transformer_blocks.0.attn.to_out.0"],
    "double_blocks.1.processor.qkv_lora2": ["transformer_blocks.1.attn.add_q_proj", "transformer_blocks.1.attn.add_k_proj", "transformer_blocks.1.attn.add_v_proj"],
    "double_blocks.1.processor.proj_lora2": ["transformer_blocks.1.attn.to_add_out"],
    "single_blocks.0.processor.qkv_lora": ["single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k", "single_transformer_blocks.0.attn.to_v"],
    "single_blocks.1.processor.proj_lora": ["single_transformer_blocks.1.proj_out"],
}


def flux_xlabs(tmp):
    """XLabs layout: double_blocks.N.processor.{qkv,proj}_lora{1,2}.down/up.weight,
    single_blocks.N.processor.{qkv,proj}_lora...; no alpha."""
    f, sh, lora = Factors(606), shapes("flux_transformer"), {}
    for name, modules in XLABS_MODULES.items():
        rows = sum(sh[f"{m}.weight"][0] for m in modules)
        inp = sh[f"{modules[0]}.weight"][1]
        lora[f"{name}.down.weight"] = f.randn(RANK, inp)
        lora[f"{name}.up.weight"] = f.randn(rows, RANK)
    modules = [m for ms in XLABS_MODULES.values() for m in ms]
    return lora, modules, 0.75, "no alpha (XLabs has none: alpha = rank)"


def main():
    import tempfile

    torch.manual_seed(0)
    jobs = [
        ("sdxl_peft", "unet_sdxl", "diffusers-peft", sdxl_peft),
        ("sdxl_kohya", "unet_sdxl", "kohya", sdxl_kohya),
        ("sdxl_kohya_sgm", "unet_sdxl", "kohya-sgm", sdxl_kohya_sgm),
        ("flux_peft", "flux_transformer", "diffusers-peft", flux_peft),
        ("flux_kohya", "flux_transformer", "kohya-bfl", flux_kohya),
        ("flux_xlabs", "flux_transformer", "xlabs", flux_xlabs),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, layout, make in jobs:
            made = make(tmp)
            if len(made) == 5:
                lora, modules, scale, notes, fused = made
            else:
                lora, modules, scale, notes = made
                path = os.path.join(tmp, f"{name}.safetensors")
                save_file({k: v.contiguous() for k, v in lora.items()}, path)
                fused = touched(kind, fuse(kind, path, scale))
            check_targets(name, fused, modules)
            write(name, kind, layout, lora, scale, fused, notes)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch side of the Rust-vs-PyTorch comparison (issue #8); run by benches/compare-pytorch.sh.

Times the same components as the Rust `compare` program (benches/src/bin/compare.rs), at the
same full-size configurations and input shapes, on the CPU in float32:
`torch.set_num_threads(T)`, `torch.inference_mode()`, one warm-up forward, then the median of
`--reps` forwards. Prints one line per component on stdout:

    TORCH <component> ms=<median> min=<fastest>
    SKIP <component> reason=<why>        (never a made-up number)

plus one `INFO ...` line (torch version, threads). Progress goes to stderr.

Modules are the real upstream classes, randomly initialised by their own constructors (the
cost of a dense forward does not depend on the values; the Rust side uses a deterministic
random fill of the same scale):
- clip_l_text / clip_bigg_text: open_clip's text tower built by `_build_text_tower` from the
  `ViT-L-14-quickgelu` / `ViT-bigG-14` configs, exactly as FaceCLIP's `TextImageBranch` does
  (FaceCLIP's vendored open_clip when FACECLIP_REPO is set, else the pip `open_clip`);
- face_vit, fusion_l, fusion_bigg (and fusion_t5): FaceCLIP's own classes, imported from a
  checkout of bytedance/FaceCLIP named by the environment variable FACECLIP_REPO
  (`core.face_clip.face_vit.vit.VisionTransformer.from_pretrained`,
  `core.face_clip.face_clip.TextFaceEmbeddingFuser` built with TextImageBranch's arguments;
  GroundingDINO's multi-scale deformable attention runs its pure-PyTorch CPU path, the CUDA
  extension is not needed); SKIP when FACECLIP_REPO is unset or the import fails;
- t5_layer: transformers `T5EncoderModel` with the T5-XXL config cut to one layer, fed
  `inputs_embeds` (one block + final norm, like the Rust `forward_embeds`);
- flux_double / flux_single: diffusers `FluxTransformerBlock` / `FluxSingleTransformerBlock`
  (3072 wide, 24 heads x 128) with `FluxPosEmbed(10000, [16, 56, 56])` rotary embeddings;
- unet_sdxl (unet_sdxl_32, unet_sdxl_step), vae_decode: diffusers `UNet2DConditionModel` / `AutoencoderKL`
  built `from_config` with the configs in tests/manifests/sdxl_unet.json / sdxl_vae.json;
- scheduler_step: diffusers `EulerDiscreteScheduler`: construct, set_timesteps(50),
  scale_model_input, step, on a 1x4x144x108 latent (the Rust bench times the same four).

Usage: torch_reference.py [--only a,b] [--reps N] [--threads T]
Threads default to $FACECLIP_THREADS, else the number of cores. OMP_WAIT_POLICY defaults to
PASSIVE (see main(); set OMP_WAIT_POLICY=ACTIVE for torch's spinning default).
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(HERE, "..", "tests", "manifests")

DEFAULT = [
    "clip_l_text", "clip_bigg_text", "face_vit", "fusion_l", "fusion_bigg", "t5_layer",
    "flux_double", "flux_single", "unet_sdxl", "vae_decode", "scheduler_step",
]


class Skip(Exception):
    """A component that cannot be timed here; the message says why."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def manifest_config(name):
    with open(os.path.join(MANIFESTS, f"{name}.json")) as f:
        return json.load(f)["config"]


def clip_ids(torch):
    """The Rust benches' 77 token ids: SOT, 19 word tokens, EOT, zero padding."""
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, 0] = 49406
    for i in range(1, 20):
        ids[0, i] = 320 + i
    ids[0, 20] = 49407
    return ids


def faceclip_repo():
    repo = os.environ.get("FACECLIP_REPO")
    if not repo:
        raise Skip("FACECLIP_REPO is not set (a checkout of github.com/bytedance/FaceCLIP)")
    if not os.path.isdir(os.path.join(repo, "core", "face_clip")):
        raise Skip(f"FACECLIP_REPO={repo} holds no core/face_clip")
    for p in (repo, os.path.join(repo, "core", "face_clip", "GroundingDINO")):
        if p not in sys.path:
            sys.path.insert(0, p)
    return repo


def import_upstream(what, fn):
    faceclip_repo()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception as e:  # noqa: BLE001 - any import failure becomes a SKIP line
        raise Skip(f"importing {what} from FACECLIP_REPO failed: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------------------
# Builders: each returns a zero-argument callable running one forward.

def build_clip_text(torch, model_name):
    width = {"ViT-L-14-quickgelu": 768, "ViT-bigG-14": 1280}[model_name]
    src = None
    if os.environ.get("FACECLIP_REPO"):
        try:
            def load():
                from core.face_clip.open_clip.factory import get_model_config
                from core.face_clip.open_clip.model import _build_text_tower
                return get_model_config, _build_text_tower
            get_model_config, build_text_tower = import_upstream("FaceCLIP's open_clip", load)
            src = "FaceCLIP's vendored open_clip"
        except Skip as e:
            log(f"  ({e}; trying the pip open_clip)")
    if src is None:
        try:
            from open_clip.factory import get_model_config
            from open_clip.model import _build_text_tower as build_text_tower
            src = "pip open_clip"
        except Exception as e:  # noqa: BLE001
            raise Skip(f"open_clip is not importable ({e}): pip install open_clip_torch")
    cfg = get_model_config(model_name)
    if cfg is None:
        raise Skip(f"{src} has no config {model_name}")
    quick_gelu = cfg.get("quick_gelu", False)
    # As TextImageBranch: _build_text_tower(text_embed_dim, text_cfg, quick_gelu, cast_dtype);
    # cast_dtype None keeps float32.
    tower = build_text_tower(width, cfg["text_cfg"], quick_gelu, None).eval()
    log(f"  {model_name} text tower from {src}")
    ids = clip_ids(torch)
    return lambda: tower(ids)


def build_face_vit(torch):
    def load():
        from core.face_clip.face_vit.vit import VisionTransformer
        return VisionTransformer
    VisionTransformer = import_upstream("core.face_clip.face_vit.vit", load)
    vit = VisionTransformer.from_pretrained("").eval()
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    # forward's default dtype (bfloat16) casts the feature head; keep float32 like the Rust side.
    return lambda: vit(x, dtype=torch.float32)


def build_fusion(torch, width, variant="face_clip", text_len=77):
    def load():
        if variant == "face_clip":
            from core.face_clip.face_clip import TextFaceEmbeddingFuser
        else:
            from core.face_t5.face_t5 import TextFaceEmbeddingFuser
        return TextFaceEmbeddingFuser
    Fuser = import_upstream(f"core.{variant}.{variant}.TextFaceEmbeddingFuser", load)
    # The arguments TextImageBranch (FaceCLIP) / FaceT5Encoder give it.
    fuser = Fuser(
        d_model=width, nhead=8, num_queries=text_len, num_encoder_layers=6, num_unicoder_layers=0,
        num_decoder_layers=6, use_text_enhancer=True, use_fusion_layer=True,
        use_text_cross_attention=True, dim_feedforward=2048, dropout=0.0,
    ).eval()
    text = torch.rand(1, text_len, width) * 2 - 1
    text_pos = torch.rand(1, text_len, width) * 2 - 1
    face = torch.rand(1, 144, width) * 2 - 1
    face_pos = torch.rand(1, 144, width) * 2 - 1
    # text_self_attn_mask and face_cls_embed are never read by the fuser.
    return lambda: fuser(text, text_pos, None, None, face, face_pos)


def build_t5_layer(torch):
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=1, num_heads=64,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dropout_rate=0.0,
    )
    model = T5EncoderModel(cfg).eval()
    x = torch.rand(1, 512, 4096) * 2 - 1
    return lambda: model(inputs_embeds=x).last_hidden_state


def flux_inputs(torch):
    from diffusers.models.embeddings import FluxPosEmbed
    txt_len, grid, dim = 512, 32, 3072
    ids = torch.zeros(txt_len + grid * grid, 3)
    r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ids[txt_len:, 1] = r.flatten().float()
    ids[txt_len:, 2] = c.flatten().float()
    rope = FluxPosEmbed(theta=10000, axes_dim=[16, 56, 56])(ids)
    img = torch.rand(1, grid * grid, dim) * 2 - 1
    txt = torch.rand(1, txt_len, dim) * 2 - 1
    temb = torch.rand(1, dim) * 2 - 1
    return img, txt, temb, rope


def build_flux(torch, single):
    from diffusers.models.transformers.transformer_flux import (
        FluxSingleTransformerBlock, FluxTransformerBlock)
    img, txt, temb, rope = flux_inputs(torch)
    cls = FluxSingleTransformerBlock if single else FluxTransformerBlock
    block = cls(dim=3072, num_attention_heads=24, attention_head_dim=128).eval()
    # The single block takes image and text apart and concatenates them itself (1536 tokens).
    return lambda: block(hidden_states=img, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)


def build_unet(torch, latent, batch=1, width=None):
    """The UNet on [batch, 4, latent, width or latent] latents (unet_sdxl_step: 2x4x144x108, a
    full-size 864x1152 step with CFG)."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_config(manifest_config("sdxl_unet")).eval()
    w = width or latent
    x = torch.rand(batch, 4, latent, w) * 2 - 1
    ehs = torch.rand(batch, 77, 2048) * 2 - 1
    h_px, w_px = 8.0 * latent, 8.0 * w
    added = {"text_embeds": torch.rand(batch, 1280) * 2 - 1,
             "time_ids": torch.tensor([[h_px, w_px, 0.0, 0.0, h_px, w_px]] * batch)}
    t = torch.tensor([500.0] * batch)
    return lambda: unet(x, t, encoder_hidden_states=ehs, added_cond_kwargs=added).sample


def build_vae_decode(torch):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_config(manifest_config("sdxl_vae")).eval()
    z = torch.rand(1, 4, 64, 64) * 2 - 1
    return lambda: vae.decode(z).sample


def build_scheduler_step(torch):
    from diffusers import EulerDiscreteScheduler
    cfg = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
           "timestep_spacing": "leading", "steps_offset": 1}
    x = torch.rand(1, 4, 144, 108) * 2 - 1

    def run():
        s = EulerDiscreteScheduler(**cfg)
        s.set_timesteps(50)
        t = s.timesteps[0]
        xin = s.scale_model_input(x, t)
        return s.step(xin, t, x).prev_sample
    return run


def build_attention(torch, shape):
    q, k, v = (torch.rand(*shape) * 2 - 1 for _ in range(3))
    return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)


BUILDERS = {
    "clip_l_text": lambda torch: build_clip_text(torch, "ViT-L-14-quickgelu"),
    "clip_bigg_text": lambda torch: build_clip_text(torch, "ViT-bigG-14"),
    "face_vit": build_face_vit,
    "fusion_l": lambda torch: build_fusion(torch, 768),
    "fusion_bigg": lambda torch: build_fusion(torch, 1280),
    "fusion_t5": lambda torch: build_fusion(torch, 4096, "face_t5", 512),
    "t5_layer": build_t5_layer,
    "flux_double": lambda torch: build_flux(torch, single=False),
    "flux_single": lambda torch: build_flux(torch, single=True),
    "unet_sdxl": lambda torch: build_unet(torch, 64),
    "unet_sdxl_32": lambda torch: build_unet(torch, 32),
    "unet_sdxl_step": lambda torch: build_unet(torch, 144, batch=2, width=108),
    "vae_decode": build_vae_decode,
    "scheduler_step": build_scheduler_step,
    "attention_unet": lambda torch: build_attention(torch, (2, 10, 3888, 64)),
    "attention_flux": lambda torch: build_attention(torch, (1, 24, 1536, 128)),
}

NO_REFERENCE = {
    "faceclip_l_branch": "the upstream TextImageBranch downloads pretrained open_clip weights in its "
                         "constructor; its parts are compared one by one",
    "faceclip_bigg_branch": "as faceclip_l_branch",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(DEFAULT), help="comma-separated components, or 'all'")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: modules and inputs built in bfloat16 (torch.set_default_dtype)")
    ap.add_argument("--peak", action="store_true",
                    help="first time square GEMMs (1024, 2048, 4096): TORCH_PEAK gemm dtype=<d> gflops=<best>")
    ap.add_argument("--threads", type=int,
                    default=int(os.environ.get("FACECLIP_THREADS") or os.cpu_count() or 1))
    args = ap.parse_args()
    names = list(BUILDERS) if args.only == "all" else [n.strip() for n in args.only.split(",") if n.strip()]
    if args.reps < 1 or args.threads < 1:
        ap.error("--reps and --threads must be at least 1")

    # Upstream code is chatty (deprecated autocast calls, the missing CUDA extension).
    warnings.filterwarnings("ignore")
    # Before torch starts its pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    # OpenMP threads that spin-wait at every barrier lose most of their time to any other
    # process on the machine (measured on the shared 2-core box: CLIP-L 2.7 s spinning vs
    # 0.41 s passive, the fuser 6.2 s vs 0.54 s); rayon on the Rust side backs off to sleep.
    # Passive waiting measures the library, not the OS scheduler; OMP_WAIT_POLICY=ACTIVE in
    # the environment restores the spinning default.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(f"PyTorch is missing ({e}): pip install torch diffusers transformers open_clip_torch timm "
              "omegaconf (see benches/README.md)", file=sys.stderr)
        return 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.set_default_dtype(dtype)
    if args.peak:
        best = 0.0
        with torch.inference_mode():
            for n in (1024, 2048, 4096):
                a, b = torch.randn(n, n), torch.randn(n, n)
                torch.matmul(a, b)
                for _ in range(3):
                    t = time.perf_counter()
                    torch.matmul(a, b)
                    best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
                del a, b
        print(f"TORCH_PEAK gemm dtype={args.dtype} gflops={best:.1f}", flush=True)
    print(f"INFO torch={torch.__version__} threads={torch.get_num_threads()} dtype={dtype} device=cpu "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", flush=True)
    log(f"torch_reference: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"warm-up 1 + median of {args.reps}")

    for name in names:
        if name not in BUILDERS:
            reason = NO_REFERENCE.get(name, "no PyTorch reference for this component")
            print(f"SKIP {name} reason={reason}", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                run = BUILDERS[name](torch)
        except Skip as e:
            print(f"SKIP {name} reason={e}", flush=True)
            continue
        except ImportError as e:
            print(f"SKIP {name} reason=missing package: {e}", flush=True)
            continue
        except Exception as e:  # noqa: BLE001
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            print(f"SKIP {name} reason=build failed: {msg}", flush=True)
            continue
        log(f"  {name}: built in {time.perf_counter() - t0:.1f} s")
        times = []
        try:
            with torch.inference_mode():
                for i in range(args.reps + 1):
                    t = time.perf_counter()
                    run()
                    ms = (time.perf_counter() - t) * 1e3
                    log(f"  {name}: {'warm-up' if i == 0 else 'run'} {ms:.2f} ms")
                    if i > 0:
                        times.append(ms)
        except Exception as e:  # noqa: BLE001
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            print(f"SKIP {name} reason=forward failed: {msg}", flush=True)
            continue
        finally:
            del run
            gc.collect()
        print(f"TORCH {name} ms={statistics.median(times):.3f} min={min(times):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

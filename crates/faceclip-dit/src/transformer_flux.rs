//! diffusers' `FluxTransformer2DModel` (`transformer_flux.py`) with its blocks
//! `FluxTransformerBlock` (double stream) and `FluxSingleTransformerBlock` (single stream),
//! and the loaders for diffusers folders, FaceCLIP's `dit.pt` and BFL single files.

use std::path::{Path, PathBuf};

use faceclip_core::layers::{Activation, LayerNorm, Linear};
use faceclip_core::lora::LoraTarget;
use faceclip_core::{
    Checkpoint, Device, Error, Pretrained, Result, Tensor, TensorData, Trace, VarBuilder,
};

use crate::attention_processor::FluxAttention;
use crate::bfl;
use crate::config::FluxTransformerConfig;
use crate::embeddings::{
    CombinedTimestepGuidanceTextProjEmbeddings, FluxPosEmbed, FluxRotaryEmbedding,
};
use crate::normalization::{
    AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle, modulate,
};

/// RoPE base of `FluxPosEmbed(theta=10000, ...)`.
pub const ROPE_THETA: f64 = 10000.0;

/// `gate[:, None] · x`.
fn gated(gate: Tensor<2>, x: Tensor<3>) -> Tensor<3> {
    gate.unsqueeze_dim::<3>(1) * x
}

/// diffusers' `FeedForward(dim, dim_out=dim, activation_fn="gelu-approximate")`:
/// `net.2(gelu_tanh(net.0.proj(x)))`, hidden width `4·dim`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub proj_in: Linear,
    pub proj_out: Linear,
}

impl FeedForward {
    pub fn load(vb: &VarBuilder, dim: usize) -> Self {
        let net = vb.pp("net");
        Self {
            proj_in: Linear::load(&net.pp(0).pp("proj"), dim, 4 * dim, true),
            proj_out: Linear::load(&net.pp(2), 4 * dim, dim, true),
        }
    }

    /// `[B, L, dim]` -> `[B, L, dim]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.proj_out
            .forward(Activation::GeluTanh.forward(self.proj_in.forward(x)))
    }
}

/// diffusers' `FluxTransformerBlock`: the double-stream block. Image and text keep their own
/// modulation, projections and feed-forwards and meet in one joint attention.
#[derive(Debug, Clone)]
pub struct FluxTransformerBlock {
    pub norm1: AdaLayerNormZero,
    pub norm1_context: AdaLayerNormZero,
    pub attn: FluxAttention,
    pub norm2: LayerNorm,
    pub ff: FeedForward,
    pub norm2_context: LayerNorm,
    pub ff_context: FeedForward,
}

impl FluxTransformerBlock {
    pub fn load(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize) -> Self {
        Self {
            norm1: AdaLayerNormZero::load(&vb.pp("norm1"), dim),
            norm1_context: AdaLayerNormZero::load(&vb.pp("norm1_context"), dim),
            attn: FluxAttention::load_joint(&vb.pp("attn"), dim, heads, head_dim),
            norm2: LayerNorm::load_opt(&vb.pp("norm2"), dim, 1e-6, false, false),
            ff: FeedForward::load(&vb.pp("ff"), dim),
            norm2_context: LayerNorm::load_opt(&vb.pp("norm2_context"), dim, 1e-6, false, false),
            ff_context: FeedForward::load(&vb.pp("ff_context"), dim),
        }
    }

    /// `img` `[B, Li, dim]`, `txt` `[B, Lt, dim]`, `temb` `[B, dim]`, `rope` over `[txt, img]`
    /// -> `(txt, img)` (diffusers returns `encoder_hidden_states` first).
    pub fn forward(
        &self,
        img: Tensor<3>,
        txt: Tensor<3>,
        temb: Tensor<2>,
        rope: &FluxRotaryEmbedding,
    ) -> (Tensor<3>, Tensor<3>) {
        let (norm_img, m) = self.norm1.forward(img.clone(), temb.clone());
        let (norm_txt, c) = self.norm1_context.forward(txt.clone(), temb);
        let (attn_img, attn_txt) = self.attn.forward_joint(norm_img, norm_txt, rope);

        let img = img + gated(m.gate_msa, attn_img);
        let ff = self.ff.forward(modulate(
            self.norm2.forward(img.clone()),
            m.scale_mlp,
            m.shift_mlp,
        ));
        let img = img + gated(m.gate_mlp, ff);

        let txt = txt + gated(c.gate_msa, attn_txt);
        let ff = self.ff_context.forward(modulate(
            self.norm2_context.forward(txt.clone()),
            c.scale_mlp,
            c.shift_mlp,
        ));
        let txt = txt + gated(c.gate_mlp, ff);
        (txt, img)
    }
}

/// diffusers' `FluxSingleTransformerBlock`: one modulated LayerNorm feeding attention and a
/// GELU-tanh MLP in parallel; `proj_out` maps their concatenation back to `dim`.
#[derive(Debug, Clone)]
pub struct FluxSingleTransformerBlock {
    pub norm: AdaLayerNormZeroSingle,
    pub proj_mlp: Linear,
    pub attn: FluxAttention,
    pub proj_out: Linear,
}

impl FluxSingleTransformerBlock {
    /// `mlp_hidden_dim = int(dim · 4.0)`.
    pub fn load(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize) -> Self {
        let mlp = dim * 4;
        Self {
            norm: AdaLayerNormZeroSingle::load(&vb.pp("norm"), dim),
            proj_mlp: Linear::load(&vb.pp("proj_mlp"), dim, mlp, true),
            attn: FluxAttention::load_single(&vb.pp("attn"), dim, heads, head_dim),
            proj_out: Linear::load(&vb.pp("proj_out"), heads * head_dim + mlp, dim, true),
        }
    }

    /// `x` `[B, L, dim]` (text then image tokens), `temb` `[B, dim]` -> `[B, L, dim]`.
    pub fn forward(&self, x: Tensor<3>, temb: Tensor<2>, rope: &FluxRotaryEmbedding) -> Tensor<3> {
        let (norm_x, gate) = self.norm.forward(x.clone(), temb);
        let mlp = Activation::GeluTanh.forward(self.proj_mlp.forward(norm_x.clone()));
        let attn = self.attn.forward_single(norm_x, rope);
        let h = Tensor::cat(vec![attn, mlp], 2);
        x + gated(gate, self.proj_out.forward(h))
    }
}

/// diffusers' `FluxTransformer2DModel`: the FLUX.1 denoiser on packed latent tokens.
#[derive(Debug, Clone)]
pub struct FluxTransformer2DModel {
    pub pos_embed: FluxPosEmbed,
    pub time_text_embed: CombinedTimestepGuidanceTextProjEmbeddings,
    pub context_embedder: Linear,
    pub x_embedder: Linear,
    pub transformer_blocks: Vec<FluxTransformerBlock>,
    pub single_transformer_blocks: Vec<FluxSingleTransformerBlock>,
    pub norm_out: AdaLayerNormContinuous,
    pub proj_out: Linear,
    config: FluxTransformerConfig,
}

/// Loading: diffusers key names (optionally under `module.`/`transformer.`) or BFL's
/// single-file layout, converted ([`bfl::to_diffusers_layout`]); LoRA files for the FLUX
/// transformer (diffusers names, so a BFL-layout base takes them too). The folder is the
/// `transformer/` folder itself, its weights found by [`weights_file`].
impl Pretrained for FluxTransformer2DModel {
    type Config = FluxTransformerConfig;
    const COMPONENT: &'static str = "transformer";

    fn build(config: &FluxTransformerConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(vb, config)
    }

    fn read_config(path: &Path) -> Result<FluxTransformerConfig> {
        FluxTransformerConfig::from_file(path)
    }

    fn check_config(config: &FluxTransformerConfig) -> Result<()> {
        config.validate()
    }

    fn adapt(checkpoint: Checkpoint, config: &FluxTransformerConfig) -> Result<Checkpoint> {
        bfl::to_diffusers_layout(&checkpoint, config.inner_dim())
    }

    fn lora_target(_config: &FluxTransformerConfig) -> Option<LoraTarget> {
        Some(LoraTarget::FluxTransformer)
    }

    fn component_folder(dir: &Path) -> Result<PathBuf> {
        Ok(dir.to_path_buf())
    }

    fn folder_weights(dir: &Path) -> Result<PathBuf> {
        weights_file(dir)
    }
}

impl FluxTransformer2DModel {
    /// Builds the model by walking diffusers' key names under `vb` (no coverage check: call
    /// `vb.finish()` or `vb.report()` afterwards). Fails only on an invalid config.
    pub fn new(vb: &VarBuilder, config: &FluxTransformerConfig) -> Result<Self> {
        config.validate()?;
        let dim = config.inner_dim();
        let (heads, head_dim) = (config.num_attention_heads, config.attention_head_dim);
        Ok(Self {
            pos_embed: FluxPosEmbed::new(ROPE_THETA, config.axes_dims_rope.clone()),
            time_text_embed: CombinedTimestepGuidanceTextProjEmbeddings::load(
                &vb.pp("time_text_embed"),
                dim,
                config.pooled_projection_dim,
                config.guidance_embeds,
            ),
            context_embedder: Linear::load(
                &vb.pp("context_embedder"),
                config.joint_attention_dim,
                dim,
                true,
            ),
            x_embedder: Linear::load(&vb.pp("x_embedder"), config.in_channels, dim, true),
            transformer_blocks: (0..config.num_layers)
                .map(|i| {
                    FluxTransformerBlock::load(
                        &vb.pp("transformer_blocks").pp(i),
                        dim,
                        heads,
                        head_dim,
                    )
                })
                .collect(),
            single_transformer_blocks: (0..config.num_single_layers)
                .map(|i| {
                    FluxSingleTransformerBlock::load(
                        &vb.pp("single_transformer_blocks").pp(i),
                        dim,
                        heads,
                        head_dim,
                    )
                })
                .collect(),
            norm_out: AdaLayerNormContinuous::load(&vb.pp("norm_out"), dim, dim),
            proj_out: Linear::load(
                &vb.pp("proj_out"),
                dim,
                config.patch_size * config.patch_size * config.out_channels(),
                true,
            ),
            config: config.clone(),
        })
    }

    /// Loads from a checkpoint in any supported layout (diffusers names, optionally under
    /// `module.`/`transformer.`; or BFL's single-file layout) and checks that it covers the
    /// model exactly ([`Error::Coverage`] lists every missing, unexpected or mis-shaped key).
    /// [`Pretrained::load`] with a borrowed checkpoint; with LoRA files:
    /// [`Pretrained::load_with`].
    pub fn load(
        checkpoint: &Checkpoint,
        config: &FluxTransformerConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::load(checkpoint.clone(), config, device)
    }

    /// Loads weights from one file (`.safetensors`, `*.safetensors.index.json`, FaceCLIP's
    /// `model/dit.pt`, BFL's `flux1-dev.safetensors`) for `config` ([`Pretrained::from_file`]).
    pub fn from_file(
        path: impl AsRef<Path>,
        config: &FluxTransformerConfig,
        device: &Device,
    ) -> Result<Self> {
        <Self as Pretrained>::from_file(path, config, device)
    }

    /// Loads a diffusers `transformer/` folder: `config.json` and
    /// `diffusion_pytorch_model.safetensors` (or its sharded index)
    /// ([`Pretrained::from_folder`]; with LoRA files: [`Pretrained::open_folder`], then
    /// [`Pretrained::load_with`]).
    pub fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        <Self as Pretrained>::from_folder(dir, device)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &FluxTransformerConfig {
        &self.config
    }

    /// The rotary embedding of `cat(txt_ids, img_ids)`; ids are `[T, axes]` and `[L, axes]`.
    /// Compute it once per image size and reuse it with [`Self::forward_with_rope`].
    pub fn rotary_embedding(
        &self,
        txt_ids: Tensor<2>,
        img_ids: Tensor<2>,
    ) -> Result<FluxRotaryEmbedding> {
        let axes = self.config.axes_dims_rope.len();
        for (name, ids) in [("txt_ids", &txt_ids), ("img_ids", &img_ids)] {
            let [n, a] = ids.dims();
            if a != axes {
                return Err(Error::shape(
                    format!("{name} (one column per RoPE axis)"),
                    &[n, axes],
                    &[n, a],
                ));
            }
        }
        self.pos_embed
            .forward(Tensor::cat(vec![txt_ids, img_ids], 0))
    }

    /// diffusers' `forward(...).sample`: `hidden_states` `[B, L, in_channels]` (packed latents),
    /// `encoder_hidden_states` `[B, T, joint_attention_dim]`, `pooled_projections`
    /// `[B, pooled_projection_dim]`, `timestep` `[B or 1]` = t/1000 and `guidance` `[B or 1]`
    /// (required iff `guidance_embeds`; both are multiplied by 1000 inside, as diffusers
    /// does), `img_ids` `[L, 3]`, `txt_ids` `[T, 3]` -> `[B, L, patch²·out_channels]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        hidden_states: Tensor<3>,
        encoder_hidden_states: Tensor<3>,
        pooled_projections: Tensor<2>,
        timestep: Tensor<1>,
        guidance: Option<Tensor<1>>,
        img_ids: Tensor<2>,
        txt_ids: Tensor<2>,
    ) -> Result<Tensor<3>> {
        let rope = self.rotary_embedding(txt_ids, img_ids)?;
        self.forward_with_rope(
            hidden_states,
            encoder_hidden_states,
            pooled_projections,
            timestep,
            guidance,
            &rope,
        )
    }

    /// [`Self::forward`] with a precomputed [`Self::rotary_embedding`].
    pub fn forward_with_rope(
        &self,
        hidden_states: Tensor<3>,
        encoder_hidden_states: Tensor<3>,
        pooled_projections: Tensor<2>,
        timestep: Tensor<1>,
        guidance: Option<Tensor<1>>,
        rope: &FluxRotaryEmbedding,
    ) -> Result<Tensor<3>> {
        self.run(
            hidden_states,
            encoder_hidden_states,
            pooled_projections,
            timestep,
            guidance,
            rope,
            None,
        )
    }

    /// [`Self::forward`] that also returns the intermediate activations (`x_embedder`,
    /// `temb`, `context_embedder`, `rope_cos`, `rope_sin`, `double_block_{i}_img/_txt`,
    /// `single_block_{i}`, `norm_out`), for debugging parity.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_traced(
        &self,
        hidden_states: Tensor<3>,
        encoder_hidden_states: Tensor<3>,
        pooled_projections: Tensor<2>,
        timestep: Tensor<1>,
        guidance: Option<Tensor<1>>,
        img_ids: Tensor<2>,
        txt_ids: Tensor<2>,
    ) -> Result<(Tensor<3>, Trace)> {
        let rope = self.rotary_embedding(txt_ids, img_ids)?;
        let mut trace = Trace::recording();
        trace.record("rope_cos", || rope.cos().into_data());
        trace.record("rope_sin", || rope.sin().into_data());
        let out = self.run(
            hidden_states,
            encoder_hidden_states,
            pooled_projections,
            timestep,
            guidance,
            &rope,
            Some(&mut trace),
        )?;
        Ok((out, trace))
    }

    /// Checks every input shape against the config and each other; returns `(B, L, T)`.
    fn check_inputs(
        &self,
        hidden_states: &Tensor<3>,
        encoder_hidden_states: &Tensor<3>,
        pooled: &Tensor<2>,
        timestep: &Tensor<1>,
        guidance: Option<&Tensor<1>>,
        rope: &FluxRotaryEmbedding,
    ) -> Result<(usize, usize, usize)> {
        let cfg = &self.config;
        let [b, l, c] = hidden_states.dims();
        if c != cfg.in_channels || b == 0 || l == 0 {
            return Err(Error::shape(
                "FLUX hidden_states [B, L, in_channels]",
                &[b, l, cfg.in_channels],
                &[b, l, c],
            ));
        }
        let [eb, t, j] = encoder_hidden_states.dims();
        if eb != b || j != cfg.joint_attention_dim {
            return Err(Error::shape(
                "FLUX encoder_hidden_states [B, T, joint_attention_dim]",
                &[b, t, cfg.joint_attention_dim],
                &[eb, t, j],
            ));
        }
        let [pb, p] = pooled.dims();
        if pb != b || p != cfg.pooled_projection_dim {
            return Err(Error::shape(
                "FLUX pooled_projections [B, pooled_projection_dim]",
                &[b, cfg.pooled_projection_dim],
                &[pb, p],
            ));
        }
        let [n] = timestep.dims();
        if n != b && n != 1 {
            return Err(Error::shape("FLUX timestep [B] (or [1])", &[b], &[n]));
        }
        match (guidance, cfg.guidance_embeds) {
            (Some(g), true) => {
                let [n] = g.dims();
                if n != b && n != 1 {
                    return Err(Error::shape("FLUX guidance [B] (or [1])", &[b], &[n]));
                }
            }
            (None, true) => {
                return Err(Error::invalid(
                    "this FLUX transformer has guidance_embeds=true and needs a guidance value",
                ));
            }
            (Some(_), false) => {
                return Err(Error::invalid(
                    "this FLUX transformer has guidance_embeds=false and takes no guidance value",
                ));
            }
            (None, false) => {}
        }
        if rope.len() != t + l || rope.dim() != cfg.attention_head_dim {
            return Err(Error::shape(
                "FLUX rotary embedding [T + L, attention_head_dim] (txt_ids then img_ids)",
                &[t + l, cfg.attention_head_dim],
                &[rope.len(), rope.dim()],
            ));
        }
        Ok((b, l, t))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        hidden_states: Tensor<3>,
        encoder_hidden_states: Tensor<3>,
        pooled_projections: Tensor<2>,
        timestep: Tensor<1>,
        guidance: Option<Tensor<1>>,
        rope: &FluxRotaryEmbedding,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor<3>> {
        let (b, l, t) = self.check_inputs(
            &hidden_states,
            &encoder_hidden_states,
            &pooled_projections,
            &timestep,
            guidance.as_ref(),
            rope,
        )?;
        let mut record = |name: String, data: &dyn Fn() -> TensorData| {
            if let Some(tr) = trace.as_deref_mut() {
                tr.record(name, data);
            }
        };
        let img = self.x_embedder.forward(hidden_states);
        record("x_embedder".into(), &|| img.clone().into_data());

        // diffusers: `timestep.to(dtype) * 1000`, `guidance.to(dtype) * 1000`.
        let timestep = timestep * 1000.0;
        let guidance = guidance.map(|g| g * 1000.0);
        let temb = self
            .time_text_embed
            .forward(timestep, guidance, pooled_projections);
        // A [1]-long timestep/guidance with B > 1 broadcasts against the pooled text.
        let dim = self.config.inner_dim();
        let temb = if temb.dims()[0] != b {
            temb.expand([b, dim])
        } else {
            temb
        };
        record("temb".into(), &|| temb.clone().into_data());

        let txt = self.context_embedder.forward(encoder_hidden_states);
        record("context_embedder".into(), &|| txt.clone().into_data());

        let (mut txt, mut img) = (txt, img);
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            (txt, img) = block.forward(img, txt, temb.clone(), rope);
            record(format!("double_block_{i}_txt"), &|| txt.clone().into_data());
            record(format!("double_block_{i}_img"), &|| img.clone().into_data());
        }

        let mut h = Tensor::cat(vec![txt, img], 1);
        for (i, block) in self.single_transformer_blocks.iter().enumerate() {
            h = block.forward(h, temb.clone(), rope);
            record(format!("single_block_{i}"), &|| h.clone().into_data());
        }

        let img = h.slice([0..b, t..t + l, 0..dim]);
        let img = self.norm_out.forward(img, temb);
        record("norm_out".into(), &|| img.clone().into_data());
        Ok(self.proj_out.forward(img))
    }
}

/// The weights file of a diffusers model folder: the sharded index
/// (`diffusion_pytorch_model.safetensors.index.json`, else any `*.safetensors.index.json`),
/// else `diffusion_pytorch_model.safetensors` (else the only `*.safetensors`), else
/// `diffusion_pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    let preferred = [
        "diffusion_pytorch_model.safetensors.index.json",
        "diffusion_pytorch_model.safetensors",
    ];
    for name in preferred {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let named = |suffix: &str| -> Vec<&PathBuf> {
        entries
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
            })
            .collect()
    };
    if let Some(p) = named(".safetensors.index.json").first() {
        return Ok((*p).clone());
    }
    let single = named(".safetensors");
    if single.len() == 1 {
        return Ok(single[0].clone());
    }
    let bin = dir.join("diffusion_pytorch_model.bin");
    if bin.is_file() {
        return Ok(bin);
    }
    Err(Error::config(
        dir,
        if single.len() > 1 {
            "several .safetensors files and no .safetensors.index.json: cannot tell which holds the transformer"
        } else {
            "no weights: expected diffusion_pytorch_model.safetensors (or its .index.json)"
        },
    ))
}

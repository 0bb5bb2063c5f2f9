//! The CLIP text transformer, in its two weight layouts:
//!
//! - transformers `CLIPTextModel` (`text_model.*`: FLUX's `text_encoder`, SDXL's text
//!   encoders), loaded by [`ClipTextTransformer::load_hf`];
//! - the open_clip text tower (`token_embedding`, `positional_embedding`,
//!   `transformer.resblocks.*`, `ln_final`, `text_projection`: FaceCLIP's
//!   `TextImageBranch`), loaded by [`ClipTextTransformer::load_open_clip`].
//!
//! Both are the same network: token + learned position embedding, pre-LN blocks with a causal
//! self-attention and a two-layer MLP, a final LayerNorm, and a pooled vector taken at the EOS
//! position. The pieces are public so that a wrapper (FaceCLIP) can substitute one token's
//! embedding before the positions are added: [`ClipTextTransformer::embed_tokens`], then
//! [`ClipTextTransformer::forward_embeds`].

use faceclip_core::burn::module::Param;
use faceclip_core::layers::{
    Activation, AttentionMask, Embedding, LayerNorm, Linear, attention, merge_heads, split_heads,
};
#[cfg(feature = "parity")]
use faceclip_core::{Device, Fixture, ParityOutcome, ParityReport};
use faceclip_core::{Error, Int, Result, Tensor, TensorData, VarBuilder};
use serde::Deserialize;

/// transformers `CLIPTextConfig`, read unchanged from a `config.json` (unknown fields are
/// ignored, missing ones take transformers' defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub eos_token_id: i64,
    pub projection_dim: usize,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
            projection_dim: 512,
        }
    }
}

/// open_clip `CLIPTextCfg` (the `text_cfg` of a model config), plus `quick_gelu` and
/// `embed_dim`, which open_clip keeps next to it at the model level and which are accepted
/// here too. Missing fields take open_clip's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OpenClipTextConfig {
    pub context_length: usize,
    pub vocab_size: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub mlp_ratio: f64,
    /// `x·σ(1.702x)` when true (ViT-L-14-quickgelu), exact erf GELU otherwise (ViT-bigG-14).
    pub quick_gelu: bool,
    /// Width of `text_projection`'s output; `embed_dim` is used when absent.
    pub output_dim: Option<usize>,
    pub embed_dim: Option<usize>,
    pub pool_type: String,
    pub proj_type: Option<String>,
    pub proj_bias: bool,
    pub no_causal_mask: bool,
    pub embed_cls: bool,
    pub ls_init_value: Option<f64>,
    pub final_ln_after_pool: bool,
    pub layer_norm_eps: f64,
}

impl Default for OpenClipTextConfig {
    fn default() -> Self {
        Self {
            context_length: 77,
            vocab_size: 49408,
            width: 512,
            heads: 8,
            layers: 12,
            mlp_ratio: 4.0,
            quick_gelu: false,
            output_dim: None,
            embed_dim: None,
            pool_type: "argmax".into(),
            proj_type: None,
            proj_bias: false,
            no_causal_mask: false,
            embed_cls: false,
            ls_init_value: None,
            final_ln_after_pool: false,
            layer_norm_eps: 1e-5,
        }
    }
}

/// Where the pooled vector is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first position of the largest id (open_clip `argmax`, transformers' legacy
    /// `eos_token_id == 2` rule): the first `<|endoftext|>` = 49407.
    Argmax,
    /// The first position whose id equals this one (position 0 when none does), transformers'
    /// rule for any other `eos_token_id`.
    FirstId(i64),
}

impl Pooling {
    /// The pooled position of each row of `ids` (`[B][L]` values).
    pub fn positions(self, ids: &[i64], batch: usize, len: usize) -> Vec<usize> {
        (0..batch)
            .map(|b| {
                let row = &ids[b * len..(b + 1) * len];
                match self {
                    Pooling::Argmax => {
                        let mut best = 0;
                        for (i, &v) in row.iter().enumerate() {
                            if v > row[best] {
                                best = i;
                            }
                        }
                        best
                    }
                    Pooling::FirstId(id) => row.iter().position(|&v| v == id).unwrap_or(0),
                }
            })
            .collect()
    }
}

/// Query/key/value projections: three Linears (transformers) or one fused `in_proj`
/// (`nn.MultiheadAttention`, open_clip).
#[derive(Debug, Clone)]
enum Qkv {
    Separate(Box<[Linear; 3]>),
    Fused(Linear),
}

#[derive(Debug, Clone)]
struct SelfAttention {
    qkv: Qkv,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    fn forward(&self, x: Tensor<3>, mask: AttentionMask) -> Tensor<3> {
        let (q, k, v) = match &self.qkv {
            Qkv::Separate(p) => {
                let [q, k, v] = p.as_ref();
                (q.forward(x.clone()), k.forward(x.clone()), v.forward(x))
            }
            Qkv::Fused(p) => {
                let qkv = p.forward(x);
                let w = qkv.dims()[2] / 3;
                (
                    qkv.clone().narrow(2, 0, w),
                    qkv.clone().narrow(2, w, w),
                    qkv.narrow(2, 2 * w, w),
                )
            }
        };
        let o = attention(
            split_heads(q, self.heads),
            split_heads(k, self.heads),
            split_heads(v, self.heads),
            None,
            mask,
            None,
        );
        self.out.forward(merge_heads(o))
    }
}

/// One pre-LN block: `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`.
#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    attn: SelfAttention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>, mask: AttentionMask) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln1.forward(x), mask);
        let h = self.fc2.forward(
            self.act
                .forward(self.fc1.forward(self.ln2.forward(x.clone()))),
        );
        x + h
    }
}

/// What the text transformer returns for a batch.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// The final LayerNorm output `[B, L, W]` (transformers `last_hidden_state`, open_clip /
    /// FaceCLIP `text_embedding`).
    pub last_hidden_state: Tensor<3>,
    /// `last_hidden_state` at the pooled position `[B, W]`, before any projection
    /// (transformers `pooler_output`, FaceCLIP `pooled`).
    pub pooler_output: Tensor<2>,
    /// `[embeddings (token + position), output of block 0, ..., output of the last block]`:
    /// `layers + 1` tensors `[B, L, W]`; the last is before the final LayerNorm (SDXL uses
    /// `hidden_states[-2]`).
    pub hidden_states: Vec<Tensor<3>>,
    /// The pooled position of each row.
    pub pool_positions: Vec<usize>,
}

/// The CLIP text transformer; see the module docs. Built by [`Self::load_hf`] or
/// [`Self::load_open_clip`].
#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    pub token_embedding: Embedding,
    /// The learned position table `[context, width]` (transformers
    /// `position_embedding.weight`, open_clip `positional_embedding`).
    pub position_embedding: Param<Tensor<2>>,
    layers: Vec<EncoderLayer>,
    pub final_layer_norm: LayerNorm,
    /// open_clip `text_projection` `[width, embed]`, applied as `x @ P`; `None` for
    /// transformers `CLIPTextModel`.
    pub text_projection: Option<Param<Tensor<2>>>,
    pooling: Pooling,
    causal: bool,
    vocab: usize,
    context: usize,
    width: usize,
}

fn check_heads(width: usize, heads: usize, what: &str) -> Result<()> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(Error::invalid(format!(
            "{what}: width {width} is not a multiple of the {heads} attention heads"
        )));
    }
    Ok(())
}

fn activation(name: &str) -> Result<Activation> {
    Activation::from_name(name)
        .ok_or_else(|| Error::invalid(format!("CLIP text model: unknown activation `{name}`")))
}

impl ClipTextTransformer {
    /// Loads transformers `CLIPTextModel` from `vb` at the model root (the keys start with
    /// `text_model.`). The old buffer `text_model.embeddings.position_ids` is tolerated.
    /// Pooling: argmax of the ids when `eos_token_id == 2` (legacy configs: openai, FLUX),
    /// else the first position equal to `eos_token_id`.
    pub fn load_hf(vb: &VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        check_heads(cfg.hidden_size, cfg.num_attention_heads, "CLIPTextConfig")?;
        let act = activation(&cfg.hidden_act)?;
        let (w, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let tm = vb.pp("text_model");
        let emb = tm.pp("embeddings");
        emb.tolerate("position_ids");
        let token_embedding = Embedding::load(&emb.pp("token_embedding"), cfg.vocab_size, w);
        let position_embedding = emb
            .pp("position_embedding")
            .tensor("weight", [cfg.max_position_embeddings, w]);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = tm.pp("encoder.layers").pp(i);
                let a = l.pp("self_attn");
                EncoderLayer {
                    ln1: LayerNorm::load(&l.pp("layer_norm1"), w, cfg.layer_norm_eps),
                    attn: SelfAttention {
                        qkv: Qkv::Separate(Box::new([
                            Linear::load(&a.pp("q_proj"), w, w, true),
                            Linear::load(&a.pp("k_proj"), w, w, true),
                            Linear::load(&a.pp("v_proj"), w, w, true),
                        ])),
                        out: Linear::load(&a.pp("out_proj"), w, w, true),
                        heads: cfg.num_attention_heads,
                    },
                    ln2: LayerNorm::load(&l.pp("layer_norm2"), w, cfg.layer_norm_eps),
                    fc1: Linear::load(&l.pp("mlp.fc1"), w, ff, true),
                    fc2: Linear::load(&l.pp("mlp.fc2"), ff, w, true),
                    act,
                }
            })
            .collect();
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm: LayerNorm::load(&tm.pp("final_layer_norm"), w, cfg.layer_norm_eps),
            text_projection: None,
            pooling: if cfg.eos_token_id == 2 {
                Pooling::Argmax
            } else {
                Pooling::FirstId(cfg.eos_token_id)
            },
            causal: true,
            vocab: cfg.vocab_size,
            context: cfg.max_position_embeddings,
            width: w,
        })
    }

    /// Loads an open_clip text tower from `vb` at the tower root (`token_embedding.weight`,
    /// `positional_embedding`, `transformer.resblocks.N.*`, `ln_final.*`, `text_projection`).
    /// Pooling is argmax; the projection is a `[width, output_dim]` matrix when
    /// `proj_type` is not `none` and an output width is known.
    pub fn load_open_clip(vb: &VarBuilder, cfg: &OpenClipTextConfig) -> Result<Self> {
        check_heads(cfg.width, cfg.heads, "open_clip text_cfg")?;
        let unsupported = |what: &str| {
            Err(Error::invalid(format!(
                "open_clip text tower: {what} is not supported"
            )))
        };
        if cfg.pool_type != "argmax" {
            return unsupported(&format!("pool_type `{}` (only `argmax`)", cfg.pool_type));
        }
        if cfg.proj_bias {
            return unsupported("proj_bias = true");
        }
        if cfg.embed_cls {
            return unsupported("embed_cls = true");
        }
        if cfg.ls_init_value.is_some() {
            return unsupported("layer scale (ls_init_value)");
        }
        if cfg.final_ln_after_pool {
            return unsupported("final_ln_after_pool = true");
        }
        let act = if cfg.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let w = cfg.width;
        let ff = (w as f64 * cfg.mlp_ratio) as usize;
        let eps = cfg.layer_norm_eps;
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = vb.pp("transformer.resblocks").pp(i);
                let a = l.pp("attn");
                EncoderLayer {
                    ln1: LayerNorm::load(&l.pp("ln_1"), w, eps),
                    attn: SelfAttention {
                        qkv: Qkv::Fused(Linear::load_named(
                            &a,
                            "in_proj_weight",
                            Some("in_proj_bias"),
                            w,
                            3 * w,
                        )),
                        out: Linear::load(&a.pp("out_proj"), w, w, true),
                        heads: cfg.heads,
                    },
                    ln2: LayerNorm::load(&l.pp("ln_2"), w, eps),
                    fc1: Linear::load(&l.pp("mlp.c_fc"), w, ff, true),
                    fc2: Linear::load(&l.pp("mlp.c_proj"), ff, w, true),
                    act,
                }
            })
            .collect();
        let out_dim = cfg.output_dim.or(cfg.embed_dim);
        let text_projection = match (cfg.proj_type.as_deref(), out_dim) {
            (Some("none"), _) | (_, None) | (_, Some(0)) => None,
            (_, Some(d)) => Some(vb.tensor("text_projection", [w, d])),
        };
        Ok(Self {
            token_embedding: Embedding::load(&vb.pp("token_embedding"), cfg.vocab_size, w),
            position_embedding: vb.tensor("positional_embedding", [cfg.context_length, w]),
            layers,
            final_layer_norm: LayerNorm::load(&vb.pp("ln_final"), w, eps),
            text_projection,
            pooling: Pooling::Argmax,
            causal: !cfg.no_causal_mask,
            vocab: cfg.vocab_size,
            context: cfg.context_length,
            width: w,
        })
    }

    /// Width of the residual stream.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of positions (77).
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The pooling rule.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Reads `ids` `[B, L]` back to the host and checks them: `1 <= L <= context`, every
    /// id inside the vocabulary.
    pub fn check_ids(&self, ids: &Tensor<2, Int>) -> Result<Vec<i64>> {
        let [b, l] = ids.dims();
        if l == 0 || l > self.context || b == 0 {
            return Err(Error::shape(
                format!("CLIP input_ids (at most {} positions)", self.context),
                &[b.max(1), self.context],
                &[b, l],
            ));
        }
        let v = ids
            .clone()
            .try_into_vec_as::<i64>()
            .map_err(|e| Error::invalid(format!("CLIP input_ids: {e:?}")))?;
        if let Some(bad) = v.iter().find(|&&id| id < 0 || id as usize >= self.vocab) {
            return Err(Error::invalid(format!(
                "CLIP input_ids: id {bad} is outside the vocabulary of {} tokens",
                self.vocab
            )));
        }
        Ok(v)
    }

    /// The pooled position of each row of `ids` `[B, L]` under this model's rule.
    pub fn pool_positions(&self, ids: &Tensor<2, Int>) -> Result<Vec<usize>> {
        let [b, l] = ids.dims();
        let v = self.check_ids(ids)?;
        Ok(self.pooling.positions(&v, b, l))
    }

    /// Token embeddings `[B, L, W]` of `ids` `[B, L]`, without positions (the point where
    /// FaceCLIP substitutes the face token).
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        self.check_ids(&ids)?;
        Ok(self.token_embedding.forward(ids))
    }

    /// `token_embeds` `[B, L, W]` plus the first `L` rows of the position table.
    pub fn add_positions(&self, token_embeds: Tensor<3>) -> Result<Tensor<3>> {
        let [b, l, w] = token_embeds.dims();
        if w != self.width || l == 0 || l > self.context {
            return Err(Error::shape(
                "CLIP token embeddings",
                &[b, l.clamp(1, self.context), self.width],
                &[b, l, w],
            ));
        }
        let pos = self
            .position_embedding
            .val()
            .narrow(0, 0, l)
            .unsqueeze::<3>();
        Ok(token_embeds + pos)
    }

    /// Runs the transformer on token embeddings `[B, L, W]` (from [`Self::embed_tokens`],
    /// possibly edited; positions are added here) and pools at `pool_positions` (one per
    /// row, from [`Self::pool_positions`] of the ids).
    pub fn forward_embeds(
        &self,
        token_embeds: Tensor<3>,
        pool_positions: &[usize],
    ) -> Result<ClipTextOutput> {
        let [b, l, _] = token_embeds.dims();
        if pool_positions.len() != b || pool_positions.iter().any(|&p| p >= l) {
            return Err(Error::invalid(format!(
                "CLIP pooling: {} positions for a batch of {b} rows of length {l}: {pool_positions:?}",
                pool_positions.len()
            )));
        }
        let mut x = self.add_positions(token_embeds)?;
        let mask = || {
            if self.causal {
                AttentionMask::Causal
            } else {
                AttentionMask::None
            }
        };
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(x.clone());
        for layer in &self.layers {
            x = layer.forward(x, mask());
            hidden_states.push(x.clone());
        }
        let last = self.final_layer_norm.forward(x);
        let pooled = gather_rows(last.clone(), pool_positions);
        Ok(ClipTextOutput {
            last_hidden_state: last,
            pooler_output: pooled,
            hidden_states,
            pool_positions: pool_positions.to_vec(),
        })
    }

    /// The whole model on `ids` `[B, L]` (`L <= context`).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Result<ClipTextOutput> {
        let positions = self.pool_positions(&ids)?;
        let x = self.token_embedding.forward(ids);
        self.forward_embeds(x, &positions)
    }

    /// `pooled @ text_projection` `[B, embed]` (open_clip `text_feature` before
    /// normalisation); `None` when the layout has no projection.
    pub fn project(&self, pooled: Tensor<2>) -> Option<Tensor<2>> {
        self.text_projection
            .as_ref()
            .map(|p| pooled.matmul(p.val()))
    }
}

/// `x[b, positions[b], :]` for each row: `[B, L, W]` -> `[B, W]`.
pub fn gather_rows(x: Tensor<3>, positions: &[usize]) -> Tensor<2> {
    let [b, l, w] = x.dims();
    let idx: Vec<i64> = positions
        .iter()
        .enumerate()
        .map(|(i, &p)| (i * l + p) as i64)
        .collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [b]), &x.device());
    x.reshape([b * l, w]).select(0, idx)
}

/// `F.normalize(x, dim=-1)`: `x / max(||x||, 1e-12)` over the last axis.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(feature = "parity")]
fn build_open_clip(fixture: &Fixture, device: &Device) -> Result<ClipTextTransformer> {
    let mut cfg: OpenClipTextConfig = fixture.config_as("/text_cfg")?;
    if cfg.embed_dim.is_none() {
        cfg.embed_dim = fixture
            .config()
            .pointer("/TextImageBranch/text_embed_dim")
            .and_then(serde_json::Value::as_u64)
            .map(|d| d as usize);
    }
    let vb = VarBuilder::from_checkpoint(fixture.weights()?, device);
    let model = ClipTextTransformer::load_open_clip(&vb, &cfg)?;
    vb.finish()?;
    Ok(model)
}

/// Runs the `clip_text_hf`, `openclip_text_l` and `openclip_text_g` fixtures.
#[cfg(feature = "parity")]
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    let kind = fixture.kind().ok()?;
    match kind {
        "clip_text_hf" => Some((|| {
            let cfg: ClipTextConfig = fixture.config_as("")?;
            let vb = VarBuilder::from_checkpoint(fixture.weights()?, device);
            let model = ClipTextTransformer::load_hf(&vb, &cfg)?;
            vb.finish()?;
            let out = model.forward(fixture.tensor_int::<2>("in.input_ids", device)?)?;
            let mut r = ParityReport::default();
            r.push(fixture.check("last_hidden_state", out.last_hidden_state.into_data())?);
            r.push(fixture.check("pooler_output", out.pooler_output.into_data())?);
            Ok(r)
        })()),
        "openclip_text_l" | "openclip_text_g" => Some((|| {
            let model = build_open_clip(fixture, device)?;
            let out = model.forward(fixture.tensor_int::<2>("in.input_ids", device)?)?;
            let mut r = ParityReport::default();
            r.push(fixture.check("text_embedding", out.last_hidden_state.into_data())?);
            r.push(fixture.check("pooled", out.pooler_output.clone().into_data())?);
            let feature = model.project(out.pooler_output).ok_or_else(|| {
                Error::invalid("the open_clip fixture's tower has no text_projection")
            })?;
            r.push(fixture.check("text_feature", feature.clone().into_data())?);
            r.push(fixture.check("text_feature_normalized", l2_normalize(feature).into_data())?);
            Ok(r)
        })()),
        _ => None,
    }
}

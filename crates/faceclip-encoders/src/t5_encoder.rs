//! The T5 v1.1 encoder stack, in two weight layouts over the same module code:
//!
//! - transformers `T5EncoderModel` (`shared.weight`, `encoder.block.N.layer.0.SelfAttention.*`,
//!   `encoder.block.N.layer.1.DenseReluDense.*`, `encoder.final_layer_norm`): FLUX's
//!   `text_encoder_2`, loaded by [`T5Encoder::load_transformers`];
//! - FaceCLIP's FlashT5 `FlashT5Stack` (`embed_tokens.weight`,
//!   `block.N.self_attention_layer.self_attention.{Wq,Wk,Wv,o}`, `block.N.ff_layer.*`,
//!   `final_layer_norm`): FaceT5's text encoder, loaded by [`T5Encoder::load_flash_t5`].
//!
//! Each block is `x + o(attn(RMSNorm(x)))` then `x + wo(act(wi_0 h) · wi_1 h)` with
//! `h = RMSNorm(x)`; the attention has no `1/sqrt(d)` scaling (transformers) or FlashT5's
//! `attention_scale`, and a bidirectional relative position bias that block 0 computes once
//! and every block reuses.

use faceclip_core::layers::AttentionMask;
use faceclip_core::layers::{
    Activation, Embedding, Linear, RmsNorm, attention, merge_heads, split_heads,
};
use faceclip_core::{Bool, Device, Error, Int, Result, Tensor, TensorData, VarBuilder};
#[cfg(feature = "parity")]
use faceclip_core::{Fixture, ParityOutcome, ParityReport};
use serde::Deserialize;

/// transformers `T5Config` or FlashT5's `FlashT5Config` (a `T5Config` with extra fields),
/// read unchanged; missing fields take the upstream defaults. Which fields matter depends on
/// the layout: `feed_forward_proj` for transformers; `use_glu_mlp`, `use_gelu_act`,
/// `attention_scale` and `position_encoding_type` for FlashT5.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    /// transformers: `relu`, `gated-gelu` (tanh GELU), `gated-silu`, ...
    pub feed_forward_proj: String,
    /// FlashT5: gated FF (`wi_0`, `wi_1`) when true, one `wi` otherwise (default false).
    pub use_glu_mlp: Option<bool>,
    /// FlashT5: tanh GELU when true (default), ReLU otherwise.
    pub use_gelu_act: Option<bool>,
    /// FlashT5: the softmax scale (`None`: `1/sqrt(num_heads)`, as upstream).
    pub attention_scale: Option<f64>,
    /// FlashT5: only `t5` (relative buckets) is supported.
    pub position_encoding_type: Option<String>,
}

impl Default for T5Config {
    fn default() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "relu".into(),
            use_glu_mlp: None,
            use_gelu_act: None,
            attention_scale: None,
            position_encoding_type: None,
        }
    }
}

/// Which upstream key names the encoder is loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Layout {
    /// transformers `T5EncoderModel`, keys from the model root.
    Transformers,
    /// FlashT5 `FlashT5Stack`, keys from the stack root (FaceT5's `t5_encoder.`).
    FlashT5,
}

/// The feed-forward input projection: one `wi` or the gated pair `wi_0`, `wi_1`.
#[derive(Debug, Clone)]
enum FfIn {
    Plain(Linear),
    Gated(Linear, Linear),
}

#[derive(Debug, Clone)]
struct T5Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ff_norm: RmsNorm,
    wi: FfIn,
    wo: Linear,
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct T5EncoderOutput {
    /// After `final_layer_norm`, `[B, L, d_model]`.
    pub last_hidden_state: Tensor<3>,
    /// The embeddings fed to block 0, `[B, L, d_model]`.
    pub inputs_embeds: Tensor<3>,
    /// The raw output of every block (before the final norm).
    pub block_outputs: Vec<Tensor<3>>,
    /// Block 0's relative position bias `[1, heads, L, L]` (without the mask term).
    pub position_bias: Tensor<4>,
}

impl T5EncoderOutput {
    /// transformers' `hidden_states`: embeddings, the outputs of blocks `0..n-1`, then the
    /// final-normed output in place of the last block's.
    pub fn hf_hidden_states(&self) -> Vec<Tensor<3>> {
        let mut v = vec![self.inputs_embeds.clone()];
        let n = self.block_outputs.len();
        v.extend(self.block_outputs.iter().take(n.saturating_sub(1)).cloned());
        v.push(self.last_hidden_state.clone());
        v
    }
}

/// The T5 v1.1 encoder; see the module docs.
#[derive(Debug, Clone)]
pub struct T5Encoder {
    pub embed_tokens: Embedding,
    /// `relative_attention_bias.weight` `[num_buckets, heads]` of block 0.
    relative_attention_bias: Embedding,
    blocks: Vec<T5Block>,
    pub final_layer_norm: RmsNorm,
    act: Activation,
    heads: usize,
    scale: f64,
    num_buckets: usize,
    max_distance: usize,
    vocab: usize,
    d_model: usize,
}

impl T5Encoder {
    /// Loads transformers `T5EncoderModel` from `vb` at the model root. Expects
    /// `shared.weight` and tolerates its tied copy `encoder.embed_tokens.weight`.
    pub fn load_transformers(vb: &VarBuilder, cfg: &T5Config) -> Result<Self> {
        Self::load(vb, cfg, T5Layout::Transformers)
    }

    /// Loads FlashT5's `FlashT5Stack` from `vb` at the stack root (in FaceT5's checkpoint:
    /// `vb.pp("t5_encoder")`, in `face_t5_encoder.pt`: `vb.pp("encoder_2.t5_encoder")`).
    pub fn load_flash_t5(vb: &VarBuilder, cfg: &T5Config) -> Result<Self> {
        Self::load(vb, cfg, T5Layout::FlashT5)
    }

    /// Loads the encoder in `layout` from `vb`.
    pub fn load(vb: &VarBuilder, cfg: &T5Config, layout: T5Layout) -> Result<Self> {
        let bad = |m: String| Error::invalid(format!("T5 config: {m}"));
        if cfg.num_heads == 0 || cfg.d_kv == 0 || cfg.d_model == 0 {
            return Err(bad("d_model, d_kv and num_heads must be positive".into()));
        }
        if cfg.relative_attention_num_buckets < 4 || cfg.relative_attention_max_distance == 0 {
            return Err(bad(format!(
                "relative_attention_num_buckets {} / max_distance {} are too small",
                cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
            )));
        }
        let (gated, act, scale) = match layout {
            T5Layout::Transformers => {
                let parts: Vec<&str> = cfg.feed_forward_proj.split('-').collect();
                let gated = parts[0] == "gated";
                if parts.len() > 2 || (parts.len() == 2 && !gated) {
                    return Err(bad(format!(
                        "feed_forward_proj `{}` is not `act` or `gated-act`",
                        cfg.feed_forward_proj
                    )));
                }
                let name = if cfg.feed_forward_proj == "gated-gelu" {
                    "gelu_new"
                } else {
                    parts[parts.len() - 1]
                };
                let act = Activation::from_name(name)
                    .ok_or_else(|| bad(format!("unknown activation `{name}`")))?;
                (gated, act, 1.0)
            }
            T5Layout::FlashT5 => {
                if let Some(p) = cfg.position_encoding_type.as_deref().filter(|p| *p != "t5") {
                    return Err(bad(format!(
                        "FlashT5 position_encoding_type `{p}` is not supported (only `t5`)"
                    )));
                }
                let act = if cfg.use_gelu_act.unwrap_or(true) {
                    Activation::GeluTanh
                } else {
                    Activation::Relu
                };
                let scale = cfg
                    .attention_scale
                    .unwrap_or(1.0 / (cfg.num_heads as f64).sqrt());
                (cfg.use_glu_mlp.unwrap_or(false), act, scale)
            }
        };
        let (d, inner, ff, eps) = (
            cfg.d_model,
            cfg.num_heads * cfg.d_kv,
            cfg.d_ff,
            cfg.layer_norm_epsilon,
        );
        let lin = |v: &VarBuilder, i, o| Linear::load(v, i, o, false);
        let (embed_tokens, stack) = match layout {
            T5Layout::Transformers => {
                vb.tolerate("encoder.embed_tokens.weight");
                (
                    Embedding::load(&vb.pp("shared"), cfg.vocab_size, d),
                    vb.pp("encoder"),
                )
            }
            T5Layout::FlashT5 => (
                Embedding::load(&vb.pp("embed_tokens"), cfg.vocab_size, d),
                vb.clone(),
            ),
        };
        let mut relative_attention_bias = None;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let b = stack.pp("block").pp(i);
            let (attn_ln, a, ff_ln, dense, wi_prefix) = match layout {
                T5Layout::Transformers => (
                    b.pp("layer.0.layer_norm"),
                    b.pp("layer.0.SelfAttention"),
                    b.pp("layer.1.layer_norm"),
                    b.pp("layer.1.DenseReluDense"),
                    b.pp("layer.1.DenseReluDense"),
                ),
                T5Layout::FlashT5 => (
                    b.pp("self_attention_layer.layer_norm"),
                    b.pp("self_attention_layer.self_attention"),
                    b.pp("ff_layer.layer_norm"),
                    b.pp("ff_layer"),
                    b.pp("ff_layer.act"),
                ),
            };
            let (q, k, v, o) = match layout {
                T5Layout::Transformers => (
                    lin(&a.pp("q"), d, inner),
                    lin(&a.pp("k"), d, inner),
                    lin(&a.pp("v"), d, inner),
                    lin(&a.pp("o"), inner, d),
                ),
                T5Layout::FlashT5 => (
                    lin(&a.pp("Wq"), d, inner),
                    lin(&a.pp("Wk"), d, inner),
                    lin(&a.pp("Wv"), d, inner),
                    lin(&a.pp("o"), inner, d),
                ),
            };
            if i == 0 {
                let rb = match layout {
                    T5Layout::Transformers => a.pp("relative_attention_bias"),
                    T5Layout::FlashT5 => a.pp("pe_encoding.relative_attention_bias"),
                };
                relative_attention_bias = Some(Embedding::load(
                    &rb,
                    cfg.relative_attention_num_buckets,
                    cfg.num_heads,
                ));
            }
            let wi = if gated {
                FfIn::Gated(
                    lin(&wi_prefix.pp("wi_0"), d, ff),
                    lin(&wi_prefix.pp("wi_1"), d, ff),
                )
            } else {
                FfIn::Plain(lin(&wi_prefix.pp("wi"), d, ff))
            };
            blocks.push(T5Block {
                attn_norm: RmsNorm::load(&attn_ln, d, eps),
                q,
                k,
                v,
                o,
                ff_norm: RmsNorm::load(&ff_ln, d, eps),
                wi,
                wo: lin(&dense.pp("wo"), ff, d),
            });
        }
        let relative_attention_bias = match relative_attention_bias {
            Some(r) => r,
            None => return Err(bad("num_layers must be at least 1".into())),
        };
        Ok(Self {
            embed_tokens,
            relative_attention_bias,
            blocks,
            final_layer_norm: RmsNorm::load(&stack.pp("final_layer_norm"), d, eps),
            act,
            heads: cfg.num_heads,
            scale,
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
            vocab: cfg.vocab_size,
            d_model: d,
        })
    }

    /// Width of the hidden states.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Token embeddings `[B, L, d_model]` of `ids` `[B, L]` (ids checked against the vocabulary).
    pub fn embed(&self, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let [b, l] = ids.dims();
        if b == 0 || l == 0 {
            return Err(Error::shape("T5 input_ids", &[1, 1], &[b, l]));
        }
        let v = ids
            .clone()
            .try_into_vec_as::<i64>()
            .map_err(|e| Error::invalid(format!("T5 input_ids: {e:?}")))?;
        if let Some(bad) = v.iter().find(|&&id| id < 0 || id as usize >= self.vocab) {
            return Err(Error::invalid(format!(
                "T5 input_ids: id {bad} is outside the vocabulary of {} tokens",
                self.vocab
            )));
        }
        Ok(self.embed_tokens.forward(ids))
    }

    /// The encoder on `ids` `[B, L]`; `attention_mask` `[B, L]` (`true` / 1 = attend) is
    /// optional (FLUX and FaceT5 pass none, so padding is attended).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Bool>>,
    ) -> Result<T5EncoderOutput> {
        let x = self.embed(ids)?;
        self.forward_embeds(x, attention_mask)
    }

    /// The encoder on embeddings `[B, L, d_model]`.
    pub fn forward_embeds(
        &self,
        inputs_embeds: Tensor<3>,
        attention_mask: Option<Tensor<2, Bool>>,
    ) -> Result<T5EncoderOutput> {
        let [b, l, d] = inputs_embeds.dims();
        if d != self.d_model || l == 0 {
            return Err(Error::shape(
                "T5 inputs_embeds",
                &[b, l.max(1), self.d_model],
                &[b, l, d],
            ));
        }
        let device = inputs_embeds.device();
        let position_bias = self.position_bias(l, &device);
        let bias = match attention_mask {
            None => position_bias.clone(),
            Some(m) => {
                if m.dims() != [b, l] {
                    return Err(Error::shape("T5 attention_mask", &[b, l], &m.dims()));
                }
                // transformers: (1 - mask) · finfo(f32).min added to the position bias.
                let additive = Tensor::<2>::zeros([b, l], &device)
                    .mask_fill(m.bool_not(), f32::MIN)
                    .reshape([b, 1, 1, l]);
                position_bias.clone() + additive
            }
        };
        let mut x = inputs_embeds.clone();
        let mut block_outputs = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            let h = blk.attn_norm.forward(x.clone());
            let o = attention(
                split_heads(blk.q.forward(h.clone()), self.heads),
                split_heads(blk.k.forward(h.clone()), self.heads),
                split_heads(blk.v.forward(h), self.heads),
                Some(bias.clone()),
                AttentionMask::None,
                Some(self.scale),
            );
            x = x + blk.o.forward(merge_heads(o));
            let h = blk.ff_norm.forward(x.clone());
            let h = match &blk.wi {
                FfIn::Plain(wi) => self.act.forward(wi.forward(h)),
                FfIn::Gated(wi0, wi1) => {
                    self.act.forward_mul(wi0.forward(h.clone()), wi1.forward(h))
                }
            };
            x = x + blk.wo.forward(h);
            block_outputs.push(x.clone());
        }
        Ok(T5EncoderOutput {
            last_hidden_state: self.final_layer_norm.forward(x),
            inputs_embeds,
            block_outputs,
            position_bias,
        })
    }

    /// Block 0's bidirectional relative position bias for `len` positions, `[1, heads, L, L]`.
    pub fn position_bias(&self, len: usize, device: &Device) -> Tensor<4> {
        let buckets: Vec<i64> = (0..len)
            .flat_map(|q| (0..len).map(move |k| (q, k)))
            .map(|(q, k)| {
                relative_position_bucket(k as i64 - q as i64, self.num_buckets, self.max_distance)
            })
            .collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(buckets, [1, len * len]), device);
        self.relative_attention_bias
            .forward(ids)
            .reshape([len, len, self.heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }
}

/// transformers' / FlashT5's `_relative_position_bucket`, bidirectional: half the buckets for
/// each direction, exact below `num_buckets/4`, logarithmic up to `max_distance`, the last
/// bucket beyond. The logarithm is computed in `f32` as PyTorch does.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> i64 {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative_position > 0 { half } else { 0 };
    let rp = relative_position.abs();
    let max_exact = half / 2;
    if rp < max_exact {
        bucket += rp;
    } else {
        let ratio = ((rp as f32) / (max_exact as f32)).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        let large = max_exact + (ratio * (half - max_exact) as f32) as i64;
        bucket += large.min(half - 1);
    }
    bucket
}

/// Runs the `t5_encoder_hf` fixture (unmasked and masked).
#[cfg(feature = "parity")]
pub(crate) fn parity(fixture: &Fixture, device: &Device) -> ParityOutcome {
    if fixture.kind().ok()? != "t5_encoder_hf" {
        return None;
    }
    Some((|| {
        let cfg: T5Config = fixture.config_as("")?;
        let vb = VarBuilder::from_checkpoint(fixture.weights()?, device);
        let model = T5Encoder::load_transformers(&vb, &cfg)?;
        vb.finish()?;
        let ids = fixture.tensor_int::<2>("in.input_ids", device)?;
        let mask = fixture.tensor_int::<2>("in.attention_mask", device)?.bool();
        let mut r = ParityReport::default();
        let out = model.forward(ids.clone(), None)?;
        r.push(fixture.check("last_hidden_state", out.last_hidden_state.into_data())?);
        let out = model.forward(ids, Some(mask))?;
        r.push(fixture.check(
            "last_hidden_state_masked",
            out.last_hidden_state.into_data(),
        )?);
        Ok(r)
    })())
}

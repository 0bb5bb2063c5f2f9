//! diffusers' `Attention` module as FLUX configures it (`qk_norm="rms_norm"`, eps 1e-6,
//! biased projections), run by `FluxAttnProcessor2_0`: per-head RMSNorm on queries and keys,
//! joint text+image attention (text first), RoPE on queries and keys, and the shared core
//! scaled-dot-product attention.

use faceclip_core::layers::{AttentionMask, Linear, RmsNorm, attention, merge_heads};
use faceclip_core::{Tensor, VarBuilder};

use crate::embeddings::FluxRotaryEmbedding;

const QK_NORM_EPS: f64 = 1e-6;

/// The text-stream projections of a joint (double-block) attention (`added_kv_proj_dim`).
#[derive(Debug, Clone)]
pub struct AddedProjections {
    pub add_q_proj: Linear,
    pub add_k_proj: Linear,
    pub add_v_proj: Linear,
    pub norm_added_q: RmsNorm,
    pub norm_added_k: RmsNorm,
    pub to_add_out: Linear,
}

/// diffusers' `Attention` with `FluxAttnProcessor2_0`. Double blocks carry the text-stream
/// projections and both output projections (`to_out.0`, `to_add_out`); single blocks are
/// `pre_only` (no output projection: the block's `proj_out` follows).
#[derive(Debug, Clone)]
pub struct FluxAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub norm_q: RmsNorm,
    pub norm_k: RmsNorm,
    pub added: Option<AddedProjections>,
    pub to_out: Option<Linear>,
    heads: usize,
    head_dim: usize,
}

impl FluxAttention {
    /// The double-block attention: `to_q/k/v`, `norm_q/k`, `add_q/k/v_proj`,
    /// `norm_added_q/k`, `to_out.0`, `to_add_out`.
    pub fn load_joint(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize) -> Self {
        let inner = heads * head_dim;
        let lin = |name: &str, i: usize, o: usize| Linear::load(&vb.pp(name), i, o, true);
        let norm = |name: &str| RmsNorm::load(&vb.pp(name), head_dim, QK_NORM_EPS);
        Self {
            to_q: lin("to_q", dim, inner),
            to_k: lin("to_k", dim, inner),
            to_v: lin("to_v", dim, inner),
            norm_q: norm("norm_q"),
            norm_k: norm("norm_k"),
            added: Some(AddedProjections {
                add_q_proj: lin("add_q_proj", dim, inner),
                add_k_proj: lin("add_k_proj", dim, inner),
                add_v_proj: lin("add_v_proj", dim, inner),
                norm_added_q: norm("norm_added_q"),
                norm_added_k: norm("norm_added_k"),
                to_add_out: lin("to_add_out", inner, dim),
            }),
            to_out: Some(Linear::load(&vb.pp("to_out").pp(0), inner, dim, true)),
            heads,
            head_dim,
        }
    }

    /// The single-block attention (`pre_only=True`): `to_q/k/v`, `norm_q/k`.
    pub fn load_single(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize) -> Self {
        let inner = heads * head_dim;
        let lin = |name: &str| Linear::load(&vb.pp(name), dim, inner, true);
        let norm = |name: &str| RmsNorm::load(&vb.pp(name), head_dim, QK_NORM_EPS);
        Self {
            to_q: lin("to_q"),
            to_k: lin("to_k"),
            to_v: lin("to_v"),
            norm_q: norm("norm_q"),
            norm_k: norm("norm_k"),
            added: None,
            to_out: None,
            heads,
            head_dim,
        }
    }

    /// `[B, L, H·Dh]` -> `[B, L, H, Dh]` (a free reshape of the projection's output).
    fn split(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, l, _] = x.dims();
        x.reshape([b, l, self.heads, self.head_dim])
    }

    /// Projects and RMS-normalises `x` `[B, L, dim]` to `(q, k, v)`, each `[B, L, H, Dh]`.
    fn qkv(
        &self,
        x: Tensor<3>,
        (to_q, to_k, to_v): (&Linear, &Linear, &Linear),
        (norm_q, norm_k): (&RmsNorm, &RmsNorm),
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let q = norm_q.forward(self.split(to_q.forward(x.clone())));
        let k = norm_k.forward(self.split(to_k.forward(x.clone())));
        let v = self.split(to_v.forward(x));
        (q, k, v)
    }

    /// RoPE on `q`, `k` `[B, L, H, Dh]`, attention, heads merged: `[B, L, H·Dh]`.
    fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, rope: &FluxRotaryEmbedding) -> Tensor<3> {
        let q = rope.apply(q).swap_dims(1, 2);
        let k = rope.apply(k).swap_dims(1, 2);
        let v = v.swap_dims(1, 2);
        merge_heads(attention(q, k, v, None, AttentionMask::None, None))
    }

    /// Joint attention of the double blocks: `img` `[B, Li, dim]` and `txt` `[B, Lt, dim]`
    /// attend together (text first, matching `rope` over `[txt, img]`); returns
    /// `(to_out(img part), to_add_out(text part))`.
    pub fn forward_joint(
        &self,
        img: Tensor<3>,
        txt: Tensor<3>,
        rope: &FluxRotaryEmbedding,
    ) -> (Tensor<3>, Tensor<3>) {
        let added = self
            .added
            .as_ref()
            .expect("forward_joint is only called on attention loaded with load_joint");
        let to_out = self.to_out.as_ref().expect("load_joint loads to_out");
        let [b, li, _] = img.dims();
        let lt = txt.dims()[1];
        let (qi, ki, vi) = self.qkv(
            img,
            (&self.to_q, &self.to_k, &self.to_v),
            (&self.norm_q, &self.norm_k),
        );
        let (qt, kt, vt) = self.qkv(
            txt,
            (&added.add_q_proj, &added.add_k_proj, &added.add_v_proj),
            (&added.norm_added_q, &added.norm_added_k),
        );
        let q = Tensor::cat(vec![qt, qi], 1);
        let k = Tensor::cat(vec![kt, ki], 1);
        let v = Tensor::cat(vec![vt, vi], 1);
        let out = Self::attend(q, k, v, rope);
        let inner = self.heads * self.head_dim;
        let txt_out = out.clone().slice([0..b, 0..lt, 0..inner]);
        let img_out = out.slice([0..b, lt..lt + li, 0..inner]);
        (to_out.forward(img_out), added.to_add_out.forward(txt_out))
    }

    /// Self-attention of the single blocks on `x` `[B, L, dim]`; returns `[B, L, H·Dh]`
    /// (no output projection).
    pub fn forward_single(&self, x: Tensor<3>, rope: &FluxRotaryEmbedding) -> Tensor<3> {
        let (q, k, v) = self.qkv(
            x,
            (&self.to_q, &self.to_k, &self.to_v),
            (&self.norm_q, &self.norm_k),
        );
        Self::attend(q, k, v, rope)
    }
}

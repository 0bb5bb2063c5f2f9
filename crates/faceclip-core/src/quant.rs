//! Weight-only quantization with GGML's block formats (`Q8_0`, `Q4_0`): 32 consecutive values
//! of a row share one `f16` scale. Weights are quantized one tensor at a time as they are read
//! ([`crate::VarBuilder::with_quant`]), so the full-precision model is never in memory, and
//! linear layers compute from the blocks ([`QMatrix::matmul_t`]): a tile of rows is expanded to
//! `f32` right before the GEMM that uses it, never the whole matrix.
//!
//! The block layouts and the rounding rules are GGML's (`block_q8_0`, `block_q4_0`,
//! `quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), so a GGUF file written here
//! ([`crate::gguf::save_quantized`]) is read the same by llama.cpp's tools, and theirs by this crate.

use std::sync::Arc;

use half::f16;

use crate::checkpoint::StoredDType;
use crate::error::{Error, Result};

/// Values per block (GGML's `QK8_0` = `QK4_0` = 32).
pub const BLOCK: usize = 32;

/// A block quantization format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// `Q8_0`: 32 `i8` and one `f16` scale, 34 bytes per 32 values (8.5 bits a value).
    Q8_0,
    /// `Q4_0`: 32 4-bit values (offset 8) and one `f16` scale, 18 bytes per 32 values.
    Q4_0,
}

impl QuantType {
    /// Bytes of one block of [`BLOCK`] values.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 2 + BLOCK,
            Self::Q4_0 => 2 + BLOCK / 2,
        }
    }

    /// GGML's type id (`GGML_TYPE_Q8_0` = 8, `GGML_TYPE_Q4_0` = 2; the one table is
    /// [`StoredDType::ggml_type`]).
    pub fn ggml_type(self) -> u32 {
        StoredDType::from_quant(self)
            .ggml_type()
            .expect("every block type has a GGML id")
    }

    /// The name `--quant` takes: `q8`, `q4`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8",
            Self::Q4_0 => "q4",
        }
    }

    /// GGML's name: `Q8_0`, `Q4_0`.
    pub const fn ggml_name(self) -> &'static str {
        match self {
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
        }
    }

    /// Bytes that `numel` values take (`None` when `numel` is not a whole number of blocks or
    /// the size overflows).
    pub fn bytes_for(self, numel: usize) -> Option<usize> {
        numel
            .is_multiple_of(BLOCK)
            .then(|| (numel / BLOCK).checked_mul(self.block_bytes()))?
    }
}

/// Appends the blocks of `x` (a whole number of blocks) to `out`, with GGML's reference
/// rounding.
pub fn quantize_into(kind: QuantType, x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len() % BLOCK, 0);
    out.reserve(x.len() / BLOCK * kind.block_bytes());
    for b in x.chunks_exact(BLOCK) {
        match kind {
            QuantType::Q8_0 => {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
            }
            QuantType::Q4_0 => {
                // The value of largest magnitude, with its sign, maps to -8.
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in b {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..BLOCK / 2).map(|j| q(b[j]) | (q(b[j + BLOCK / 2]) << 4)));
            }
        }
    }
}

/// Expands blocks to `f32`: `out.len()` values from `blocks` (which must hold exactly
/// `out.len() / BLOCK` blocks; the caller checked the sizes).
pub fn dequantize_into(kind: QuantType, blocks: &[u8], out: &mut [f32]) {
    debug_assert_eq!(Some(blocks.len()), kind.bytes_for(out.len()));
    for (b, o) in blocks
        .chunks_exact(kind.block_bytes())
        .zip(out.chunks_exact_mut(BLOCK))
    {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let q = &b[2..];
        match kind {
            QuantType::Q8_0 => o
                .iter_mut()
                .zip(q)
                .for_each(|(o, &q)| *o = f32::from(q as i8) * d),
            QuantType::Q4_0 => {
                for j in 0..BLOCK / 2 {
                    o[j] = (f32::from(q[j] & 0x0f) - 8.0) * d;
                    o[j + BLOCK / 2] = (f32::from(q[j] >> 4) - 8.0) * d;
                }
            }
        }
    }
}

/// A `[rows, cols]` matrix in blocks along each row (a `torch.nn.Linear` weight `[out, in]`:
/// GGUF's layout for it, `ne = [in, out]`). Cloning shares the blocks.
#[derive(Clone)]
pub struct QMatrix {
    kind: QuantType,
    rows: usize,
    cols: usize,
    blocks: Arc<Vec<u8>>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QMatrix({} [{}, {}])",
            self.kind.ggml_name(),
            self.rows,
            self.cols
        )
    }
}

impl QMatrix {
    /// Quantizes `values` (`[rows, cols]`, row-major); `cols` must be a multiple of [`BLOCK`].
    pub fn quantize(kind: QuantType, rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        Self::check(kind, rows, cols)?;
        if values.len() != rows * cols {
            return Err(Error::shape(
                "values to quantize",
                &[rows, cols],
                &[values.len()],
            ));
        }
        let mut blocks = Vec::new();
        quantize_into(kind, values, &mut blocks);
        Ok(Self {
            kind,
            rows,
            cols,
            blocks: Arc::new(blocks),
        })
    }

    /// Wraps stored blocks (from a GGUF file), checking their size.
    pub fn from_blocks(kind: QuantType, rows: usize, cols: usize, blocks: Vec<u8>) -> Result<Self> {
        Self::check(kind, rows, cols)?;
        let want = rows.checked_mul(cols).and_then(|n| kind.bytes_for(n));
        if want != Some(blocks.len()) {
            return Err(Error::invalid(format!(
                "{} [{rows}, {cols}] needs {} bytes of blocks, found {}",
                kind.ggml_name(),
                want.map_or("more than usize::MAX".into(), |w| w.to_string()),
                blocks.len()
            )));
        }
        Ok(Self {
            kind,
            rows,
            cols,
            blocks: Arc::new(blocks),
        })
    }

    fn check(kind: QuantType, rows: usize, cols: usize) -> Result<()> {
        if !cols.is_multiple_of(BLOCK) || rows == 0 {
            return Err(Error::invalid(format!(
                "{} needs rows of a multiple of {BLOCK} values; the matrix is [{rows}, {cols}]",
                kind.ggml_name()
            )));
        }
        Ok(())
    }

    /// Whether a `[rows, cols]` weight can be held in blocks.
    pub fn fits(rows: usize, cols: usize) -> bool {
        rows > 0 && cols > 0 && cols.is_multiple_of(BLOCK)
    }

    /// The format.
    pub fn kind(&self) -> QuantType {
        self.kind
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The blocks as stored (GGML layout).
    pub fn blocks(&self) -> &[u8] {
        &self.blocks
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.blocks.len()
    }

    /// Rows `r0..r0 + out.len() / cols` expanded to `f32` into `out`.
    pub fn dequantize_rows(&self, r0: usize, out: &mut [f32]) {
        let row_bytes = self.cols / BLOCK * self.kind.block_bytes();
        let n = out.len() / self.cols;
        dequantize_into(
            self.kind,
            &self.blocks[r0 * row_bytes..(r0 + n) * row_bytes],
            out,
        );
    }

    /// The whole matrix in `f32` (`[rows, cols]` row-major): for backends without a block
    /// kernel, one layer at a time.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        out
    }
}

/// The nn.Embedding tables of the supported models, which stay in full precision.
const EMBEDDING_TABLES: [&str; 5] = [
    "shared",
    "embed_tokens",
    "relative_attention_bias",
    "token_embedding",
    "position_embedding",
];

/// Whether `faceclip convert --quant` stores tensor `name` of `shape` in blocks: a 2-D
/// `*.weight` whose rows are whole blocks and that is not an embedding table (norms,
/// embeddings and biases stay in full precision). At load, only linear layers take blocks; a
/// quantized tensor read any other way is expanded to full precision.
pub fn is_quantizable(name: &str, shape: &[usize]) -> bool {
    let Some(module) = name.strip_suffix(".weight") else {
        return false;
    };
    let last = module.rsplit('.').next().unwrap_or(module);
    shape.len() == 2 && QMatrix::fits(shape[0], shape[1]) && !EMBEDDING_TABLES.contains(&last)
}

impl QMatrix {
    /// `x · selfᵀ`: `x` `[m, cols]` row-major to `[m, rows]`, a linear layer's product computed
    /// from the blocks (the CPU kernel, [`crate::layers`]' host kernels).
    #[cfg(feature = "flex")]
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        crate::layers::host::matmul_blocks_t(self, x, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values of varied magnitude (no RNG crate needed).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s as f32 / u32::MAX as f32) * 2.0 - 1.0;
                u * (1.0 + (i % 97) as f32 / 10.0)
            })
            .collect()
    }

    #[test]
    fn ggml_reference_rounding_on_a_known_block() {
        // One block: 0..31 scaled so the largest is 31; Q8_0's step is 31/127.
        let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let mut b = Vec::new();
        quantize_into(QuantType::Q8_0, &x, &mut b);
        assert_eq!(b.len(), 34);
        assert_eq!(
            f16::from_le_bytes([b[0], b[1]]),
            f16::from_f32(31.0 / 127.0)
        );
        assert_eq!(b[2 + 31] as i8, 127);
        assert_eq!(b[2 + 1] as i8, (127.0f32 / 31.0).round() as i8); // 4.1 -> 4
        // Q4_0: the largest value (31, positive) maps to -8, so d = -31/8; 0 maps to 8.
        let mut b = Vec::new();
        quantize_into(QuantType::Q4_0, &x, &mut b);
        assert_eq!(b.len(), 18);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]), f16::from_f32(-31.0 / 8.0));
        assert_eq!(b[2] & 0x0f, 8, "x[0] = 0 -> 8");
        assert_eq!(b[2 + 15] >> 4, 0, "x[31] = max -> 0 (-8 d)");
        let mut back = vec![0f32; 32];
        dequantize_into(QuantType::Q4_0, &b, &mut back);
        assert_eq!(back[0], 0.0);
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let x = values(32 * 64, 7);
        for kind in [QuantType::Q8_0, QuantType::Q4_0] {
            let q = QMatrix::quantize(kind, 64, 32, &x).unwrap();
            assert_eq!(q.nbytes(), kind.bytes_for(x.len()).unwrap());
            let back = q.dequantize();
            for (blk, (xb, bb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Half a step, plus the f16 rounding of the scale (relative 2^-11).
                let step = match kind {
                    QuantType::Q8_0 => amax / 127.0,
                    QuantType::Q4_0 => amax / 8.0,
                };
                // Q4_0's levels run -8..7 steps with the largest value at -8: a value of the
                // other sign beyond 7 steps is clamped there, up to one whole step off.
                let bound = |a: f32| {
                    let clamped = kind == QuantType::Q4_0 && a.abs() > 7.0 * step;
                    (if clamped { step } else { step / 2.0 }) + amax * 1e-3
                };
                for (a, b) in xb.iter().zip(bb) {
                    let bound = bound(*a);
                    assert!(
                        (a - b).abs() <= bound,
                        "{kind:?} block {blk}: {a} -> {b}, bound {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_and_block_sizes_are_errors() {
        let e = QMatrix::quantize(QuantType::Q8_0, 2, 33, &[0.0; 66]).unwrap_err();
        assert!(e.to_string().contains("[2, 33]"), "{e}");
        let e = QMatrix::from_blocks(QuantType::Q4_0, 2, 32, vec![0; 35]).unwrap_err();
        assert!(e.to_string().contains("needs 36 bytes"), "{e}");
        assert!(!is_quantizable("encoder.shared.weight", &[32128, 4096]));
        assert!(!is_quantizable("x.norm.weight", &[4096]));
        assert!(!is_quantizable("x.proj.bias", &[64, 64]));
        assert!(is_quantizable(
            "transformer_blocks.0.attn.to_q.weight",
            &[3072, 3072]
        ));
        assert!(!is_quantizable("x_embedder.weight", &[3072, 48]));
    }

    #[cfg(feature = "flex")]
    #[test]
    fn block_kernel_equals_the_expanded_product() {
        for (m, n, k) in [(1, 48, 64), (7, 300, 96), (130, 64, 256), (70, 40, 32)] {
            let w = values(n * k, 3);
            let x = values(m * k, 11);
            for kind in [QuantType::Q8_0, QuantType::Q4_0] {
                let q = QMatrix::quantize(kind, n, k, &w).unwrap();
                let wd = q.dequantize();
                let got = q.matmul_t(&x, m);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|t| f64::from(x[i * k + t]) * f64::from(wd[j * k + t]))
                            .sum();
                        let g = f64::from(got[i * n + j]);
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{kind:?} [{m},{n},{k}] ({i},{j}): {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

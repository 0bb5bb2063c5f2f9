//! GGUF files (issue #21): the writer's output read back bit for bit through `Checkpoint`, a
//! file built by hand from the spec (so the format is checked independently of the writer),
//! and malformed or hostile files, each refused with a message naming the cause.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::scratch;
use faceclip_core::gguf::{
    GgufArray, GgufFile, GgufTensorSpec, GgufValue, GgufValueType, write_gguf,
};
use faceclip_core::quant::{BLOCK, QuantType, dequantize_into, quantize_into};
use faceclip_core::{Checkpoint, Error, StoredDType};

// ---------------------------------------------------------------------------------- helpers

/// A GGUF byte string built field by field, as the spec lays it out.
#[derive(Default, Clone)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut b = Self(b"GGUF".to_vec());
        b.u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// A metadata entry of type `ty` whose value bytes follow.
    fn kv(&mut self, key: &str, ty: u32) -> &mut Self {
        self.str(key).u32(ty)
    }
    /// A tensor info; `ne` innermost first, as stored.
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_to(&mut self, align: usize) -> &mut Self {
        let n = self.0.len().next_multiple_of(align);
        self.0.resize(n, 0);
        self
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// Opens `path` expecting a checkpoint error naming the file, on one line, containing every
/// `needle`; the same bytes from memory must be refused with the same message.
fn refused(path: &Path, needles: &[&str]) -> String {
    let err = Checkpoint::open(path).expect_err("opened");
    assert!(
        matches!(err, Error::Checkpoint { .. }),
        "not a checkpoint error: {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()),
        "does not name the file: {msg}"
    );
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "`{n}` not in: {msg}");
    }
    let mem = Checkpoint::from_gguf_bytes(path, &fs::read(path).unwrap())
        .expect_err("opened from memory");
    assert_eq!(mem.to_string(), msg, "file and buffer readers disagree");
    msg
}

/// A deterministic pseudo-random row of `n` values in about [-2, 2].
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect()
}

fn quantized(kind: QuantType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    quantize_into(kind, v, &mut out);
    out
}

// ---------------------------------------------------------------------------------- round trip

#[test]
fn round_trip_f32_f16_q8_q4_with_metadata() {
    let dir = scratch("gguf_round_trip");
    let path = dir.join("model.gguf");
    let w = values(3 * 5, 1);
    let h: Vec<half::f16> = values(7, 2)
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let q8v = values(4 * 64, 3);
    let q4v = values(3 * 32, 4);
    let tensors = vec![
        GgufTensorSpec::new("linear.weight", [3, 5], 0),
        GgufTensorSpec::new("norm.bias", [7], 1),
        GgufTensorSpec::new("q8.weight", [4, 64], QuantType::Q8_0.ggml_type()),
        GgufTensorSpec::new("q4.weight", [3, 32], QuantType::Q4_0.ggml_type()),
        GgufTensorSpec::new("scalar", Vec::new(), 0),
        GgufTensorSpec::new("empty", [0, 32], QuantType::Q8_0.ggml_type()),
        GgufTensorSpec::new("ids", [2, 2], 27),
    ];
    let data: Vec<Vec<u8>> = vec![
        f32_bytes(&w),
        h.iter().flat_map(|x| x.to_le_bytes()).collect(),
        quantized(QuantType::Q8_0, &q8v),
        quantized(QuantType::Q4_0, &q4v),
        f32_bytes(&[2.5]),
        Vec::new(),
        [1i64, -2, 3, i64::MAX]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    ];
    let metadata: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), "faceclip".into()),
        ("general.quantization_version".into(), 2u32.into()),
        ("faceclip.scale".into(), 0.18215f32.into()),
        ("faceclip.flag".into(), true.into()),
        ("faceclip.big".into(), (-5i64).into()),
        ("faceclip.f64".into(), 1.5f64.into()),
        (
            "faceclip.names".into(),
            GgufArray::String(vec!["a".into(), "ü".into(), String::new()]).into(),
        ),
        (
            "faceclip.nested".into(),
            GgufArray::Array(vec![
                GgufArray::I32(vec![1, -2]),
                GgufArray::F64(Vec::new()),
            ])
            .into(),
        ),
    ];
    let mut calls = Vec::new();
    write_gguf(&path, &metadata, &tensors, |i| {
        calls.push(i);
        Ok(data[i].clone())
    })
    .unwrap();
    assert_eq!(
        calls,
        (0..tensors.len()).collect::<Vec<_>>(),
        "one call per tensor, in order"
    );

    let ck = Checkpoint::open(&path).unwrap();
    let listed: Vec<(String, Vec<usize>, StoredDType)> = ck
        .list()
        .into_iter()
        .map(|i| (i.name, i.shape, i.dtype))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("empty".into(), vec![0, 32], StoredDType::Q8_0),
            ("ids".into(), vec![2, 2], StoredDType::I64),
            ("linear.weight".into(), vec![3, 5], StoredDType::F32),
            ("norm.bias".into(), vec![7], StoredDType::F16),
            ("q4.weight".into(), vec![3, 32], StoredDType::Q4_0),
            ("q8.weight".into(), vec![4, 64], StoredDType::Q8_0),
            ("scalar".into(), vec![], StoredDType::F32),
        ]
    );
    for (t, bytes) in tensors.iter().zip(&data) {
        let (info, raw) = ck.read_raw(&t.name).unwrap();
        assert_eq!(info.shape, t.shape);
        assert_eq!(&raw, bytes, "`{}` read_raw", t.name);
    }
    assert_eq!(ck.read_f32("linear.weight").unwrap(), (vec![3, 5], w));
    let (_, hf) = ck.read_f32("norm.bias").unwrap();
    assert_eq!(hf, h.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
    for (name, kind, v) in [
        ("q8.weight", QuantType::Q8_0, &q8v),
        ("q4.weight", QuantType::Q4_0, &q4v),
    ] {
        assert_eq!(ck.quant_type(name), Some(kind));
        let (shape, got) = ck.read_f32(name).unwrap();
        let mut want = vec![0f32; v.len()];
        dequantize_into(kind, &quantized(kind, v), &mut want);
        assert_eq!(shape, ck.info(name).unwrap().shape);
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "`{name}` read_f32"
        );
        // Close to the values quantized (the block formats' own error).
        let tol = if kind == QuantType::Q8_0 { 0.02 } else { 0.3 };
        assert!(got.iter().zip(v.iter()).all(|(a, b)| (a - b).abs() < tol));
    }
    assert_eq!(ck.quant_type("linear.weight"), None);
    assert_eq!(ck.read_f32("scalar").unwrap(), (vec![], vec![2.5]));
    assert_eq!(ck.read_f32("empty").unwrap(), (vec![0, 32], vec![]));
    assert_eq!(
        ck.read_i64("ids").unwrap(),
        (vec![2, 2], vec![1, -2, 3, i64::MAX])
    );
    // read_data and release work on mapped GGUF tensors as on safetensors.
    assert_eq!(
        ck.read_data("q4.weight").unwrap().shape().to_vec(),
        vec![3, 32]
    );
    ck.release("q8.weight");
    assert_eq!(ck.read_raw("q8.weight").unwrap().1, data[2]);

    let meta = ck.gguf_metadata().expect("a GGUF file has metadata");
    assert_eq!(meta.entries(), metadata.as_slice());
    assert_eq!(meta.get_str("general.architecture"), Some("faceclip"));
    assert_eq!(meta.get_u64("general.quantization_version"), Some(2));
    assert_eq!(meta.get_f64("faceclip.scale"), Some(f64::from(0.18215f32)));
    assert_eq!(
        meta.get("faceclip.big").and_then(GgufValue::as_i64),
        Some(-5)
    );
    assert_eq!(
        meta.get("faceclip.flag").and_then(GgufValue::as_bool),
        Some(true)
    );
    assert_eq!(meta.get("missing"), None);

    // The layout: every tensor at a multiple of 32 from a data start at a multiple of 32.
    let bytes = fs::read(&path).unwrap();
    let parsed = GgufFile::parse(&path, &bytes).unwrap();
    assert_eq!((parsed.version, parsed.alignment), (3, 32));
    assert_eq!(parsed.data_start % 32, 0);
    assert!(parsed.tensors.iter().all(|t| t.offset % 32 == 0));
    assert_eq!(bytes.len() % 32, 0, "the last tensor is padded too");
    // The in-memory reader agrees with the mapped one.
    let mem = Checkpoint::from_gguf_bytes(&path, &bytes).unwrap();
    assert_eq!(mem.list(), ck.list());
    assert_eq!(
        mem.read_raw("q4.weight").unwrap(),
        ck.read_raw("q4.weight").unwrap()
    );
    // Renaming keeps the metadata.
    assert!(ck.strip_prefix("q8.").gguf_metadata().is_some());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn custom_alignment_is_written_and_read() {
    let dir = scratch("gguf_alignment");
    let path = dir.join("a.gguf");
    let meta = vec![("general.alignment".to_string(), GgufValue::U32(64))];
    let specs = [
        GgufTensorSpec::new("a", [3], 0),
        GgufTensorSpec::new("b", [2], 0),
    ];
    write_gguf(&path, &meta, &specs, |i| {
        Ok(f32_bytes(&[i as f32; 3][..3 - i]))
    })
    .unwrap();
    let bytes = fs::read(&path).unwrap();
    let g = GgufFile::parse(&path, &bytes).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_start % 64, 0);
    assert_eq!(
        g.tensors.iter().map(|t| t.offset).collect::<Vec<_>>(),
        vec![0, 64]
    );
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.read_f32("b").unwrap().1, vec![1.0, 1.0]);
    let _ = fs::remove_dir_all(dir);
}

// ------------------------------------------------------------------------ the spec, by hand

/// The file the spec describes, byte by byte: header, two key/values, two tensor infos with
/// `ne` innermost first, padding to 32, the data of each tensor at a multiple of 32.
fn hand_built() -> (Vec<u8>, Vec<f32>, Vec<u8>) {
    let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    let q = quantized(QuantType::Q8_0, &values(BLOCK, 9));
    let mut b = Bytes::header(3, 2, 2);
    b.kv("general.architecture", 8)
        .str("faceclip")
        .kv("faceclip.answer", 4)
        .u32(42)
        // `w` is [2, 3] in PyTorch order: ne = [3, 2].
        .tensor("w", &[3, 2], 0, 0)
        .tensor("q", &[32], 8, 32)
        .pad_to(32)
        .raw(&f32_bytes(&w))
        .pad_to(32)
        .raw(&q)
        .pad_to(32);
    (b.0, w, q)
}

#[test]
fn hand_built_file_is_read_as_the_spec_says() {
    let dir = scratch("gguf_spec");
    let (bytes, w, q) = hand_built();
    assert_eq!(&bytes[..4], b"GGUF");
    let path = write_file(&dir, "spec.gguf", &bytes);
    let g = GgufFile::parse(&path, &bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata.len(), 2);
    assert_eq!(g.tensors.len(), 2);
    assert_eq!(g.metadata.get_str("general.architecture"), Some("faceclip"));
    assert_eq!(g.metadata.get("faceclip.answer"), Some(&GgufValue::U32(42)));
    assert_eq!(
        g.metadata.get("faceclip.answer").map(GgufValue::value_type),
        Some(GgufValueType::U32)
    );
    assert_eq!(g.tensors[0].shape, vec![2, 3], "ne reversed");
    assert_eq!(g.tensors[0].ggml_type, 0);
    assert_eq!(g.tensors[1].dtype, StoredDType::Q8_0);
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.read_f32("w").unwrap(), (vec![2, 3], w.clone()));
    assert_eq!(ck.read_raw("q").unwrap().1, q);

    // The writer produces exactly these bytes from the same content.
    let out = dir.join("written.gguf");
    write_gguf(
        &out,
        &[
            ("general.architecture".into(), "faceclip".into()),
            ("faceclip.answer".into(), 42u32.into()),
        ],
        &[
            GgufTensorSpec::new("w", [2, 3], 0),
            GgufTensorSpec::new("q", [32], 8),
        ],
        |i| Ok(if i == 0 { f32_bytes(&w) } else { q.clone() }),
    )
    .unwrap();
    assert_eq!(
        fs::read(&out).unwrap(),
        bytes,
        "writer output differs from the spec"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn version_2_and_files_without_tensors_are_read() {
    let dir = scratch("gguf_v2");
    let mut b = Bytes::header(2, 1, 1);
    b.kv("k", 7)
        .u8(1)
        .tensor("t", &[2], 26, 0)
        .pad_to(32)
        .u32(7)
        .u32(u32::MAX);
    let p = write_file(&dir, "v2.gguf", &b.0);
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(ck.read_i64("t").unwrap(), (vec![2], vec![7, -1]));
    assert_eq!(
        ck.gguf_metadata().unwrap().get("k"),
        Some(&GgufValue::Bool(true))
    );
    // No tensors and no padding after the metadata.
    let mut b = Bytes::header(3, 0, 1);
    b.kv("general.name", 8).str("vocab only");
    let p = write_file(&dir, "none.gguf", &b.0);
    let ck = Checkpoint::open(&p).unwrap();
    assert!(ck.is_empty());
    assert_eq!(
        ck.gguf_metadata().unwrap().get_str("general.name"),
        Some("vocab only")
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn every_metadata_value_type_is_read() {
    let dir = scratch("gguf_values");
    let mut b = Bytes::header(3, 0, 13);
    b.kv("u8", 0).u8(200);
    b.kv("i8", 1).u8(0xfe);
    b.kv("u16", 2).raw(&500u16.to_le_bytes());
    b.kv("i16", 3).raw(&(-500i16).to_le_bytes());
    b.kv("u32", 4).u32(70000);
    b.kv("i32", 5).raw(&(-70000i32).to_le_bytes());
    b.kv("f32", 6).raw(&1.25f32.to_le_bytes());
    b.kv("bool", 7).u8(0);
    b.kv("str", 8).str("x");
    b.kv("arr", 9).u32(3).u64(2).raw(&[1, 0, 2, 0]);
    b.kv("u64", 10).u64(1 << 40);
    b.kv("i64", 11).u64(-3i64 as u64);
    b.kv("f64", 12).raw(&0.5f64.to_le_bytes());
    let p = write_file(&dir, "values.gguf", &b.0);
    let g = GgufFile::parse(&p, &b.0).unwrap();
    let m = &g.metadata;
    assert_eq!(m.get("u8"), Some(&GgufValue::U8(200)));
    assert_eq!(m.get("i8"), Some(&GgufValue::I8(-2)));
    assert_eq!(m.get("u16"), Some(&GgufValue::U16(500)));
    assert_eq!(m.get("i16"), Some(&GgufValue::I16(-500)));
    assert_eq!(m.get("u32"), Some(&GgufValue::U32(70000)));
    assert_eq!(m.get("i32"), Some(&GgufValue::I32(-70000)));
    assert_eq!(m.get("f32"), Some(&GgufValue::F32(1.25)));
    assert_eq!(m.get("bool"), Some(&GgufValue::Bool(false)));
    assert_eq!(m.get_str("str"), Some("x"));
    assert_eq!(
        m.get("arr").and_then(GgufValue::as_array),
        Some(&GgufArray::I16(vec![1, 2]))
    );
    assert_eq!(m.get_u64("u64"), Some(1 << 40));
    assert_eq!(m.get("i64").and_then(GgufValue::as_i64), Some(-3));
    assert_eq!(m.get_f64("f64"), Some(0.5));
    assert_eq!(m.get_u64("i64"), None, "negative is no u64");
    // The writer writes the same bytes back.
    let out = dir.join("again.gguf");
    write_gguf(&out, m.entries(), &[], |_| Ok(Vec::new())).unwrap();
    assert_eq!(fs::read(&out).unwrap(), b.0);
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------- malformed

#[test]
fn bad_magic_and_truncated_header() {
    let dir = scratch("gguf_magic");
    let p = write_file(
        &dir,
        "magic.gguf",
        b"GGML\x03\x00\x00\x00 and more bytes here",
    );
    refused(&p, &["not a GGUF file", "GGML"]);
    let p = write_file(&dir, "short.gguf", &Bytes::header(3, 0, 0).0[..20]);
    refused(&p, &["truncated GGUF header", "20 bytes", "needs 24"]);
    let p = write_file(&dir, "tiny.gguf", b"GG");
    refused(&p, &["truncated GGUF header"]);
    let p = write_file(&dir, "v1.gguf", &Bytes::header(1, 0, 0).0);
    refused(&p, &["GGUF version 1 is not supported"]);
    let p = write_file(&dir, "be.gguf", &Bytes::header(3u32.swap_bytes(), 0, 0).0);
    refused(&p, &["big-endian"]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let dir = scratch("gguf_counts");
    let p = write_file(&dir, "tensors.gguf", &Bytes::header(3, u64::MAX, 0).0);
    refused(
        &p,
        &["tensor count is 18446744073709551615", "0 bytes left"],
    );
    let mut b = Bytes::header(3, 1 << 40, 0);
    b.tensor("w", &[1], 0, 0);
    let p = write_file(&dir, "tensors2.gguf", &b.0);
    refused(&p, &["tensor count is 1099511627776"]);
    let p = write_file(&dir, "kvs.gguf", &Bytes::header(3, 0, 1 << 50).0);
    refused(&p, &["metadata count is 1125899906842624"]);
    // An array of 2^61 u64 values in a 100-byte file.
    let mut b = Bytes::header(3, 0, 1);
    b.kv("big", 9).u32(10).u64(1 << 61).raw(&[0; 40]);
    let p = write_file(&dir, "array.gguf", &b.0);
    refused(
        &p,
        &["metadata `big`", "array of uint64 is 2305843009213693952"],
    );
    // An array of 2^40 strings.
    let mut b = Bytes::header(3, 0, 1);
    b.kv("strs", 9).u32(8).u64(1 << 40).raw(&[0; 40]);
    let p = write_file(&dir, "strings.gguf", &b.0);
    refused(&p, &["metadata `strs`", "array of string is 1099511627776"]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn string_length_past_the_end() {
    let dir = scratch("gguf_strings");
    let mut b = Bytes::header(3, 0, 1);
    b.u64(1000).raw(b"general.name");
    let p = write_file(&dir, "key.gguf", &b.0);
    refused(
        &p,
        &[
            "metadata entry 0's key",
            "string length 1000 goes past the end",
        ],
    );
    let mut b = Bytes::header(3, 0, 1);
    b.kv("general.name", 8).u64(u64::MAX).raw(b"x");
    let p = write_file(&dir, "value.gguf", &b.0);
    refused(
        &p,
        &[
            "metadata `general.name`",
            "string length 18446744073709551615",
        ],
    );
    let mut b = Bytes::header(3, 1, 0);
    b.u64(77).raw(b"w").raw(&[0; 30]);
    let p = write_file(&dir, "name.gguf", &b.0);
    refused(&p, &["tensor info 0's name", "string length 77"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv("k", 9).u32(8).u64(2).str("ok").u64(99).raw(b"no");
    let p = write_file(&dir, "array.gguf", &b.0);
    refused(&p, &["metadata `k`'s string 1", "string length 99"]);
    let mut b = Bytes::header(3, 0, 1);
    b.str("caf\u{e9}").u32(4).u32(1);
    b.0[24 + 8 + 3] = 0xff;
    let p = write_file(&dir, "utf8.gguf", &b.0);
    refused(&p, &["metadata entry 0's key is not UTF-8"]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn tensor_data_past_the_end() {
    let dir = scratch("gguf_offsets");
    // 24 bytes of F32 [2, 3] at offset 32: past the 32 bytes of data.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[3, 2], 0, 32).pad_to(32).raw(&[0; 32]);
    let p = write_file(&dir, "offset.gguf", &b.0);
    refused(
        &p,
        &[
            "tensor `w`",
            "offset 32 of 24 bytes",
            "goes beyond the 32 bytes of tensor data",
        ],
    );
    // An offset near u64::MAX (aligned): no overflow.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1], 0, u64::MAX - 31)
        .pad_to(32)
        .raw(&[0; 32]);
    let p = write_file(&dir, "huge_offset.gguf", &b.0);
    refused(&p, &["tensor `w`", "goes beyond"]);
    // The data is cut short.
    let (bytes, _, _) = hand_built();
    let p = write_file(&dir, "cut.gguf", &bytes[..bytes.len() - 40]);
    refused(&p, &["tensor `q`", "goes beyond the"]);
    // The data section itself would start past the end.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[0], 0, 0);
    let p = write_file(&dir, "no_data.gguf", &b.0);
    refused(
        &p,
        &[
            "the tensor data should start at offset 64",
            "holds 57 bytes",
        ],
    );
    // An offset that is not a multiple of the alignment.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1], 0, 4).pad_to(32).raw(&[0; 32]);
    let p = write_file(&dir, "unaligned.gguf", &b.0);
    refused(
        &p,
        &[
            "tensor `w`",
            "offset 4 is not a multiple of the alignment 32",
        ],
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn overlapping_tensors_are_accepted() {
    // The spec asks for aligned offsets, not for disjoint data: two views of one range read.
    let dir = scratch("gguf_overlap");
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("a", &[2], 0, 0)
        .tensor("b", &[1], 0, 0)
        .pad_to(32)
        .raw(&f32_bytes(&[1.0, 2.0]));
    let p = write_file(&dir, "overlap.gguf", &b.0);
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(ck.read_f32("a").unwrap().1, vec![1.0, 2.0]);
    assert_eq!(ck.read_f32("b").unwrap().1, vec![1.0]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn unknown_types_are_listed_as_other_never_read() {
    let dir = scratch("gguf_other");
    let mut b = Bytes::header(3, 3, 0);
    b.tensor("k4", &[256, 2], 12, 0)
        .tensor("future", &[5], 99, 0)
        .tensor("ok", &[1], 0, 0)
        .pad_to(32)
        .raw(&[0; 288]);
    let p = write_file(&dir, "other.gguf", &b.0);
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(ck.info("k4").unwrap().dtype, StoredDType::Other);
    assert_eq!(ck.info("k4").unwrap().shape, vec![2, 256]);
    assert_eq!(ck.info("future").unwrap().dtype, StoredDType::Other);
    let e = ck.read_raw("k4").unwrap_err().to_string();
    assert!(
        e.contains("tensor `k4`: GGML type 12 (Q4_K) is not one this crate reads"),
        "{e}"
    );
    let e = ck.read_raw("future").unwrap_err().to_string();
    assert!(e.contains("GGML type 99 (unknown)"), "{e}");
    let e = ck.read_f32("k4").unwrap_err().to_string();
    assert!(e.contains("has dtype other"), "{e}");
    assert_eq!(ck.read_f32("ok").unwrap().1, vec![0.0]);
    // The writer refuses to write what it cannot size.
    let e = write_gguf(
        &dir.join("w.gguf"),
        &[],
        &[GgufTensorSpec::new("k4", [2, 256], 12)],
        |_| Ok(vec![0u8; 288]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("type Q4_K (12) cannot be written"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn duplicates_are_refused() {
    let dir = scratch("gguf_dups");
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("w", &[1], 0, 0)
        .tensor("w", &[1], 0, 0)
        .pad_to(32)
        .raw(&[0; 4]);
    let p = write_file(&dir, "names.gguf", &b.0);
    refused(&p, &["tensor `w` is listed twice"]);
    let mut b = Bytes::header(3, 0, 2);
    b.kv("k", 4).u32(1).kv("k", 4).u32(2);
    let p = write_file(&dir, "keys.gguf", &b.0);
    refused(&p, &["metadata key `k` appears twice"]);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_dimensions_are_refused() {
    let dir = scratch("gguf_dims");
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1, 1, 1, 1, 1], 0, 0)
        .pad_to(32)
        .raw(&[0; 4]);
    let p = write_file(&dir, "five.gguf", &b.0);
    refused(&p, &["tensor `w`: 5 dimensions, GGUF allows at most 4"]);
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0)
        .pad_to(32)
        .raw(&[0; 4]);
    let p = write_file(&dir, "overflow.gguf", &b.0);
    refused(&p, &["tensor `w`", "more elements than can be counted"]);
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1 << 61, 2], 0, 0).pad_to(32).raw(&[0; 4]);
    let p = write_file(&dir, "bytes_overflow.gguf", &b.0);
    refused(&p, &["tensor `w`", "needs more bytes than can be counted"]);
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("q", &[33, 2], 8, 0).pad_to(32).raw(&[0; 100]);
    let p = write_file(&dir, "rows.gguf", &b.0);
    refused(
        &p,
        &["tensor `q`: Q8_0 rows of 33 values", "32-value blocks"],
    );
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("q", &[], 2, 0).pad_to(32).raw(&[0; 18]);
    let p = write_file(&dir, "scalar_q4.gguf", &b.0);
    refused(
        &p,
        &["tensor `q`: a Q4_0 tensor needs at least one dimension"],
    );
    // Dimensions of 0 are fine, even beside huge ones.
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("e", &[0, u64::MAX >> 1], 0, 0).pad_to(32);
    let p = write_file(&dir, "zero.gguf", &b.0);
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(ck.read_f32("e").unwrap().1, Vec::<f32>::new());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_metadata_values_are_refused() {
    let dir = scratch("gguf_values_bad");
    let mut b = Bytes::header(3, 0, 1);
    b.kv("k", 13).u32(0);
    let p = write_file(&dir, "type.gguf", &b.0);
    refused(&p, &["metadata `k`: unknown value type 13"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv("k", 7).u8(2);
    let p = write_file(&dir, "bool.gguf", &b.0);
    refused(&p, &["metadata `k`: bool byte 2"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv("k", 9).u32(77).u64(0);
    let p = write_file(&dir, "elem.gguf", &b.0);
    refused(&p, &["metadata `k`: unknown array element type 77"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv("deep", 9);
    for _ in 0..20 {
        b.u32(9).u64(1);
    }
    b.u32(0).u64(0);
    let p = write_file(&dir, "deep.gguf", &b.0);
    refused(&p, &["metadata `deep`: arrays nested more than 8 deep"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv("u", 4);
    let p = write_file(&dir, "cut.gguf", &b.0);
    refused(&p, &["truncated: metadata `u` needs 4 bytes"]);
    for (value, ty, needle) in [
        (
            0u32.to_le_bytes().to_vec(),
            4,
            "`general.alignment` = 0 is not a positive multiple of 8",
        ),
        (12u32.to_le_bytes().to_vec(), 4, "= 12 is not"),
        (
            b"\x02\0\0\0\0\0\0\0xy".to_vec(),
            8,
            "`general.alignment` is a string, not a uint32",
        ),
    ] {
        let mut b = Bytes::header(3, 0, 1);
        b.kv("general.alignment", ty).raw(&value);
        let p = write_file(&dir, "align.gguf", &b.0);
        refused(&p, &[needle]);
    }
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn every_prefix_of_a_valid_file_is_refused_cleanly() {
    let dir = scratch("gguf_prefixes");
    let (bytes, _, _) = hand_built();
    for n in 1..bytes.len() {
        let p = write_file(&dir, "prefix.gguf", &bytes[..n]);
        // The padding after the last tensor is not needed: cutting into it is fine.
        if n >= bytes.len() - 30 {
            assert!(Checkpoint::open(&p).is_ok(), "prefix of {n} bytes");
        } else {
            let msg = refused(&p, &[]);
            assert!(
                [
                    "truncated",
                    "goes past the end",
                    "goes beyond",
                    "is 2, more"
                ]
                .iter()
                .any(|k| msg.contains(k)),
                "prefix of {n} bytes: {msg}"
            );
        }
    }
    let p = write_file(&dir, "empty.gguf", b"");
    let e = Checkpoint::open(&p).unwrap_err().to_string();
    assert!(e.contains("the file is empty"), "{e}");
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------- writing

#[test]
fn writer_checks_what_it_is_given() {
    let dir = scratch("gguf_writer");
    let out = dir.join("out.gguf");
    let specs = [
        GgufTensorSpec::new("a", [2], 0),
        GgufTensorSpec::new("b", [2, 32], 2),
    ];
    // A wrong length: refused, nothing left behind.
    let e = write_gguf(&out, &[], &specs, |i| {
        Ok(vec![0u8; if i == 0 { 8 } else { 35 }])
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tensor `b`: 35 bytes were given, its shape [2, 32] of Q4_0 (2) needs 36"),
        "{e}"
    );
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "a temporary file was left"
    );
    // The producer's own error comes through.
    let e = write_gguf(&out, &[], &specs, |i| {
        if i == 1 {
            Err(Error::invalid("cannot read layer b"))
        } else {
            Ok(vec![0u8; 8])
        }
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot read layer b"), "{e}");
    assert!(!out.exists());
    // Shapes and names are checked before anything is produced.
    for (specs, meta, needle) in [
        (
            vec![GgufTensorSpec::new("q", [2, 31], 8)],
            vec![],
            "tensor `q`: Q8_0 rows of 31 values",
        ),
        (
            vec![GgufTensorSpec::new("t", [1, 1, 1, 1, 1], 0)],
            vec![],
            "5 dimensions",
        ),
        (
            vec![
                GgufTensorSpec::new("t", [1], 0),
                GgufTensorSpec::new("t", [1], 0),
            ],
            vec![],
            "tensor `t` given twice",
        ),
        (
            vec![],
            vec![
                ("k".to_string(), GgufValue::U8(1)),
                ("k".to_string(), GgufValue::U8(2)),
            ],
            "metadata key `k` given twice",
        ),
        (
            vec![],
            vec![("general.alignment".to_string(), GgufValue::U32(3))],
            "= 3 is not a positive multiple of 8",
        ),
    ] {
        let e = write_gguf(&out, &meta, &specs, |_| -> faceclip_core::Result<Vec<u8>> {
            panic!("data asked for before the specs were checked")
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains(needle), "`{needle}` not in {e}");
        assert!(e.contains(&*out.to_string_lossy()), "{e}");
    }
    assert!(!out.exists());
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------- fuzz seeds

/// The committed seeds of fuzz target `gguf` (`fuzz/corpus/gguf/`), written by this crate's
/// writer: `FACECLIP_WRITE_GGUF_SEEDS=1 cargo test -p faceclip-core --test gguf` rewrites
/// them; otherwise they must equal what the writer gives now.
fn seeds(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let write =
        |name: &str, meta: &[(String, GgufValue)], specs: &[GgufTensorSpec], data: Vec<Vec<u8>>| {
            let p = dir.join(name);
            write_gguf(&p, meta, specs, |i| Ok(data[i].clone())).unwrap();
            fs::read(p).unwrap()
        };
    let valid = write(
        "valid.gguf",
        &[
            ("general.architecture".into(), "faceclip".into()),
            ("general.file_type".into(), 7u32.into()),
        ],
        &[
            GgufTensorSpec::new("norm.weight", [2, 3], 0),
            GgufTensorSpec::new("proj.weight", [2, 32], 8),
        ],
        vec![
            f32_bytes(&[1.0, -2.0, 0.5, 3.0, 0.0, -0.25]),
            quantized(QuantType::Q8_0, &values(64, 5)),
        ],
    );
    let all = write(
        "all.gguf",
        &[
            ("general.alignment".into(), 64u32.into()),
            ("s".into(), "ü".into()),
            ("b".into(), false.into()),
            ("i".into(), (-1i8).into()),
            ("f".into(), f64::NAN.into()),
            (
                "a".into(),
                GgufArray::Array(vec![
                    GgufArray::String(vec!["x".into()]),
                    GgufArray::Bool(vec![true]),
                ])
                .into(),
            ),
        ],
        &[
            GgufTensorSpec::new("f32", [1], 0),
            GgufTensorSpec::new("f16", [2], 1),
            GgufTensorSpec::new("bf16", [2], 30),
            GgufTensorSpec::new("f64", [1], 28),
            GgufTensorSpec::new("i8", [2], 24),
            GgufTensorSpec::new("i16", [1], 25),
            GgufTensorSpec::new("i32", [1], 26),
            GgufTensorSpec::new("i64", [1], 27),
            GgufTensorSpec::new("q4", [1, 32], 2),
            GgufTensorSpec::new("scalar", Vec::new(), 0),
            GgufTensorSpec::new("empty", [0, 4], 0),
        ],
        vec![
            f32_bytes(&[1.5]),
            vec![0x00, 0x3c, 0x00, 0xc0],
            vec![0x80, 0x3f, 0x00, 0xc0],
            2.0f64.to_le_bytes().to_vec(),
            vec![0x7f, 0x80],
            (-3i16).to_le_bytes().to_vec(),
            7i32.to_le_bytes().to_vec(),
            (-9i64).to_le_bytes().to_vec(),
            quantized(QuantType::Q4_0, &values(32, 6)),
            f32_bytes(&[4.0]),
            Vec::new(),
        ],
    );
    // The valid file with its Q8_0 tensor's type patched to Q4_K (12): listed as other.
    let mut other = valid.clone();
    let at = other
        .windows(11)
        .position(|w| w == b"proj.weight")
        .expect("the name is in the file")
        + 11
        + 4
        + 2 * 8;
    other[at..at + 4].copy_from_slice(&12u32.to_le_bytes());
    // Cut inside the second tensor info, after its name.
    let infos_cut = at - 8;
    vec![
        ("valid_f32_q8", valid.clone()),
        ("all_types", all),
        ("unknown_type", other),
        ("truncated_header", valid[..20].to_vec()),
        ("truncated_metadata", valid[..60].to_vec()),
        ("truncated_tensor_infos", valid[..infos_cut].to_vec()),
        ("truncated_data", valid[..valid.len() - 40].to_vec()),
    ]
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/gguf")
}

#[test]
fn fuzz_seeds_are_current() {
    let dir = scratch("gguf_seeds");
    let seeds = seeds(&dir);
    let corpus = corpus_dir();
    if std::env::var_os("FACECLIP_WRITE_GGUF_SEEDS").is_some() {
        fs::create_dir_all(&corpus).unwrap();
        for (name, bytes) in &seeds {
            fs::write(corpus.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let committed = fs::read(corpus.join(name)).unwrap_or_default();
        assert!(
            &committed == bytes,
            "fuzz/corpus/gguf/{name} is not what the writer gives now: rerun with \
             FACECLIP_WRITE_GGUF_SEEDS=1"
        );
    }
    // Each seed does what its name says.
    let get = |n: &str| &seeds.iter().find(|(k, _)| *k == n).unwrap().1;
    for ok in ["valid_f32_q8", "all_types", "unknown_type"] {
        let p = write_file(&dir, "seed.gguf", get(ok));
        let ck = Checkpoint::open(&p).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(!ck.is_empty());
    }
    for (bad, needle) in [
        ("truncated_header", "truncated GGUF header"),
        (
            "truncated_metadata",
            "truncated: metadata `general.architecture`'s length needs 8 bytes",
        ),
        (
            "truncated_tensor_infos",
            "truncated: tensor `proj.weight`'s dimension 1",
        ),
        (
            "truncated_data",
            "tensor `proj.weight`: data at offset 32 of 68 bytes",
        ),
    ] {
        let p = write_file(&dir, "seed.gguf", get(bad));
        refused(&p, &[needle]);
    }
    let _ = fs::remove_dir_all(dir);
}

/// The fuzz target's body on the seeds and on this file's hostile inputs (the same body
/// `cargo fuzz run gguf` and the pipeline's corpus replay run).
#[test]
fn fuzz_body_on_seeds_and_mutations() {
    let dir = scratch("gguf_fuzz_body");
    let mut inputs: Vec<Vec<u8>> = seeds(&dir).into_iter().map(|(_, b)| b).collect();
    inputs.push(hand_built().0);
    // Every single-byte change of the header and infos of the valid seed.
    let valid = inputs[0].clone();
    let g = GgufFile::parse(Path::new("valid"), &valid).unwrap();
    for i in 0..g.data_start {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut m = valid.clone();
            m[i] = v;
            inputs.push(m);
        }
    }
    for input in &inputs {
        faceclip_core::fuzzing::gguf(input);
    }
    let _ = fs::remove_dir_all(dir);
}

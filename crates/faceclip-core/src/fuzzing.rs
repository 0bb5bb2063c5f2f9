//! Bodies of the fuzz targets in `fuzz/` that need only this crate: each takes arbitrary
//! bytes, must return without panicking, hanging or allocating beyond the input's size, and
//! asserts what must hold of a successful result. The `fuzz/` targets call them, and so does
//! a plain `cargo test` over the committed corpora and every crash found (the CI fuzz smoke).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::TensorData;

use crate::checkpoint::{Checkpoint, StoredDType};
use crate::image::RgbImage;

/// What reading a checkpoint gave, tensor by tensor: name, shape, dtype and the values
/// (`f32` bits, or `i64`) or the error text. Two readers of the same bytes must agree on it.
pub type Readout = Vec<(String, Vec<usize>, StoredDType, Result<Vec<u64>, String>)>;

/// Reads every tensor of `ck` the ways the loaders do (`read_f32` for floats, `read_i64`
/// otherwise, `read_raw` always) and checks each success against the listed shape.
pub fn read_everything(ck: &Checkpoint) -> Readout {
    let mut out = Vec::new();
    for info in ck.list() {
        let numel = crate::checkpoint::checked_numel(&info.shape);
        let values = if info.dtype.is_float() {
            ck.read_f32(&info.name).map(|(shape, v)| {
                assert_eq!(shape, info.shape, "`{}`: read_f32 shape", info.name);
                assert_eq!(Some(v.len()), numel, "`{}`: read_f32 length", info.name);
                v.iter().map(|x| u64::from(x.to_bits())).collect()
            })
        } else {
            ck.read_i64(&info.name).map(|(shape, v)| {
                assert_eq!(shape, info.shape, "`{}`: read_i64 shape", info.name);
                assert_eq!(Some(v.len()), numel, "`{}`: read_i64 length", info.name);
                v.iter().map(|&x| x as u64).collect()
            })
        };
        if let Ok((raw_info, raw)) = ck.read_raw(&info.name) {
            assert_eq!(raw_info, info);
            if info.dtype != StoredDType::Other {
                assert_eq!(Some(raw.len()), numel.and_then(|n| info.dtype.bytes_for(n)));
            }
        }
        if info.dtype.is_float() {
            // A float tensor read as f32 converts, as read_data does.
            let _ = ck.read_data(&info.name);
        }
        out.push((
            info.name,
            info.shape,
            info.dtype,
            values.map_err(|e| e.to_string()),
        ));
    }
    out
}

/// A file named `fuzz-<pid>-<n>.<ext>` in the temp folder holding `data`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str, data: &[u8]) -> Option<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("faceclip-fuzz-{}-{n}.{ext}", std::process::id()));
        std::fs::write(&path, data).ok()?;
        Some(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Fuzz target `safetensors`: the bytes as an in-memory buffer
/// ([`Checkpoint::from_safetensors_bytes`]) and as a memory-mapped file
/// ([`Checkpoint::open`]); every tensor read. Both readers must accept or refuse alike and,
/// when they accept, list and read the same tensors with the same values.
pub fn safetensors(data: &[u8]) {
    let Some(file) = TempFile::new("safetensors", data) else {
        return;
    };
    // The file's path as the buffer's label, so that both give the same messages.
    let mem = Checkpoint::from_safetensors_bytes(file.path(), data);
    both_readers_agree(&file, &mem);
}

/// Opens `file` as a memory-mapped checkpoint and checks it against `mem`, the same bytes read
/// from a buffer: a refusal names the file on one line, and both accept or refuse alike and
/// read the same tensors with the same values. Returns the mapped checkpoint and its readout.
fn both_readers_agree(file: &TempFile, mem: &crate::Result<Checkpoint>) -> Option<(Checkpoint, Readout)> {
    let mem_read = mem.as_ref().ok().map(read_everything);
    let opened = Checkpoint::open(file.path());
    if let Err(e) = &opened {
        let msg = e.to_string();
        assert!(
            msg.contains(&*file.path().to_string_lossy()),
            "error does not name the file: {msg}"
        );
        assert!(!msg.contains('\n'), "a message of more than one line: {msg}");
    }
    let file_read = opened.as_ref().ok().map(read_everything);
    match (&mem_read, &file_read) {
        (Some(a), Some(b)) => assert_eq!(a, b, "in-memory and mapped reads differ"),
        // An empty file is refused before parsing; the buffer reader refuses it too.
        (None, None) => {}
        _ => panic!(
            "buffer reader {} but file reader {}",
            if mem.is_ok() { "accepted" } else { "refused" },
            match &opened {
                Ok(_) => "accepted".to_string(),
                Err(e) => format!("refused: {e}"),
            }
        ),
    }
    Some((opened.ok()?, file_read?))
}

/// Fuzz target `gguf`: the bytes as a memory-mapped `.gguf` file ([`Checkpoint::open`]) and
/// as an in-memory buffer ([`Checkpoint::from_gguf_bytes`]); every tensor read. Both must
/// accept or refuse alike and read the same values. A file whose tensors are all of readable
/// types is then written again with [`crate::gguf::write_gguf`] and must read back the same.
pub fn gguf(data: &[u8]) {
    let Some(file) = TempFile::new("gguf", data) else {
        return;
    };
    let mem = Checkpoint::from_gguf_bytes(file.path(), data);
    let Some((ck, read)) = both_readers_agree(&file, &mem) else {
        return;
    };
    let Ok(parsed) = crate::gguf::GgufFile::parse(file.path(), data) else {
        panic!("Checkpoint::open accepted what GgufFile::parse refuses");
    };
    // Compared as text: a NaN value is not equal to itself.
    let meta_text = format!("{:?}", parsed.metadata);
    assert_eq!(
        ck.gguf_metadata().map(|m| format!("{m:?}")).as_ref(),
        Some(&meta_text)
    );
    // Rewrite: the writer must accept what the reader accepted (unless a type is unknown or the
    // padding of a huge alignment would make the copy large) and give back the same tensors.
    if parsed.alignment > 4096 || parsed.tensors.iter().any(|t| t.range.is_none()) {
        return;
    }
    let specs: Vec<crate::gguf::GgufTensorSpec> = parsed
        .tensors
        .iter()
        .map(|t| crate::gguf::GgufTensorSpec::new(t.name.clone(), t.shape.clone(), t.ggml_type))
        .collect();
    let Some(copy) = TempFile::new("gguf", b"") else {
        return;
    };
    crate::gguf::write_gguf(copy.path(), parsed.metadata.entries(), &specs, |i| {
        Ok(parsed.tensors[i]
            .range
            .clone()
            .and_then(|r| data.get(r))
            .unwrap_or_default())
    })
    .unwrap_or_else(|e| panic!("the writer refuses what the reader accepted: {e}"));
    let again = Checkpoint::open(copy.path())
        .unwrap_or_else(|e| panic!("the reader refuses what the writer wrote: {e}"));
    // Error texts name the file: compare them without it.
    let unnamed = |r: &Readout, path: &Path| -> Readout {
        let p = path.to_string_lossy();
        r.iter()
            .map(|(n, s, d, v)| {
                (
                    n.clone(),
                    s.clone(),
                    *d,
                    v.clone().map_err(|e| e.replace(&*p, "")),
                )
            })
            .collect()
    };
    assert_eq!(
        unnamed(&read_everything(&again), copy.path()),
        unnamed(&read, file.path()),
        "the rewritten file reads differently"
    );
    assert_eq!(
        again.gguf_metadata().map(|m| format!("{m:?}")),
        Some(meta_text),
        "the rewritten file's metadata differs"
    );
}

/// Fuzz target `pytorch`: the bytes as a `.pt` file through [`Checkpoint::open`] (burn's
/// pickle reader: ZIP, legacy, TAR and plain pickle containers), every tensor read.
pub fn pytorch(data: &[u8]) {
    let Some(file) = TempFile::new("pt", data) else {
        return;
    };
    match Checkpoint::open(file.path()) {
        Ok(ck) => {
            assert!(!ck.is_empty());
            let _ = read_everything(&ck);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&*file.path().to_string_lossy()),
                "error does not name the file: {msg}"
            );
        }
    }
}

/// Images up to this many pixels get the extra (costly) consistency checks.
pub const SMALL_IMAGE: usize = 1 << 20;

/// The image half of fuzz target `image`: decode ([`RgbImage::decode`]), then what the
/// pipeline does to a face photo before any model: bilinear resize, RGB8 round trip and the
/// `[3, H, W]` tensor data. Returns the decoded image and its RGB8 pixels for the
/// face-alignment half.
pub fn image(data: &[u8]) -> Option<(RgbImage, Vec<u8>)> {
    let img = RgbImage::decode(data).ok()?;
    let (w, h) = (img.width, img.height);
    assert!(w > 0 && h > 0, "decoded a {w}x{h} image");
    assert!(
        (w * h) as u64 <= crate::image::MAX_PIXELS,
        "decoded a {w}x{h} image"
    );
    assert_eq!(img.data.len(), 3 * w * h);
    let rgb = img.to_rgb8();
    assert_eq!(rgb.len(), 3 * w * h);
    // The costly checks on images up to a megapixel only: a few hundred bytes can declare a
    // 45-megapixel JPEG, whose decode alone is the cost a real photo of that size has.
    if w * h <= SMALL_IMAGE {
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(
            RgbImage::from_rgb8(w, h, &rgb).ok().as_ref(),
            Some(&img),
            "RGB8 round trip"
        );
        // `to_tensor` without a device: the data it uploads.
        let td = TensorData::new(img.data.clone(), [3, h, w]);
        assert_eq!(td.shape().to_vec(), vec![3, h, w]);
    }
    for (ow, oh) in [(1 + w % 61, 1 + h % 67), (224, 224)] {
        let r = img.resize(ow, oh);
        assert_eq!((r.width, r.height, r.data.len()), (ow, oh, 3 * ow * oh));
        assert!(
            r.data.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)),
            "resize left [0, 1]"
        );
    }
    Some((img, rgb))
}

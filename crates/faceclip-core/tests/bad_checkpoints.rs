//! Implausible and hostile checkpoints: every header that declares more than the file holds is
//! refused at open, before anything of the declared size is allocated, with an
//! [`Error::Checkpoint`] naming the file and the tensor; a pickle that calls code is refused and
//! nothing runs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::scratch;
use faceclip_core::{Checkpoint, Error};

// ------------------------------------------------------------------------------ safetensors

/// A safetensors file from a raw JSON header and data bytes.
fn st_file(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Opens `path` (and the same bytes from memory) expecting a checkpoint error that names the
/// file and contains every `needle`.
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
    for n in needles {
        assert!(msg.contains(n), "`{n}` not in: {msg}");
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        let mem = Checkpoint::from_safetensors_bytes(path, &fs::read(path).unwrap())
            .expect_err("opened from memory");
        assert_eq!(mem.to_string(), msg, "file and buffer readers disagree");
    }
    msg
}

#[test]
fn safetensors_header_length_beyond_the_file() {
    let dir = scratch("st_header_len");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"w\":{}}");
    let p = dir.join("long_header.safetensors");
    fs::write(&p, bytes).unwrap();
    refused(
        &p,
        &["header length 1099511627776 goes beyond the file (16 bytes)"],
    );

    let p = dir.join("seven_bytes.safetensors");
    fs::write(&p, b"\x01\x00\x00\x00\x00\x00\x00").unwrap();
    refused(&p, &["fewer than the 8-byte safetensors header length"]);

    let p = st_file(&dir, "not_json.safetensors", "{\"w\": [", b"");
    refused(&p, &["not a JSON object"]);
}

#[test]
fn safetensors_offsets_beyond_the_file() {
    let dir = scratch("st_offsets");
    let p = st_file(
        &dir,
        "offsets.safetensors",
        r#"{"w":{"dtype":"F32","shape":[1048576],"data_offsets":[0,4194304]}}"#,
        &[0u8; 16],
    );
    refused(
        &p,
        &[
            "tensor `w`",
            "data_offsets [0, 4194304] go beyond the 16 bytes of data",
        ],
    );

    let p = st_file(
        &dir,
        "backwards.safetensors",
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        &[0u8; 8],
    );
    refused(&p, &["tensor `w`", "end before they begin"]);
}

#[test]
fn safetensors_element_count_overflow_and_size_mismatch() {
    let dir = scratch("st_shapes");
    let p = st_file(
        &dir,
        "overflow.safetensors",
        r#"{"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(&p, &["tensor `w`", "more elements than can be counted"]);

    // Bytes times 4 overflows although the element count does not.
    let p = st_file(
        &dir,
        "bytes_overflow.safetensors",
        r#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(&p, &["tensor `w`", "more elements than can be counted"]);

    let p = st_file(
        &dir,
        "absurd.safetensors",
        r#"{"w":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(
        &p,
        &[
            "tensor `w`",
            "needs 17179869184 bytes, more than the 16 bytes of data the file holds",
        ],
    );

    let p = st_file(
        &dir,
        "mismatch.safetensors",
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(
        &p,
        &[
            "tensor `w`",
            "needs 12 bytes, its data_offsets [0, 16] hold 16",
        ],
    );

    let p = st_file(
        &dir,
        "dtype.safetensors",
        r#"{"w":{"dtype":"F33","shape":[4],"data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(&p, &["tensor `w`", "unknown dtype \"F33\""]);

    let p = st_file(
        &dir,
        "no_shape.safetensors",
        r#"{"w":{"dtype":"F32","data_offsets":[0,16]}}"#,
        &[0u8; 16],
    );
    refused(&p, &["tensor `w`", "no integer `shape`"]);
}

#[test]
fn safetensors_overlapping_tensors_are_refused() {
    let dir = scratch("st_overlap");
    let p = st_file(
        &dir,
        "overlap.safetensors",
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    refused(&p, &["tensor `b`: data_offsets [0, 8] overlap tensor `a`"]);

    let p = st_file(
        &dir,
        "gap.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        &[0u8; 12],
    );
    refused(
        &p,
        &["tensor `b`: data_offsets [8, 12] leave a gap after tensor `a`"],
    );

    let p = st_file(
        &dir,
        "trailing.safetensors",
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0u8; 9],
    );
    refused(
        &p,
        &["the tensors hold 4 bytes, the file 9 bytes of data after the header"],
    );
}

#[test]
fn wrong_dtype_and_missing_tensor_are_typed_errors() {
    let dir = scratch("st_dtype");
    let p = st_file(
        &dir,
        "ints.safetensors",
        r#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"f8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[16,18]}}"#,
        &[0u8; 18],
    );
    let ck = Checkpoint::open(&p).unwrap();
    for key in ["ids", "f8"] {
        let err = ck.read_f32(key).unwrap_err();
        assert!(matches!(err, Error::DType { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("ints.safetensors") && msg.contains(&format!("`{key}`")),
            "{msg}"
        );
        assert!(msg.contains("not a float type"), "{msg}");
    }
    assert_eq!(ck.read_i64("ids").unwrap(), (vec![2], vec![0, 0]));
    let err = ck.read_f32("nope").unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }));
    assert!(err.to_string().contains("no tensor named `nope`"), "{err}");
}

// ------------------------------------------------------------------------------ .pt

/// A ZIP archive of uncompressed entries, as `torch.save` writes them.
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0u8; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Pickle (protocol 2) pieces.
fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

fn int(n: u64) -> Vec<u8> {
    // LONG1 with 8 little-endian bytes (fits any usize the tests use).
    let mut v = vec![0x8a, 9];
    v.extend_from_slice(&n.to_le_bytes());
    v.push(0);
    v
}

fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

/// `torch._utils._rebuild_tensor_v2(storage('0', FloatStorage, numel), 0, shape, stride, False,
/// OrderedDict())`.
fn float_tensor(numel: u64, shape: &[u64], stride: &[u64]) -> Vec<u8> {
    let mut v = global("torch._utils", "_rebuild_tensor_v2");
    v.push(b'(');
    v.push(b'(');
    v.extend(unicode("storage"));
    v.extend(global("torch", "FloatStorage"));
    v.extend(unicode("0"));
    v.extend(unicode("cpu"));
    v.extend(int(numel));
    v.push(b't');
    v.push(b'Q'); // BINPERSID
    v.extend(int(0));
    for dims in [shape, stride] {
        v.push(b'(');
        for &d in dims {
            v.extend(int(d));
        }
        v.push(b't');
    }
    v.push(0x89); // False
    v.extend(global("collections", "OrderedDict"));
    v.push(b')');
    v.push(b'R');
    v.push(b't');
    v.push(b'R');
    v
}

/// `os.system(command)`.
fn os_system(command: &str) -> Vec<u8> {
    let mut v = global("os", "system");
    v.extend(unicode(command));
    v.push(0x85); // TUPLE1
    v.push(b'R');
    v
}

/// A dict pickle `{key: value, ...}` (values already pickled).
fn dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0x80, 2, b'}', b'('];
    for (k, val) in items {
        v.extend(unicode(k));
        v.extend_from_slice(val);
    }
    v.push(b'u');
    v.push(b'.');
    v
}

fn pt_zip(dir: &Path, name: &str, pickle: &[u8], storage: &[u8]) -> PathBuf {
    let zip = stored_zip(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", storage),
        ("archive/version", b"3\n"),
    ]);
    let path = dir.join(name);
    fs::write(&path, zip).unwrap();
    path
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_hand_built_pt_loads() {
    // The builders above make a checkpoint burn's reader accepts: the refusals below are
    // about what is wrong with each file, not about the container.
    let dir = scratch("pt_ok");
    let p = pt_zip(
        &dir,
        "ok.pt",
        &dict(&[("w", float_tensor(4, &[2, 2], &[2, 1]))]),
        &floats(&[1.0, 2.0, 3.0, 4.0]),
    );
    let ck = Checkpoint::open(&p).unwrap();
    assert_eq!(
        ck.read_f32("w").unwrap(),
        (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])
    );
}

#[test]
fn a_pickle_calling_os_system_is_refused_and_nothing_runs() {
    let dir = scratch("pt_hostile");
    let marker = dir.join("pwned");
    let cmd = format!("touch {}", marker.display());

    // The whole pickle is the call (GLOBAL os.system + REDUCE), in a ZIP and as a bare pickle.
    let mut bare = vec![0x80, 2];
    bare.extend(os_system(&cmd));
    bare.push(b'.');
    let zip = pt_zip(&dir, "root_call.pt", &bare, b"");
    refused(&zip, &["os.system"]);
    let plain = dir.join("plain_pickle.pt");
    fs::write(&plain, &bare).unwrap();
    refused(&plain, &["os.system"]);

    // A call beside a real tensor: refused as hostile rather than loaded for the tensor.
    let mixed = pt_zip(
        &dir,
        "mixed.pt",
        &dict(&[("w", float_tensor(1, &[1], &[1])), ("x", os_system(&cmd))]),
        &floats(&[1.0]),
    );
    refused(&mixed, &["os.system", "nothing was executed"]);

    // builtins.eval, subprocess.Popen: the same.
    for (module, func) in [
        ("builtins", "eval"),
        ("subprocess", "Popen"),
        ("posix", "system"),
    ] {
        let mut call = global(module, func);
        call.extend(unicode(&cmd));
        call.push(0x85);
        call.push(b'R');
        let p = pt_zip(
            &dir,
            &format!("{func}.pt"),
            &dict(&[("w", float_tensor(1, &[1], &[1])), ("x", call)]),
            &floats(&[1.0]),
        );
        refused(&p, &[&format!("{module}.{func}")]);
    }

    // Protocol 4 spells the global with STACK_GLOBAL on two strings.
    let mut call = vec![0x8c, 2];
    call.extend_from_slice(b"os");
    call.extend_from_slice(&[0x8c, 6]);
    call.extend_from_slice(b"system");
    call.push(0x93); // STACK_GLOBAL
    call.extend(unicode(&cmd));
    call.push(0x85);
    call.push(b'R');
    let p = pt_zip(
        &dir,
        "stack_global.pt",
        &dict(&[("w", float_tensor(1, &[1], &[1])), ("x", call)]),
        &floats(&[1.0]),
    );
    refused(&p, &["os.system"]);

    // A non-tensor global that runs nothing (a config object) does not make a file hostile.
    let mut cfg = global("argparse", "Namespace");
    cfg.push(b')');
    cfg.push(b'R');
    let benign = pt_zip(
        &dir,
        "benign.pt",
        &dict(&[("w", float_tensor(1, &[1], &[1])), ("args", cfg)]),
        &floats(&[1.0]),
    );
    let ck = Checkpoint::open(&benign).unwrap();
    assert_eq!(ck.list().len(), 1);

    assert!(!marker.exists(), "the pickle's command ran");
}

#[test]
fn pt_tensor_larger_than_the_file_is_refused_before_reading() {
    let dir = scratch("pt_bomb");
    // One stored float expanded (stride 0) to 2^30 elements: 4 GiB from a file of ~600 bytes.
    let p = pt_zip(
        &dir,
        "expand.pt",
        &dict(&[("w", float_tensor(1, &[1 << 15, 1 << 15], &[0, 0]))]),
        &floats(&[1.0]),
    );
    refused(
        &p,
        &[
            "tensor `w`",
            "needs 4294967296 bytes, more than the whole file holds",
        ],
    );
}

#[test]
fn pt_storage_shorter_than_declared_is_refused() {
    let dir = scratch("pt_short");
    // The pickle declares 1024 floats, the storage entry holds 2.
    let p = pt_zip(
        &dir,
        "short.pt",
        &dict(&[("w", float_tensor(1024, &[1024], &[1]))]),
        &floats(&[1.0, 2.0]),
    );
    match Checkpoint::open(&p) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("short.pt"), "{msg}");
        }
        Ok(ck) => {
            let msg = ck.read_f32("w").unwrap_err().to_string();
            assert!(msg.contains("short.pt") && msg.contains("`w`"), "{msg}");
        }
    }
    // Shape arithmetic that overflows.
    let p = pt_zip(
        &dir,
        "overflow.pt",
        &dict(&[("w", float_tensor(1, &[1 << 62, 1 << 62], &[0, 0]))]),
        &floats(&[1.0]),
    );
    refused(&p, &["not a readable PyTorch checkpoint"]);
}

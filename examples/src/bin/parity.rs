//! `parity PATH...`: checks fixture folders (runs the module `meta.json` names and compares
//! with the reference outputs) and manifests (builds the full-size model without allocating
//! weights and compares its tensor list). One line per check:
//! `PASS|FAIL <folder> max_abs=… max_rel=… atol=… rtol=…`,
//! `PASS|FAIL <manifest> missing=N unexpected=N mismatched=N`, or `UNSUPPORTED <name>`.
//! The first line names the device the checks run on. `--dtype f16|bf16` runs every module in
//! that type (inputs and weights converted as they load) and compares in f32 under the
//! fixtures' float32 tolerances: a measurement of the reduced-precision error, not a gate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faceclip_pipeline::core::device::{Precision, describe_device, parse_device, set_precision};
use faceclip_pipeline::parity::check_path;

#[derive(Parser)]
#[command(about = "Check ports against parity fixtures and full-size manifests")]
struct Args {
    /// Fixture folders, manifest files, or folders holding either.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Exit 0 even when some kinds are not ported yet (failures still fail).
    #[arg(long)]
    allow_unsupported: bool,
    /// Backend to run on (cpu, flex, ndarray, wgpu, cuda, cuda:N).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Float type the modules compute in (f32, f16, bf16); tolerances stay float32's.
    #[arg(long, default_value = "f32")]
    dtype: Precision,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let device = parse_device(&args.backend).and_then(|mut d| {
        let name = describe_device(&d)?;
        set_precision(&mut d, args.dtype)?;
        Ok((d, name))
    });
    let device = match device {
        Ok((d, name)) => {
            println!("parity: backend {} on {name}, dtype {}", args.backend, args.dtype.name());
            d
        }
        Err(e) => {
            eprintln!("parity: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut pass, mut fail, mut unsupported) = (0, 0, 0);
    for path in &args.paths {
        for checked in check_path(path, &device) {
            println!("{}", checked.line());
            if checked.passed() {
                pass += 1;
            } else if checked.unsupported() {
                unsupported += 1;
            } else {
                fail += 1;
            }
        }
    }
    println!("parity: {pass} passed, {fail} failed, {unsupported} unsupported");
    if fail > 0 || (unsupported > 0 && !args.allow_unsupported) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

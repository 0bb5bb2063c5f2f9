//! `parity PATH...`: checks fixture folders (runs the module `meta.json` names and compares
//! with the reference outputs) and manifests (builds the full-size model without allocating
//! weights and compares its tensor list). One line per check:
//! `PASS|FAIL <folder> max_abs=… max_rel=… atol=… rtol=…`,
//! `PASS|FAIL <manifest> missing=N unexpected=N mismatched=N`, or `UNSUPPORTED <name>`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faceclip_pipeline::core::device::parse_device;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let device = match parse_device(&args.backend) {
        Ok(d) => d,
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

//! Pixel difference of two images of the same size (any format `image` reads), over every
//! 8-bit RGB channel value: prints `WxH max_diff=N mean_diff=F differing=K/TOTAL`. The GPU
//! checks use it to compare a backend's demo image with the CPU's.

use std::process::ExitCode;

use faceclip_pipeline::image;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = args.as_slice() else {
        eprintln!("usage: imgdiff A B");
        return ExitCode::from(2);
    };
    let open = |p: &str| image::open(p).map(|i| i.into_rgb8()).map_err(|e| format!("{p}: {e}"));
    let (a, b) = match (open(a), open(b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("imgdiff: {e}");
            return ExitCode::from(2);
        }
    };
    if a.dimensions() != b.dimensions() {
        eprintln!("imgdiff: sizes differ: {:?} vs {:?}", a.dimensions(), b.dimensions());
        return ExitCode::from(1);
    }
    let d: Vec<u8> = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).collect();
    let sum: u64 = d.iter().map(|&v| u64::from(v)).sum();
    println!(
        "{}x{} max_diff={} mean_diff={:.4} differing={}/{}",
        a.width(),
        a.height(),
        d.iter().max().copied().unwrap_or(0),
        sum as f64 / d.len().max(1) as f64,
        d.iter().filter(|&&v| v != 0).count(),
        d.len()
    );
    ExitCode::SUCCESS
}

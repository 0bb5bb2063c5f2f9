//! `compare`: times each component at its real size for the side-by-side with PyTorch
//! (`benches/compare-pytorch.sh`, `benches/torch_reference.py`).
//!
//! For each component: build it (weights: deterministic pseudo-random by default), one
//! warm-up forward, then `--reps` timed forwards; prints one line per component on stdout,
//! `RUST <component> ms=<median> min=<fastest> gflop=<useful work>` (or `SKIP <component>
//! reason=...`), progress on stderr. `gflop` is twice the multiply-adds the warm-up counted
//! ([`faceclip_pipeline::core::flops`]: the reference algorithm's products). `--peak` first
//! times square GEMMs (1024, 2048, 4096) and prints `RUST_PEAK gemm dtype=<d> gflops=<best>`.
//! The first line names the CPU features the kernels may use: `INFO rust_kernels=...`.
//!
//! ```text
//! compare [--only a,b] [--reps N] [--backend cpu] [--threads T] [--weights random|zeros]
//!         [--dtype f32|bf16] [--peak] [--list]
//! ```
//!
//! Threads: `--threads T` sets `RAYON_NUM_THREADS` (the CPU backends' pool) before any work;
//! without it the environment's `RAYON_NUM_THREADS` or all cores are used.

use std::time::Instant;

use faceclip_benches::{COMPARE_DEFAULT, COMPONENTS, Weights, build, component};
use faceclip_pipeline::core::burn::tensor::Distribution;
use faceclip_pipeline::core::device::{Precision, parse_device, set_precision};
use faceclip_pipeline::core::{Device, Tensor, flops};

struct Args {
    only: Vec<String>,
    reps: usize,
    backend: String,
    weights: Weights,
    threads: Option<usize>,
    dtype: Precision,
    peak: bool,
    list: bool,
}

const USAGE: &str = "usage: compare [--only a,b] [--reps N] [--backend cpu] [--threads T] [--weights random|zeros] [--dtype f32|bf16] [--peak] [--list]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        only: COMPARE_DEFAULT.iter().map(|s| s.to_string()).collect(),
        reps: 3,
        backend: "cpu".into(),
        weights: Weights::Random { seed: 0 },
        threads: None,
        dtype: Precision::F32,
        peak: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--only" => {
                let v = value("--only")?;
                if v == "none" {
                    a.only.clear();
                } else if v != "all" && !v.is_empty() {
                    a.only = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                } else if v == "all" {
                    a.only = COMPONENTS.iter().map(|c| c.name.to_string()).collect();
                }
            }
            "--reps" => {
                a.reps = value("--reps")?
                    .parse()
                    .map_err(|e| format!("--reps: {e}"))?;
                if a.reps == 0 {
                    return Err("--reps must be at least 1".into());
                }
            }
            "--backend" => a.backend = value("--backend")?,
            "--threads" => {
                let t: usize = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
                if t == 0 {
                    return Err("--threads must be at least 1".into());
                }
                a.threads = Some(t);
            }
            "--weights" => {
                a.weights = match value("--weights")?.as_str() {
                    "random" => Weights::Random { seed: 0 },
                    "zeros" => Weights::Zeros,
                    other => return Err(format!("--weights: `{other}` (random or zeros)")),
                }
            }
            "--dtype" => a.dtype = value("--dtype")?.parse().map_err(|e| format!("{e}"))?,
            "--peak" => a.peak = true,
            "--list" => a.list = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    if args.list {
        for c in COMPONENTS {
            println!("{:<22} {:<36} {}", c.name, c.input, c.about);
        }
        return;
    }
    if let Some(t) = args.threads {
        // SAFETY: first thing in main, before any thread (rayon pool included) exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    for name in &args.only {
        if component(name).is_none() {
            eprintln!("compare: unknown component `{name}` (see --list)");
            std::process::exit(2);
        }
    }
    let device = match parse_device(&args.backend).and_then(|mut d| {
        set_precision(&mut d, args.dtype)?;
        Ok(d)
    }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("compare: backend `{}`: {e}", args.backend);
            std::process::exit(2);
        }
    };
    println!("INFO rust_kernels={}", kernels());
    if args.peak {
        println!(
            "RUST_PEAK gemm dtype={} gflops={:.1}",
            args.dtype.name(),
            peak_gemm(&device)
        );
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    eprintln!(
        "compare: backend {}, {}, threads {threads}, weights {:?}, warm-up 1 + median of {}",
        args.backend,
        args.dtype.name(),
        args.weights,
        args.reps
    );
    let mut failed = false;
    for name in &args.only {
        let t0 = Instant::now();
        let bench = match build(name, &device, args.weights) {
            Ok(b) => b,
            Err(e) => {
                println!(
                    "SKIP {name} reason=build failed: {}",
                    one_line(&e.to_string())
                );
                failed = true;
                continue;
            }
        };
        eprintln!(
            "  {name}: built in {:.1} s ({})",
            t0.elapsed().as_secs_f64(),
            bench.component.input
        );
        let mut times = Vec::with_capacity(args.reps);
        let mut error = None;
        let mut macs = 0;
        for i in 0..=args.reps {
            if i == 0 {
                flops::start();
            }
            let t = Instant::now();
            let run = bench.run();
            if i == 0 {
                macs = flops::stop();
            }
            if let Err(e) = run {
                error = Some(e);
                break;
            }
            let ms = t.elapsed().as_secs_f64() * 1e3;
            eprintln!(
                "  {name}: {} {ms:.2} ms",
                if i == 0 { "warm-up" } else { "run" }
            );
            if i > 0 {
                times.push(ms);
            }
        }
        match error {
            Some(e) => {
                println!(
                    "SKIP {name} reason=forward failed: {}",
                    one_line(&e.to_string())
                );
                failed = true;
            }
            None => {
                let min = times.iter().copied().fold(f64::INFINITY, f64::min);
                println!(
                    "RUST {name} ms={:.3} min={min:.3} gflop={:.3}",
                    median(times),
                    2.0 * macs as f64 / 1e9
                );
            }
        }
        drop(bench);
    }
    if failed {
        std::process::exit(1);
    }
}

/// The CPU features the kernels may use on this machine: burn-flex's GEMM (the `gemm` crate)
/// and the host kernels pick their code paths from these at run time.
fn kernels() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |f: bool, name: &'static str| f.then_some(name);
        let list: Vec<&str> = [
            has(std::is_x86_feature_detected!("avx512f"), "AVX-512"),
            has(std::is_x86_feature_detected!("avx512bf16"), "avx512_bf16"),
            has(std::is_x86_feature_detected!("avx512vnni"), "VNNI"),
            has(
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
                "AVX2+FMA",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if list.is_empty() {
            "scalar".into()
        } else {
            let packed = |bf16| faceclip_pipeline::core::CpuKernel::detect(bf16).map_or("none (burn-flex matmul)", |k| k.name());
            format!(
                "{} (picked at run time; linear layers: f32 {}, bf16 {}; attention (f32): {}; other products: gemm crate)",
                list.join(","),
                packed(false),
                packed(true),
                faceclip_pipeline::core::layers::attention_cpu_kernel()
                    .unwrap_or("none (burn-flex attention)")
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "portable (non-x86)".into()
    }
}

/// The best GFLOP/s of square products of 1024, 2048 and 4096 on `device` (best of 3 each),
/// through burn's matmul and through a linear layer (its weight packed for the CPU kernel where
/// one runs): the faster of the two is the machine's limit as this build reaches it.
fn peak_gemm(device: &Device) -> f64 {
    use faceclip_pipeline::core::layers::Linear;
    use faceclip_pipeline::core::{Checkpoint, VarBuilder};
    let mut best = 0f64;
    for n in [1024usize, 2048, 4096] {
        let a = Tensor::<2>::random([n, n], Distribution::Default, device);
        let b = Tensor::<2>::random([n, n], Distribution::Default, device);
        let bv = faceclip_pipeline::core::to_vec_f32(b.clone());
        let linear = Checkpoint::from_f32("peak", vec![("l.weight".to_string(), vec![n, n], bv)])
            .map(|ck| Linear::load(&VarBuilder::from_checkpoint(ck, device).pp("l"), n, n, false));
        let time = |f: &dyn Fn()| {
            f();
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .fold(0f64, f64::max)
        };
        let matmul = time(&|| {
            let _ = a.clone().matmul(b.clone()).into_data();
        });
        let packed = match &linear {
            Ok(l) if l.packed.is_some() => time(&|| {
                let _ = l.forward(a.clone()).into_data();
            }),
            _ => 0.0,
        };
        best = best.max(matmul).max(packed);
        eprintln!(
            "  peak gemm {n}: burn matmul {matmul:.1}, packed linear {packed:.1}, best so far {best:.1} GFLOP/s"
        );
    }
    best
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

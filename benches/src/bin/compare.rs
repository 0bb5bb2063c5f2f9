//! `compare`: times each component at its real size for the side-by-side with PyTorch
//! (`benches/compare-pytorch.sh`, `benches/torch_reference.py`).
//!
//! For each component: build it (weights: deterministic pseudo-random by default), one
//! warm-up forward, then `--reps` timed forwards; prints one line per component on stdout,
//! `RUST <component> ms=<median> min=<fastest>` (or `SKIP <component> reason=...`), progress on stderr.
//!
//! ```text
//! compare [--only a,b] [--reps N] [--backend cpu] [--threads T] [--weights random|zeros] [--list]
//! ```
//!
//! Threads: `--threads T` sets `RAYON_NUM_THREADS` (the CPU backends' pool) before any work;
//! without it the environment's `RAYON_NUM_THREADS` or all cores are used.

use std::time::Instant;

use faceclip_benches::{COMPARE_DEFAULT, COMPONENTS, Weights, build, component};
use faceclip_pipeline::core::device::parse_device;

struct Args {
    only: Vec<String>,
    reps: usize,
    backend: String,
    weights: Weights,
    threads: Option<usize>,
    list: bool,
}

const USAGE: &str = "usage: compare [--only a,b] [--reps N] [--backend cpu] [--threads T] [--weights random|zeros] [--list]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        only: COMPARE_DEFAULT.iter().map(|s| s.to_string()).collect(),
        reps: 3,
        backend: "cpu".into(),
        weights: Weights::Random { seed: 0 },
        threads: None,
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
                if v != "all" && !v.is_empty() {
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
    let device = match parse_device(&args.backend) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("compare: backend `{}`: {e}", args.backend);
            std::process::exit(2);
        }
    };
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    eprintln!(
        "compare: backend {}, f32, threads {threads}, weights {:?}, warm-up 1 + median of {}",
        args.backend, args.weights, args.reps
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
        for i in 0..=args.reps {
            let t = Instant::now();
            if let Err(e) = bench.run() {
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
                println!("RUST {name} ms={:.3} min={min:.3}", median(times));
            }
        }
        drop(bench);
    }
    if failed {
        std::process::exit(1);
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

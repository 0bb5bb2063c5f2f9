//! The `faceclip` command-line program: `faceclip sdxl`, `faceclip flux`, `faceclip align`,
//! `faceclip inspect`, `faceclip convert`. Every input and the output path are checked before
//! any model loads; a failure prints one line and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use faceclip_pipeline::core::device::{Precision, parse_device, set_precision};
use faceclip_pipeline::core::image::RgbImage;
use faceclip_pipeline::core::{Checkpoint, Error, Result};
use faceclip_pipeline::{FaceInput, GenerateOptions, SchedulerKind, flux, hub, models, sdxl};

#[derive(Parser)]
#[command(
    name = "faceclip",
    version,
    about = "ID-preserving text-to-image generation (FaceCLIP) on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// FaceCLIP-SDXL: a face photo and a prompt to images.
    Sdxl(GenArgs),
    /// FaceT5-FLUX: a face photo and a prompt to images.
    Flux(GenArgs),
    /// Detect the largest face of a photo and write the aligned 448x448 crop FaceCLIP sees.
    Align {
        /// The photo.
        photo: PathBuf,
        /// Where to write the crop (PNG).
        #[arg(long)]
        out: PathBuf,
        /// Which face, largest first.
        #[arg(long, default_value_t = 0)]
        face_index: usize,
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// List a checkpoint's tensors: name, shape, dtype.
    Inspect {
        /// A .safetensors, .safetensors.index.json, .pt, .pth or .bin file.
        checkpoint: PathBuf,
    },
    /// Convert a PyTorch checkpoint to safetensors (f32), without executing pickle code.
    Convert { input: PathBuf, output: PathBuf },
}

#[derive(Args)]
struct GenArgs {
    /// The face photo (any photo: the largest face is detected and aligned; see --aligned).
    #[arg(long, required_unless_present = "demo")]
    face: Option<PathBuf>,
    /// The face photo is already an aligned FaceCLIP crop: skip detection.
    #[arg(long)]
    aligned: bool,
    /// Which detected face to use, largest first.
    #[arg(long, default_value_t = 0)]
    face_index: usize,
    /// What the images should show.
    #[arg(long, default_value = "a portrait photo of a person")]
    prompt: String,
    /// The negative prompt (default: upstream's).
    #[arg(long)]
    negative: Option<String>,
    /// Denoising steps (default: 50 for sdxl and flux, 4 with --demo).
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale (sdxl; default 5.0).
    #[arg(long)]
    cfg: Option<f32>,
    /// True CFG scale (flux; default 3.5).
    #[arg(long)]
    true_cfg: Option<f32>,
    /// Distilled guidance (flux; default 1.0).
    #[arg(long)]
    guidance: Option<f32>,
    #[arg(long, default_value_t = 453563)]
    seed: u64,
    /// Image width (default 864; 64 with --demo).
    #[arg(long)]
    width: Option<usize>,
    /// Image height (default 1152; 64 with --demo).
    #[arg(long)]
    height: Option<usize>,
    #[arg(long, default_value_t = 1)]
    num_images: usize,
    /// euler (default for sdxl), euler-a, ddim, dpm++2m, dpm++2m-karras, flow-match (flux).
    #[arg(long)]
    scheduler: Option<String>,
    /// Output PNG; with several images, `_1`, `_2`, ... are inserted before `.png`.
    #[arg(long, default_value = "faceclip.png")]
    out: PathBuf,
    /// The model folder (see README: Model folder layout).
    #[arg(long, env = "FACECLIP_MODELS")]
    models: Option<PathBuf>,
    /// Run on the tiny random-weight models the repository ships (output is noise).
    #[arg(long)]
    demo: bool,
    /// Download the models from the Hugging Face hub into its cache (HF_HOME, HF_TOKEN);
    /// needs a build with `--features hub`.
    #[arg(long, conflicts_with_all = ["demo", "models"])]
    hub: bool,
    /// cpu, flex, ndarray, wgpu, vulkan, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// f32, bf16 or f16: the type weights and activations are held in.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            let mut lines = msg.lines();
            eprintln!("faceclip: error: {}", lines.next().unwrap_or_default());
            if std::env::var_os("FACECLIP_VERBOSE").is_some() {
                for l in lines {
                    eprintln!("{l}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sdxl(a) => generate(a, false),
        Command::Flux(a) => generate(a, true),
        Command::Align {
            photo,
            out,
            face_index,
            backend,
        } => {
            faceclip_pipeline::core::io::check_writable(&out)?;
            let device = parse_device(&backend)?;
            let image = RgbImage::open(&photo)?;
            let crop = faceclip_pipeline::align_face(&image, &photo, face_index, &device)?;
            faceclip_pipeline::core::image::save_rgb8_png(
                &crop.to_rgb8(),
                crop.width,
                crop.height,
                &out,
                &[("source", photo.display().to_string())],
            )?;
            println!("{}", out.display());
            Ok(())
        }
        Command::Inspect { checkpoint } => {
            let ck = Checkpoint::open(&checkpoint)?;
            let mut total = 0usize;
            for t in ck.list() {
                total += t.shape.iter().product::<usize>();
                println!("{}\t{:?}\t{}", t.name, t.shape, t.dtype.torch_name());
            }
            println!("# {} tensors, {} elements", ck.len(), total);
            Ok(())
        }
        Command::Convert { input, output } => {
            if !output
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".safetensors"))
            {
                return Err(Error::invalid(format!(
                    "output {} must end in .safetensors",
                    output.display()
                )));
            }
            faceclip_pipeline::core::io::check_writable(&output)?;
            let ck = Checkpoint::open(&input)?;
            ck.save_safetensors(&output)?;
            println!("{} tensors -> {}", ck.len(), output.display());
            Ok(())
        }
    }
}

fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    (1..=n)
        .map(|i| out.with_file_name(format!("{stem}_{i}.{ext}")))
        .collect()
}

fn generate(a: GenArgs, is_flux: bool) -> Result<()> {
    // Everything the user typed is checked before any model loads.
    let mut device = parse_device(&a.backend)?;
    let precision: Precision = a.dtype.parse()?;
    set_precision(&mut device, precision)?;
    let factor = if is_flux { 16 } else { 8 };
    let (def_w, def_h, def_steps) = if a.demo { (64, 64, 4) } else { (864, 1152, 50) };
    let width = a.width.unwrap_or(def_w);
    let height = a.height.unwrap_or(def_h);
    for (name, v) in [("--width", width), ("--height", height)] {
        if v == 0 || v % factor != 0 {
            return Err(Error::invalid(format!(
                "{name} {v} must be a positive multiple of {factor} for {}",
                if is_flux { "flux" } else { "sdxl" }
            )));
        }
        if v > 4096 {
            return Err(Error::invalid(format!("{name} {v} is larger than 4096")));
        }
    }
    let steps = a.steps.unwrap_or(def_steps);
    if steps == 0 || steps > 1000 {
        return Err(Error::invalid(format!(
            "--steps {steps} must be between 1 and 1000"
        )));
    }
    if a.num_images == 0 || a.num_images > 64 {
        return Err(Error::invalid(format!(
            "--num-images {} must be between 1 and 64",
            a.num_images
        )));
    }
    let scheduler = match &a.scheduler {
        Some(s) => SchedulerKind::parse(s)?,
        None => SchedulerKind::default_for(is_flux),
    };
    let outs = output_paths(&a.out, a.num_images);
    for o in &outs {
        faceclip_pipeline::core::io::check_writable(o)?;
    }
    let models_dir = if a.demo {
        models::demo_dir()?
    } else if a.hub {
        PathBuf::new()
    } else {
        let dir = a.models.clone().ok_or_else(|| {
            Error::invalid("--models DIR is required (or --demo, or FACECLIP_MODELS)")
        })?;
        if !dir.is_dir() {
            return Err(Error::io(
                &dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            ));
        }
        dir
    };
    let face = match &a.face {
        Some(p) => {
            let img = RgbImage::open(p)?;
            FaceInput {
                image: img,
                source: p.clone(),
                aligned: a.aligned,
                face_index: a.face_index,
            }
        }
        None => FaceInput::demo_face()?,
    };
    let opts = GenerateOptions {
        prompt: a.prompt.clone(),
        negative: a.negative.clone(),
        steps,
        cfg: a.cfg,
        true_cfg: a.true_cfg,
        guidance: a.guidance,
        seed: a.seed,
        width,
        height,
        num_images: a.num_images,
        scheduler,
        progress: true,
    };
    let images = if is_flux {
        let layout = if a.hub {
            hub::flux_models()?
        } else {
            models::FluxModels::discover(&models_dir)?
        };
        flux::generate(&layout, &face, &opts, &device)?
    } else {
        let layout = if a.hub {
            hub::sdxl_models()?
        } else {
            models::SdxlModels::discover(&models_dir)?
        };
        sdxl::generate(&layout, &face, &opts, &device)?
    };
    for (mut img, path) in images.into_iter().zip(&outs) {
        img.metadata.push(("dtype", precision.name().to_string()));
        img.metadata.push(("backend", a.backend.clone()));
        img.save(path)?;
        println!("{}", path.display());
    }
    Ok(())
}

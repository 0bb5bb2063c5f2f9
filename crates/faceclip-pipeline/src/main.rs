//! The `faceclip` command-line program, a thin layer over the library: `faceclip sdxl`,
//! `faceclip flux`, `faceclip align`, `faceclip inspect`, `faceclip convert`. Every input and
//! every output path is checked before any model loads; a failure prints one line and exits
//! non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use faceclip_pipeline::core::device::{Precision, parse_device, set_precision};
use faceclip_pipeline::core::image::RgbImage;
use faceclip_pipeline::core::{Checkpoint, Error, Result};
use faceclip_pipeline::{
    AlignMode, Control, FaceInput, FluxModels, FluxOptions, FluxPipeline, GeneratedImage,
    LoadOptions, LoraSpec, MemoryPolicy, MicroConditioning, NoiseSource, QuantType, SchedulerKind,
    SdxlModels, SdxlOptions, SdxlPipeline, StepInfo, hub, models,
};

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
    Sdxl(SdxlArgs),
    /// FaceT5-FLUX: a face photo and a prompt to images.
    Flux(FluxArgs),
    /// Detect the largest face of a photo and write the aligned 448x448 crop FaceCLIP sees.
    Align {
        /// The photo.
        photo: PathBuf,
        /// Where to write the crop (.png, .jpg, .webp).
        #[arg(long)]
        out: PathBuf,
        /// Which face, largest first.
        #[arg(long, default_value_t = 0)]
        face_index: usize,
        /// cpu, flex, ndarray, wgpu, vulkan, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// List a checkpoint's tensors: name, shape, dtype.
    Inspect {
        /// A .safetensors, .safetensors.index.json, .gguf, .pt, .pth or .bin file.
        checkpoint: PathBuf,
    },
    /// Convert a checkpoint (without executing pickle code): to safetensors (f32), or with
    /// --quant to GGUF with the linear weights in blocks (`dit.pt dit.gguf`).
    Convert {
        input: PathBuf,
        /// A .safetensors file, or a .gguf file with --quant.
        output: PathBuf,
        /// Store 2-D weights in blocks (q8: GGML's Q8_0, q4: Q4_0); norms, embeddings and
        /// biases stay as they are. Needs a .gguf output.
        #[arg(long, value_enum)]
        quant: Option<QuantArg>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantArg {
    /// GGML's Q8_0: 8.5 bits a weight.
    Q8,
    /// GGML's Q4_0: 4.5 bits a weight.
    Q4,
}

impl From<QuantArg> for QuantType {
    fn from(a: QuantArg) -> Self {
        match a {
            QuantArg::Q8 => Self::Q8_0,
            QuantArg::Q4 => Self::Q4_0,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Euler,
    #[value(name = "euler-a")]
    EulerA,
    Ddim,
    #[value(name = "dpm++2m")]
    DpmPp2M,
    #[value(name = "dpm++2m-karras")]
    DpmPp2MKarras,
    #[value(name = "flow-match")]
    FlowMatch,
}

impl From<SchedulerArg> for SchedulerKind {
    fn from(a: SchedulerArg) -> Self {
        match a {
            SchedulerArg::Euler => Self::EulerDiscrete,
            SchedulerArg::EulerA => Self::EulerAncestralDiscrete,
            SchedulerArg::Ddim => Self::Ddim,
            SchedulerArg::DpmPp2M => Self::DpmPp2M { karras: false },
            SchedulerArg::DpmPp2MKarras => Self::DpmPp2M { karras: true },
            SchedulerArg::FlowMatch => Self::FlowMatchEulerDiscrete,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AlignArg {
    /// Use an already-aligned FaceCLIP crop as is, detect and align anything else.
    Auto,
    /// Always detect and align.
    Always,
    /// Never: the photo already is an aligned crop.
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum DTypeArg {
    F32,
    Bf16,
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
enum RngArg {
    /// This library's generator (xoshiro256++), the same on every backend.
    Faceclip,
    /// PyTorch's CPU generator: upstream's scripts' seeds give their latents.
    Torch,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum MemoryArg {
    /// Sequential for one job, keep for several.
    Auto,
    /// Keep every model loaded (fastest for many images; most memory).
    Keep,
    /// Load each model when needed, drop it after use (least memory).
    Sequential,
}

/// The flags both generation commands take.
#[derive(Args)]
struct CommonArgs {
    /// The face photo (any photo: the largest face is detected and aligned; see --align).
    #[arg(long, required_unless_present_any = ["demo", "prompt_file"])]
    face: Option<PathBuf>,
    /// Detect and align the face first: auto (default), always, never.
    #[arg(long, value_enum, default_value_t = AlignArg::Auto)]
    align: AlignArg,
    /// Same as --align never.
    #[arg(long, conflicts_with = "align")]
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
    /// A batch of jobs: one prompt a line, or JSON lines {"prompt", "face", "seed", "negative"}
    /// (absent fields take the flags' values).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Denoising steps (default: 50, 4 with --demo).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = faceclip_pipeline::UPSTREAM_SEED)]
    seed: u64,
    /// Generator of the initial latents (torch: the same latents as upstream's scripts).
    #[arg(long, value_enum, default_value_t = RngArg::Faceclip)]
    rng: RngArg,
    /// Image width (default 864; 64 with --demo).
    #[arg(long)]
    width: Option<usize>,
    /// Image height (default 1152; 64 with --demo).
    #[arg(long)]
    height: Option<usize>,
    /// Images per job; image i uses seed + i.
    #[arg(long, default_value_t = 1)]
    num_images: usize,
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerArg>,
    /// Output file; its extension picks the format (.png with metadata, .jpg, .webp). Several
    /// images get `_1`, `_2`, ... (and `_<job>` with --prompt-file) before the extension.
    #[arg(long, default_value = "faceclip.png")]
    out: PathBuf,
    /// Print what was written as JSON (one array) instead of one path a line.
    #[arg(long)]
    json: bool,
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
    /// The type weights and activations are held in.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// A LoRA merged into the denoiser as it loads: FILE or FILE:SCALE (repeatable).
    #[arg(long, value_parser = parse_lora)]
    lora: Vec<LoraSpec>,
    /// Which models stay in memory.
    #[arg(long, value_enum, default_value_t = MemoryArg::Auto)]
    memory: MemoryArg,
    /// Quantize the big models' linear weights as they load (FLUX: transformer and T5;
    /// SDXL: UNet); a .gguf model file loads as stored without it.
    #[arg(long, value_enum)]
    quant: Option<QuantArg>,
}

#[derive(Args)]
struct SdxlArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 5.0)]
    cfg: f32,
    /// Micro-conditioning original size HxW (default: the image size).
    #[arg(long, value_parser = parse_pair)]
    original_size: Option<(usize, usize)>,
    /// Micro-conditioning crop top-left TOP,LEFT.
    #[arg(long, value_parser = parse_pair, default_value = "0,0")]
    crops_coords_top_left: (usize, usize),
    /// Micro-conditioning target size HxW (default: the image size).
    #[arg(long, value_parser = parse_pair)]
    target_size: Option<(usize, usize)>,
    /// Negative micro-conditioning original size HxW (used with --negative-target-size).
    #[arg(long, value_parser = parse_pair)]
    negative_original_size: Option<(usize, usize)>,
    /// Negative micro-conditioning crop top-left TOP,LEFT.
    #[arg(long, value_parser = parse_pair, default_value = "0,0")]
    negative_crops_coords_top_left: (usize, usize),
    /// Negative micro-conditioning target size HxW (used with --negative-original-size).
    #[arg(long, value_parser = parse_pair)]
    negative_target_size: Option<(usize, usize)>,
}

#[derive(Args)]
struct FluxArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// True CFG scale (1 turns it off).
    #[arg(long, default_value_t = 3.5)]
    true_cfg: f32,
    /// Distilled guidance.
    #[arg(long, default_value_t = 1.0)]
    guidance: f32,
}

fn parse_lora(s: &str) -> std::result::Result<LoraSpec, String> {
    LoraSpec::parse(s).map_err(|e| e.to_string())
}

/// `A,B` or `AxB` as a pair of sizes.
fn parse_pair(s: &str) -> std::result::Result<(usize, usize), String> {
    let (a, b) = s
        .split_once([',', 'x'])
        .ok_or_else(|| format!("`{s}`: expected two numbers, as 1024x1024 or 0,0"))?;
    let n = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}`: `{v}` is not a size"))
    };
    Ok((n(a)?, n(b)?))
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
        Command::Sdxl(a) => generate_sdxl(a),
        Command::Flux(a) => generate_flux(a),
        Command::Align {
            photo,
            out,
            face_index,
            backend,
        } => {
            faceclip_pipeline::core::image::check_output(&out)?;
            let device = parse_device(&backend)?;
            let image = RgbImage::open(&photo)?;
            let crop = faceclip_pipeline::align_face(&image, &photo, face_index, &device)?;
            faceclip_pipeline::core::image::save_rgb8(
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
        Command::Convert {
            input,
            output,
            quant,
        } => {
            let ext = if quant.is_some() { ".gguf" } else { ".safetensors" };
            if !output
                .file_name()
                .is_some_and(|n| n.to_string_lossy().to_lowercase().ends_with(ext))
            {
                return Err(Error::invalid(format!(
                    "output {} must end in {ext}{}",
                    output.display(),
                    if quant.is_some() { " with --quant" } else { "" }
                )));
            }
            faceclip_pipeline::core::io::check_writable(&output)?;
            let ck = Checkpoint::open(&input)?;
            match quant {
                Some(q) => {
                    let s = faceclip_pipeline::core::gguf::save_quantized(&ck, q.into(), &output)?;
                    println!(
                        "{} tensors ({} in {}) -> {} ({:.2} GB)",
                        ck.len(),
                        s.quantized,
                        QuantType::from(q).ggml_name(),
                        output.display(),
                        s.bytes as f64 / 1e9
                    );
                }
                None => {
                    ck.save_safetensors(&output)?;
                    println!("{} tensors -> {}", ck.len(), output.display());
                }
            }
            Ok(())
        }
    }
}

/// One generation job: a face, a prompt, a seed (from the flags or a prompt-file line).
struct Job {
    face: FaceInput,
    prompt: String,
    negative: Option<String>,
    seed: u64,
    /// The files its images go to.
    outs: Vec<PathBuf>,
}

/// What the flags resolve to before any model loads.
struct Plan {
    device: faceclip_pipeline::core::Device,
    precision: Precision,
    jobs: Vec<Job>,
    steps: usize,
    width: usize,
    height: usize,
    scheduler: Option<SchedulerKind>,
    noise: NoiseSource,
    load: LoadOptions,
    models_dir: PathBuf,
}

impl CommonArgs {
    /// Checks everything the user typed: backend, dtype, model folder, faces, prompt file,
    /// output paths (format and folder), LoRA files. Nothing loads.
    fn plan(&self) -> Result<Plan> {
        let mut device = parse_device(&self.backend)?;
        let precision = match self.dtype {
            DTypeArg::F32 => Precision::F32,
            DTypeArg::Bf16 => Precision::BF16,
            DTypeArg::F16 => Precision::F16,
        };
        set_precision(&mut device, precision)?;
        let models_dir = if self.demo {
            models::demo_dir()?
        } else if self.hub {
            PathBuf::new()
        } else {
            let dir = self.models.clone().ok_or_else(|| {
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
        let (def_w, def_h, def_steps) = if self.demo { (64, 64, 4) } else { (864, 1152, 50) };
        let align = if self.aligned {
            AlignMode::Never
        } else {
            match self.align {
                AlignArg::Auto => AlignMode::Auto,
                AlignArg::Always => AlignMode::Always,
                AlignArg::Never => AlignMode::Never,
            }
        };
        let open_face = |p: Option<&Path>| -> Result<FaceInput> {
            let f = match p {
                Some(p) => FaceInput::open(p)?,
                None => FaceInput::demo_face()?,
            };
            Ok(f.align(align).face_index(self.face_index))
        };
        let mut specs = vec![];
        match &self.prompt_file {
            Some(file) => {
                for spec in read_prompt_file(file)? {
                    specs.push(spec);
                }
            }
            None => specs.push(JobSpec::default()),
        }
        let many_jobs = specs.len() > 1;
        let mut jobs = Vec::with_capacity(specs.len());
        for (j, spec) in specs.into_iter().enumerate() {
            let face_path = spec.face.or_else(|| self.face.clone());
            if face_path.is_none() && !self.demo {
                return Err(Error::invalid(format!(
                    "job {}: no face (give --face or a \"face\" field)",
                    j + 1
                )));
            }
            let job_tag = many_jobs.then_some(j + 1);
            jobs.push(Job {
                face: open_face(face_path.as_deref())?,
                prompt: spec.prompt.unwrap_or_else(|| self.prompt.clone()),
                negative: spec.negative.or_else(|| self.negative.clone()),
                seed: spec.seed.unwrap_or(self.seed),
                outs: output_paths(&self.out, job_tag, self.num_images),
            });
        }
        for o in jobs.iter().flat_map(|j| &j.outs) {
            faceclip_pipeline::core::image::check_output(o)?;
        }
        let memory = match self.memory {
            MemoryArg::Keep => MemoryPolicy::KeepLoaded,
            MemoryArg::Sequential => MemoryPolicy::Sequential,
            MemoryArg::Auto if jobs.len() > 1 => MemoryPolicy::KeepLoaded,
            MemoryArg::Auto => MemoryPolicy::Sequential,
        };
        let mut load = LoadOptions::new()
            .memory(memory)
            .quant(self.quant.map(QuantType::from));
        for l in &self.lora {
            std::fs::metadata(&l.path).map_err(|e| Error::io(&l.path, e))?;
            load = load.lora(l.path.clone(), l.scale);
        }
        Ok(Plan {
            device,
            precision,
            jobs,
            steps: self.steps.unwrap_or(def_steps),
            width: self.width.unwrap_or(def_w),
            height: self.height.unwrap_or(def_h),
            scheduler: self.scheduler.map(SchedulerKind::from),
            noise: match self.rng {
                RngArg::Faceclip => NoiseSource::Faceclip,
                RngArg::Torch => NoiseSource::Torch,
            },
            load,
            models_dir,
        })
    }
}

/// One line of a prompt file.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSpec {
    prompt: Option<String>,
    face: Option<PathBuf>,
    seed: Option<u64>,
    negative: Option<String>,
}

/// Reads a prompt file: one prompt a line, or JSON lines; blank lines are skipped. Relative
/// face paths are relative to the file's folder.
fn read_prompt_file(file: &Path) -> Result<Vec<JobSpec>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut specs = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut spec = if line.starts_with('{') {
            serde_json::from_str::<JobSpec>(line)
                .map_err(|e| Error::config(file, format!("line {}: {e}", n + 1)))?
        } else {
            JobSpec {
                prompt: Some(line.to_string()),
                ..JobSpec::default()
            }
        };
        spec.face = spec.face.map(|f| if f.is_relative() { base.join(f) } else { f });
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(Error::config(file, "the prompt file holds no prompt"));
    }
    Ok(specs)
}

/// The files of one job's `n` images: `out` itself for one image of one job, else
/// `_<job>` and/or `_<i>` inserted before the extension.
fn output_paths(out: &Path, job: Option<usize>, n: usize) -> Vec<PathBuf> {
    if job.is_none() && n == 1 {
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
    let job = job.map(|j| format!("_{j:03}")).unwrap_or_default();
    (1..=n)
        .map(|i| {
            let idx = if n > 1 { format!("_{i}") } else { String::new() };
            out.with_file_name(format!("{stem}{job}{idx}.{ext}"))
        })
        .collect()
}

/// A progress bar per image over the steps, driven by the step callback.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        Self { bar: None }
    }

    fn on_step(&mut self, s: &StepInfo) -> Control {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(s.steps as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {pos}/{len} steps [{elapsed_precise}<{eta_precise}, {per_sec}]",
            ) {
                bar.set_style(style);
            }
            bar
        });
        bar.set_message(format!("image {}", s.image + 1));
        bar.set_position(s.step as u64 + 1);
        if s.step + 1 == s.steps {
            bar.finish_and_clear();
            self.bar = None;
        }
        Control::Continue
    }
}

fn warn_truncated(prompts: &[String], tokenizer: &str, limit: usize) {
    for p in prompts {
        let head: String = p.chars().take(40).collect();
        eprintln!(
            "warning: the prompt \"{head}...\" is longer than {tokenizer}'s {limit} tokens; \
             the rest is ignored (as upstream does)"
        );
    }
}

/// Saves a job's images (with the CLI's own metadata) and reports them.
fn save_all(
    images: Vec<GeneratedImage>,
    job: &Job,
    plan: &Plan,
    backend: &str,
    written: &mut Vec<serde_json::Value>,
    json: bool,
) -> Result<()> {
    for (mut img, path) in images.into_iter().zip(&job.outs) {
        img.metadata
            .push(("dtype".into(), plan.precision.name().to_string()));
        img.metadata.push(("backend".into(), backend.to_string()));
        img.save(path)?;
        if json {
            written.push(serde_json::json!({
                "path": path,
                "seed": img.seed,
                "prompt": job.prompt,
                "face": job.face.source,
            }));
        } else {
            println!("{}", path.display());
        }
    }
    Ok(())
}

fn finish(written: Vec<serde_json::Value>, json: bool) {
    if json {
        println!("{}", serde_json::Value::Array(written));
    }
}

fn generate_sdxl(a: SdxlArgs) -> Result<()> {
    let c = &a.common;
    let plan = c.plan()?;
    let micro = MicroConditioning {
        original_size: a.original_size,
        crops_coords_top_left: a.crops_coords_top_left,
        target_size: a.target_size,
        negative_original_size: a.negative_original_size,
        negative_crops_coords_top_left: a.negative_crops_coords_top_left,
        negative_target_size: a.negative_target_size,
    };
    let options = |job: &Job| {
        let mut o = SdxlOptions::new(job.prompt.clone())
            .steps(plan.steps)
            .size(plan.width, plan.height)
            .seed(job.seed)
            .num_images(c.num_images)
            .guidance_scale(a.cfg)
            .noise(plan.noise)
            .micro(micro)
            .scheduler(plan.scheduler.unwrap_or(SchedulerKind::EulerDiscrete));
        o.negative_prompt = job.negative.clone();
        o
    };
    for job in &plan.jobs {
        let o = options(job);
        o.validate()?;
        warn_truncated(
            &faceclip_pipeline::sdxl::truncated_prompts(&o)?,
            "CLIP",
            faceclip_pipeline::encoders::tokenizer_clip::CONTEXT_LENGTH,
        );
    }
    let models = if c.hub {
        hub::sdxl_models(true)?
    } else {
        SdxlModels::discover(&plan.models_dir)?
    };
    let pipe = SdxlPipeline::load(models, &plan.device, &plan.load)?;
    let mut written = vec![];
    for job in &plan.jobs {
        let started = Instant::now();
        let mut progress = Progress::new();
        let images = pipe.generate_with(&job.face, &options(job), &mut |s| progress.on_step(s))?;
        log_time(started, images.len());
        save_all(images, job, &plan, &c.backend, &mut written, c.json)?;
    }
    finish(written, c.json);
    Ok(())
}

fn generate_flux(a: FluxArgs) -> Result<()> {
    let c = &a.common;
    let plan = c.plan()?;
    let options = |job: &Job| {
        let mut o = FluxOptions::new(job.prompt.clone())
            .steps(plan.steps)
            .size(plan.width, plan.height)
            .seed(job.seed)
            .num_images(c.num_images)
            .true_cfg_scale(a.true_cfg)
            .guidance_scale(a.guidance)
            .noise(plan.noise)
            .scheduler(plan.scheduler.unwrap_or(SchedulerKind::FlowMatchEulerDiscrete));
        o.negative_prompt = job.negative.clone();
        o
    };
    for job in &plan.jobs {
        options(job).validate()?;
    }
    let models = if c.hub {
        hub::flux_models(true)?
    } else {
        FluxModels::discover(&plan.models_dir)?
    };
    let pipe = FluxPipeline::load(models, &plan.device, &plan.load)?;
    for job in &plan.jobs {
        warn_truncated(
            &pipe.truncated_prompts(&options(job))?,
            "T5",
            pipe.max_sequence_length(),
        );
    }
    let mut written = vec![];
    for job in &plan.jobs {
        let started = Instant::now();
        let mut progress = Progress::new();
        let images = pipe.generate_with(&job.face, &options(job), &mut |s| progress.on_step(s))?;
        log_time(started, images.len());
        save_all(images, job, &plan, &c.backend, &mut written, c.json)?;
    }
    finish(written, c.json);
    Ok(())
}

/// With FACECLIP_VERBOSE, the time each job took.
fn log_time(started: Instant, n: usize) {
    if std::env::var_os("FACECLIP_VERBOSE").is_some() {
        eprintln!(
            "{n} image(s) in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

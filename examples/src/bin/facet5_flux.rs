//! FaceT5-FLUX through the library, as upstream's `infer_face_t5_flux.py`:
//! `cargo run --release -p faceclip-examples --bin facet5_flux -- MODELS FACE.png "prompt" [OUT.png]`
//! (MODELS = `demo/models` runs the tiny random-weight demo).

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::models::FluxModels;
use faceclip_pipeline::{FaceInput, GenerateOptions, flux};

fn main() -> faceclip_pipeline::core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let models = args.get(1).map(String::as_str).unwrap_or("demo/models");
    let face = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("demo/models/face.png");
    let prompt = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("A woman wearing a blue denim shirt and khaki pants, on a rocky desert plateau");
    let out = args.get(4).map(String::as_str).unwrap_or("facet5_flux.png");

    let device = default_device()?;
    let models = FluxModels::discover(models.as_ref())?;
    let face = FaceInput::open(face, true)?;
    let mut opts = GenerateOptions::flux(prompt);
    opts.progress = true;
    if models.encoder_config.is_some() {
        (opts.width, opts.height, opts.steps) = (64, 64, 4);
    }
    let images = flux::generate(&models, &face, &opts, &device)?;
    images[0].save(out.as_ref())?;
    println!("{out}");
    Ok(())
}

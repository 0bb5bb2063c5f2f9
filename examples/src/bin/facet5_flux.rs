//! FaceT5-FLUX through the library, as upstream's `infer_face_t5_flux.py`:
//! `cargo run --release -p faceclip-examples --bin facet5_flux -- MODELS FACE.png "prompt" [OUT.png]`
//! (MODELS = `demo/models` runs the tiny random-weight demo).

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::{FaceInput, FluxOptions, FluxPipeline};

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
        .unwrap_or("A man in a leather jacket, on a city street at night.");
    let out = args.get(4).map(String::as_str).unwrap_or("facet5_flux.png");

    let device = default_device()?;
    let pipe = FluxPipeline::from_pretrained(models, &device)?;
    let face = FaceInput::open(face)?;
    let mut opts = FluxOptions::new(prompt);
    if pipe.models().encoder_config.is_some() {
        opts = opts.size(64, 64).steps(4);
    }
    let images = pipe.generate(&face, &opts)?;
    images[0].save(out.as_ref())?;
    println!("{out}");
    Ok(())
}

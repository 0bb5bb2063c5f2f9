//! FaceCLIP-SDXL through the library, as upstream's `infer_face_clip_sdxl.py`:
//! `cargo run --release -p faceclip-examples --bin faceclip_sdxl -- MODELS FACE.png "prompt" [OUT.png]`
//! (MODELS = `demo/models` runs the tiny random-weight demo).

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::{FaceInput, SdxlOptions, SdxlPipeline};

fn main() -> faceclip_pipeline::core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let models = args.get(1).map(String::as_str).unwrap_or("demo/models");
    let face = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("demo/models/face.png");
    let prompt = args.get(3).map(String::as_str).unwrap_or(
        "A woman wearing a blue denim shirt and khaki pants, on a rocky desert plateau.",
    );
    let out = args
        .get(4)
        .map(String::as_str)
        .unwrap_or("faceclip_sdxl.png");

    let device = default_device()?;
    let pipe = SdxlPipeline::from_pretrained(models, &device)?;
    // Any photo: an already-aligned FaceCLIP crop is used as is, anything else is aligned.
    let face = FaceInput::open(face)?;
    let mut opts = SdxlOptions::new(prompt);
    if pipe.models().encoder_config.is_some() {
        // The tiny demo models: a small image, few steps.
        opts = opts.size(64, 64).steps(4);
    }
    let images = pipe.generate(&face, &opts)?;
    images[0].save(out.as_ref())?;
    println!("{out}");
    Ok(())
}

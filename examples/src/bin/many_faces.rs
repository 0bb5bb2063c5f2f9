//! Load a pipeline once, then make images for three faces x two prompts, printing the time of
//! each: the load is paid once, no image after it pays any load time.
//! `cargo run --release -p faceclip-examples --bin many_faces -- [MODELS] [FACE.png ...]`
//! (defaults: the demo models and three of the upstream example faces).

use std::time::Instant;

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::{FaceInput, SdxlOptions, SdxlPipeline};

fn main() -> faceclip_pipeline::core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let models = args.get(1).map(String::as_str).unwrap_or("demo/models");
    let faces: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        ["0001_female", "0004_male", "0012_male"]
            .iter()
            .map(|f| format!("crates/faceclip-detect/tests/assets/{f}.png"))
            .collect()
    };
    let prompts = [
        "a portrait photo in a garden, soft light",
        "an astronaut on the moon, cinematic",
    ];

    let device = default_device()?;
    let t = Instant::now();
    let pipe = SdxlPipeline::from_pretrained(models, &device)?;
    println!("load: {:.2} s", t.elapsed().as_secs_f64());
    let demo = pipe.models().encoder_config.is_some();
    for (f, face) in faces.iter().enumerate() {
        let input = FaceInput::open(face)?;
        for (p, prompt) in prompts.iter().enumerate() {
            let mut opts = SdxlOptions::new(*prompt).seed(42);
            if demo {
                opts = opts.size(64, 64).steps(4);
            }
            let t = Instant::now();
            let images = pipe.generate(&input, &opts)?;
            let out = format!("many_faces_{f}_{p}.png");
            images[0].save(out.as_ref())?;
            println!(
                "face {f} prompt {p}: {:.2} s -> {out}",
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

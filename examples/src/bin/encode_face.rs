//! Encode a face and a prompt with FaceCLIP-L/G and print the shapes and a few values of
//! SDXL's conditioning (the face's, and the negative prompt's with a zero face):
//! `cargo run -p faceclip-examples --bin encode_face -- [MODELS] [FACE.png] ["prompt"]`.

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::{FaceInput, LoadOptions, MemoryPolicy, SdxlModels, SdxlOptions, SdxlPipeline};

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
        .unwrap_or("a portrait photo");
    let device = default_device()?;
    // Sequential: only the encoder is loaded, for this one call.
    let load = LoadOptions::new().memory(MemoryPolicy::Sequential);
    let pipe = SdxlPipeline::load(SdxlModels::discover(models.as_ref())?, &device, &load)?;
    let (pos, neg) = pipe.encode(&FaceInput::open(face)?, &SdxlOptions::new(prompt))?;
    println!(
        "prompt_embeds {:?}, pooled {:?}",
        pos.prompt_embeds.dims(),
        pos.pooled.dims()
    );
    let p = faceclip_pipeline::core::to_vec_f32(pos.pooled);
    let n = faceclip_pipeline::core::to_vec_f32(neg.pooled);
    println!(
        "pooled[..4] = {:?} (face + prompt), {:?} (zero face + negative prompt)",
        &p[..4],
        &n[..4]
    );
    Ok(())
}

//! Encode a face and a prompt with FaceCLIP-L/G, without the pipeline, and print the shapes
//! and a few values of SDXL's conditioning:
//! `cargo run -p faceclip-examples --bin encode_face -- [face_clip_encoder.pt] [FACE.png] ["prompt"]`.

use faceclip_pipeline::core::device::default_device;
use faceclip_pipeline::core::image::RgbImage;
use faceclip_pipeline::models::SdxlModels;
use faceclip_pipeline::sdxl;

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
    let encoder = sdxl::load_encoder(&SdxlModels::discover(models.as_ref())?, &device)?;
    let face = RgbImage::open(face)?;
    let cond = encoder.encode(&[Some(face), None], &[prompt, prompt])?;
    println!(
        "prompt_embeds {:?}, pooled {:?}",
        cond.prompt_embeds.dims(),
        cond.pooled.dims()
    );
    let v = faceclip_pipeline::core::to_vec_f32(cond.pooled);
    println!(
        "pooled[0][..4] = {:?} (with face), pooled[1][..4] = {:?} (zero face)",
        &v[..4],
        &v[v.len() / 2..v.len() / 2 + 4]
    );
    Ok(())
}

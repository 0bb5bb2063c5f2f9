//! Diffusion schedulers reading diffusers' `scheduler_config.json`.

pub mod parity;

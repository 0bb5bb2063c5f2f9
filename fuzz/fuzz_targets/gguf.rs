#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| faceclip_fuzz::gguf(data));

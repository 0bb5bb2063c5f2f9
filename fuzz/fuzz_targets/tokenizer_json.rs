#![no_main]
// `unwind_panics`: see its docs (a panic the loader catches is not a crash; one that escapes is).
libfuzzer_sys::fuzz_target!(init: faceclip_fuzz::unwind_panics(), |data: &[u8]| faceclip_fuzz::tokenizer_json(data));

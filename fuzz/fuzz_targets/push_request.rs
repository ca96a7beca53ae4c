//! The push endpoint's query and body parsing, `query ‖ 0x00 ‖ body`. See `wxauth::http::fuzzing::push_request` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::http::fuzzing::push_request(data));

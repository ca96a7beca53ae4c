//! JSON/XML event parsing behind a valid signature and decryption. See `wxauth::http::fuzzing::push_message` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::http::fuzzing::push_message(data));

//! AES-256-CBC with 32-byte PKCS#7 and the push plaintext layout. See `wxauth::http::fuzzing::push_decrypt` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::http::fuzzing::push_decrypt(data));

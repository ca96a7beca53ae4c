//! AES-128-CBC/PKCS#7 and payload opening on any key ‖ IV ‖ ciphertext. See `wxauth::fuzzing::decrypt` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::decrypt(data));

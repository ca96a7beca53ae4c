//! AES-128-CBC/PKCS#7 and payload opening on any key ‖ IV ‖ ciphertext. See `wxauth::grpc::fuzzing::decrypt` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::grpc::fuzzing::decrypt(data));

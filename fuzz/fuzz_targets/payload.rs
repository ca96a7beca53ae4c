//! Any plaintext sealed as WeChat does, then opened as wxauth does. See `wxauth::grpc::fuzzing::payload` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::grpc::fuzzing::payload(data));

//! Request validation on any protobuf bytes (first byte: which message). See `wxauth::grpc::fuzzing::request` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::grpc::fuzzing::request(data));

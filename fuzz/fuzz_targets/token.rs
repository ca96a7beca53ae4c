//! ServerKeys::parse_token on any string. See `wxauth::grpc::fuzzing::token` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::grpc::fuzzing::token(data));

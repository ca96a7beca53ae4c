//! Every WeChat endpoint's response parser on any body. See `wxauth::grpc::fuzzing::wechat_response` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::grpc::fuzzing::wechat_response(data));

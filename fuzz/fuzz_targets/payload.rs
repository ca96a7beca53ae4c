//! Any plaintext sealed as WeChat does, then opened as wxauth does. See `wxauth::fuzzing::payload` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxauth::fuzzing::payload(data));

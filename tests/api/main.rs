//! One integration-test binary: real gRPC to a real wxauth, real HTTP to the
//! WeChat simulator, a real SQLite file.
mod helpers;
mod limits;
mod login;
mod phone;
mod secrets;
mod server;
mod sessions;
mod user_info;
mod verify;
mod wechat_errors;

//! One integration-test binary: real gRPC to a real wxauth, real HTTP to the
//! WeChat simulator, a real database: every case runs on a SQLite file and
//! on a PostgreSQL schema (see `helpers::api_tests!`).
mod access_token;
mod callers;
mod crash;
mod deletion;
mod deploy;
mod erasure;
mod examples;
mod export;
mod helpers;
mod json_logs;
mod key_rotation;
mod limits;
mod login;
mod metrics;
mod operability;
mod outage;
mod phone;
mod phone_numbers;
mod pki;
mod process;
mod push;
mod replicas;
mod request_limits;
mod retention;
mod secrets;
mod server;
mod sessions;
mod shutdown;
mod startup;
mod transport;
mod user_info;
mod verify;
mod wechat_errors;

//! One integration-test binary: real gRPC to a real wxauth, real HTTP to the
//! WeChat simulator, a real database: every case runs on a SQLite file and
//! on a PostgreSQL schema (see `helpers::api_tests!`).
mod access_token;
mod callers;
mod crash;
mod deploy;
mod examples;
mod helpers;
mod json_logs;
mod key_rotation;
mod limits;
mod login;
mod metrics;
mod operability;
mod outage;
mod phone;
mod pki;
mod process;
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

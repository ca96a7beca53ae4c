//! One integration-test binary: real gRPC to a real wxauth, real HTTP to the
//! WeChat simulator, a real database: every case runs on a SQLite file and
//! on a PostgreSQL schema (see `helpers::api_tests!`).
mod access_token;
mod helpers;
mod limits;
mod login;
mod operability;
mod outage;
mod phone;
mod replicas;
mod secrets;
mod server;
mod sessions;
mod user_info;
mod verify;
mod wechat_errors;

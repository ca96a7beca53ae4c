//! wxauth: a gRPC identity service for WeChat Mini Programs.
//!
//! # Layout
//! - [`config`]: flags and `WXAUTH_*` environment (the only module reading it).
//! - [`app`]: builds everything, serves gRPC with health and reflection, drains on shutdown.
//! - [`grpc`]: the only code that touches generated proto types.
//! - [`login`], [`session`], [`phone`], [`phone_code`], [`user_info`],
//!   [`access_token`]: domain operations on [`service::Wxauth`], no tonic/prost.
//! - [`wechat`]: the WeChat client (the only code that knows WeChat's JSON and
//!   errcodes) and the WeChat simulator.
//! - [`store`]: the `Store` trait, its SQLite and PostgreSQL implementations and
//!   the contract tests both pass; all SQL lives there.
//! - [`crypto`]: tokens, keyed hashes, AES-CBC and signatures: pure functions.
//! - [`error`]: the one error enum and the only mapping to `tonic::Status`.
//!
//! # Invariants
//! - A session_key, the app secret, a raw token or a code never reaches a
//!   response, a log line or an error message: they live in
//!   [`secret::Secret`], whose `Debug`/`Display` are redacted.
//! - The database holds only session ids; a token also needs the server key's MAC.
//! - Identity comes from a code or a token, never from an openid a caller sends.
#![forbid(unsafe_code)]

pub mod access_token;
pub mod app;
pub mod apps;
pub mod check;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod crypto;
pub mod error;
pub mod grpc;
pub mod health;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod model;
pub mod phone;
pub mod phone_code;
pub mod secret;
pub mod service;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod user_info;
pub mod users;
pub mod wechat;

pub use app::Application;
pub use clock::Clock;
pub use config::Config;

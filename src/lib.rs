//! wxauth: a gRPC identity service for WeChat Mini Programs.
//!
//! # Layout
//! - [`config`]: flags and `WXAUTH_*` environment (the only module reading it).
//! - [`app`]: builds everything, serves gRPC with health and reflection, drains on shutdown.
//! - [`grpc`]: the only code that touches generated proto types; also TLS on
//!   the gRPC port and [`grpc::callers`], who may call which method.
//! - [`service`]: [`service::Wxauth`], the facade `grpc` talks to: it owns
//!   one component per flow and composes them where one RPC needs two
//!   (ExchangeCode with a phone, BindPhone with a login code).
//! - [`login`], [`phone`], [`session`], [`users`]: one folder per flow, each
//!   a component owning its state (`Logins`, `Phones`, `Sessions`, `Users`)
//!   with its shared dependencies given to its constructor; no tonic/prost,
//!   and no flow imports another.
//! - [`access_token`]: `AccessTokens`, below the flows: phone and session
//!   call WeChat with the app's access token.
//! - [`wechat`]: the WeChat client (the only code that knows WeChat's JSON and
//!   errcodes).
//! - [`sim`]: the WeChat simulator over real HTTP, a product of its own.
//! - [`session::cache`], [`session::loader`], [`session::last_seen`]: the
//!   VerifyToken hot path: recently verified sessions, cold lookups batched,
//!   and last-seen times written in batches.
//! - [`store`]: the `Store` trait, its SQLite and PostgreSQL implementations and
//!   the contract tests both pass; all SQL lives there.
//! - [`at_rest`]: seals session_keys and access tokens before the store sees
//!   them and opens them after; seals plaintext rows of earlier versions.
//! - [`crypto`]: tokens, keyed hashes, AES-CBC, sealing and signatures: pure functions.
//! - [`validation`]: the limits of every request field, checked by
//!   `grpc::requests` before any I/O.
//! - [`error`]: the one error enum and the only mapping to `tonic::Status`.
//! - [`domain`]: what every flow shares, below them all; among it
//!   [`domain::deadline`], the caller's deadline (set by `grpc`, read by
//!   `wechat`), and [`domain::single_flight`], the one "once, whoever asks"
//!   mechanism (in process and by database claim) behind login codes, phone
//!   codes and access tokens.
//!
//! # Invariants
//! - A session_key, the app secret, a raw token or a code never reaches a
//!   response, a log line or an error message: they live in
//!   [`secret::Secret`], whose `Debug`/`Display` are redacted.
//! - The database holds only session ids; a token also needs the server key's MAC.
//! - The database holds secrets (session_keys, access tokens) only sealed
//!   under the server key: the store takes and returns [`crypto::Sealed`].
//! - Identity comes from a code or a token, never from an openid a caller sends.
//! - With `[[callers]]`, no AuthService handler runs for an unknown caller or
//!   a method outside its policy; health and reflection stay open. API keys
//!   exist in wxauth only as SHA-256 hashes and are never logged.
#![forbid(unsafe_code)]

pub mod access_token;
pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod login;
pub mod phone;
pub mod service;
pub mod session;
pub mod sim;
pub mod store;
pub mod users;
pub mod wechat;

pub use app::Application;
pub use config::Config;
pub use domain::clock::Clock;

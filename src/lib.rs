//! wxauth: a gRPC identity service for WeChat Mini Programs.
//!
//! # Layout
//! Folders depend downwards only: each may use the ones listed after it.
//! - [`app`]: startup. Builds everything from the configuration, binds, serves
//!   gRPC with health and reflection, drains on shutdown; [`app::health`]
//!   (SERVING while the database answers), [`app::check`] (`wxauth check`),
//!   [`app::telemetry`] (logging).
//! - [`config`]: flags, `WXAUTH_*` environment and the TOML file
//!   ([`config::file`]); secrets in redacting wrappers; [`config::apps`]
//!   turns them into the domain's apps.
//! - [`grpc`]: the edge, the only code that touches generated proto types.
//!   [`grpc::requests`] parses request fields once into domain types,
//!   [`grpc::status`] is the only mapping from the error enum to
//!   `tonic::Status`, [`grpc::callers`] decides who may call which method;
//!   also TLS on the gRPC port and the fuzz entry points ([`grpc::fuzzing`]).
//! - [`service`]: `Wxauth`, the facade the gRPC handlers call.
//! - One folder per flow, no tonic or prost inside:
//!   - [`login`]: ExchangeCode: code claims and single flight, first-sight
//!     registration, legacy user info ([`login::user_info`]).
//!   - [`phone`]: BindPhone: the legacy payload, phone codes
//!     ([`phone::code`]), and what a phone number may look like ([`phone`]'s
//!     checks).
//!   - [`session`]: VerifyToken, CheckSession, RevokeToken, and their hot
//!     path: recently verified sessions ([`session::cache`]), cold lookups
//!     batched ([`session::loader`]), last-seen times written in batches
//!     ([`session::last_seen`]).
//!   - [`users`]: FindUsers.
//!   - [`access_token`]: GetAccessToken, one WeChat access token per app
//!     shared by every replica.
//! - [`sim`]: the WeChat simulator, a product of its own over real HTTP.
//! - [`wechat`]: the WeChat HTTP client, the only code that knows WeChat's
//!   JSON, errcodes and payload format; the circuit breaker and outbound
//!   limit ([`wechat::guard`]).
//! - [`store`]: the `Store` trait, its SQLite and PostgreSQL implementations,
//!   the change feed, and the contract tests both pass; all SQL lives there.
//! - [`domain`]: what every flow shares: the model, the one error enum, the
//!   clock, secrets ([`domain::secret`]), tokens, hashes, AES and sealing
//!   ([`domain::crypto`], pure functions; [`domain::at_rest`] seals what
//!   the store keeps), field validation, the configured apps and their
//!   limits, and metrics.
//!
//! # Invariants
//! - A session_key, the app secret, a raw token or a code never reaches a
//!   response, a log line or an error message: they live in
//!   [`domain::secret::Secret`], whose `Debug`/`Display` are redacted.
//! - The database holds only session ids; a token also needs the server key's MAC.
//! - The database holds secrets (session_keys, access tokens) only sealed
//!   under the server key: the store takes and returns [`domain::crypto::Sealed`].
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

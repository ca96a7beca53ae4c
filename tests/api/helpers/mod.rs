//! `TestApp`: a real wxauth on a random port, on a temp SQLite file or a
//! fresh PostgreSQL schema, talking over HTTP to a real WeChat simulator,
//! with a clock tests can advance.
//!
//! One file per concern; this module re-exports what the test modules use.
mod app;
mod backend;
mod calls;
mod database;
mod logs;
mod sim;

pub use app::{random_server_key, TestApp, APP_ID, APP_SECRET};
pub(crate) use backend::api_tests;
pub use backend::Backend;
pub use calls::{assert_error, reason, Subject};
pub use database::Database;
pub use logs::captured_logs;
pub use sim::SimControl;

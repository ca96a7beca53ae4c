//! What every flow shares: the model, the one error enum, the clock,
//! secrets and crypto, field validation and the parsed request fields
//! ([`input`]), the configured apps and their
//! limits, metrics, the caller's deadline ([`deadline`]) and the single
//! flight and claim-wait mechanism ([`single_flight`]). Depends on nothing
//! else in the crate.
pub mod apps;
pub mod at_rest;
pub mod clock;
pub mod crypto;
pub mod deadline;
pub mod error;
pub mod input;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod privacy;
pub mod secret;
pub mod single_flight;
pub mod validation;

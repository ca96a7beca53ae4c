//! The HTTP edges besides gRPC, each on its own listener through the one
//! accept loop ([`crate::domain::listener`]): WeChat's message-push URL
//! ([`push`]). They choose their own HTTP statuses, as [`crate::grpc`]
//! chooses gRPC's.
pub mod push;

/// Entry points of the push endpoint's fuzz targets; only with the
/// `fuzzing` feature (and in unit tests). Not part of the API.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

//! The gRPC layer: the only code that touches generated proto types.
//! Handlers validate nothing themselves beyond shape; they convert, call
//! the domain, and convert back.
mod access;
mod auth;
pub mod callers;
mod convert;

pub use access::Access;
pub use auth::AuthApi;

/// Generated from `proto/wxauth/v1/auth.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("wxauth.v1");

    /// Encoded descriptors of the wxauth protos (and their imports), served
    /// by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("wxauth_descriptor");
}

/// Largest request wxauth decodes. Real requests are well under 8 KiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

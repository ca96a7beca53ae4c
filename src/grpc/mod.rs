//! The gRPC layer: the only code that touches generated proto types.
//! Handlers validate nothing themselves: [`requests`] checks every field
//! of a request and converts it, the handler calls the domain, and
//! `convert` turns the answer back into a response.
mod access;
mod auth;
pub mod callers;
mod convert;
pub(crate) mod requests;

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

//! The gRPC layer: the only code that touches generated proto types.
//! Handlers validate nothing themselves: [`requests`] checks every field
//! of a request and converts it, the handler calls the domain, and
//! `convert` turns the answer back into a response.
mod access;
mod auth;
pub mod callers;
pub mod codec;
mod convert;
pub(crate) mod requests;
pub mod status;

/// Entry points of the fuzz targets; only with the `fuzzing` feature (and
/// in unit tests, whose property tests share them). Not part of the API.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

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

#[cfg(test)]
mod tests {
    use prost::Message;

    /// What `grpcurl describe` prints comes from the descriptor's source
    /// info: every service, RPC, message and field of the contract has a comment.
    #[test]
    fn every_message_field_and_rpc_of_the_contract_is_documented() {
        let set = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|f| f.package() == "wxauth.v1")
            .expect("the wxauth file");
        let info = file.source_code_info.as_ref().expect("source info is kept");
        let documented = |path: &[i32]| {
            info.location
                .iter()
                .any(|l| l.path == path && !l.leading_comments().trim().is_empty())
        };
        // Field numbers in FileDescriptorProto: 4 message_type, 6 service;
        // in ServiceDescriptorProto: 2 method.
        let undocumented: Vec<&str> = (0..file.message_type.len())
            .filter(|&i| !documented(&[4, i as i32]))
            .map(|i| file.message_type[i].name())
            .collect();
        assert!(undocumented.is_empty(), "undocumented messages: {undocumented:?}");
        // In DescriptorProto: 2 field.
        for (i, message) in file.message_type.iter().enumerate() {
            for (j, field) in message.field.iter().enumerate() {
                let path = [4, i as i32, 2, j as i32];
                assert!(documented(&path), "{}.{}", message.name(), field.name());
            }
        }
        for (s, service) in file.service.iter().enumerate() {
            assert!(documented(&[6, s as i32]), "{}", service.name());
            for (m, method) in service.method.iter().enumerate() {
                assert!(documented(&[6, s as i32, 2, m as i32]), "{}", method.name());
            }
        }
    }
}

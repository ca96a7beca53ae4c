//! Compiles the gRPC contract. Uses the protoc shipped in the
//! `protoc-bin-vendored` crate, so no protoc needs to be installed.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if env::var_os("PROTOC").is_none() {
        // SAFETY-free: build scripts are single threaded; set_var is fine here.
        env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("wxauth_descriptor.bin"))
        // Malformed requests answer INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::Codec")
        .compile_protos(&["proto/wxauth/v1/auth.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds the migration files but cannot tell Cargo to
    // watch the directories, so a new migration would go unnoticed.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}

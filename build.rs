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
    postgres_tests_cfg();
    Ok(())
}

/// Sets `cfg(wxauth_pg)` when the PostgreSQL tests can run, so that without a
/// database they are marked ignored (`#[cfg_attr(not(wxauth_pg), ignore)]`)
/// and the count says so, instead of returning early and passing. Under
/// `CI=true` they always run: without the URL they fail (store::testing).
fn postgres_tests_cfg() {
    println!("cargo::rustc-check-cfg=cfg(wxauth_pg)");
    println!("cargo:rerun-if-env-changed=WXAUTH_TEST_DATABASE_URL");
    println!("cargo:rerun-if-env-changed=CI");
    let url_set = env::var_os("WXAUTH_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty());
    let ci = env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if url_set || ci {
        println!("cargo:rustc-cfg=wxauth_pg");
    }
}

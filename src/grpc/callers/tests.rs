use prost::Message;

use super::*;

fn entry(toml_text: &str) -> CallerEntry {
    toml::from_str(toml_text).unwrap()
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn keyed(name: &str, key: &str, methods: &str) -> CallerEntry {
    entry(&format!(
        "name = {name:?}\napi_key_sha256 = {:?}\nmethods = {methods}",
        sha256_hex(key)
    ))
}

fn request(method: &str, authorization: Option<&str>) -> http::Request<()> {
    let mut builder = http::Request::builder().uri(format!("{PATH_PREFIX}{method}"));
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(()).unwrap()
}

fn error_of(result: Result<Admitted, Refusal>) -> Error {
    result.expect_err("refused").error
}

#[test]
fn methods_are_exactly_the_rpcs_of_the_auth_service() {
    let set = prost_types::FileDescriptorSet::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
    let service = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "AuthService")
        .unwrap();
    let rpcs: Vec<_> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(rpcs, METHODS);
}

#[test]
fn a_known_key_is_admitted_to_its_methods_only() {
    let callers = Callers::from_entries(
        &[
            keyed("bff", "bff-key", r#"["ExchangeCode", "VerifyToken"]"#),
            keyed("orders", "orders-key", r#"["VerifyToken"]"#),
        ],
        false,
    )
    .unwrap();
    let admitted = callers
        .authorize(&request("ExchangeCode", Some("Bearer bff-key")))
        .unwrap();
    assert_eq!(&*admitted.name, "bff");
    assert!(!admitted.operator, "not unless configured");
    let admitted = callers
        .authorize(&request("VerifyToken", Some("bearer orders-key")))
        .unwrap();
    assert_eq!(&*admitted.name, "orders", "the scheme is case-insensitive");
    assert!(matches!(
        error_of(callers.authorize(&request("ExchangeCode", Some("Bearer orders-key")))),
        Error::CallerForbidden {
            method: "ExchangeCode"
        }
    ));
    for authorization in [None, Some("Bearer nope"), Some("Basic bff-key"), Some("bff-key")] {
        assert!(
            matches!(
                error_of(callers.authorize(&request("VerifyToken", authorization))),
                Error::CallerUnknown
            ),
            "{authorization:?}"
        );
    }
}

#[test]
fn an_unknown_method_name_is_a_startup_error_naming_it() {
    let error = Callers::from_entries(&[keyed("bff", "k", r#"["VerifyTokens"]"#)], false).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("VerifyTokens") && message.contains("bff"),
        "{message}"
    );
}

#[test]
fn ambiguous_or_incomplete_callers_are_startup_errors() {
    let cert = format!("cert_sha256 = {:?}", sha256_hex("cert"));
    for (entries, client_ca) in [
        (vec![keyed("bff", "k1", "[]")], false),
        (vec![entry("name = \"bff\"\nmethods = [\"VerifyToken\"]")], false),
        (
            vec![
                keyed("bff", "k1", "[\"VerifyToken\"]"),
                keyed("bff", "k2", "[\"VerifyToken\"]"),
            ],
            false,
        ),
        (
            vec![
                keyed("a", "same", "[\"VerifyToken\"]"),
                keyed("b", "same", "[\"VerifyToken\"]"),
            ],
            false,
        ),
        (
            vec![entry(&format!(
                "name = \"a\"\n{cert}\nmethods = [\"VerifyToken\"]"
            ))],
            false,
        ),
        (
            vec![entry(
                "name = \"a\"\napi_key_sha256 = \"abcd\"\nmethods = [\"VerifyToken\"]",
            )],
            false,
        ),
        (
            vec![entry(
                "name = \"\"\napi_key_sha256 = \"abcd\"\nmethods = [\"VerifyToken\"]",
            )],
            false,
        ),
    ] {
        assert!(Callers::from_entries(&entries, client_ca).is_err(), "{entries:?}");
    }
    let with_cert = entry(&format!("name = \"a\"\n{cert}\nmethods = [\"VerifyToken\"]"));
    assert!(Callers::from_entries(&[with_cert], true).is_ok());
}

#[test]
fn fingerprints_may_be_written_as_openssl_prints_them() {
    let hex = sha256_hex("cert");
    let openssl: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect();
    assert_eq!(digest(&openssl.join(":")).unwrap(), digest(&hex).unwrap());
}

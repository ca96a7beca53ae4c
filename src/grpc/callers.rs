//! Who may call AuthService: the `[[callers]]` policy, and the service
//! wrapper that enforces it before any handler runs.
//!
//! A request names its caller by the client certificate TLS verified (its
//! SHA-256 fingerprint, or a DNS name in its subjectAltName) or by an API key
//! (`authorization: Bearer KEY`, hashed and compared in constant time with
//! every configured hash). No match: UNAUTHENTICATED `CALLER_UNKNOWN`; a
//! caller outside its policy: PERMISSION_DENIED `CALLER_FORBIDDEN`. The
//! admitted caller goes into the request's extensions ([`Admitted`]), where
//! handlers find whether it is an operator (`operator = true`: it may name
//! users by id in DeleteUser and ExportUser). Health
//! and reflection are other services and never pass through here. Without
//! `[[callers]]` the wrapper is not installed, so plain mode pays nothing.
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use sha2::{Digest as _, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::codegen::http;
use tonic::transport::server::TlsConnectInfo;

use crate::domain::listener::ConnInfo;

use crate::config::file::CallerEntry;
use crate::domain::error::Error;

/// The methods of `wxauth.v1.AuthService`, as `[[callers]]` name them.
pub const METHODS: [&str; 11] = [
    "ExchangeCode",
    "VerifyToken",
    "BindPhone",
    "CheckSession",
    "RevokeToken",
    "FindUsers",
    "GetAccessToken",
    "DeleteUser",
    "ExportUser",
    "UnbindPhone",
    "UpdateProfile",
];

const PATH_PREFIX: &str = "/wxauth.v1.AuthService/";

type Sha256Digest = [u8; 32];

/// The validated `[[callers]]`.
#[derive(Debug)]
pub struct Callers {
    callers: Vec<Caller>,
    /// Every API key hash with the index of its caller, scanned in full on
    /// each request so that timing tells nothing about which one matched.
    keys: Vec<(Sha256Digest, u32)>,
    /// Whether any caller is known by its certificate; if not, certificates
    /// are not even looked at.
    by_fingerprint: bool,
    by_dns_name: bool,
}

/// A caller the policy admitted, in the request's extensions.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub name: Arc<str>,
    /// May name users by id (DeleteUser, ExportUser).
    pub operator: bool,
}

#[derive(Debug)]
struct Caller {
    name: Arc<str>,
    operator: bool,
    cert_hashes: Vec<Sha256Digest>,
    dns_name: Option<String>,
    /// Bit `i` set: may call `METHODS[i]`.
    methods: u16,
}

/// Why a request is refused, and by whom when known (for the log).
#[derive(Debug)]
pub struct Refusal {
    error: Error,
    caller: Option<Arc<str>>,
    method: &'static str,
}

impl Callers {
    /// Validates the entries; `client_ca` says whether TLS verifies client
    /// certificates (without it, certificate identities cannot be trusted).
    pub fn from_entries(entries: &[CallerEntry], client_ca: bool) -> anyhow::Result<Self> {
        let mut callers = Vec::with_capacity(entries.len());
        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let caller = caller(entry, client_ca).with_context(|| format!("[[callers]] {:?}", entry.name))?;
            for hash in &entry.api_key_sha256 {
                let index = u32::try_from(index)?;
                keys.push((digest(hash).context("api_key_sha256")?, index));
            }
            callers.push(caller);
        }
        distinct(callers.iter().map(|c| c.name.to_string()), "name")?;
        distinct(keys.iter().map(|(k, _)| hex::encode(k)), "api_key_sha256")?;
        distinct(
            callers.iter().flat_map(|c| c.cert_hashes.iter().map(hex::encode)),
            "cert_sha256",
        )?;
        distinct(callers.iter().filter_map(|c| c.dns_name.clone()), "cert_dns_name")?;
        Ok(Self {
            by_fingerprint: callers.iter().any(|c| !c.cert_hashes.is_empty()),
            by_dns_name: callers.iter().any(|c| c.dns_name.is_some()),
            callers,
            keys,
        })
    }

    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    /// Whether some caller is known by its client certificate.
    pub fn knows_certificates(&self) -> bool {
        self.by_fingerprint || self.by_dns_name
    }

    /// The caller if it may make this request.
    pub fn authorize<B>(&self, request: &http::Request<B>) -> Result<Admitted, Refusal> {
        let method = method(request.uri().path());
        let refuse = |error, caller| Refusal {
            error,
            caller,
            method: method.map_or("unknown", |i| METHODS[i]),
        };
        let Some(caller) = self.identify(request) else {
            return Err(refuse(Error::CallerUnknown, None));
        };
        match method {
            Some(i) if caller.methods & (1 << i) == 0 => Err(refuse(
                Error::CallerForbidden { method: METHODS[i] },
                Some(caller.name.clone()),
            )),
            // An unknown method is left to the service: UNIMPLEMENTED.
            _ => Ok(Admitted {
                name: caller.name.clone(),
                operator: caller.operator,
            }),
        }
    }

    fn identify<B>(&self, request: &http::Request<B>) -> Option<&Caller> {
        let by_cert = self
            .knows_certificates()
            .then(|| request.extensions().get::<TlsConnectInfo<ConnInfo>>())
            .flatten()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| self.by_certificate(chain.first()?));
        by_cert.or_else(|| self.by_key(bearer(request.headers())?))
    }

    /// The caller whose key hash matches, comparing with all of them.
    fn by_key(&self, key: &[u8]) -> Option<&Caller> {
        let hash: Sha256Digest = Sha256::digest(key).into();
        // 0 = none, else index + 1.
        let mut found = 0u32;
        for (candidate, index) in &self.keys {
            found.conditional_assign(&(index + 1), candidate.ct_eq(&hash));
        }
        let index = found.checked_sub(1)?;
        self.callers.get(usize::try_from(index).ok()?)
    }

    /// The caller of a client certificate (already verified by TLS against
    /// `--tls-client-ca`). Fingerprints and names are not secrets: a plain
    /// comparison is fine.
    fn by_certificate(&self, der: &[u8]) -> Option<&Caller> {
        if self.by_fingerprint {
            let hash: Sha256Digest = Sha256::digest(der).into();
            if let Some(c) = self.callers.iter().find(|c| c.cert_hashes.contains(&hash)) {
                return Some(c);
            }
        }
        if !self.by_dns_name {
            return None;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => self
                .callers
                .iter()
                .find(|c| c.dns_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(dns))),
            _ => None,
        })
    }
}

fn caller(entry: &CallerEntry, client_ca: bool) -> anyhow::Result<Caller> {
    ensure!(!entry.name.trim().is_empty(), "name must not be empty");
    let has_cert = !entry.cert_sha256.is_empty() || entry.cert_dns_name.is_some();
    ensure!(
        has_cert || !entry.api_key_sha256.is_empty(),
        "needs api_key_sha256, cert_sha256 or cert_dns_name"
    );
    ensure!(
        !has_cert || client_ca,
        "cert_sha256 and cert_dns_name need --tls-client-ca (client certificates are not verified without it)"
    );
    ensure!(!entry.methods.is_empty(), "methods must not be empty");
    let mut methods = 0u16;
    for name in &entry.methods {
        let Some(i) = METHODS.iter().position(|m| m == name) else {
            bail!("unknown method {name:?} in methods; AuthService has {METHODS:?}");
        };
        methods |= 1 << i;
    }
    let cert_hashes = entry
        .cert_sha256
        .iter()
        .map(|h| digest(h).context("cert_sha256"))
        .collect::<anyhow::Result<_>>()?;
    Ok(Caller {
        name: entry.name.as_str().into(),
        operator: entry.operator,
        cert_hashes,
        dns_name: entry.cert_dns_name.as_ref().map(|n| n.to_ascii_lowercase()),
        methods,
    })
}

/// A SHA-256 in hex, as `sha256sum` prints it or with `:` between bytes, as
/// `openssl x509 -fingerprint -sha256` does.
fn digest(text: &str) -> anyhow::Result<Sha256Digest> {
    let hex_digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex_digits).map_err(|_| anyhow::anyhow!("{text:?} is not hex"))?;
    Sha256Digest::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("{text:?} is not 32 bytes (SHA-256)"))
}

fn distinct(values: impl Iterator<Item = String>, what: &str) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for value in values {
        ensure!(
            seen.insert(value.clone()),
            "two [[callers]] share the {what} {value:?}"
        );
    }
    Ok(())
}

/// The index in [`METHODS`] of an AuthService request path.
fn method(path: &str) -> Option<usize> {
    let name = path.strip_prefix(PATH_PREFIX)?;
    METHODS.iter().position(|m| *m == name)
}

/// The key of `authorization: Bearer KEY` (the scheme is case-insensitive).
fn bearer(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, key) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| key.trim_ascii())
}

mod enforce;

pub use enforce::{Checked, RequireCaller};

#[cfg(test)]
mod tests;

//! Certificates for the TLS tests, made at test time with rcgen (no private
//! key is committed): a CA that signs the server's certificate, another that
//! signs client certificates, and clients' certificates.
use std::net::SocketAddr;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wxauth::Config;

/// The name in the server's certificate (besides 127.0.0.1).
pub const SERVER_NAME: &str = "wxauth.internal";

pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA that signed the server's certificate, as `wxauth check --tls-ca` reads it.
    pub ca_path: PathBuf,
    ca_pem: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_ca: PathBuf,
    client_issuer: Issuer<'static, KeyPair>,
}

/// A client's certificate and key.
pub struct ClientCert {
    identity: Identity,
    /// The certificate's SHA-256 fingerprint, as `cert_sha256` takes it.
    pub sha256: String,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, server_issuer) = authority("wxauth test server CA");
        let (server_pem, server_key_pem) = leaf(
            &server_issuer,
            &["127.0.0.1", SERVER_NAME],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_ca_pem, client_issuer) = authority("wxauth test client CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca_path: write("ca.pem", &ca_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server-key.pem", &server_key_pem),
            client_ca: write("client-ca.pem", &client_ca_pem),
            ca_pem,
            client_issuer,
            _dir: dir,
        }
    }

    /// Serves TLS; with `mutual`, verifies client certificates against the client CA.
    pub fn configure(&self, config: &mut Config, mutual: bool) {
        config.tls_cert = Some(self.server_cert.clone());
        config.tls_key = Some(self.server_key.clone());
        config.tls_client_ca = mutual.then(|| self.client_ca.clone());
    }

    /// A client certificate for `dns_name`, signed by the client CA.
    pub fn client_cert(&self, dns_name: &str) -> ClientCert {
        client_cert(&self.client_issuer, dns_name)
    }

    /// A client certificate signed by a CA wxauth does not trust.
    pub fn foreign_client_cert(dns_name: &str) -> ClientCert {
        let (_, issuer) = authority("someone else's CA");
        client_cert(&issuer, dns_name)
    }

    /// A TLS channel to wxauth at `addr` that trusts the server CA and
    /// presents `cert`, if any. Connects on first use, so a refused handshake
    /// shows as the call's error.
    pub fn channel(&self, addr: SocketAddr, cert: Option<&ClientCert>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(SERVER_NAME);
        if let Some(cert) = cert {
            tls = tls.identity(cert.identity.clone());
        }
        Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy()
    }
}

/// A TLS channel that trusts another CA than the one that signed wxauth's certificate.
pub fn untrusting_channel(addr: SocketAddr) -> Channel {
    let (other_ca, _) = authority("not wxauth's CA");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(other_ca))
        .domain_name(SERVER_NAME);
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate and its key (PEM), signed by `issuer`.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let (cert, key) = leaf_der(issuer, names, usage);
    (cert.pem(), key.serialize_pem())
}

fn leaf_der(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    (params.signed_by(&key, issuer).unwrap(), key)
}

fn client_cert(issuer: &Issuer<'static, KeyPair>, dns_name: &str) -> ClientCert {
    let (cert, key) = leaf_der(issuer, &[dns_name], ExtendedKeyUsagePurpose::ClientAuth);
    ClientCert {
        sha256: hex::encode(Sha256::digest(cert.der())),
        identity: Identity::from_pem(cert.pem(), key.serialize_pem()),
    }
}

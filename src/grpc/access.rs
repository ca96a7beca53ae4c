//! Who can reach AuthService: TLS on the gRPC port (rustls), optionally
//! verifying client certificates, and the `[[callers]]` policy. Health and
//! reflection stay open to anyone who can connect, so load balancers and
//! `grpcurl list` need no credentials.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::callers::{Callers, RequireCaller};
use super::pb::auth_service_server::AuthServiceServer;
use super::AuthApi;
use crate::config::Config;
use crate::domain::listener::ConnLimits;

/// HTTP/2 pings on a connection quiet for this long find dead peers (and
/// with them their streams) that never closed their TCP connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// A ping unanswered for this long closes the connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The transport security, caller policy and limits of the gRPC port.
pub struct Access {
    tls: Option<ServerTlsConfig>,
    /// `None`: anyone may call (no wrapper, no work per request).
    callers: Option<Arc<Callers>>,
    limits: ConnLimits,
    max_concurrent_streams: u32,
    request_timeout: Duration,
}

impl Access {
    /// Reads the certificates and validates the policy: any mistake stops
    /// the server at startup. Says in the log how open the port is.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let tls = server_tls(config)?;
        let client_ca = config.tls_client_ca.is_some();
        let callers = Callers::from_entries(&config.callers, client_ca)?;
        if client_ca && !callers.knows_certificates() {
            bail!("--tls-client-ca needs [[callers]] with cert_sha256 or cert_dns_name: they decide who may call");
        }
        let access = Self {
            tls,
            callers: (!callers.is_empty()).then(|| Arc::new(callers)),
            limits: ConnLimits {
                max_connections: config.max_connections as usize,
                handshake_timeout: config.handshake_timeout,
                idle_timeout: config.idle_timeout,
            },
            max_concurrent_streams: config.max_concurrent_streams,
            request_timeout: config.request_timeout,
        };
        access.announce(config);
        Ok(access)
    }

    fn announce(&self, config: &Config) {
        let listen = config.listen;
        match (&self.tls, &self.callers) {
            (None, None) => tracing::warn!(
                %listen,
                "gRPC is PLAINTEXT and UNAUTHENTICATED: anyone who reaches this port may call every method; \
                 for local development only (set --tls-cert/--tls-key and [[callers]], see README \"Callers and TLS\")"
            ),
            (Some(_), None) => tracing::warn!(
                %listen,
                "TLS on, but no [[callers]]: any client that reaches this port may call every method"
            ),
            (None, Some(callers)) => tracing::warn!(
                callers = callers.len(),
                "callers are checked, but API keys travel in PLAINTEXT: use TLS unless the network encrypts"
            ),
            (Some(_), Some(callers)) => tracing::info!(
                callers = callers.len(),
                mutual_tls = config.tls_client_ca.is_some(),
                "TLS on; only [[callers]] may call AuthService"
            ),
        }
    }

    /// The limits of the gRPC port's connections.
    pub fn conn_limits(&self) -> ConnLimits {
        self.limits
    }

    /// A server builder with TLS when configured and the limits that keep
    /// a client from holding memory: without a stream limit h2 accepts any
    /// number of streams per connection, each holding its request state
    /// until its body comes (issue 12: 20,000 header-only streams took
    /// 190 MB); the request timeout frees those whose body never comes.
    pub fn server(&self) -> anyhow::Result<Server> {
        let builder = Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams)
            .timeout(self.request_timeout)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        Ok(match &self.tls {
            Some(tls) => builder.tls_config(tls.clone())?,
            None => builder,
        })
    }

    /// Adds AuthService, behind the caller policy when there is one.
    pub fn add_auth<L>(&self, router: Router<L>, auth: AuthServiceServer<AuthApi>) -> Router<L> {
        match &self.callers {
            Some(callers) => router.add_service(RequireCaller::new(auth, callers.clone())),
            None => router.add_service(auth),
        }
    }
}

fn server_tls(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) if config.tls_client_ca.is_some() => {
            bail!("--tls-client-ca needs --tls-cert and --tls-key")
        }
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let identity = Identity::from_pem(read(cert)?, read(key)?);
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(config.handshake_timeout);
    if let Some(ca) = &config.tls_client_ca {
        // Optional at the handshake, so that health and reflection need no
        // certificate; a certificate that is sent must chain to this CA, and
        // `[[callers]]` decide which ones may call AuthService.
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(true);
    }
    // tonic parses the PEM only when asked to serve: parse it now, so that a
    // bad file stops the server at startup, with the file's name.
    Server::builder()
        .tls_config(tls.clone())
        .with_context(|| format!("TLS with {} and {}", cert.display(), key.display()))?;
    Ok(Some(tls))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

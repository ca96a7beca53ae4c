//! `wxauth check`: asks a running wxauth's gRPC health service whether it is
//! SERVING, for Docker/compose health checks and scripts. Health needs no
//! caller credentials; over TLS it needs the CA that signed the server's
//! certificate.
use anyhow::{bail, Context};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::config::CheckConfig;

/// True when the server answers SERVING within the timeout.
pub async fn check(config: &CheckConfig) -> anyhow::Result<bool> {
    let endpoint = endpoint(config)?;
    let probe = async {
        let channel = endpoint.connect().await?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: config.service.clone(),
            })
            .await?
            .into_inner()
            .status;
        anyhow::Ok(status == ServingStatus::Serving as i32)
    };
    tokio::time::timeout(config.timeout, probe)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {:?}", config.timeout)))
}

fn endpoint(config: &CheckConfig) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(config.addr.clone())?.connect_timeout(config.timeout);
    let https = config.addr.starts_with("https://");
    match (&config.tls_ca, https) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(domain) = &config.tls_domain {
                tls = tls.domain_name(domain);
            }
            Ok(endpoint.tls_config(tls)?)
        }
        (None, true) => {
            bail!("an https:// address needs --tls-ca, the CA that signed the server's certificate")
        }
        (Some(_), false) => bail!("--tls-ca needs an https:// address"),
        (None, false) => Ok(endpoint),
    }
}

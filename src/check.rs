//! `wxauth check`: asks a running wxauth's gRPC health service whether it is
//! SERVING, for Docker/compose health checks and scripts.
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::config::CheckConfig;

/// True when the server answers SERVING within the timeout.
pub async fn check(config: &CheckConfig) -> anyhow::Result<bool> {
    let probe = async {
        let channel = tonic::transport::Endpoint::from_shared(config.addr.clone())?
            .connect_timeout(config.timeout)
            .connect()
            .await?;
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

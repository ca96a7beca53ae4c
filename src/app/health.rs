//! What the gRPC health service reports: SERVING only while the database
//! answers, and NOT_SERVING for good once shutdown begins. The probe loop
//! and the drain both go through [`Health`], whose lock makes "check that
//! we are not stopping, then report" one step: a database that recovers at
//! the moment of SIGTERM cannot write SERVING over the drain's NOT_SERVING.
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

pub struct Health {
    reporter: HealthReporter,
    /// The services reported on: the server as a whole ("") and ours.
    services: Vec<&'static str>,
    /// Whether shutdown began; held while a status is written.
    stopping: tokio::sync::Mutex<bool>,
    /// The built-in WeChat simulator answers logins: every SERVING says so.
    simulated: bool,
}

impl Health {
    pub fn new(reporter: HealthReporter, services: Vec<&'static str>) -> Self {
        Self {
            reporter,
            services,
            stopping: tokio::sync::Mutex::new(false),
            simulated: false,
        }
    }

    /// Marks the server as running the WeChat simulator.
    #[must_use]
    pub fn simulated(mut self, simulated: bool) -> Self {
        self.simulated = simulated;
        self
    }

    /// Reports what the database probe found, unless shutdown began.
    pub async fn report(&self, serving: bool) {
        let stopping = self.stopping.lock().await;
        if !*stopping {
            self.set(serving).await;
        }
    }

    /// NOT_SERVING from now on, whatever a probe finds later.
    pub async fn stop(&self) {
        let mut stopping = self.stopping.lock().await;
        *stopping = true;
        self.set(false).await;
    }

    async fn set(&self, serving: bool) {
        let status = if serving {
            if self.simulated {
                tracing::warn!(
                    simulator = true,
                    "health: SERVING with the built-in WeChat SIMULATOR: logins are fake"
                );
            } else {
                tracing::info!(simulator = false, "health: SERVING");
            }
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in &self.services {
            self.reporter.set_service_status(*service, status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::server::HealthService;

    use super::*;

    const SERVICES: [&str; 2] = ["", "wxauth.v1.AuthService"];

    async fn status(reporter: &HealthReporter, service: &str) -> i32 {
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        });
        HealthService::from_health_reporter(reporter.clone())
            .check(request)
            .await
            .unwrap()
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn after_stop_a_recovered_database_does_not_turn_health_back_to_serving() {
        let reporter = HealthReporter::new();
        let health = Health::new(reporter.clone(), SERVICES.to_vec());
        health.report(true).await;
        assert_eq!(status(&reporter, "").await, ServingStatus::Serving as i32);
        health.stop().await;
        health.report(true).await;
        for service in SERVICES {
            assert_eq!(
                status(&reporter, service).await,
                ServingStatus::NotServing as i32,
                "{service:?}"
            );
        }
    }
}

//! [`Wxauth`]: the domain service and everything it depends on. Its
//! operations live one concept per file (`login.rs`, `session.rs`).
use std::sync::Arc;

use crate::apps::Apps;
use crate::clock::Clock;
use crate::crypto::ServerKeys;
use crate::login::LoginOutcome;
use crate::model::TokenPolicy;
use crate::store::Store;
use crate::wechat::WechatClient;

pub struct Wxauth {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) wechat: WechatClient,
    pub(crate) apps: Apps,
    pub(crate) keys: ServerKeys,
    pub(crate) clock: Clock,
    pub(crate) policy: TokenPolicy,
    /// In-process single flight for login codes: concurrent requests with
    /// one code share one exchange. The database claim does the same across
    /// replicas and remembers the answer for retries.
    pub(crate) code_flights: moka::future::Cache<String, Arc<LoginOutcome>>,
    /// How long to wait for another request's claim on the same code.
    pub(crate) claim_wait: std::time::Duration,
}

impl Wxauth {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        apps: Apps,
        keys: ServerKeys,
        clock: Clock,
        policy: TokenPolicy,
        claim_wait: std::time::Duration,
    ) -> Self {
        let code_flights = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(std::time::Duration::from_secs(60))
            .build();
        Self {
            store,
            wechat,
            apps,
            keys,
            clock,
            policy,
            code_flights,
            claim_wait,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

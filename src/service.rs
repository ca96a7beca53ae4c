//! [`Wxauth`]: the domain service and everything it depends on. Its
//! operations live one concept per file (`login.rs`, `session.rs`).
use std::sync::Arc;

use crate::access_token::AccessTokens;
use crate::domain::apps::Apps;
use crate::domain::clock::Clock;
use crate::domain::crypto::ServerKeys;
use crate::domain::model::{Phone, TokenPolicy};
use crate::domain::single_flight::{Claims, Flights};
use crate::login::LoginOutcome;
use crate::session::cache::TokenCache;
use crate::session::last_seen::LastSeen;
use crate::session::loader::SessionLoader;
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
    pub(crate) code_flights: Flights<LoginOutcome>,
    /// Code claims: how long to wait for another request's claim.
    pub(crate) claims: Claims,
    /// In-process single flight for phone codes, like `code_flights`: the
    /// claimant's user id and the phone.
    pub(crate) phone_flights: Flights<(String, Phone)>,
    pub(crate) access_tokens: AccessTokens,
    pub(crate) phone: PhoneSettings,
    /// Recent /wxa/checksession answers by (user, session_key version).
    pub(crate) key_checks: moka::future::Cache<(String, i64), bool>,
    /// Sessions verified recently (see `token_cache` for why it is safe).
    pub(crate) token_cache: Arc<TokenCache>,
    /// Last-seen times waiting to be written.
    pub(crate) last_seen: LastSeen,
    /// Cold VerifyToken lookups, batched.
    pub(crate) session_loader: SessionLoader,
    /// Background tasks that live as long as the service: the store's
    /// change feed and the last-seen writer.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Wxauth {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Tunables of the domain service.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub policy: TokenPolicy,
    /// How long to wait for another request's claim on the same code.
    pub claim_wait: std::time::Duration,
    pub phone: PhoneSettings,
    pub token_cache: TokenCacheSettings,
}

/// Size of the VerifyToken cache.
#[derive(Clone, Copy, Debug)]
pub struct TokenCacheSettings {
    /// Most sessions cached; 0 disables the cache.
    pub capacity: u64,
    /// Longest a session stays cached without being read again from the store.
    pub ttl: std::time::Duration,
}

/// Phone-binding limits, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct PhoneSettings {
    /// Older phone authorisations are rejected as replays; 0 disables.
    pub max_age_ms: i64,
    /// How long a replaced session_key may still open payloads.
    pub key_grace_ms: i64,
    /// How long a /wxa/checksession answer is reused.
    pub check_cache_ms: i64,
}

impl Wxauth {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        apps: Apps,
        keys: ServerKeys,
        clock: Clock,
        settings: Settings,
    ) -> Self {
        let Settings {
            policy,
            claim_wait,
            phone,
            token_cache,
        } = settings;
        let cache = Arc::new(TokenCache::new(token_cache.capacity, token_cache.ttl));
        let feed = {
            let cache = cache.clone();
            store.watch_changes(Arc::new(move |change| cache.apply(change)))
        };
        if feed.is_none() {
            cache.no_other_writers();
        }
        let last_seen = LastSeen::new(store.clone());
        let (session_loader, loaders) = SessionLoader::start(store.clone());
        let tasks = feed
            .into_iter()
            .chain([tokio::spawn(last_seen.clone().run())])
            .chain(loaders)
            .collect();
        let access_tokens = AccessTokens::new(
            store.clone(),
            wechat.clone(),
            keys.clone(),
            clock.clone(),
            claim_wait,
        );
        let claims = Claims::new(clock.clone(), claim_wait);
        let key_checks = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(std::time::Duration::from_millis(
                phone.check_cache_ms.max(1) as u64
            ))
            .build();
        Self {
            store,
            wechat,
            apps,
            keys,
            clock,
            policy,
            code_flights: Flights::default(),
            claims,
            phone_flights: Flights::default(),
            access_tokens,
            phone,
            key_checks,
            token_cache: cache,
            last_seen,
            session_loader,
            tasks,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The token policy of a session's app. Sessions of an app no longer
    /// configured get the default policy here and fail verification anyway.
    pub(crate) fn policy_of(&self, app_id: &str) -> &TokenPolicy {
        self.apps.resolve(app_id).map_or(&self.policy, |app| &app.policy)
    }

    /// When a session dies if it keeps being used.
    pub fn expires_at(&self, session: &crate::domain::model::Session) -> i64 {
        session.effective_expiry(self.policy_of(&session.app_id))
    }
}

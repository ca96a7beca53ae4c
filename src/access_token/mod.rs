//! WeChat access tokens: one per app, cached until shortly before expiry,
//! persisted through the store (a restart does not spend quota), refreshed
//! by one caller while the others wait (in process and across replicas:
//! [`crate::domain::single_flight`]). Uses `stable_token` in normal mode,
//! which never invalidates a token another process still holds.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::domain::apps::App;
use crate::domain::at_rest::{open_access_token, seal_access_token};
use crate::domain::clock::Clock;
use crate::domain::crypto::ServerKeys;
use crate::domain::error::{Error, Result};
use crate::domain::model::StoredAccessToken;
use crate::domain::secret::Secret;
use crate::domain::single_flight::{Attempt, Claims, Flights};
use crate::store::Store;
use crate::wechat::{WechatClient, WechatError};

/// Refresh this long before expiry: stable_token hands out a new token in
/// its last 5 minutes, and old and new overlap then.
const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;

pub struct AccessTokens {
    store: Arc<dyn Store>,
    wechat: WechatClient,
    /// Seal the token in the store, which every replica reads.
    keys: ServerKeys,
    clock: Clock,
    /// Across replicas, one refresh per app: leased for as long as a
    /// refresh may take; waiters outlast the lease, to take over a lease
    /// whose holder died.
    claims: Claims,
    cached: Mutex<HashMap<String, StoredAccessToken>>,
    /// In this process, one refresh (or replacement) per app at a time.
    refreshing: Flights<StoredAccessToken>,
}

impl AccessTokens {
    pub fn new(
        store: Arc<dyn Store>,
        wechat: WechatClient,
        keys: ServerKeys,
        clock: Clock,
        refresh_wait: std::time::Duration,
    ) -> Self {
        Self {
            store,
            wechat,
            keys,
            claims: Claims::new(clock.clone(), refresh_wait).outlasting_the_lease(),
            clock,
            cached: Default::default(),
            refreshing: Default::default(),
        }
    }

    /// Calls WeChat with the app's access token. If WeChat says the token is
    /// invalid (40001/40014/42001), drops it, only if it is still the fetch
    /// that failed (not a newer fetch, which may carry the same string), and
    /// retries once with a fresh one.
    pub async fn call<T, F, Fut>(&self, app: &App, f: F) -> Result<Result<T, WechatError>>
    where
        F: Fn(Secret<String>) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let used = self.current(app).await?;
        match f(used.token.clone()).await {
            Err(WechatError::AccessTokenInvalid) => {
                tracing::warn!(app_id = app.id(), "WeChat rejected the access token; refreshing");
                let token = self.replace(app, &used.fetch_id).await?;
                Ok(f(token.token).await)
            }
            other => Ok(other),
        }
    }

    /// A token valid for at least the refresh margin.
    pub async fn get(&self, app: &App) -> Result<Secret<String>> {
        Ok(self.current(app).await?.token)
    }

    /// The current token with its expiry.
    pub async fn current(&self, app: &App) -> Result<StoredAccessToken> {
        let cached = self.fresh_cached(app.id());
        crate::domain::metrics::cache("access_token", cached.is_some());
        if let Some(token) = cached {
            return Ok(token);
        }
        let landed = self.refreshing.run(app.id(), self.refresh(app)).await;
        Ok((*landed.result?).clone())
    }

    /// A token other than fetch `failed`'s, which WeChat rejected. In the
    /// app's flight, so that nobody re-reads the failed token from the store
    /// between dropping it here and there; a flight this call joined may
    /// have started before the drop and still carry it: then once more.
    async fn replace(&self, app: &App, failed: &str) -> Result<StoredAccessToken> {
        let mut tries = 0;
        loop {
            tries += 1;
            let landed = self
                .refreshing
                .run(app.id(), async {
                    self.invalidate(app, failed).await?;
                    self.refresh(app).await
                })
                .await;
            let token = landed.result?;
            if landed.ran || token.fetch_id != failed || tries == 3 {
                return Ok((*token).clone());
            }
        }
    }

    /// The token of the store or of WeChat, remembered.
    async fn refresh(&self, app: &App) -> Result<StoredAccessToken> {
        // Someone else may have refreshed just before this flight began.
        if let Some(token) = self.fresh_cached(app.id()) {
            return Ok(token);
        }
        // Across replicas: one claims the refresh, the others wait for its
        // token in the store. Nobody force-refreshes, so nobody invalidates a
        // token a peer still uses.
        let stored = self
            .claims
            .wait(|now, lease| async move {
                if let Some(stored) = self.stored(app).await? {
                    if self.is_fresh(&stored) {
                        return Ok(Attempt::Settled(stored));
                    }
                }
                if !self.store.claim_token_refresh(app.id(), now, lease).await? {
                    return Ok(Attempt::Pending);
                }
                let fetched = self.fetch(app).await;
                self.store.release_token_refresh(app.id()).await?;
                fetched.map(Attempt::Settled)
            })
            .await?;
        Ok(self.remember(app.id(), stored))
    }

    /// Asks WeChat for the current token and persists it.
    async fn fetch(&self, app: &App) -> Result<StoredAccessToken> {
        // A peer may have finished just before we claimed.
        if let Some(stored) = self.stored(app).await? {
            if self.is_fresh(&stored) {
                return Ok(stored);
            }
        }
        let issued = self
            .wechat
            .stable_token(&app.creds, false)
            .await
            .map_err(Error::from)?;
        let now = self.clock.now_ms();
        let stored = StoredAccessToken {
            token: issued.token,
            expires_at: now + i64::try_from(issued.expires_in).unwrap_or(7200) * 1000,
            fetch_id: hex::encode(crate::domain::crypto::random_bytes::<16>()),
        };
        let sealed = seal_access_token(&self.keys, app.id(), &stored);
        self.store.save_access_token(app.id(), &sealed, now).await?;
        tracing::info!(
            app_id = app.id(),
            expires_in = issued.expires_in,
            "refreshed the WeChat access token"
        );
        Ok(stored)
    }

    /// Forgets the token of fetch `failed`, unless a newer fetch already
    /// replaced it.
    async fn invalidate(&self, app: &App, failed: &str) -> Result<()> {
        {
            let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
            if cached.get(app.id()).is_some_and(|t| t.fetch_id == failed) {
                cached.remove(app.id());
            }
        }
        // Only the failed fetch's token: a peer's newer one survives.
        self.store.drop_access_token(app.id(), failed).await
    }

    /// The persisted token, opened; one that does not open counts as none.
    async fn stored(&self, app: &App) -> Result<Option<StoredAccessToken>> {
        let sealed = self.store.access_token(app.id()).await?;
        Ok(sealed.and_then(|s| open_access_token(&self.keys, app.id(), &s)))
    }

    fn fresh_cached(&self, app_id: &str) -> Option<StoredAccessToken> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.get(app_id).filter(|t| self.is_fresh(t)).cloned()
    }

    fn is_fresh(&self, token: &StoredAccessToken) -> bool {
        token.expires_at - REFRESH_MARGIN_MS > self.clock.now_ms()
    }

    fn remember(&self, app_id: &str, token: StoredAccessToken) -> StoredAccessToken {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.insert(app_id.to_owned(), token.clone());
        token
    }
}

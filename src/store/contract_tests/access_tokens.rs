//! The shared WeChat access token: persisted per app, dropped only if still
//! the fetch that failed, and the refresh lease.
use std::time::Duration;

use super::{TestStore, APP, T0};
use crate::domain::crypto::Sealed;
use crate::domain::model::SealedAccessToken;

contract_tests!(
    an_access_token_is_saved_replaced_and_read_per_app,
    a_token_is_dropped_only_while_it_is_still_the_fetch_that_failed,
    the_refresh_lease_is_held_by_one_claimant_until_released,
    a_lapsed_refresh_lease_is_taken_over,
);

/// The store keeps whatever seal it is given: plain strings stand in here.
fn fetched(token: &str, fetch_id: &str) -> SealedAccessToken {
    SealedAccessToken {
        token: Sealed::from_stored(token.to_owned()),
        expires_at: T0 + 7_200_000,
        fetch_id: fetch_id.to_owned(),
    }
}

/// (token, expires_at, fetch_id) as the store reads it.
async fn read(t: &TestStore, app_id: &str) -> Option<(String, i64, String)> {
    let stored = t.access_token(app_id).await.unwrap()?;
    Some((
        stored.token.as_str().to_owned(),
        stored.expires_at,
        stored.fetch_id,
    ))
}

async fn an_access_token_is_saved_replaced_and_read_per_app(t: &TestStore) {
    assert_eq!(read(t, APP).await, None);
    t.save_access_token(APP, &fetched("tok-1", "f1"), T0)
        .await
        .unwrap();
    assert_eq!(
        read(t, APP).await,
        Some(("tok-1".into(), T0 + 7_200_000, "f1".into()))
    );
    t.save_access_token(APP, &fetched("tok-2", "f2"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(read(t, APP).await.unwrap().0, "tok-2");
    assert_eq!(read(t, "wxanotherapp000001").await, None, "per app");
}

async fn a_token_is_dropped_only_while_it_is_still_the_fetch_that_failed(t: &TestStore) {
    // stable_token gave the same string twice: only the fetch tells them apart.
    t.save_access_token(APP, &fetched("tok", "f1"), T0).await.unwrap();
    t.save_access_token(APP, &fetched("tok", "f2"), T0 + 1)
        .await
        .unwrap();
    t.drop_access_token(APP, "f1").await.unwrap();
    assert_eq!(read(t, APP).await.unwrap().2, "f2", "a newer fetch stays");
    t.drop_access_token(APP, "f2").await.unwrap();
    assert_eq!(read(t, APP).await, None);
}

async fn the_refresh_lease_is_held_by_one_claimant_until_released(t: &TestStore) {
    const LEASE_MS: i64 = 60_000;
    assert!(t.claim_token_refresh(APP, T0, LEASE_MS).await.unwrap());
    assert!(!t.claim_token_refresh(APP, T0 + 1, LEASE_MS).await.unwrap());
    assert!(
        t.claim_token_refresh("wxanotherapp000001", T0, LEASE_MS)
            .await
            .unwrap(),
        "per app"
    );
    t.release_token_refresh(APP).await.unwrap();
    assert!(t.claim_token_refresh(APP, T0 + 2, LEASE_MS).await.unwrap());
}

async fn a_lapsed_refresh_lease_is_taken_over(t: &TestStore) {
    // PostgreSQL times leases with its own clock, which no test can move:
    // a short lease and a short real wait serve both stores.
    const LEASE_MS: i64 = 200;
    assert!(t.claim_token_refresh(APP, T0, LEASE_MS).await.unwrap());
    assert!(!t.claim_token_refresh(APP, T0 + 50, LEASE_MS).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(t.claim_token_refresh(APP, T0 + 400, LEASE_MS).await.unwrap());
    assert!(
        !t.claim_token_refresh(APP, T0 + 450, LEASE_MS).await.unwrap(),
        "a fresh lease"
    );
}

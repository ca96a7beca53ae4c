//! The WeChat access token's refresh lease, as replicas share it.
use std::time::Duration;

use wxauth::store::PoolSettings;

use crate::helpers::{api_tests, Backend, TestApp, APP_ID};

api_tests!(a_refresh_lease_left_by_a_dead_replica_with_a_fast_clock_is_taken_over);

async fn a_refresh_lease_left_by_a_dead_replica_with_a_fast_clock_is_taken_over() {
    let app = TestApp::spawn_with(|c| c.wechat_timeout = Duration::from_millis(500)).await;
    // wxauth's lease: as long as it waits for another request's claim.
    let lease = app.config.wechat_timeout + Duration::from_secs(5);
    // Another replica, its clock an hour ahead, claims the refresh and dies.
    // On PostgreSQL the lease runs on the database's clock, so the skew is
    // harmless; SQLite serves one host, whose clock the test moves instead.
    let peer = wxauth::store::connect(&app.database.url(), &PoolSettings::default())
        .await
        .unwrap();
    let skew = match Backend::current() {
        Backend::Postgres => 3_600_000,
        Backend::Sqlite => 0,
    };
    let now = app.clock.now_ms();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap();
    assert!(peer
        .claim_token_refresh(APP_ID, now + skew, lease_ms)
        .await
        .unwrap());
    drop(peer);
    if Backend::current() == Backend::Sqlite {
        app.clock.advance(lease + Duration::from_secs(1));
    }
    // Waiting out the lease, wxauth takes over instead of giving up.
    let token = app.access_token("").await.unwrap();
    assert!(!token.access_token.is_empty());
    assert_eq!(app.sim.calls("stable_token").await, 1);
}

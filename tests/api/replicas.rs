//! Two replicas on one PostgreSQL database: separate servers, pools and
//! in-process caches, sharing only the database (plus, as in production,
//! the server key and WeChat). What works on one instance works across them.
use std::collections::{HashMap, HashSet};

use std::time::{Duration, Instant};

use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, reason, TestApp};

/// The documented bound: a revocation on one replica reaches every other
/// replica's VerifyToken cache within a second.
pub(crate) const BOUND: Duration = Duration::from_secs(1);

/// Verifies on `replica` until it answers with `reason`; panics if that
/// takes longer than the bound after `since`.
pub(crate) async fn until_refused(replica: &TestApp, token: &str, expected: &str, since: Instant) {
    loop {
        match replica.verify(token).await {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                assert_eq!(reason(&status), expected);
                return;
            }
            Ok(_) => assert!(
                since.elapsed() < BOUND,
                "still verified {:?} after the change",
                since.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Verifies on `replica` for a while, so that its cache holds the token and
/// its change feed is up (heartbeats every 250 ms).
pub(crate) async fn warm(replica: &TestApp, token: &str) {
    for _ in 0..40 {
        replica.verify(token).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

api_tests!(
    sqlite: [],
    postgres: [
        a_token_issued_by_one_replica_verifies_on_the_other,
        one_code_sent_to_both_replicas_at_once_makes_one_wechat_call_and_gets_one_token,
        one_phone_code_sent_to_both_replicas_at_once_is_billed_once_and_binds_everywhere,
        parallel_logins_of_one_user_over_both_replicas_end_with_one_user_and_one_session,
        fifty_concurrent_first_logins_over_both_replicas_create_one_user_per_openid,
        the_access_token_is_fetched_by_one_replica_and_reused_by_the_other,
        a_token_revoked_on_one_replica_fails_on_the_other_within_a_second,
        revoking_all_sessions_on_one_replica_reaches_the_others_cache,
        a_phone_bound_on_one_replica_shows_on_the_other_within_a_second,
        a_phone_unbound_on_one_replica_is_gone_from_the_other_within_a_second,
        a_replica_whose_change_feed_was_cut_still_honours_revocations,
    ],
);

async fn a_token_issued_by_one_replica_verifies_on_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let login = a.login_new_user().await;
    let verified = b.verify(&login.session_token).await.unwrap();
    assert_eq!(verified.user, login.user);
    let login = b.login_new_user().await;
    assert_eq!(a.verify(&login.session_token).await.unwrap().user, login.user);
}

async fn one_code_sent_to_both_replicas_at_once_makes_one_wechat_call_and_gets_one_token() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    const ROUNDS: u64 = 10;
    for _ in 0..ROUNDS {
        let code = a.sim.new_code().await.code;
        // WeChat answers slowly, so the second replica surely arrives while
        // the first one's claim is pending.
        a.sim
            .fault(json!({ "endpoint": "jscode2session", "delay_ms": 200, "times": 1 }))
            .await;
        let (on_a, on_b) = tokio::join!(a.exchange(&code), b.exchange(&code));
        let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
        assert_eq!(on_a.session_token, on_b.session_token);
        assert_eq!(on_a.user, on_b.user);
    }
    assert_eq!(a.sim.calls("jscode2session").await, ROUNDS);
}

async fn one_phone_code_sent_to_both_replicas_at_once_is_billed_once_and_binds_everywhere() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let login = a.sim.new_code().await;
    let token = a.exchange(&login.code).await.unwrap().session_token;
    let phone = a
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13900001111" }))
        .await;
    // WeChat takes its time, so that the others arrive while it answers.
    a.sim
        .fault(json!({ "endpoint": "getuserphonenumber", "delay_ms": 300, "times": 1 }))
        .await;
    let replicas = [&a, &b];
    let binds = (0..10).map(|i| replicas[i % 2].bind_code(&token, &phone.phone_code));
    for result in futures::future::join_all(binds).await {
        assert_eq!(result.unwrap().user.unwrap().phone_number, "13900001111");
    }
    assert_eq!(a.sim.calls("getuserphonenumber").await, 1, "billed once");
}

async fn parallel_logins_of_one_user_over_both_replicas_end_with_one_user_and_one_session() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let openid = a.sim.new_code().await.openid;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(a.sim.code_for(&openid).await.code);
    }
    let replicas = [&a, &b];
    let logins = codes
        .iter()
        .enumerate()
        .map(|(i, code)| replicas[i % 2].exchange(code));
    let results = futures::future::join_all(logins).await;
    let tokens: HashSet<_> = results.into_iter().map(|r| r.unwrap().session_token).collect();
    assert_eq!(tokens.len(), 1, "one token for parallel logins");
    assert_eq!(a.sim.calls("jscode2session").await, 20);
    let users = a
        .count("SELECT COUNT(*) FROM users WHERE openid = $1", &[&openid])
        .await;
    let sessions = a.count("SELECT COUNT(*) FROM sessions", &[]).await;
    assert_eq!((users, sessions), (1, 1));
}

async fn fifty_concurrent_first_logins_over_both_replicas_create_one_user_per_openid() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    // Five users who have never logged in, ten codes each.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let openid = a.sim.new_code().await.openid;
        for _ in 0..10 {
            codes.push((openid.clone(), a.sim.code_for(&openid).await.code));
        }
    }
    let replicas = [&a, &b];
    let logins = codes
        .iter()
        .enumerate()
        .map(|(i, (openid, code))| async move { (openid, replicas[i % 2].exchange(code).await.unwrap()) });
    let results = futures::future::join_all(logins).await;

    let mut per_openid: HashMap<&String, Vec<_>> = HashMap::new();
    for (openid, login) in results {
        per_openid.entry(openid).or_default().push(login);
    }
    assert_eq!(per_openid.len(), 5);
    for (openid, logins) in &per_openid {
        let user_ids: HashSet<_> = logins.iter().map(|l| &l.user.as_ref().unwrap().user_id).collect();
        assert_eq!(user_ids.len(), 1, "one user_id for {openid}");
        let created = logins.iter().filter(|l| l.created).count();
        assert_eq!(created, 1, "exactly one login registered {openid}");
        let users = a
            .count("SELECT COUNT(*) FROM users WHERE openid = $1", &[openid])
            .await;
        assert_eq!(users, 1, "{openid}");
    }
    assert_eq!(a.count("SELECT COUNT(*) FROM users", &[]).await, 5);
    assert_eq!(a.sim.calls("jscode2session").await, 50);
}

async fn the_access_token_is_fetched_by_one_replica_and_reused_by_the_other() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let replicas = [&a, &b];
    let mut binds = Vec::new();
    for i in 0..20 {
        let replica = replicas[i % 2];
        let login = a.sim.new_code().await;
        let token = replica.exchange(&login.code).await.unwrap().session_token;
        let phone = a
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
            .await;
        binds.push((replica, token, phone.phone_code));
    }
    let results = futures::future::join_all(binds.iter().map(|(r, t, c)| r.bind_code(t, c))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        a.sim.calls("stable_token").await,
        1,
        "one fetch for both replicas"
    );

    // WeChat rejects the token once: it is refetched once, not force-refreshed.
    a.sim
        .fault(json!({ "endpoint": "getuserphonenumber", "errcode": 40001, "times": 1 }))
        .await;
    for replica in replicas {
        let login = a.sim.new_code().await;
        let token = replica.exchange(&login.code).await.unwrap().session_token;
        let phone = a
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
            .await;
        replica.bind_code(&token, &phone.phone_code).await.unwrap();
    }
    assert_eq!(a.sim.calls("stable_token").await, 2);
}

async fn a_token_revoked_on_one_replica_fails_on_the_other_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    for _ in 0..3 {
        let token = a.login_new_user().await.session_token;
        warm(&b, &token).await;
        let revoked_at = Instant::now();
        assert_eq!(a.revoke(&token, false).await.unwrap(), 1);
        until_refused(&b, &token, "TOKEN_REVOKED", revoked_at).await;
    }
}

async fn revoking_all_sessions_on_one_replica_reaches_the_others_cache() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let openid = a.sim.new_code().await.openid;
    // Two sessions of one user (logins outside the window: clock moved).
    let first = a.exchange(&a.sim.code_for(&openid).await.code).await.unwrap();
    a.clock.advance(Duration::from_secs(120));
    let second = b.exchange(&a.sim.code_for(&openid).await.code).await.unwrap();
    assert_ne!(first.session_token, second.session_token);
    warm(&b, &first.session_token).await;
    warm(&b, &second.session_token).await;
    let revoked_at = Instant::now();
    assert_eq!(a.revoke(&first.session_token, true).await.unwrap(), 2);
    until_refused(&b, &second.session_token, "TOKEN_REVOKED", revoked_at).await;
    until_refused(&b, &first.session_token, "TOKEN_REVOKED", revoked_at).await;
}

async fn a_phone_bound_on_one_replica_shows_on_the_other_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let login = a.sim.new_code().await;
    let token = a.exchange(&login.code).await.unwrap().session_token;
    warm(&b, &token).await;
    let phone = a
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
        .await;
    let bound_at = Instant::now();
    a.bind_code(&token, &phone.phone_code).await.unwrap();
    loop {
        let user = b.verify(&token).await.unwrap().user.unwrap();
        if user.phone_number == "13580006666" {
            break;
        }
        assert!(
            bound_at.elapsed() < BOUND,
            "the old user still served after {:?}",
            bound_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_phone_unbound_on_one_replica_is_gone_from_the_other_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let login = a.sim.new_code().await;
    let token = a.exchange(&login.code).await.unwrap().session_token;
    let phone = a
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13580006666" }))
        .await;
    a.bind_code(&token, &phone.phone_code).await.unwrap();
    warm(&b, &token).await;
    assert_eq!(
        b.verify(&token).await.unwrap().user.unwrap().phone_number,
        "13580006666",
        "cached with the phone"
    );
    let unbound_at = Instant::now();
    a.unbind(&token).await.unwrap();
    loop {
        let user = b.verify(&token).await.unwrap().user.unwrap();
        if user.phone_number.is_empty() {
            break;
        }
        assert!(
            unbound_at.elapsed() < BOUND,
            "the phone still served after {:?}",
            unbound_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A change feed whose connection dies may miss notifications; the replica
/// must then not answer from its cache beyond the bound.
async fn a_replica_whose_change_feed_was_cut_still_honours_revocations() {
    let a = TestApp::spawn().await;
    let b = a.spawn_replica().await;
    let token = a.login_new_user().await.session_token;
    warm(&b, &token).await;
    // Cut every listening connection (other tests' replicas reconnect too),
    // and revoke while they are down.
    a.count(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
        &[],
    )
    .await;
    let revoked_at = Instant::now();
    assert_eq!(a.revoke(&token, false).await.unwrap(), 1);
    until_refused(&b, &token, "TOKEN_REVOKED", revoked_at).await;
    // The feed comes back, and with it the cache.
    let fresh = a.login_new_user().await.session_token;
    warm(&b, &fresh).await;
    let revoked_at = Instant::now();
    a.revoke(&fresh, false).await.unwrap();
    until_refused(&b, &fresh, "TOKEN_REVOKED", revoked_at).await;
}

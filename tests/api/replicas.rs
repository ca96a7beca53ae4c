//! Two replicas on one PostgreSQL database: separate servers, pools and
//! in-process caches, sharing only the database (plus, as in production,
//! the server key and WeChat). What works on one instance works across them.
use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::helpers::{api_tests, TestApp};

api_tests!(
    sqlite: [],
    postgres: [
        a_token_issued_by_one_replica_verifies_on_the_other,
        one_code_sent_to_both_replicas_at_once_makes_one_wechat_call_and_gets_one_token,
        one_phone_code_sent_to_both_replicas_at_once_is_billed_once_and_binds_everywhere,
        parallel_logins_of_one_user_over_both_replicas_end_with_one_user_and_one_session,
        fifty_concurrent_first_logins_over_both_replicas_create_one_user_per_openid,
        the_access_token_is_fetched_by_one_replica_and_reused_by_the_other,
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

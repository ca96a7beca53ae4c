//! Code claims: acquire, held, done, failed, released, expired, abandoned.
use super::{new_login, wechat, TestStore, T0};
use crate::domain::model::CODE_TTL_MS;
use crate::store::{Claim, CodeState};

contract_tests!(
    a_new_code_is_acquired_with_no_earlier_answer,
    a_pending_claim_is_held_until_its_lease_runs_out,
    a_claim_released_with_wechats_answer_hands_it_to_the_next_claimant,
    a_claim_released_without_an_answer_is_forgotten,
    a_done_code_answers_with_its_session_and_keeps_no_secret,
    a_failed_code_answers_with_its_reason_and_keeps_no_secret,
    finished_claims_are_not_released,
    an_expired_claim_is_claimed_afresh_without_its_answer,
    purge_deletes_only_claims_created_before_the_cutoff,
);

/// How long a pending claim is protected from takeover in these tests.
const LEASE: i64 = 10_000;

async fn claim(t: &TestStore, code_hash: &str, now: i64) -> Claim {
    t.claim_code(code_hash, super::APP, now, now - CODE_TTL_MS, now - LEASE)
        .await
        .expect("claim_code")
}

async fn held(t: &TestStore, code_hash: &str, now: i64) -> CodeState {
    match claim(t, code_hash, now).await {
        Claim::Held(state) => state,
        Claim::Acquired { .. } => panic!("expected the claim to be held"),
    }
}

/// (state, openid, session_key) as stored.
async fn stored(t: &TestStore, code_hash: &str) -> (String, Option<String>, Option<String>) {
    t.row(
        "SELECT state, openid, session_key FROM code_exchanges WHERE code_hash = $1",
        &[code_hash],
    )
    .await
}

async fn a_new_code_is_acquired_with_no_earlier_answer(t: &TestStore) {
    assert!(matches!(
        claim(t, "c1", T0).await,
        Claim::Acquired { exchange: None }
    ));
    assert_eq!(stored(t, "c1").await, ("pending".into(), None, None));
}

async fn a_pending_claim_is_held_until_its_lease_runs_out(t: &TestStore) {
    assert!(matches!(claim(t, "c1", T0).await, Claim::Acquired { .. }));
    assert_eq!(held(t, "c1", T0 + 1).await, CodeState::Pending);
    assert_eq!(held(t, "c1", T0 + LEASE).await, CodeState::Pending);
    // Abandoned: taken over, and the new claimant gets a fresh lease.
    assert!(matches!(
        claim(t, "c1", T0 + LEASE + 1).await,
        Claim::Acquired { exchange: None }
    ));
    assert_eq!(held(t, "c1", T0 + LEASE + 2).await, CodeState::Pending);
}

async fn a_claim_released_with_wechats_answer_hands_it_to_the_next_claimant(t: &TestStore) {
    claim(t, "c1", T0).await;
    let answer = wechat("o1", Some("u1"), "key-1");
    t.release_code("c1", Some(&answer)).await.unwrap();
    assert_eq!(stored(t, "c1").await.0, "exchanged");
    // No lease wait: an exchanged claim is free at once.
    let Claim::Acquired { exchange: Some(e) } = claim(t, "c1", T0 + 1).await else {
        panic!("expected the claim with WeChat's answer");
    };
    assert_eq!(e.openid, "o1");
    assert_eq!(e.unionid.as_deref(), Some("u1"));
    assert_eq!(e.session_key.as_str(), "key-1");
    assert_eq!(held(t, "c1", T0 + 2).await, CodeState::Pending);
}

async fn a_claim_released_without_an_answer_is_forgotten(t: &TestStore) {
    claim(t, "c1", T0).await;
    t.release_code("c1", None).await.unwrap();
    assert_eq!(t.count("code_exchanges").await, 0);
    assert!(matches!(
        claim(t, "c1", T0 + 1).await,
        Claim::Acquired { exchange: None }
    ));
}

async fn a_done_code_answers_with_its_session_and_keeps_no_secret(t: &TestStore) {
    claim(t, "c1", T0).await;
    let answer = wechat("o1", None, "key-1");
    t.release_code("c1", Some(&answer)).await.unwrap();
    claim(t, "c1", T0 + 1).await;
    let mut login = new_login(&answer, T0 + 2, 0);
    login.code_hash = Some("c1");
    let record = t.login(login).await.unwrap();
    // Done is final, long after any lease.
    assert_eq!(
        held(t, "c1", T0 + 3 * LEASE).await,
        CodeState::Done {
            session: record.session.id,
            created: true
        }
    );
    assert_eq!(stored(t, "c1").await, ("done".into(), None, None));
}

async fn a_failed_code_answers_with_its_reason_and_keeps_no_secret(t: &TestStore) {
    claim(t, "c1", T0).await;
    t.release_code("c1", Some(&wechat("o1", None, "key-1")))
        .await
        .unwrap();
    claim(t, "c1", T0 + 1).await;
    t.fail_code("c1", "CODE_INVALID").await.unwrap();
    assert_eq!(
        held(t, "c1", T0 + 3 * LEASE).await,
        CodeState::Failed("CODE_INVALID".into())
    );
    assert_eq!(stored(t, "c1").await, ("failed".into(), None, None));
}

async fn finished_claims_are_not_released(t: &TestStore) {
    claim(t, "done", T0).await;
    let answer = wechat("o1", None, "key-1");
    let mut login = new_login(&answer, T0, 0);
    login.code_hash = Some("done");
    let record = t.login(login).await.unwrap();
    claim(t, "failed", T0).await;
    t.fail_code("failed", "CODE_USED").await.unwrap();
    for code in ["done", "failed"] {
        t.release_code(code, None).await.unwrap();
        t.release_code(code, Some(&wechat("o1", None, "key-2")))
            .await
            .unwrap();
    }
    let done = CodeState::Done {
        session: record.session.id,
        created: true,
    };
    assert_eq!(held(t, "done", T0 + 1).await, done);
    assert_eq!(
        held(t, "failed", T0 + 1).await,
        CodeState::Failed("CODE_USED".into())
    );
}

async fn an_expired_claim_is_claimed_afresh_without_its_answer(t: &TestStore) {
    claim(t, "exchanged", T0).await;
    t.release_code("exchanged", Some(&wechat("o1", None, "key-1")))
        .await
        .unwrap();
    claim(t, "failed", T0).await;
    t.fail_code("failed", "CODE_INVALID").await.unwrap();
    let later = T0 + CODE_TTL_MS + 1;
    for code in ["exchanged", "failed"] {
        assert!(
            matches!(claim(t, code, later).await, Claim::Acquired { exchange: None }),
            "{code}"
        );
        assert_eq!(stored(t, code).await, ("pending".into(), None, None));
    }
    // The claims start a new lifetime: purging the old one spares them.
    assert_eq!(t.purge_code_exchanges(later, 100).await.unwrap(), 0);
}

async fn purge_deletes_only_claims_created_before_the_cutoff(t: &TestStore) {
    claim(t, "old", T0).await;
    claim(t, "new", T0 + 100).await;
    assert_eq!(t.purge_code_exchanges(T0 + 100, 100).await.unwrap(), 1);
    assert_eq!(t.purge_code_exchanges(T0 + 100, 100).await.unwrap(), 0);
    assert_eq!(held(t, "new", T0 + 101).await, CodeState::Pending);
    assert!(matches!(
        claim(t, "old", T0 + 101).await,
        Claim::Acquired { exchange: None }
    ));
}

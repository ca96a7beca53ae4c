//! Phone codes (claimed, answered once, released) and the daily count of
//! billed lookups.
use super::{TestStore, T0};
use crate::domain::crypto::Sealed;
use crate::domain::model::{Phone, UnixSeconds};
use crate::store::PhoneClaim;

contract_tests!(
    a_new_phone_code_is_acquired_and_then_pending_for_others,
    an_abandoned_phone_code_claim_is_taken_over,
    a_remembered_answer_is_final_and_the_first_one_wins,
    a_released_phone_code_can_be_claimed_again_but_an_answer_cannot_be_released,
    purge_forgets_old_phone_codes,
    billed_lookups_are_counted_per_user_per_day,
);

const LEASE: i64 = 10_000;

/// An answer as the domain hands it to the store: readable stand-ins for
/// the sealed values.
fn phone(number: &str) -> Phone<Sealed> {
    Phone {
        phone_number: Sealed::from_stored(format!("sealed:{number}")),
        pure_phone_number: Sealed::from_stored(format!("sealed:{number}")),
        country_code: Sealed::from_stored("sealed:86".to_owned()),
        authorised_at: UnixSeconds(T0 / 1000),
    }
}

async fn claim(t: &TestStore, user_id: &str, now: i64) -> PhoneClaim {
    t.claim_phone_code("p1", user_id, now, now - LEASE).await.unwrap()
}

async fn a_new_phone_code_is_acquired_and_then_pending_for_others(t: &TestStore) {
    assert_eq!(claim(t, "usr_a", T0).await, PhoneClaim::Acquired);
    assert_eq!(claim(t, "usr_b", T0 + 1).await, PhoneClaim::Pending);
    assert_eq!(claim(t, "usr_a", T0 + LEASE).await, PhoneClaim::Pending);
    assert_eq!(t.phone_code("p1").await.unwrap(), None, "no answer yet");
}

async fn an_abandoned_phone_code_claim_is_taken_over(t: &TestStore) {
    claim(t, "usr_a", T0).await;
    assert_eq!(claim(t, "usr_b", T0 + LEASE + 1).await, PhoneClaim::Acquired);
    // The new claimant has a fresh lease.
    assert_eq!(claim(t, "usr_a", T0 + LEASE + 2).await, PhoneClaim::Pending);
}

async fn a_remembered_answer_is_final_and_the_first_one_wins(t: &TestStore) {
    claim(t, "usr_a", T0).await;
    t.remember_phone_code("p1", "usr_a", &phone("13500000001"), T0 + 1)
        .await
        .unwrap();
    t.remember_phone_code("p1", "usr_b", &phone("13500000002"), T0 + 2)
        .await
        .unwrap();
    let done = PhoneClaim::Done("usr_a".into(), phone("13500000001"));
    assert_eq!(
        claim(t, "usr_b", T0 + 3 * LEASE).await,
        done,
        "never claimed again"
    );
    assert_eq!(
        t.phone_code("p1").await.unwrap(),
        Some(("usr_a".into(), phone("13500000001")))
    );
    // Remembering works without a claim too (first writer wins).
    t.remember_phone_code("p2", "usr_c", &phone("13500000003"), T0)
        .await
        .unwrap();
    assert_eq!(t.phone_code("p2").await.unwrap().unwrap().0, "usr_c");
}

async fn a_released_phone_code_can_be_claimed_again_but_an_answer_cannot_be_released(t: &TestStore) {
    claim(t, "usr_a", T0).await;
    t.release_phone_code("p1").await.unwrap();
    assert_eq!(claim(t, "usr_b", T0 + 1).await, PhoneClaim::Acquired);
    t.remember_phone_code("p1", "usr_b", &phone("13500000001"), T0 + 2)
        .await
        .unwrap();
    t.release_phone_code("p1").await.unwrap();
    assert!(matches!(claim(t, "usr_a", T0 + 3).await, PhoneClaim::Done(owner, _) if owner == "usr_b"));
}

async fn purge_forgets_old_phone_codes(t: &TestStore) {
    t.remember_phone_code("old", "usr_a", &phone("13500000001"), T0)
        .await
        .unwrap();
    t.claim_phone_code("stale", "usr_a", T0, T0 - LEASE)
        .await
        .unwrap();
    t.remember_phone_code("new", "usr_a", &phone("13500000001"), T0 + 10)
        .await
        .unwrap();
    assert_eq!(t.purge_phone_codes(T0 + 5, 100).await.unwrap(), 2);
    assert_eq!(t.phone_code("old").await.unwrap(), None);
    assert!(t.phone_code("new").await.unwrap().is_some());
}

async fn billed_lookups_are_counted_per_user_per_day(t: &TestStore) {
    assert_eq!(t.count_phone_lookup("usr_a", 19_700).await.unwrap(), 1);
    assert_eq!(t.count_phone_lookup("usr_a", 19_700).await.unwrap(), 2);
    assert_eq!(
        t.count_phone_lookup("usr_b", 19_700).await.unwrap(),
        1,
        "per user"
    );
    assert_eq!(t.count_phone_lookup("usr_a", 19_701).await.unwrap(), 1, "per day");
}

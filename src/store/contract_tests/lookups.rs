//! The daily count of billed phone lookups: reserved before WeChat is
//! asked, given back when the call was never sent.
use super::TestStore;

contract_tests!(
    lookups_count_per_user_and_day,
    a_released_lookup_frees_its_place_and_never_goes_below_zero,
    concurrent_reservations_each_get_their_own_place,
);

async fn lookups_count_per_user_and_day(t: &TestStore) {
    assert_eq!(t.count_phone_lookup("u1", 10).await.unwrap(), 1);
    assert_eq!(t.count_phone_lookup("u1", 10).await.unwrap(), 2);
    assert_eq!(t.count_phone_lookup("u2", 10).await.unwrap(), 1, "per user");
    assert_eq!(t.count_phone_lookup("u1", 11).await.unwrap(), 1, "per day");
}

async fn a_released_lookup_frees_its_place_and_never_goes_below_zero(t: &TestStore) {
    t.count_phone_lookup("u1", 10).await.unwrap();
    t.count_phone_lookup("u1", 10).await.unwrap();
    t.release_phone_lookup("u1", 10).await.unwrap();
    assert_eq!(t.count_phone_lookup("u1", 10).await.unwrap(), 2);
    for _ in 0..3 {
        t.release_phone_lookup("u1", 10).await.unwrap();
    }
    t.release_phone_lookup("nobody", 10).await.unwrap();
    assert_eq!(t.count_phone_lookup("u1", 10).await.unwrap(), 1);
}

async fn concurrent_reservations_each_get_their_own_place(t: &TestStore) {
    let counts = futures::future::join_all((0..8).map(|_| t.count_phone_lookup("u1", 10))).await;
    let mut counts: Vec<i64> = counts.into_iter().map(Result::unwrap).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<_>>(), "no two share a place");
}

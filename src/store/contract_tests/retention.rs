//! The janitor's deletes: each takes only rows past its cutoff, at most its
//! limit per call, and purges running at once delete each row once.
use super::{new_login, number, phone, policy, wechat, TestStore, APP, T0};

contract_tests!(
    sessions_go_once_expired_or_revoked_before_the_cutoff_and_their_users_stay,
    a_purge_deletes_at_most_its_limit_and_the_rest_in_later_calls,
    phone_history_goes_once_replaced_before_the_cutoff,
    lookup_counts_of_days_before_the_cutoff_go_and_later_days_keep_counting,
    purges_running_at_once_delete_each_row_once,
);

const DAY: i64 = 86_400_000;

async fn sessions_go_once_expired_or_revoked_before_the_cutoff_and_their_users_stay(t: &TestStore) {
    let live = t
        .login(new_login(&wechat("o1", None, "k1"), T0, 0))
        .await
        .unwrap();
    let revoked = t
        .login(new_login(&wechat("o2", None, "k2"), T0, 0))
        .await
        .unwrap();
    t.revoke_session(revoked.session.id, T0 + 10).await.unwrap();
    let lifetime = policy(0).lifetime_ms;

    // Nothing ended before the cutoff yet.
    assert_eq!(t.purge_sessions(T0 + 10, 100).await.unwrap(), 0);
    // Revoked before it: gone; the live one stays, however old.
    assert_eq!(t.purge_sessions(T0 + 11, 100).await.unwrap(), 1);
    assert_eq!(t.session(revoked.session.id).await.unwrap(), None);
    assert!(t.session(live.session.id).await.unwrap().is_some());
    // Expired exactly at the cutoff: kept; expired before it: gone.
    assert_eq!(t.purge_sessions(T0 + lifetime, 100).await.unwrap(), 0);
    assert_eq!(t.purge_sessions(T0 + lifetime + 1, 100).await.unwrap(), 1);
    assert_eq!(t.session(live.session.id).await.unwrap(), None);

    for user in [&live.user, &revoked.user] {
        assert!(t.user(&user.user_id).await.unwrap().is_some(), "the user stays");
    }
    // The user logs in again: a new session, nothing refers to the purged ones.
    let again = t
        .login(new_login(&wechat("o1", None, "k1"), T0 + 2 * lifetime, 0))
        .await
        .unwrap();
    assert_eq!(again.user.user_id, live.user.user_id);
    assert!(!again.created);
}

async fn a_purge_deletes_at_most_its_limit_and_the_rest_in_later_calls(t: &TestStore) {
    for i in 0..5 {
        let record = t
            .login(new_login(&wechat(&format!("o{i}"), None, "k"), T0, 0))
            .await
            .unwrap();
        t.revoke_session(record.session.id, T0 + 1).await.unwrap();
    }
    let mut batches = Vec::new();
    loop {
        let n = t.purge_sessions(T0 + 2, 2).await.unwrap();
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1]);
    assert_eq!(t.count("sessions").await, 0);
}

async fn phone_history_goes_once_replaced_before_the_cutoff(t: &TestStore) {
    let user = t
        .login(new_login(&wechat("o1", None, "k1"), T0, 0))
        .await
        .unwrap()
        .user;
    let id = &user.user_id;
    t.bind_phone(id, &phone("13500000001"), T0).await.unwrap();
    t.bind_phone(id, &phone("13500000002"), T0 + DAY).await.unwrap();
    t.bind_phone(id, &phone("13500000003"), T0 + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(t.count("phone_history").await, 2);

    assert_eq!(t.purge_phone_history(T0 + DAY, 100).await.unwrap(), 0);
    assert_eq!(t.purge_phone_history(T0 + DAY + 1, 100).await.unwrap(), 1);
    let (left,): (String,) = t.row("SELECT phone_number FROM phone_history", &[]).await;
    assert_eq!(left, "13500000002", "the newer replacement stays");
    let current = t.user(id).await.unwrap().unwrap();
    assert_eq!(
        number(&current.phone_number),
        Some("13500000003"),
        "the bound number stays"
    );
}

async fn lookup_counts_of_days_before_the_cutoff_go_and_later_days_keep_counting(t: &TestStore) {
    for day in [10, 11, 12] {
        t.count_phone_lookup("u1", day).await.unwrap();
    }
    t.count_phone_lookup("u2", 10).await.unwrap();
    assert_eq!(t.purge_phone_lookups(12, 100).await.unwrap(), 3);
    assert_eq!(t.count("phone_lookups").await, 1);
    assert_eq!(
        t.count_phone_lookup("u1", 12).await.unwrap(),
        2,
        "day 12 kept its count"
    );
}

async fn purges_running_at_once_delete_each_row_once(t: &TestStore) {
    const ROWS: i64 = 2_500;
    let user = t
        .login(new_login(&wechat("o1", None, "k1"), T0, 0))
        .await
        .unwrap()
        .user;
    t.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
         SELECT 'seeded' || i, 'public' || i, '{}', '{APP}', {T0}, {T0}, {T0} FROM n",
        user.user_id
    ))
    .await;
    // Four janitors (as four replicas' would), each draining in batches.
    let janitor = || async {
        let mut deleted = 0;
        loop {
            let n = t.purge_sessions(T0 + 1, 100).await.unwrap();
            deleted += n;
            if n < 100 {
                return deleted;
            }
        }
    };
    let counts = futures::future::join_all((0..4).map(|_| janitor())).await;
    assert_eq!(counts.iter().sum::<u64>(), ROWS as u64, "{counts:?}");
    // The login's own session expires at T0 + 30 days: it stays.
    assert_eq!(t.count("sessions").await, 1);
}

//! Logins: the user upsert, session_key rotation, the login window, and
//! concurrent first logins.
use std::collections::HashSet;

use super::{new_login, wechat, TestStore, APP, T0};

contract_tests!(
    the_first_login_creates_the_user_and_later_ones_reuse_it,
    a_login_without_unionid_keeps_the_known_unionid,
    a_new_session_key_is_kept_beside_the_one_it_replaced,
    a_new_seal_of_the_same_key_replaces_the_seal_without_a_rotation,
    logins_within_the_window_share_one_session,
    a_revoked_session_is_not_reused,
    a_zero_window_creates_a_session_per_login,
    concurrent_first_logins_create_one_user_and_share_one_session,
    concurrent_first_logins_without_a_window_create_one_user,
    a_login_stores_the_verified_profile_and_keeps_it_when_none_comes,
    a_login_attaches_to_a_live_session_of_the_user_only,
    logins_dropped_part_way_leave_the_store_whole_and_writable,
);

const WINDOW: i64 = 60_000;

async fn the_first_login_creates_the_user_and_later_ones_reuse_it(t: &TestStore) {
    let answer = wechat("o1", Some("u1"), "key-1");
    let login = new_login(&answer, T0, 0);
    let new_user_id = login.new_user_id.clone();
    let first = t.login(login).await.unwrap();
    assert!(first.created);
    assert_eq!(first.user.user_id, new_user_id);
    assert_eq!(
        (first.user.app_id.as_str(), first.user.openid.as_str()),
        (APP, "o1")
    );
    assert_eq!(first.user.unionid.as_deref(), Some("u1"));
    assert_eq!(first.user.created_at, T0);
    assert_eq!(first.session.user_id, new_user_id);
    assert_eq!((first.session.created_at, first.session.last_seen_at), (T0, T0));
    assert_eq!(first.session.expires_at, T0 + super::policy(0).lifetime_ms);
    assert_eq!(first.session.revoked_at, None);

    let second = t.login(new_login(&answer, T0 + 1_000, 0)).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.user, first.user);
    assert_eq!(t.count("users").await, 1);
}

async fn a_login_without_unionid_keeps_the_known_unionid(t: &TestStore) {
    let with = wechat("o1", Some("u1"), "key-1");
    let without = wechat("o1", None, "key-1");
    t.login(new_login(&with, T0, 0)).await.unwrap();
    let record = t.login(new_login(&without, T0 + 1, 0)).await.unwrap();
    assert_eq!(record.user.unionid.as_deref(), Some("u1"));
    let changed = wechat("o1", Some("u2"), "key-1");
    let record = t.login(new_login(&changed, T0 + 2, 0)).await.unwrap();
    assert_eq!(record.user.unionid.as_deref(), Some("u2"));
}

async fn a_new_session_key_is_kept_beside_the_one_it_replaced(t: &TestStore) {
    type Keys = (String, i64, Option<String>, Option<i64>);
    let sql = "SELECT session_key, session_key_at, prev_session_key, prev_replaced_at
               FROM users WHERE user_id = $1";
    let user_id = t
        .login(new_login(&wechat("o1", None, "key-1"), T0, 0))
        .await
        .unwrap()
        .user
        .user_id;
    let keys: Keys = t.row(sql, &[&user_id]).await;
    assert_eq!(keys, ("key-1".into(), T0, None, None));

    t.login(new_login(&wechat("o1", None, "key-2"), T0 + 10, 0))
        .await
        .unwrap();
    let keys: Keys = t.row(sql, &[&user_id]).await;
    assert_eq!(
        keys,
        ("key-2".into(), T0 + 10, Some("key-1".into()), Some(T0 + 10))
    );

    // The same key again changes nothing about the rotation.
    t.login(new_login(&wechat("o1", None, "key-2"), T0 + 20, 0))
        .await
        .unwrap();
    let keys: Keys = t.row(sql, &[&user_id]).await;
    assert_eq!(
        keys,
        ("key-2".into(), T0 + 10, Some("key-1".into()), Some(T0 + 10))
    );
}

async fn a_new_seal_of_the_same_key_replaces_the_seal_without_a_rotation(t: &TestStore) {
    type Keys = (String, Option<String>, i64, Option<String>);
    let sql = "SELECT session_key, session_key_mac, session_key_at, prev_session_key
               FROM users WHERE user_id = $1";
    let first = wechat("o1", None, "seal-1");
    let mut login = new_login(&first, T0, 0);
    login.session_key_mac = "mac-1";
    let user_id = t.login(login).await.unwrap().user.user_id;
    // The same key sealed again (a random nonce, perhaps a new server key).
    let again = wechat("o1", None, "seal-2");
    let mut login = new_login(&again, T0 + 10, 0);
    login.session_key_mac = "mac-1";
    t.login(login).await.unwrap();
    let keys: Keys = t.row(sql, &[&user_id]).await;
    assert_eq!(keys, ("seal-2".into(), Some("mac-1".into()), T0, None));
}

async fn logins_within_the_window_share_one_session(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let first = t.login(new_login(&answer, T0, WINDOW)).await.unwrap();
    let again = t
        .login(new_login(&answer, T0 + WINDOW - 1, WINDOW))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.session, first.session);
    // The window counts from the session's creation, not from its reuse.
    let after = t.login(new_login(&answer, T0 + WINDOW, WINDOW)).await.unwrap();
    assert_ne!(after.session.id, first.session.id);
    assert_eq!(after.session.created_at, T0 + WINDOW);
    assert_eq!(t.count("sessions").await, 2);
}

async fn a_revoked_session_is_not_reused(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let first = t.login(new_login(&answer, T0, WINDOW)).await.unwrap();
    let _: (String,) = t
        .row(
            "UPDATE sessions SET revoked_at = 1 WHERE id = $1 RETURNING id",
            &[&first.session.id.to_hex()],
        )
        .await;
    let again = t.login(new_login(&answer, T0 + 1, WINDOW)).await.unwrap();
    assert_ne!(again.session.id, first.session.id);
}

async fn a_zero_window_creates_a_session_per_login(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let record = t.login(new_login(&answer, T0, 0)).await.unwrap();
        ids.insert(record.session.id.to_hex());
    }
    assert_eq!(ids.len(), 3);
    assert_eq!(t.count("sessions").await, 3);
}

/// 50 first logins of one openid at once, as after a client retry storm.
async fn concurrent_logins(t: &TestStore, window: i64) -> (usize, HashSet<String>, HashSet<String>) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = t.store.clone();
            tokio::spawn(async move {
                let answer = wechat("o1", Some("u1"), &format!("key-{i}"));
                store.login(new_login(&answer, T0, window)).await
            })
        })
        .collect();
    let (mut created, mut users, mut sessions) = (0, HashSet::new(), HashSet::new());
    for task in tasks {
        let record = task.await.unwrap().expect("every concurrent login succeeds");
        created += usize::from(record.created);
        users.insert(record.user.user_id);
        sessions.insert(record.session.id.to_hex());
    }
    (created, users, sessions)
}

async fn concurrent_first_logins_create_one_user_and_share_one_session(t: &TestStore) {
    let (created, users, sessions) = concurrent_logins(t, WINDOW).await;
    assert_eq!((created, users.len(), sessions.len()), (1, 1, 1));
    assert_eq!(t.count("users").await, 1);
    assert_eq!(t.count("sessions").await, 1);
}

async fn concurrent_first_logins_without_a_window_create_one_user(t: &TestStore) {
    let (created, users, sessions) = concurrent_logins(t, 0).await;
    assert_eq!((created, users.len(), sessions.len()), (1, 1, 50));
    assert_eq!(t.count("users").await, 1);
    assert_eq!(t.count("sessions").await, 50);
}

async fn a_login_stores_the_verified_profile_and_keeps_it_when_none_comes(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let profile = crate::domain::model::Profile {
        nickname: Some("Band".into()),
        avatar_url: Some("https://example.com/a.png".into()),
    };
    let mut login = new_login(&answer, T0, 0);
    login.profile = Some(&profile);
    let first = t.login(login).await.unwrap();
    assert_eq!(first.user.nickname.as_deref(), Some("Band"));
    assert_eq!(
        first.user.avatar_url.as_deref(),
        Some("https://example.com/a.png")
    );
    // A later login without user info keeps what was verified before.
    let second = t.login(new_login(&answer, T0 + 1, 0)).await.unwrap();
    assert_eq!(second.user.nickname.as_deref(), Some("Band"));
    // A partial profile replaces only what it carries.
    let nickname_only = crate::domain::model::Profile {
        nickname: Some("Band 2".into()),
        avatar_url: None,
    };
    let mut login = new_login(&answer, T0 + 2, 0);
    login.profile = Some(&nickname_only);
    let third = t.login(login).await.unwrap();
    assert_eq!(third.user.nickname.as_deref(), Some("Band 2"));
    assert_eq!(
        third.user.avatar_url.as_deref(),
        Some("https://example.com/a.png")
    );
}

async fn a_login_attaches_to_a_live_session_of_the_user_only(t: &TestStore) {
    let mine = wechat("o1", None, "key-1");
    let theirs = wechat("o2", None, "key-2");
    let first = t.login(new_login(&mine, T0, 0)).await.unwrap();
    let other = t.login(new_login(&theirs, T0, 0)).await.unwrap();

    // Attached: the same session, even with no login window.
    let mut login = new_login(&mine, T0 + 1_000, 0);
    login.attach_to = Some(first.session.id);
    let attached = t.login(login).await.unwrap();
    assert_eq!(attached.session.id, first.session.id);

    // Another user's session is never attached to.
    let mut login = new_login(&mine, T0 + 2_000, 0);
    login.attach_to = Some(other.session.id);
    let fresh = t.login(login).await.unwrap();
    assert_ne!(fresh.session.id, other.session.id);
    assert_eq!(fresh.session.user_id, first.user.user_id);

    // Nor a revoked one: a new session instead.
    t.revoke_session(first.session.id, T0 + 3_000).await.unwrap();
    let mut login = new_login(&mine, T0 + 4_000, 0);
    login.attach_to = Some(first.session.id);
    let after = t.login(login).await.unwrap();
    assert_ne!(after.session.id, first.session.id);
    assert_eq!(after.session.revoked_at, None);
}

/// A login whose caller goes away mid-transaction commits whole or not at
/// all, and the store keeps committing later logins (SQLite's single
/// writer connection is not left inside an open transaction).
async fn logins_dropped_part_way_leave_the_store_whole_and_writable(t: &TestStore) {
    let answers: Vec<_> = (0..40).map(|i| wechat(&format!("o{i}"), None, "key")).collect();
    for (i, answer) in answers.iter().enumerate() {
        let login = t.login(new_login(answer, T0, 0));
        // Dropped after a varying number of polls: sometimes before the
        // statements are sent, sometimes while they run.
        let polls = i % 8;
        let mut login = std::pin::pin!(login);
        for _ in 0..polls {
            if futures::poll!(login.as_mut()).is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    // Every user that exists has its session: nothing half-written.
    let users = t.count("users").await;
    let sessions = t.count("sessions").await;
    assert_eq!(users, sessions, "a user without its session, or the reverse");
    // And the store still commits: these logins are visible to a
    // connection of its own.
    for answer in &answers[..5] {
        t.login(new_login(answer, T0 + 1, 0)).await.unwrap();
    }
    assert_eq!(t.count("sessions").await, sessions + 5, "later logins committed");
    let users_after = t.count("users").await;
    assert!(
        (users.max(5)..=users + 5).contains(&users_after),
        "{users} then {users_after} users"
    );
}

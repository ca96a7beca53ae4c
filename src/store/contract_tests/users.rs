//! What the store keeps about users besides logins: phones with their
//! history, verified profiles, lookups by unionid, and revocation.
use super::{new_login, number, phone, phone_indexed, wechat, TestStore, APP, T0};
use crate::domain::crypto::Sealed;
use crate::domain::model::{Phone, Profile, UnixSeconds};

contract_tests!(
    a_first_phone_is_bound_without_history,
    a_new_number_replaces_the_old_one_which_goes_to_history,
    binding_the_same_number_again_changes_nothing,
    the_same_number_indexed_under_a_previous_key_is_no_change_and_is_reindexed,
    users_are_found_by_phone_index_across_apps_oldest_first,
    unbinding_erases_the_number_its_index_its_history_and_answered_phone_codes,
    unbinding_without_a_phone_or_without_a_user_changes_nothing,
    a_user_is_found_by_app_and_openid,
    a_profile_update_keeps_what_it_does_not_mention,
    users_are_found_by_unionid_across_apps_oldest_first,
    revoking_a_session_counts_only_a_live_one,
    revoking_a_users_sessions_spares_other_users_and_dead_sessions,
    session_keys_start_with_the_first_logins_key_and_nothing_replaced,
    erasing_a_profile_clears_nickname_and_avatar_and_nothing_else,
);

async fn phone_index(t: &TestStore, user_id: &str) -> Option<String> {
    let (index,): (Option<String>,) = t
        .row("SELECT phone_index FROM users WHERE user_id = $1", &[user_id])
        .await;
    index
}

/// A logged-in user's id.
async fn user(t: &TestStore, openid: &str) -> String {
    let answer = wechat(openid, None, "key-1");
    t.login(new_login(&answer, T0, 0)).await.unwrap().user.user_id
}

async fn history(t: &TestStore, user_id: &str) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    // One row per call: `row` reads exactly one, so count them first.
    let (n,): (i64,) = t
        .row(
            "SELECT COUNT(*) FROM phone_history WHERE user_id = $1",
            &[user_id],
        )
        .await;
    for i in 0..n {
        let sql = format!(
            "SELECT phone_number, replaced_at FROM phone_history WHERE user_id = $1
             ORDER BY replaced_at, id LIMIT 1 OFFSET {i}"
        );
        rows.push(t.row(&sql, &[user_id]).await);
    }
    rows
}

async fn a_first_phone_is_bound_without_history(t: &TestStore) {
    let id = user(t, "o1").await;
    let bound = t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    assert!(bound.changed);
    assert_eq!(bound.previous, None);
    assert_eq!(number(&bound.user.phone_number), Some("13500000001"));
    assert_eq!(number(&bound.user.country_code), Some("86"));
    assert_eq!(t.user(&id).await.unwrap().unwrap(), bound.user);
    assert_eq!(phone_index(t, &id).await.as_deref(), Some("index:13500000001"));
    assert!(history(t, &id).await.is_empty());
}

async fn a_new_number_replaces_the_old_one_which_goes_to_history(t: &TestStore) {
    let id = user(t, "o1").await;
    t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    t.bind_phone(&id, &phone("13500000002"), T0 + 2).await.unwrap();
    let third = t.bind_phone(&id, &phone("13500000003"), T0 + 3).await.unwrap();
    assert!(third.changed);
    assert_eq!(number(&third.previous), Some("13500000002"));
    assert_eq!(number(&third.user.phone_number), Some("13500000003"));
    assert_eq!(
        history(t, &id).await,
        [
            ("13500000001".to_owned(), T0 + 2),
            ("13500000002".to_owned(), T0 + 3)
        ],
        "each old number with the time it was replaced"
    );
}

async fn binding_the_same_number_again_changes_nothing(t: &TestStore) {
    let id = user(t, "o1").await;
    t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    let again = t.bind_phone(&id, &phone("13500000001"), T0 + 2).await.unwrap();
    assert!(!again.changed);
    assert_eq!(number(&again.previous), Some("13500000001"));
    assert!(history(t, &id).await.is_empty());
}

async fn the_same_number_indexed_under_a_previous_key_is_no_change_and_is_reindexed(t: &TestStore) {
    let id = user(t, "o1").await;
    t.bind_phone(&id, &phone_indexed("13500000001", "key-a", &[]), T0 + 1)
        .await
        .unwrap();
    // After a rotation: the current key gives "key-b", the previous "key-a".
    let rotated = phone_indexed("13500000001", "key-b", &["key-a"]);
    let again = t.bind_phone(&id, &rotated, T0 + 2).await.unwrap();
    assert!(!again.changed, "the same number");
    assert!(history(t, &id).await.is_empty());
    assert_eq!(phone_index(t, &id).await.as_deref(), Some("key-b"), "re-indexed");
    assert_eq!(t.users_by_phone(&["key-b".into()]).await.unwrap().len(), 1);
    assert!(t.users_by_phone(&["key-a".into()]).await.unwrap().is_empty());
}

async fn users_are_found_by_phone_index_across_apps_oldest_first(t: &TestStore) {
    let first = user(t, "o1").await;
    let there = wechat("o2", None, "key-2");
    let mut login = new_login(&there, T0 + 1, 0);
    login.app_id = "wxanotherapp000001";
    let second = t.login(login).await.unwrap().user.user_id;
    let other = user(t, "o3").await;
    // Bound in the opposite order: the order is the users' age.
    t.bind_phone(&second, &phone("13500000001"), T0 + 2)
        .await
        .unwrap();
    t.bind_phone(&first, &phone_indexed("13500000001", "old-key", &[]), T0 + 3)
        .await
        .unwrap();
    t.bind_phone(&other, &phone("13500000009"), T0 + 4).await.unwrap();

    let indexes = ["index:13500000001".to_owned(), "old-key".to_owned()];
    let found = t.users_by_phone(&indexes).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert_eq!(number(&found[1].phone_number), Some("13500000001"));
    let current_only = t.users_by_phone(&indexes[..1]).await.unwrap();
    assert_eq!(current_only.len(), 1, "one index, one user");
    assert!(t.users_by_phone(&["index:none".into()]).await.unwrap().is_empty());
    assert!(t.users_by_phone(&[]).await.unwrap().is_empty());
}

async fn unbinding_erases_the_number_its_index_its_history_and_answered_phone_codes(t: &TestStore) {
    let id = user(t, "o1").await;
    let other = user(t, "o2").await;
    t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    t.bind_phone(&id, &phone("13500000002"), T0 + 2).await.unwrap();
    t.bind_phone(&other, &phone("13500000003"), T0 + 2).await.unwrap();
    t.bind_phone(&other, &phone("13500000004"), T0 + 3).await.unwrap();
    let memo = |n: &str| Phone {
        phone_number: Sealed::from_stored(n.to_owned()),
        pure_phone_number: Sealed::from_stored(n.to_owned()),
        country_code: Sealed::from_stored("86".to_owned()),
        authorised_at: UnixSeconds(T0 / 1000),
    };
    t.remember_phone_code("mine", &id, &memo("13500000002"), T0)
        .await
        .unwrap();
    t.remember_phone_code("theirs", &other, &memo("13500000004"), T0)
        .await
        .unwrap();
    t.claim_phone_code("claimed", &id, T0, T0 - 10_000).await.unwrap();

    let unbound = t.unbind_phone(&id, T0 + 4).await.unwrap().unwrap();
    assert_eq!((unbound.phone_number, unbound.country_code), (None, None));
    assert_eq!(t.user(&id).await.unwrap().unwrap().phone_number, None);
    assert_eq!(phone_index(t, &id).await, None);
    assert!(history(t, &id).await.is_empty(), "the history is erased");
    assert!(t
        .users_by_phone(&["index:13500000002".into()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(t.phone_code("mine").await.unwrap(), None, "the memo is erased");
    // A pending claim holds no number; releasing it would let a second
    // request spend the code at WeChat again.
    assert_eq!(
        t.claim_phone_code("claimed", &other, T0 + 1, T0 - 10_000)
            .await
            .unwrap(),
        crate::store::PhoneClaim::Pending
    );
    // The other user keeps everything.
    let kept = t.user(&other).await.unwrap().unwrap();
    assert_eq!(number(&kept.phone_number), Some("13500000004"));
    assert_eq!(history(t, &other).await.len(), 1);
    assert!(t.phone_code("theirs").await.unwrap().is_some());
}

async fn unbinding_without_a_phone_or_without_a_user_changes_nothing(t: &TestStore) {
    let id = user(t, "o1").await;
    let unbound = t.unbind_phone(&id, T0 + 1).await.unwrap().unwrap();
    assert_eq!(unbound, t.user(&id).await.unwrap().unwrap());
    assert_eq!(unbound.phone_number, None);
    t.bind_phone(&id, &phone("13500000001"), T0 + 2).await.unwrap();
    t.unbind_phone(&id, T0 + 3).await.unwrap();
    assert!(t.unbind_phone(&id, T0 + 4).await.unwrap().is_some(), "again");
    assert_eq!(t.unbind_phone("usr_none", T0).await.unwrap(), None);
    // Bound again after unbinding: a first number, no history.
    let again = t.bind_phone(&id, &phone("13500000001"), T0 + 5).await.unwrap();
    assert!(again.changed && again.previous.is_none());
    assert!(history(t, &id).await.is_empty());
}

async fn a_user_is_found_by_app_and_openid(t: &TestStore) {
    let id = user(t, "o1").await;
    let found = t.user_by_openid(APP, "o1").await.unwrap().unwrap();
    assert_eq!(found.user_id, id);
    assert_eq!(t.user_by_openid("wxanotherapp000001", "o1").await.unwrap(), None);
    assert_eq!(t.user_by_openid(APP, "o2").await.unwrap(), None);
}

async fn a_profile_update_keeps_what_it_does_not_mention(t: &TestStore) {
    let id = user(t, "o1").await;
    let full = Profile {
        nickname: Some("Band".into()),
        avatar_url: Some("http://wx.qlogo.cn/a.png".into()),
    };
    let user = t.set_profile(&id, &full, T0 + 1).await.unwrap();
    assert_eq!(
        (user.nickname, user.avatar_url),
        (full.nickname, full.avatar_url.clone())
    );
    let renamed = Profile {
        nickname: Some("Band 2".into()),
        avatar_url: None,
    };
    let user = t.set_profile(&id, &renamed, T0 + 2).await.unwrap();
    assert_eq!(user.nickname.as_deref(), Some("Band 2"));
    assert_eq!(user.avatar_url, full.avatar_url, "kept");
    assert_eq!(t.user(&id).await.unwrap().unwrap(), user);
}

async fn users_are_found_by_unionid_across_apps_oldest_first(t: &TestStore) {
    let here = wechat("o1", Some("u1"), "key-1");
    let first = t.login(new_login(&here, T0, 0)).await.unwrap().user;
    let there = wechat("o2", Some("u1"), "key-2");
    let mut login = new_login(&there, T0 + 1, 0);
    login.app_id = "wxanotherapp000001";
    let second = t.login(login).await.unwrap().user;
    let stranger = wechat("o3", Some("u2"), "key-3");
    t.login(new_login(&stranger, T0 + 2, 0)).await.unwrap();

    let found = t.users_by_unionid("u1").await.unwrap();
    assert_eq!(found, [first.clone(), second]);
    assert_eq!(found[0].app_id, APP);
    assert!(t.users_by_unionid("u-none").await.unwrap().is_empty());
    assert_eq!(t.user("usr_none").await.unwrap(), None);
}

async fn revoking_a_session_counts_only_a_live_one(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let session = t.login(new_login(&answer, T0, 0)).await.unwrap().session;
    assert_eq!(t.revoke_session(session.id, T0 + 1).await.unwrap(), 1);
    assert_eq!(t.revoke_session(session.id, T0 + 2).await.unwrap(), 0);
    let (read, _) = t.session(session.id).await.unwrap().unwrap();
    assert_eq!(read.revoked_at, Some(T0 + 1), "the first revocation's time stays");
    assert_eq!(
        t.revoke_session(crate::domain::crypto::SessionId::random(), T0)
            .await
            .unwrap(),
        0
    );
}

async fn revoking_a_users_sessions_spares_other_users_and_dead_sessions(t: &TestStore) {
    let answer = wechat("o1", None, "key-1");
    let a = t.login(new_login(&answer, T0, 0)).await.unwrap();
    let b = t.login(new_login(&answer, T0 + 1, 0)).await.unwrap();
    let revoked_earlier = t.login(new_login(&answer, T0 + 2, 0)).await.unwrap();
    t.revoke_session(revoked_earlier.session.id, T0 + 3)
        .await
        .unwrap();
    let other = t
        .login(new_login(&wechat("o2", None, "key-2"), T0, 0))
        .await
        .unwrap();

    assert_eq!(t.revoke_user_sessions(&a.user.user_id, T0 + 4).await.unwrap(), 2);
    for id in [a.session.id, b.session.id] {
        assert_eq!(t.session(id).await.unwrap().unwrap().0.revoked_at, Some(T0 + 4));
    }
    let earlier = t.session(revoked_earlier.session.id).await.unwrap().unwrap().0;
    assert_eq!(earlier.revoked_at, Some(T0 + 3));
    let untouched = t.session(other.session.id).await.unwrap().unwrap().0;
    assert_eq!(untouched.revoked_at, None);
    // Sessions past their lifetime are dead already: not counted.
    let after_life = T0 + super::policy(0).lifetime_ms + 1;
    assert_eq!(
        t.revoke_user_sessions(&other.user.user_id, after_life)
            .await
            .unwrap(),
        0
    );
}

async fn session_keys_start_with_the_first_logins_key_and_nothing_replaced(t: &TestStore) {
    let id = user(t, "o1").await;
    let keys = t.session_keys(&id).await.unwrap();
    assert_eq!(keys.current.as_str(), "key-1");
    assert_eq!(keys.current_since, T0);
    assert!(keys.previous.is_none() && keys.previous_replaced_at.is_none());
}

async fn erasing_a_profile_clears_nickname_and_avatar_and_nothing_else(t: &TestStore) {
    let id = user(t, "o1").await;
    t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    let profile = Profile {
        nickname: Some("Band".into()),
        avatar_url: Some("https://a/1".into()),
    };
    t.set_profile(&id, &profile, T0 + 2).await.unwrap();
    let erased = t.erase_profile(&id, T0 + 3).await.unwrap().unwrap();
    assert_eq!((erased.nickname, erased.avatar_url), (None, None));
    assert_eq!(number(&erased.phone_number), Some("13500000001"));
    assert_eq!(t.user(&id).await.unwrap().unwrap().nickname, None);
    assert_eq!(t.erase_profile("usr_nobody", T0 + 4).await.unwrap(), None);
}

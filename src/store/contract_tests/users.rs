//! What the store keeps about users besides logins: phones with their
//! history, verified profiles, lookups by unionid, and revocation.
use super::{new_login, wechat, TestStore, APP, T0};
use crate::domain::model::{Phone, Profile, UnixSeconds};

contract_tests!(
    a_first_phone_is_bound_without_history,
    a_new_number_replaces_the_old_one_which_goes_to_history,
    binding_the_same_number_again_changes_nothing,
    a_profile_update_keeps_what_it_does_not_mention,
    users_are_found_by_unionid_across_apps_oldest_first,
    revoking_a_session_counts_only_a_live_one,
    revoking_a_users_sessions_spares_other_users_and_dead_sessions,
    session_keys_start_with_the_first_logins_key_and_nothing_replaced,
    a_user_is_found_by_app_and_openid_and_only_in_that_app,
    erasing_a_profile_clears_nickname_and_avatar_and_nothing_else,
);

fn phone(number: &str) -> Phone {
    Phone {
        phone_number: number.to_owned(),
        pure_phone_number: number.to_owned(),
        country_code: "86".to_owned(),
        authorised_at: UnixSeconds(T0 / 1000),
    }
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
    assert_eq!(bound.user.phone_number.as_deref(), Some("13500000001"));
    assert_eq!(bound.user.country_code.as_deref(), Some("86"));
    assert_eq!(t.user(&id).await.unwrap().unwrap(), bound.user);
    assert!(history(t, &id).await.is_empty());
}

async fn a_new_number_replaces_the_old_one_which_goes_to_history(t: &TestStore) {
    let id = user(t, "o1").await;
    t.bind_phone(&id, &phone("13500000001"), T0 + 1).await.unwrap();
    t.bind_phone(&id, &phone("13500000002"), T0 + 2).await.unwrap();
    let third = t.bind_phone(&id, &phone("13500000003"), T0 + 3).await.unwrap();
    assert!(third.changed);
    assert_eq!(third.previous.as_deref(), Some("13500000002"));
    assert_eq!(third.user.phone_number.as_deref(), Some("13500000003"));
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
    assert_eq!(again.previous.as_deref(), Some("13500000001"));
    assert!(history(t, &id).await.is_empty());
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

async fn a_user_is_found_by_app_and_openid_and_only_in_that_app(t: &TestStore) {
    let id = user(t, "o1").await;
    let found = t.user_by_openid(APP, "o1").await.unwrap().unwrap();
    assert_eq!(found.user_id, id);
    assert_eq!(t.user_by_openid("wxother", "o1").await.unwrap(), None);
    assert_eq!(t.user_by_openid(APP, "o2").await.unwrap(), None);
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
    assert_eq!(erased.phone_number.as_deref(), Some("13500000001"));
    assert_eq!(t.user(&id).await.unwrap().unwrap().nickname, None);
    assert_eq!(t.erase_profile("usr_nobody", T0 + 4).await.unwrap(), None);
}

//! Reading sessions and recording their use.
use super::{new_login, wechat, TestStore, T0};
use crate::domain::crypto::SessionId;
use crate::store::Touch;

contract_tests!(
    the_store_answers_pings,
    a_session_is_read_with_its_user,
    touches_are_throttled_to_the_touch_interval,
    a_batch_of_touches_moves_each_session_it_names,
    sessions_are_read_many_at_once_each_with_its_user,
);

async fn the_store_answers_pings(t: &TestStore) {
    t.ping().await.unwrap();
}

async fn a_session_is_read_with_its_user(t: &TestStore) {
    let answer = wechat("o1", Some("u1"), "key-1");
    let record = t.login(new_login(&answer, T0, 0)).await.unwrap();
    let found = t.session(record.session.id).await.unwrap();
    assert_eq!(found, Some((record.session, record.user)));
    assert_eq!(t.session(SessionId::random()).await.unwrap(), None);
}

async fn touches_are_throttled_to_the_touch_interval(t: &TestStore) {
    const INTERVAL: i64 = 60_000;
    let record = t
        .login(new_login(&wechat("o1", None, "key-1"), T0, 0))
        .await
        .unwrap();
    let id = record.session.id;
    let last_seen = || async { t.session(id).await.unwrap().unwrap().0.last_seen_at };
    let touch = |seen_at, if_before| async move {
        t.touch_sessions(&[Touch {
            id,
            seen_at,
            if_before,
        }])
        .await
        .unwrap()
    };

    // Within the interval of the last write: nothing is written.
    touch(T0 + INTERVAL, T0).await;
    assert_eq!(last_seen().await, T0);
    touch(T0 + INTERVAL + 1, T0 + 1).await;
    assert_eq!(last_seen().await, T0 + INTERVAL + 1);
    touch(T0 + INTERVAL + 2, T0 + 2).await;
    assert_eq!(last_seen().await, T0 + INTERVAL + 1);
    touch(T0 + 2 * INTERVAL + 2, T0 + INTERVAL + 2).await;
    assert_eq!(last_seen().await, T0 + 2 * INTERVAL + 2);

    let session = t.session(id).await.unwrap().unwrap().0;
    assert_eq!(
        session.expires_at, record.session.expires_at,
        "touches never extend the lifetime"
    );
}

async fn a_batch_of_touches_moves_each_session_it_names(t: &TestStore) {
    let a = t
        .login(new_login(&wechat("o1", None, "k1"), T0, 0))
        .await
        .unwrap();
    let b = t
        .login(new_login(&wechat("o2", None, "k2"), T0, 0))
        .await
        .unwrap();
    let untouched = t
        .login(new_login(&wechat("o3", None, "k3"), T0, 0))
        .await
        .unwrap();
    let batch = [
        Touch {
            id: a.session.id,
            seen_at: T0 + 10,
            if_before: T0 + 1,
        },
        Touch {
            id: b.session.id,
            seen_at: T0 + 20,
            if_before: T0 + 1,
        },
        // Unknown sessions are skipped, not an error.
        Touch {
            id: SessionId::random(),
            seen_at: T0 + 30,
            if_before: T0 + 1,
        },
    ];
    t.touch_sessions(&batch).await.unwrap();
    let seen = |id| async move { t.session(id).await.unwrap().unwrap().0.last_seen_at };
    assert_eq!(seen(a.session.id).await, T0 + 10);
    assert_eq!(seen(b.session.id).await, T0 + 20);
    assert_eq!(seen(untouched.session.id).await, T0);
    t.touch_sessions(&[]).await.unwrap();
}

async fn sessions_are_read_many_at_once_each_with_its_user(t: &TestStore) {
    let mut expected = Vec::new();
    for i in 0..5 {
        let record = t
            .login(new_login(&wechat(&format!("o{i}"), None, "k"), T0, 0))
            .await
            .unwrap();
        expected.push((record.session, record.user));
    }
    let mut ids: Vec<SessionId> = expected.iter().map(|(s, _)| s.id).collect();
    ids.push(SessionId::random()); // unknown: left out
    let mut found = t.sessions(&ids).await.unwrap();
    found.sort_by_key(|(_, u)| u.openid.clone());
    assert_eq!(found, expected);
    assert_eq!(t.sessions(&[]).await.unwrap(), vec![]);
}

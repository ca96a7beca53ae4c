//! Reading sessions and recording their use.
use super::{new_login, wechat, TestStore, T0};
use crate::crypto::SessionId;

contract_tests!(
    the_store_answers_pings,
    a_session_is_read_with_its_user,
    touches_are_throttled_to_the_touch_interval,
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

    // Within the interval of the last write: nothing is written.
    t.touch_session(id, T0 + INTERVAL, T0).await.unwrap();
    assert_eq!(last_seen().await, T0);
    t.touch_session(id, T0 + INTERVAL + 1, T0 + 1).await.unwrap();
    assert_eq!(last_seen().await, T0 + INTERVAL + 1);
    t.touch_session(id, T0 + INTERVAL + 2, T0 + 2).await.unwrap();
    assert_eq!(last_seen().await, T0 + INTERVAL + 1);
    t.touch_session(id, T0 + 2 * INTERVAL + 2, T0 + INTERVAL + 2)
        .await
        .unwrap();
    assert_eq!(last_seen().await, T0 + 2 * INTERVAL + 2);

    let session = t.session(id).await.unwrap().unwrap().0;
    assert_eq!(
        session.expires_at, record.session.expires_at,
        "touches never extend the lifetime"
    );
    // An unknown session is no error: its token fails elsewhere.
    t.touch_session(SessionId::random(), T0, T0).await.unwrap();
}

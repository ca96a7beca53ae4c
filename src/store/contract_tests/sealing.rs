//! Sealing rows an earlier version stored in plaintext: listing them per
//! column and replacing each only if it still holds the plaintext.
use super::{new_login, wechat, TestStore, APP, T0};
use crate::domain::crypto::Sealed;
use crate::domain::model::SealedAccessToken;
use crate::store::{Claim, PlainSecret, Resealed, SecretColumn};

contract_tests!(
    plaintext_values_of_every_secret_column_are_listed_and_sealed_once,
    a_value_changed_since_it_was_listed_is_not_overwritten,
    sealed_values_are_not_listed,
);

/// (row, app_id, owner, value) of the listed plaintext values.
async fn listed(t: &TestStore, column: SecretColumn) -> Vec<(String, String, String, String)> {
    let plain = t.plaintext_secrets(column, 100).await.unwrap();
    plain
        .into_iter()
        .map(|p| (p.row, p.app_id, p.owner, p.value.expose().clone()))
        .collect()
}

fn resealed(plain: PlainSecret, sealed: &str) -> Resealed {
    Resealed {
        plain,
        sealed: Sealed::from_stored(sealed.to_owned()),
        mac: Some(format!("mac-of-{sealed}")),
    }
}

/// Lists `column` and seals every value as `v1.test.<value>`.
async fn seal_all(t: &TestStore, column: SecretColumn) -> u64 {
    let plain = t.plaintext_secrets(column, 100).await.unwrap();
    let rows: Vec<Resealed> = plain
        .into_iter()
        .map(|p| {
            let sealed = format!("v1.test.{}", p.value.expose());
            resealed(p, &sealed)
        })
        .collect();
    t.seal_plaintext(column, &rows).await.unwrap()
}

async fn plaintext_values_of_every_secret_column_are_listed_and_sealed_once(t: &TestStore) {
    t.login(new_login(&wechat("o1", None, "key-1"), T0, 0))
        .await
        .unwrap();
    let user_id = t
        .login(new_login(&wechat("o1", None, "key-2"), T0 + 1, 0))
        .await
        .unwrap()
        .user
        .user_id;
    assert!(matches!(
        t.claim_code("c1", APP, T0, 0, 0).await.unwrap(),
        Claim::Acquired { .. }
    ));
    t.release_code("c1", Some(&wechat("o2", None, "key-c")))
        .await
        .unwrap();
    let token = SealedAccessToken {
        token: Sealed::from_stored("token-1".into()),
        expires_at: T0,
        fetch_id: "f1".into(),
    };
    t.save_access_token(APP, &token, T0).await.unwrap();

    let (app, user) = (APP.to_owned(), user_id.clone());
    let expected = [
        (
            SecretColumn::SessionKey,
            (user.clone(), app.clone(), "o1".into(), "key-2".into()),
        ),
        (
            SecretColumn::PrevSessionKey,
            (user, app.clone(), "o1".into(), "key-1".into()),
        ),
        (
            SecretColumn::ClaimSessionKey,
            ("c1".into(), app.clone(), "c1".into(), "key-c".into()),
        ),
        (
            SecretColumn::AccessToken,
            (app.clone(), app.clone(), app, "token-1".into()),
        ),
    ];
    for (column, row) in expected {
        assert_eq!(listed(t, column).await, vec![row], "{column:?}");
        assert_eq!(seal_all(t, column).await, 1, "{column:?}");
        assert!(listed(t, column).await.is_empty(), "{column:?} sealed");
        assert_eq!(seal_all(t, column).await, 0, "{column:?} idempotent");
    }
    let keys: (String, Option<String>, Option<String>) = t
        .row(
            "SELECT session_key, session_key_mac, prev_session_key FROM users WHERE user_id = $1",
            &[&user_id],
        )
        .await;
    let mac = "mac-of-v1.test.key-2".to_owned();
    assert_eq!(
        keys,
        ("v1.test.key-2".into(), Some(mac), Some("v1.test.key-1".into()))
    );
    let Claim::Acquired { exchange: Some(e) } = t.claim_code("c1", APP, T0 + 1, 0, 0).await.unwrap() else {
        panic!("the exchanged claim keeps its answer");
    };
    assert_eq!(e.session_key.as_str(), "v1.test.key-c");
    let stored = t.access_token(APP).await.unwrap().unwrap();
    assert_eq!(stored.token.as_str(), "v1.test.token-1");
}

async fn a_value_changed_since_it_was_listed_is_not_overwritten(t: &TestStore) {
    t.login(new_login(&wechat("o1", None, "key-1"), T0, 0))
        .await
        .unwrap();
    let plain = t.plaintext_secrets(SecretColumn::SessionKey, 100).await.unwrap();
    // A login (or another replica) writes the row meanwhile.
    let newer = wechat("o1", None, "v1.k.newer");
    t.login(new_login(&newer, T0 + 1, 0)).await.unwrap();
    let rows: Vec<Resealed> = plain.into_iter().map(|p| resealed(p, "v1.test.stale")).collect();
    assert_eq!(
        t.seal_plaintext(SecretColumn::SessionKey, &rows).await.unwrap(),
        0
    );
    let (key,): (String,) = t.row("SELECT session_key FROM users", &[]).await;
    assert_eq!(key, "v1.k.newer");
}

async fn sealed_values_are_not_listed(t: &TestStore) {
    t.login(new_login(&wechat("o1", None, "v1.k.sealed-1"), T0, 0))
        .await
        .unwrap();
    t.login(new_login(&wechat("o1", None, "v1.k.sealed-2"), T0 + 1, 0))
        .await
        .unwrap();
    for column in SecretColumn::ALL {
        assert!(listed(t, column).await.is_empty(), "{column:?}");
    }
}

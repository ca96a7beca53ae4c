//! Account deletion: scheduling (sessions revoked, a record kept), a login
//! meeting a pending deletion (refused, restored, or erased when due), the
//! erasure itself, and the reads an export makes.
use super::{new_login, phone, wechat, TestStore, APP, T0};
use crate::domain::crypto::Sealed;
use crate::domain::error::Error;
use crate::domain::model::{Deletion, DeletionRequest, Phone, Requester, UnixSeconds, CODE_TTL_MS};
use crate::store::{Claim, LoginRecord};

contract_tests!(
    scheduling_a_deletion_revokes_every_session_and_keeps_a_record_without_personal_data,
    a_repeated_deletion_answers_the_same_record_and_only_ever_moves_it_earlier,
    scheduling_the_deletion_of_an_unknown_user_answers_nothing,
    a_login_of_a_user_pending_deletion_fails_with_the_deletion_time_and_changes_nothing,
    a_login_with_restore_cancels_the_deletion_and_keeps_the_user,
    erasing_a_user_removes_every_row_that_points_to_them_and_only_those,
    an_erased_user_logging_in_again_is_a_new_user,
    a_user_whose_deletion_is_not_due_or_was_cancelled_is_not_erased,
    a_login_after_the_deletion_fell_due_erases_the_old_user_and_registers_a_new_one,
    due_deletions_are_listed_most_overdue_first_within_the_limit,
    purging_deletion_records_removes_only_erased_ones_before_the_cutoff_in_batches,
    a_users_sessions_are_listed_newest_first_by_public_ids_unrelated_to_their_ids,
    the_phone_history_is_listed_oldest_first,
);

const DAY: i64 = 86_400_000;

/// A phone code's answer as the domain hands it to the store.
fn memo(number: &str) -> Phone<Sealed> {
    Phone {
        phone_number: Sealed::from_stored(number.to_owned()),
        pure_phone_number: Sealed::from_stored(number.to_owned()),
        country_code: Sealed::from_stored("86".to_owned()),
        authorised_at: UnixSeconds(T0 / 1000),
    }
}

fn request(by: Requester, now: i64, delete_at: i64) -> DeletionRequest<'static> {
    DeletionRequest {
        requested_by: by,
        reason: "closing my account",
        now,
        delete_at,
    }
}

async fn login(t: &TestStore, openid: &str, now: i64) -> LoginRecord {
    let answer = wechat(openid, None, "key-1");
    t.login(new_login(&answer, now, 0)).await.unwrap()
}

async fn count_where(t: &TestStore, table: &str, user_id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1");
    let (n,): (i64,) = t.row(&sql, &[user_id]).await;
    n
}

async fn live_sessions(t: &TestStore, user_id: &str) -> i64 {
    let (n,): (i64,) = t
        .row(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
            &[user_id],
        )
        .await;
    n
}

async fn scheduling_a_deletion_revokes_every_session_and_keeps_a_record_without_personal_data(t: &TestStore) {
    let first = login(t, "o1", T0).await;
    let second = login(t, "o1", T0 + 1).await;
    let other = login(t, "o2", T0).await;
    let id = first.user.user_id.clone();
    assert_eq!(live_sessions(t, &id).await, 2);
    let record = t
        .schedule_deletion(&id, request(Requester::User, T0 + 10, T0 + 10 + DAY))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record,
        Deletion {
            user_id: id.clone(),
            app_id: APP.into(),
            requested_by: Requester::User,
            reason: "closing my account".into(),
            requested_at: T0 + 10,
            delete_at: T0 + 10 + DAY,
            erased_at: None,
        }
    );
    assert_eq!(live_sessions(t, &id).await, 0, "every session revoked");
    let (session, _) = t.session(second.session.id).await.unwrap().unwrap();
    assert_eq!(session.revoked_at, Some(T0 + 10));
    assert_eq!(live_sessions(t, &other.user.user_id).await, 1, "others untouched");
    let (delete_at,): (Option<i64>,) = t
        .row("SELECT delete_at FROM users WHERE user_id = $1", &[&id])
        .await;
    assert_eq!(delete_at, Some(T0 + 10 + DAY));
    assert_eq!(t.deletion(&id).await.unwrap(), Some(record));
}

async fn a_repeated_deletion_answers_the_same_record_and_only_ever_moves_it_earlier(t: &TestStore) {
    let id = login(t, "o1", T0).await.user.user_id;
    let first = t
        .schedule_deletion(&id, request(Requester::User, T0, T0 + 7 * DAY))
        .await
        .unwrap()
        .unwrap();
    let again = t
        .schedule_deletion(&id, request(Requester::Operator, T0 + 5, T0 + 5 + 7 * DAY))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "a retry answers the existing record");
    // WeChat's account cancellation: at once, whatever the delay.
    let now = t
        .schedule_deletion(&id, request(Requester::Wechat, T0 + 9, T0 + 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.delete_at, T0 + 9);
    assert_eq!(now.requested_by, Requester::Wechat);
    assert_eq!(now.requested_at, T0, "asked for first at");
    assert!(t.erase_user(&id, T0 + 9).await.unwrap());
    let after = t
        .schedule_deletion(&id, request(Requester::Operator, T0 + 20, T0 + 20))
        .await
        .unwrap();
    assert_eq!(after.unwrap().erased_at, Some(T0 + 9), "the erased user's record");
}

async fn scheduling_the_deletion_of_an_unknown_user_answers_nothing(t: &TestStore) {
    let record = t
        .schedule_deletion("usr_unknown", request(Requester::Operator, T0, T0))
        .await
        .unwrap();
    assert_eq!(record, None);
    assert_eq!(t.count("user_deletions").await, 0);
}

async fn a_login_of_a_user_pending_deletion_fails_with_the_deletion_time_and_changes_nothing(t: &TestStore) {
    let id = login(t, "o1", T0).await.user.user_id;
    t.schedule_deletion(&id, request(Requester::User, T0, T0 + DAY))
        .await
        .unwrap();
    let sessions = t.count("sessions").await;
    let answer = wechat("o1", Some("u1"), "key-2");
    let refused = t.login(new_login(&answer, T0 + 1, 0)).await.unwrap_err();
    assert!(
        matches!(refused, Error::UserDeletionPending { delete_at } if delete_at == T0 + DAY),
        "{refused:?}"
    );
    assert_eq!(t.count("sessions").await, sessions, "no session issued");
    let (unionid, key): (Option<String>, String) = t
        .row(
            "SELECT unionid, session_key FROM users WHERE user_id = $1",
            &[&id],
        )
        .await;
    assert_eq!((unionid, key.as_str()), (None, "key-1"), "the user row unchanged");
}

async fn a_login_with_restore_cancels_the_deletion_and_keeps_the_user(t: &TestStore) {
    let before = login(t, "o1", T0).await;
    let id = before.user.user_id.clone();
    t.schedule_deletion(&id, request(Requester::User, T0, T0 + DAY))
        .await
        .unwrap();
    let answer = wechat("o1", None, "key-1");
    let mut restoring = new_login(&answer, T0 + 1, 60_000);
    restoring.restore = true;
    let restored = t.login(restoring).await.unwrap();
    assert_eq!(restored.user.user_id, id);
    assert!(!restored.created);
    assert_ne!(
        restored.session.id, before.session.id,
        "a revoked session stays revoked"
    );
    assert_eq!(t.deletion(&id).await.unwrap(), None, "the record goes");
    assert!(t.due_deletions(T0 + 2 * DAY, 10).await.unwrap().is_empty());
    // An ordinary login later finds nothing pending.
    login(t, "o1", T0 + 2).await;
}

async fn erasing_a_user_removes_every_row_that_points_to_them_and_only_those(t: &TestStore) {
    // The user: two logins through codes, a phone replaced once, a phone
    // code remembered, a counted lookup, and a code claim that stopped after
    // WeChat's answer (it holds the openid).
    let mut ids = Vec::new();
    for (openid, code) in [("o1", "c1"), ("o2", "c2")] {
        let answer = wechat(openid, Some("u"), "key-1");
        assert!(matches!(
            t.claim_code(code, APP, T0, T0 - CODE_TTL_MS, T0).await.unwrap(),
            Claim::Acquired { .. }
        ));
        let mut l = new_login(&answer, T0, 0);
        l.code_hash = Some(code);
        ids.push(t.login(l).await.unwrap().user.user_id);
        t.bind_phone(&ids[ids.len() - 1], &phone("13500000001"), T0 + 1)
            .await
            .unwrap();
        t.bind_phone(&ids[ids.len() - 1], &phone("13500000002"), T0 + 2)
            .await
            .unwrap();
        t.remember_phone_code(
            &format!("p-{openid}"),
            &ids[ids.len() - 1],
            &memo("13500000002"),
            T0,
        )
        .await
        .unwrap();
        t.count_phone_lookup(&ids[ids.len() - 1], 1).await.unwrap();
        let kept = format!("x-{openid}");
        t.claim_code(&kept, APP, T0, T0 - CODE_TTL_MS, T0).await.unwrap();
        t.release_code(&kept, Some(&answer)).await.unwrap();
    }
    let (gone, kept) = (&ids[0], &ids[1]);
    t.schedule_deletion(gone, request(Requester::Operator, T0 + 5, T0 + 5))
        .await
        .unwrap();
    assert!(t.erase_user(gone, T0 + 6).await.unwrap());
    for table in [
        "users",
        "sessions",
        "phone_history",
        "phone_codes",
        "phone_lookups",
    ] {
        assert_eq!(
            count_where(t, table, gone).await,
            0,
            "{table} keeps the erased user"
        );
        assert!(count_where(t, table, kept).await > 0, "{table} lost another user");
    }
    let (claims,): (i64,) = t
        .row(
            "SELECT COUNT(*) FROM code_exchanges WHERE code_hash IN ('c1', 'x-o1')",
            &[],
        )
        .await;
    assert_eq!(claims, 0, "the user's code claims are erased");
    assert_eq!(t.count("code_exchanges").await, 2, "the other user's claims stay");
    let record = t.deletion(gone).await.unwrap().unwrap();
    assert_eq!((record.requested_at, record.erased_at), (T0 + 5, Some(T0 + 6)));
    assert_eq!(t.user(gone).await.unwrap(), None);
    assert!(!t.erase_user(gone, T0 + 7).await.unwrap(), "once");
}

async fn an_erased_user_logging_in_again_is_a_new_user(t: &TestStore) {
    let old = login(t, "o1", T0).await.user.user_id;
    t.schedule_deletion(&old, request(Requester::User, T0, T0))
        .await
        .unwrap();
    t.erase_user(&old, T0).await.unwrap();
    let again = login(t, "o1", T0 + 1).await;
    assert!(again.created);
    assert_ne!(again.user.user_id, old);
}

async fn a_user_whose_deletion_is_not_due_or_was_cancelled_is_not_erased(t: &TestStore) {
    let id = login(t, "o1", T0).await.user.user_id;
    assert!(!t.erase_user(&id, T0).await.unwrap(), "no deletion at all");
    t.schedule_deletion(&id, request(Requester::User, T0, T0 + DAY))
        .await
        .unwrap();
    assert!(!t.erase_user(&id, T0 + DAY - 1).await.unwrap(), "not due yet");
    let answer = wechat("o1", None, "key-1");
    let mut restoring = new_login(&answer, T0 + 1, 0);
    restoring.restore = true;
    t.login(restoring).await.unwrap();
    assert!(!t.erase_user(&id, T0 + 2 * DAY).await.unwrap(), "cancelled");
    assert!(t.user(&id).await.unwrap().is_some());
}

async fn a_login_after_the_deletion_fell_due_erases_the_old_user_and_registers_a_new_one(t: &TestStore) {
    let old = login(t, "o1", T0).await.user.user_id;
    t.schedule_deletion(&old, request(Requester::User, T0, T0 + DAY))
        .await
        .unwrap();
    // Due, and the janitor has not got to it: restore_user is too late.
    let answer = wechat("o1", None, "key-2");
    let mut restoring = new_login(&answer, T0 + DAY, 0);
    restoring.restore = true;
    let again = t.login(restoring).await.unwrap();
    assert!(again.created);
    assert_ne!(again.user.user_id, old);
    assert_eq!(t.user(&old).await.unwrap(), None);
    assert_eq!(count_where(t, "sessions", &old).await, 0);
    assert_eq!(t.deletion(&old).await.unwrap().unwrap().erased_at, Some(T0 + DAY));
}

async fn due_deletions_are_listed_most_overdue_first_within_the_limit(t: &TestStore) {
    let mut ids = Vec::new();
    for (i, delay) in [3, 1, 2, 9].into_iter().enumerate() {
        let id = login(t, &format!("o{i}"), T0).await.user.user_id;
        t.schedule_deletion(&id, request(Requester::User, T0, T0 + delay))
            .await
            .unwrap();
        ids.push(id);
    }
    login(t, "not-deleted", T0).await;
    let due = t.due_deletions(T0 + 3, 10).await.unwrap();
    assert_eq!(due, [ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    assert_eq!(t.due_deletions(T0 + 3, 2).await.unwrap(), due[..2]);
}

async fn purging_deletion_records_removes_only_erased_ones_before_the_cutoff_in_batches(t: &TestStore) {
    for i in 0..3 {
        let id = login(t, &format!("o{i}"), T0).await.user.user_id;
        t.schedule_deletion(&id, request(Requester::User, T0, T0))
            .await
            .unwrap();
        t.erase_user(&id, T0 + i).await.unwrap();
    }
    let pending = login(t, "pending", T0).await.user.user_id;
    t.schedule_deletion(&pending, request(Requester::User, T0, T0 + DAY))
        .await
        .unwrap();
    assert_eq!(t.purge_deletion_records(T0 + 2, 1).await.unwrap(), 1, "a batch");
    assert_eq!(t.purge_deletion_records(T0 + 2, 10).await.unwrap(), 1);
    assert_eq!(t.purge_deletion_records(T0 + 2, 10).await.unwrap(), 0);
    assert_eq!(
        t.count("user_deletions").await,
        2,
        "the newer and the pending one stay"
    );
    assert!(t.deletion(&pending).await.unwrap().is_some());
}

async fn a_users_sessions_are_listed_newest_first_by_public_ids_unrelated_to_their_ids(t: &TestStore) {
    let first = login(t, "o1", T0).await;
    let second = login(t, "o1", T0 + 1).await;
    login(t, "o2", T0 + 2).await;
    t.revoke_session(first.session.id, T0 + 3).await.unwrap();
    let sessions = t.user_sessions(&first.user.user_id).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        (sessions[0].created_at, sessions[0].revoked_at),
        (second.session.created_at, None)
    );
    assert_eq!(
        (sessions[1].created_at, sessions[1].revoked_at),
        (T0, Some(T0 + 3))
    );
    assert_eq!(sessions[1].expires_at, first.session.expires_at);
    for (record, session) in sessions.iter().zip([&second.session, &first.session]) {
        assert_eq!(record.public_id.len(), 32);
        assert_ne!(record.public_id, session.id.to_hex());
        assert!(!session.id.to_hex().contains(&record.public_id));
    }
    assert_ne!(sessions[0].public_id, sessions[1].public_id);
}

async fn the_phone_history_is_listed_oldest_first(t: &TestStore) {
    let id = login(t, "o1", T0).await.user.user_id;
    assert!(t.phone_history(&id).await.unwrap().is_empty());
    for (i, number) in ["13500000001", "13500000002", "13500000003"].iter().enumerate() {
        t.bind_phone(&id, &phone(number), T0 + i as i64).await.unwrap();
    }
    let history = t.phone_history(&id).await.unwrap();
    let numbers: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.phone_number.as_str(),
                h.country_code.as_ref().map(Sealed::as_str),
                h.replaced_at,
            )
        })
        .collect();
    assert_eq!(
        numbers,
        [
            ("13500000001", Some("86"), T0 + 1),
            ("13500000002", Some("86"), T0 + 2)
        ]
    );
}

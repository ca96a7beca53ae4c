//! DeleteUser over real gRPC: the user's own and an operator's deletion,
//! the cooling-off period with restore_user and the erasure when it ends,
//! re-login and retried codes after the erasure, other replicas, and who
//! may name a user by id.
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use tonic_types::StatusExt;
use wxauth::grpc::pb::{delete_user_request, DeleteUserRequest, ExchangeCodeRequest};

use crate::helpers::{api_tests, assert_error, Subject, TestApp};
use crate::replicas::{until_refused, warm};

api_tests!(
    sqlite: [
        a_user_deleting_their_account_is_erased_at_once_and_their_token_stops_working,
        an_operator_deletes_a_user_by_id_and_a_repeat_answers_the_same_deletion,
        after_the_deletion_the_same_wechat_user_logging_in_is_a_new_user,
        a_code_retried_from_before_the_deletion_does_not_bring_the_old_session_back,
        with_a_cooling_off_period_logins_are_refused_until_restore_user_cancels_the_deletion,
        with_a_cooling_off_period_the_user_is_erased_once_it_is_over,
        the_janitor_erases_deletions_that_fell_due_while_no_replica_ran,
        an_unknown_user_id_is_not_found,
        with_callers_only_an_operator_may_name_a_user_by_id,
    ],
    postgres: [
        a_user_deleting_their_account_is_erased_at_once_and_their_token_stops_working,
        an_operator_deletes_a_user_by_id_and_a_repeat_answers_the_same_deletion,
        after_the_deletion_the_same_wechat_user_logging_in_is_a_new_user,
        a_code_retried_from_before_the_deletion_does_not_bring_the_old_session_back,
        with_a_cooling_off_period_logins_are_refused_until_restore_user_cancels_the_deletion,
        with_a_cooling_off_period_the_user_is_erased_once_it_is_over,
        the_janitor_erases_deletions_that_fell_due_while_no_replica_ran,
        an_unknown_user_id_is_not_found,
        a_deletion_on_one_replica_stops_the_users_tokens_on_the_other_within_a_second,
    ],
);

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

fn with_delay(delay: Duration) -> impl FnOnce(&mut wxauth::Config) {
    move |c| c.deletion_delay = delay
}

/// A user with a phone and a profile: their token, user id and openid.
async fn full_user(app: &TestApp) -> (String, String, String) {
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13912345678" }))
        .await;
    let bound = app.bind_code(&token, &phone.phone_code).await.unwrap();
    let user = bound.user.unwrap();
    app.update_profile(&token, "小明", "https://cdn.example.com/a.png")
        .await
        .unwrap();
    (token, user.user_id, login.openid)
}

async fn users_rows(app: &TestApp, user_id: &str) -> i64 {
    app.count("SELECT COUNT(*) FROM users WHERE user_id = $1", &[user_id])
        .await
}

async fn a_user_deleting_their_account_is_erased_at_once_and_their_token_stops_working() {
    let app = TestApp::spawn().await;
    let (token, user_id, _) = full_user(&app).await;
    app.verify(&token).await.unwrap();
    let deleted = app
        .delete_user(Subject::Token(&token), "user request")
        .await
        .unwrap();
    assert_eq!(deleted.user_id, user_id);
    assert_eq!(deleted.deleted_at, deleted.delete_at, "no cooling-off period");
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_INVALID");
    assert_eq!(users_rows(&app, &user_id).await, 0);
    for table in ["sessions", "phone_history", "phone_codes", "phone_lookups"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1");
        assert_eq!(app.count(&sql, &[&user_id]).await, 0, "{table}");
    }
    let record = app
        .count(
            "SELECT COUNT(*) FROM user_deletions WHERE user_id = $1 AND requested_by = 'self'
             AND reason = 'user request' AND erased_at IS NOT NULL",
            &[&user_id],
        )
        .await;
    assert_eq!(record, 1, "the deletion record stays, erased");
    assert!(app
        .find(wxauth::grpc::pb::find_users_request::Key::UserId(user_id.clone()))
        .await
        .unwrap()
        .is_empty());
}

async fn an_operator_deletes_a_user_by_id_and_a_repeat_answers_the_same_deletion() {
    let app = TestApp::spawn().await;
    let (token, user_id, _) = full_user(&app).await;
    let other = app.login_new_user().await;
    let deleted = app
        .delete_user(Subject::UserId(&user_id), "support ticket 4711")
        .await
        .unwrap();
    assert_eq!(deleted.user_id, user_id);
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_INVALID");
    app.verify(&other.session_token)
        .await
        .expect("other users are untouched");
    let again = app.delete_user(Subject::UserId(&user_id), "retry").await.unwrap();
    assert_eq!(again, deleted, "a retried deletion answers the same deletion");
    let by = app
        .count(
            "SELECT COUNT(*) FROM user_deletions WHERE user_id = $1 AND requested_by = 'operator'",
            &[&user_id],
        )
        .await;
    assert_eq!(by, 1);
}

async fn after_the_deletion_the_same_wechat_user_logging_in_is_a_new_user() {
    let app = TestApp::spawn().await;
    let (token, user_id, openid) = full_user(&app).await;
    app.delete_user(Subject::Token(&token), "").await.unwrap();
    let code = app.sim.code_for(&openid).await.code;
    let again = app.exchange(&code).await.unwrap();
    assert!(again.created, "registered anew");
    let user = again.user.unwrap();
    assert_ne!(user.user_id, user_id);
    assert_eq!(user.openid, openid);
    assert_eq!(
        (user.phone_number.as_str(), user.nickname.as_str()),
        ("", ""),
        "nothing came back"
    );
}

async fn a_code_retried_from_before_the_deletion_does_not_bring_the_old_session_back() {
    let app = TestApp::spawn().await;
    let code = app.sim.new_code().await.code;
    let login = app.exchange(&code).await.unwrap();
    assert_eq!(
        app.exchange(&code).await.unwrap().session_token,
        login.session_token,
        "before the deletion a retry gets the same token"
    );
    app.delete_user(Subject::Token(&login.session_token), "")
        .await
        .unwrap();
    // The claim is gone with the user: the code goes to WeChat again, which
    // knows it was used.
    assert_error(app.exchange(&code).await, Code::InvalidArgument, "CODE_USED");
    assert_eq!(app.sim.calls("jscode2session").await, 2);
    let user_id = login.user.unwrap().user_id;
    assert_eq!(users_rows(&app, &user_id).await, 0, "no user came back");
}

async fn with_a_cooling_off_period_logins_are_refused_until_restore_user_cancels_the_deletion() {
    let app = TestApp::spawn_with(with_delay(WEEK)).await;
    let (token, user_id, openid) = full_user(&app).await;
    let deleted = app
        .delete_user(Subject::Token(&token), "user request")
        .await
        .unwrap();
    let (at, until) = (deleted.deleted_at.unwrap(), deleted.delete_at.unwrap());
    assert_eq!(until.seconds - at.seconds, WEEK.as_secs() as i64);
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_REVOKED");
    let again = app
        .delete_user(Subject::Token(&token), "retry")
        .await
        .expect("a retry with the token the deletion revoked");
    assert_eq!(again, deleted);

    let code = app.sim.code_for(&openid).await.code;
    let refused = app.exchange(&code).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "USER_DELETION_PENDING");
    let delete_at = humantime::parse_rfc3339(&info.metadata["delete_at"]).unwrap();
    let unix = delete_at.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(unix.as_secs() as i64, until.seconds, "ErrorInfo says when");
    let pending = app.export_user(Subject::UserId(&user_id)).await.unwrap();
    assert_eq!(pending.deletion.unwrap().delete_at, Some(until));

    // The same code, retried with restore_user: WeChat is not asked again.
    let restored = app.exchange_restoring(&code).await.unwrap();
    assert_eq!(
        app.sim.calls("jscode2session").await,
        2,
        "the code was exchanged once"
    );
    assert!(!restored.created);
    let user = restored.user.unwrap();
    assert_eq!(user.user_id, user_id, "the same account");
    assert_eq!(user.phone_number, "13912345678", "with its data");
    app.verify(&restored.session_token).await.unwrap();
    assert_error(app.verify(&token).await, Code::Unauthenticated, "TOKEN_REVOKED");
    let export = app
        .export_user(Subject::Token(&restored.session_token))
        .await
        .unwrap();
    assert_eq!(export.deletion, None, "no deletion pending");
    let next = app.sim.code_for(&openid).await.code;
    app.exchange(&next).await.expect("an ordinary login again");
}

async fn with_a_cooling_off_period_the_user_is_erased_once_it_is_over() {
    let app = TestApp::spawn_with(with_delay(WEEK)).await;
    let (token, user_id, openid) = full_user(&app).await;
    app.delete_user(Subject::Token(&token), "").await.unwrap();
    app.clock.advance(WEEK + Duration::from_secs(1));
    // Too late to restore: the login erases the account first.
    let code = app.sim.code_for(&openid).await.code;
    let again = app.exchange_restoring(&code).await.unwrap();
    assert!(again.created);
    assert_ne!(again.user.unwrap().user_id, user_id);
    assert_eq!(users_rows(&app, &user_id).await, 0);
    assert_error(
        app.export_user(Subject::UserId(&user_id)).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
}

async fn the_janitor_erases_deletions_that_fell_due_while_no_replica_ran() {
    let app = TestApp::spawn_with(with_delay(WEEK)).await;
    let (token, user_id, _) = full_user(&app).await;
    app.delete_user(Subject::Token(&token), "").await.unwrap();
    app.clock.advance(WEEK + Duration::from_secs(1));
    assert_eq!(
        users_rows(&app, &user_id).await,
        1,
        "nothing erases it while stopped"
    );
    // The janitor's first round runs at start.
    let app = app.restart().await;
    let erased = async {
        while users_rows(&app, &user_id).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(20), erased)
        .await
        .expect("the janitor never erased the due user");
}

async fn an_unknown_user_id_is_not_found() {
    let app = TestApp::spawn().await;
    let unknown = "usr_000000000000000000000000";
    assert_error(
        app.delete_user(Subject::UserId(unknown), "").await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_error(
        app.export_user(Subject::UserId(unknown)).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_error(
        app.delete_user(Subject::Token("wxa1_not-a-token"), "").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_error(
        app.delete_user(Subject::UserId(unknown), "line\nbreak").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

async fn a_deletion_on_one_replica_stops_the_users_tokens_on_the_other_within_a_second() {
    for delay in [Duration::ZERO, WEEK] {
        let a = TestApp::spawn_with(with_delay(delay)).await;
        let b = a.spawn_replica().await;
        let login = a.login_new_user().await;
        warm(&b, &login.session_token).await;
        let since = Instant::now();
        a.delete_user(Subject::Token(&login.session_token), "")
            .await
            .unwrap();
        // Erased: the session is gone; pending: revoked.
        let expected = if delay.is_zero() {
            "TOKEN_INVALID"
        } else {
            "TOKEN_REVOKED"
        };
        until_refused(&b, &login.session_token, expected, since).await;
    }
}

const BFF_KEY: &str = "bff-5a1c9e7d3b2f4a6c8e0d1b3f5a7c9e2d";
const SUPPORT_KEY: &str = "support-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c";

fn caller(name: &str, key: &str, operator: bool) -> wxauth::config::file::CallerEntry {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    toml::from_str(&format!(
        "name = {name:?}\napi_key_sha256 = {hash:?}\noperator = {operator}\n\
         methods = [\"ExchangeCode\", \"DeleteUser\", \"ExportUser\"]"
    ))
    .unwrap()
}

fn keyed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn delete_by_id(user_id: &str) -> DeleteUserRequest {
    DeleteUserRequest {
        subject: Some(delete_user_request::Subject::UserId(user_id.into())),
        reason: String::new(),
    }
}

async fn with_callers_only_an_operator_may_name_a_user_by_id() {
    let app = TestApp::spawn_with(|c| {
        c.callers = vec![
            caller("bff", BFF_KEY, false),
            caller("support", SUPPORT_KEY, true),
        ]
    })
    .await;
    let mut client = app.client.clone();
    let login = |code: String| {
        let mut client = client.clone();
        async move {
            let request = ExchangeCodeRequest {
                code,
                ..Default::default()
            };
            client
                .exchange_code(keyed(request, BFF_KEY))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = login(app.sim.new_code().await.code).await;
    let second = login(app.sim.new_code().await.code).await;
    let first_id = first.user.unwrap().user_id;
    let refused = client.delete_user(keyed(delete_by_id(&first_id), BFF_KEY)).await;
    assert_error(refused, Code::PermissionDenied, "CALLER_FORBIDDEN");
    let export = wxauth::grpc::pb::ExportUserRequest {
        subject: Some(wxauth::grpc::pb::export_user_request::Subject::UserId(
            first_id.clone(),
        )),
    };
    assert_error(
        client.export_user(keyed(export.clone(), BFF_KEY)).await,
        Code::PermissionDenied,
        "CALLER_FORBIDDEN",
    );
    assert_eq!(users_rows(&app, &first_id).await, 1, "nothing deleted");
    // The BFF acts for the user whose token it sends.
    let own = DeleteUserRequest {
        subject: Some(delete_user_request::Subject::SessionToken(second.session_token)),
        reason: String::new(),
    };
    client.delete_user(keyed(own, BFF_KEY)).await.unwrap();
    // The operator names users by id.
    client.export_user(keyed(export, SUPPORT_KEY)).await.unwrap();
    client
        .delete_user(keyed(delete_by_id(&first_id), SUPPORT_KEY))
        .await
        .unwrap();
    assert_eq!(users_rows(&app, &first_id).await, 0);
}

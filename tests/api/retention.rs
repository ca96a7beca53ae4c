//! The janitor, with the test clock: what is past its retention leaves the
//! database (and `wxauth_purged_rows_total` counts it), what is recent
//! stays; a purged session's token fails like an unknown token; replicas
//! purging at once delete each row once.
use std::time::Duration;

use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, assert_error, TestApp};
use crate::process::wait_until;

api_tests!(
    sqlite: [
        a_session_expired_longer_than_the_retention_is_deleted_and_its_token_is_unknown_while_a_recent_one_stays,
        a_session_revoked_longer_than_the_retention_is_deleted_while_a_recently_revoked_one_stays,
        phone_history_and_lookup_counts_past_their_retention_are_deleted_and_recent_ones_stay,
        a_retried_code_whose_session_was_purged_is_code_used_and_logs_nobody_in,
    ],
    postgres: [
        a_session_expired_longer_than_the_retention_is_deleted_and_its_token_is_unknown_while_a_recent_one_stays,
        a_session_revoked_longer_than_the_retention_is_deleted_while_a_recently_revoked_one_stays,
        phone_history_and_lookup_counts_past_their_retention_are_deleted_and_recent_ones_stay,
        a_retried_code_whose_session_was_purged_is_code_used_and_logs_nobody_in,
        two_replicas_purging_at_once_delete_each_row_once,
    ],
);

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `wxauth_purged_rows_total` is process-wide: the cases here run one at a
/// time, so that each sees only its own purges counted. (Other tests'
/// janitors keep the default 60 s interval and purge nothing they could
/// mistake for these.)
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A wxauth whose janitor runs every 20 ms.
async fn spawn(configure: impl FnOnce(&mut wxauth::Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.janitor_interval = Duration::from_millis(20);
        configure(c);
    })
    .await
}

/// `wxauth_purged_rows_total{table}` as scraped.
async fn purged(app: &TestApp, table: &str) -> u64 {
    let series = format!("wxauth_purged_rows_total{{table=\"{table}\"}} ");
    let text = app.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.parse().unwrap())
}

/// Waits until the janitor has counted `at_least` more purged rows of
/// `table` than `before`, then returns how many more it counted. (A row
/// leaves the database a moment before its batch is counted.)
async fn purged_since(app: &TestApp, table: &str, before: u64, at_least: u64) -> u64 {
    wait_until("the purge is counted", || async {
        purged(app, table).await - before >= at_least
    })
    .await;
    purged(app, table).await - before
}

async fn sessions_of(app: &TestApp, user_id: &str) -> i64 {
    app.count("SELECT COUNT(*) FROM sessions WHERE user_id = $1", &[user_id])
        .await
}

async fn a_session_expired_longer_than_the_retention_is_deleted_and_its_token_is_unknown_while_a_recent_one_stays(
) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let app = spawn(|_| {}).await;
    let before = purged(&app, "sessions").await;
    let old = app.login_new_user().await;
    app.clock.advance(31 * DAY);
    assert_error(
        app.verify(&old.session_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    let recent = app.login_new_user().await;

    // The token lifetime is 30 days, the retention 30 more: the first
    // session ended 31 days ago, the second a minute ago.
    app.clock.advance(30 * DAY + Duration::from_secs(60));
    let old_user = old.user.unwrap().user_id;
    wait_until("the old session is purged", || async {
        sessions_of(&app, &old_user).await == 0
    })
    .await;
    assert_error(
        app.verify(&old.session_token).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_eq!(sessions_of(&app, &recent.user.unwrap().user_id).await, 1);
    assert_error(
        app.verify(&recent.session_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    assert_eq!(purged_since(&app, "sessions", before, 1).await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE user_id = $1", &[&old_user])
            .await,
        1,
        "the user stays"
    );
}

async fn a_session_revoked_longer_than_the_retention_is_deleted_while_a_recently_revoked_one_stays() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Tokens that never expire on their own: only revocation ends them.
    let app = spawn(|c| {
        c.token_lifetime = 3650 * DAY;
        c.token_idle_timeout = 3650 * DAY;
        c.session_retention = 7 * DAY;
    })
    .await;
    let before = purged(&app, "sessions").await;
    let old = app.login_new_user().await;
    app.revoke(&old.session_token, false).await.unwrap();
    app.clock.advance(5 * DAY);
    let recent = app.login_new_user().await;
    app.revoke(&recent.session_token, false).await.unwrap();
    let live = app.login_new_user().await;
    app.clock.advance(3 * DAY);

    let old_user = old.user.unwrap().user_id;
    wait_until("the old session is purged", || async {
        sessions_of(&app, &old_user).await == 0
    })
    .await;
    assert_error(
        app.verify(&old.session_token).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_eq!(sessions_of(&app, &recent.user.unwrap().user_id).await, 1);
    assert_error(
        app.verify(&recent.session_token).await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );
    app.verify(&live.session_token)
        .await
        .expect("a live session is never purged");
    assert_eq!(purged_since(&app, "sessions", before, 1).await, 1);
}

async fn phone_history_and_lookup_counts_past_their_retention_are_deleted_and_recent_ones_stay() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let app = spawn(|c| c.phone_history_retention = 90 * DAY).await;
    let before = purged(&app, "phone_history").await;
    let first = app.sim.new_code().await;
    let openid = first.openid.clone();
    let user_id = app.exchange(&first.code).await.unwrap().user.unwrap().user_id;
    // Each number bound on its own day, with a fresh login: 13500000001
    // is replaced on day 0, 13500000002 on day 60.
    for (day, number) in [(0, "13500000001"), (0, "13500000002"), (60, "13500000003")] {
        app.clock.advance(day * DAY);
        let code = app.sim.code_for(&openid).await.code;
        let token = app.exchange(&code).await.unwrap().session_token;
        let phone = app
            .sim
            .phone(json!({ "openid": openid, "phone_number": number }))
            .await;
        app.bind_code(&token, &phone.phone_code).await.unwrap();
    }
    let history = "SELECT COUNT(*) FROM phone_history WHERE user_id = $1";
    assert_eq!(app.count(history, &[&user_id]).await, 2);
    let lookups = "SELECT COUNT(*) FROM phone_lookups WHERE user_id = $1";
    wait_until("the lookups of day 0 are purged", || async {
        app.count(lookups, &[&user_id]).await == 1
    })
    .await;

    app.clock.advance(31 * DAY);
    wait_until("the number replaced on day 0 is purged", || async {
        app.count(history, &[&user_id]).await == 1
    })
    .await;
    assert_eq!(
        app.phone_history(&user_id).await,
        ["13500000002"],
        "replaced 31 days ago"
    );
    assert_eq!(purged_since(&app, "phone_history", before, 1).await, 1);
    wait_until("the lookups of day 60, now 31 days old, are purged", || async {
        app.count(lookups, &[&user_id]).await == 0
    })
    .await;
}

async fn a_retried_code_whose_session_was_purged_is_code_used_and_logs_nobody_in() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let app = spawn(|c| c.session_retention = Duration::ZERO).await;
    let code = app.sim.new_code().await.code;
    let login = app.exchange(&code).await.unwrap();
    app.revoke(&login.session_token, false).await.unwrap();
    let user_id = login.user.unwrap().user_id;
    wait_until("the revoked session is purged", || async {
        sessions_of(&app, &user_id).await == 0
    })
    .await;

    // Within the code's 5 minutes its claim still names the purged session.
    let claims = "SELECT COUNT(*) FROM code_exchanges WHERE session_id IS NOT NULL";
    assert_eq!(app.count(claims, &[]).await, 1);
    assert_error(app.exchange(&code).await, Code::InvalidArgument, "CODE_USED");
    assert_eq!(sessions_of(&app, &user_id).await, 0, "no session came back");
    assert_error(
        app.verify(&login.session_token).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

async fn two_replicas_purging_at_once_delete_each_row_once() {
    const ROWS: i64 = 5_000;
    let _serial = ONE_AT_A_TIME.lock().await;
    let a = spawn(|_| {}).await;
    let b = a.spawn_replica().await;
    let before = purged(&a, "sessions").await;
    let user = a.login_new_user().await;
    let user_id = user.user.unwrap().user_id;
    // Sessions that ended long ago, appearing at once for both janitors.
    a.database
        .execute(
            &format!(
                "INSERT INTO sessions (id, public_id, user_id, app_id, created_at, last_seen_at, expires_at)
                 SELECT 'seeded' || i, 'public' || i, $1, app_id, 0, 0, 1
                 FROM generate_series(1, {ROWS}) AS i, (SELECT app_id FROM users WHERE user_id = $1) AS u"
            ),
            &[&user_id],
        )
        .await;
    wait_until("every seeded session is purged", || async {
        sessions_of(&a, &user_id).await == 1
    })
    .await;
    // Both scrape the same process-wide counter: the sum of both janitors.
    assert_eq!(
        purged_since(&a, "sessions", before, ROWS as u64).await,
        ROWS as u64
    );
    for replica in [&a, &b] {
        replica
            .verify(&user.session_token)
            .await
            .expect("both replicas keep serving");
    }
}

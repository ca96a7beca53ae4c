//! After a deletion the database holds neither the openid nor the phone
//! number: in the SQLite file and its WAL, byte for byte; in every row of
//! every PostgreSQL table, as text.
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::helpers::{api_tests, Subject, TestApp};

api_tests!(
    sqlite: [the_sqlite_file_and_its_wal_hold_neither_the_openid_nor_the_phone_after_a_deletion],
    postgres: [no_postgresql_row_holds_the_openid_or_the_phone_after_a_deletion],
);

/// The deleted user's number (the others have other numbers).
const PHONE: &str = "13987654321";

/// A user with a phone (bound twice, so history too: `earlier`, then
/// `phone`), a profile and remembered phone codes; returns the token and
/// the openid.
async fn user_with_personal_data(app: &TestApp, earlier: &str, phone: &str) -> (String, String) {
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    for number in [earlier, phone] {
        let phone = app
            .sim
            .phone(json!({ "openid": login.openid, "phone_number": number }))
            .await;
        app.bind_code(&token, &phone.phone_code).await.unwrap();
    }
    app.update_profile(&token, "小明", "https://cdn.example.com/a.png")
        .await
        .unwrap();
    (token, login.openid)
}

/// The database file and its WAL, as bytes.
fn files(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let db = app.database.sqlite_path();
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let bytes = std::fs::read(&name).unwrap_or_default();
            (name.to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Every row of every table of the schema wxauth runs in, as text.
async fn dump(conn: &mut PgConnection) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut text = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        text.push_str(&rows.join("\n"));
    }
    text
}

/// The user's number as the database holds it: its ciphertext and its
/// blind index.
async fn sealed_phone(app: &TestApp, openid: &str) -> Vec<String> {
    let sealed = app
        .database
        .texts(
            "SELECT phone_number FROM users WHERE openid = $1 UNION ALL
             SELECT phone_index FROM users WHERE openid = $1",
            &[openid],
        )
        .await;
    assert_eq!(sealed.len(), 2, "{sealed:?}");
    sealed
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn the_sqlite_file_and_its_wal_hold_neither_the_openid_nor_the_phone_after_a_deletion() {
    let app = TestApp::spawn().await;
    // Other users' rows stay, so the erased ones share pages with live data.
    for i in 0..3 {
        user_with_personal_data(&app, &format!("1370000000{i}"), &format!("1380000000{i}")).await;
    }
    let (token, openid) = user_with_personal_data(&app, "13911110000", PHONE).await;
    let before = files(&app);
    assert!(
        before.iter().any(|(_, bytes)| holds(bytes, &openid)),
        "the openid is on disk before (else this test proves nothing)"
    );
    // The number is sealed at rest: never in a file, before or after; what
    // stood for it (its ciphertext and blind index) is on disk before.
    assert!(!before.iter().any(|(_, bytes)| holds(bytes, PHONE)));
    let sealed = sealed_phone(&app, &openid).await;
    for value in &sealed {
        assert!(before.iter().any(|(_, bytes)| holds(bytes, value)));
    }
    app.delete_user(Subject::Token(&token), "").await.unwrap();
    for (name, bytes) in files(&app) {
        assert!(!holds(&bytes, &openid), "{name} still holds the openid");
        assert!(!holds(&bytes, PHONE), "{name} still holds the phone number");
        for value in &sealed {
            assert!(
                !holds(&bytes, value),
                "{name} still holds the sealed number or its index"
            );
        }
    }
}

async fn no_postgresql_row_holds_the_openid_or_the_phone_after_a_deletion() {
    let app = TestApp::spawn().await;
    user_with_personal_data(&app, "13700000000", "13800000000").await;
    let (token, openid) = user_with_personal_data(&app, "13911110000", PHONE).await;
    let url = app.database.url();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let before = dump(&mut conn).await;
    let sealed = sealed_phone(&app, &openid).await;
    assert!(
        before.contains(&openid) && sealed.iter().all(|v| before.contains(v)),
        "the dump sees the data before"
    );
    assert!(!before.contains(PHONE), "the number is sealed at rest");
    app.delete_user(Subject::Token(&token), "").await.unwrap();
    let after = dump(&mut conn).await;
    assert!(!after.contains(&openid), "a row still holds the openid");
    assert!(!after.contains(PHONE), "a row still holds the phone number");
    for value in &sealed {
        assert!(
            !after.contains(value),
            "a row still holds the sealed number or its index"
        );
    }
    conn.close().await.unwrap();
}

//! `kill -9` in the middle of logins: the real binary, killed while WeChat
//! calls are in flight and while logins commit, restarted on the same
//! database. Whatever a client was answered survives; nothing half-done does.
use std::collections::HashMap;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use wxauth::grpc::pb::{ExchangeCodeRequest, ExchangeCodeResponse, VerifyTokenRequest};

use crate::helpers::{api_tests, random_server_key, reason, Backend, Database};
use crate::process::Process;

api_tests!(kill_9_during_logins_keeps_every_answered_login_and_leaves_no_half_login);

/// Logins fired at once in each round.
const LOGINS: usize = 40;

/// When a round kills wxauth.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// WeChat got this many calls: most logins wait for its answer.
    WechatCalls(u64),
    /// Clients got this many tokens: others are committing or in flight.
    Tokens(usize),
}

/// The codes a round sent, and the logins answered before wxauth died.
type Round = (Vec<String>, HashMap<String, ExchangeCodeResponse>);

async fn kill_9_during_logins_keeps_every_answered_login_and_leaves_no_half_login() {
    let database = Database::create().await;
    let server_key = random_server_key();
    // Explicit: the built-in simulator runs on PostgreSQL only when asked.
    let args = ["--simulator", "--wechat-timeout", "2s"];
    let env = [("WXAUTH_SERVER_KEY", server_key.as_str())];
    let (mut codes, mut answered) = (Vec::new(), HashMap::new());
    // The first half of each round's WeChat calls is delayed, so kills land
    // while they wait for WeChat, and just after the delayed ones answer.
    let rounds = [
        (KillPoint::WechatCalls(5), 300),
        (KillPoint::Tokens(1), 300),
        (KillPoint::Tokens(LOGINS / 2 + 1), 200),
        (KillPoint::Tokens(LOGINS - 5), 100),
    ];
    for (kill_at, delay_ms) in rounds {
        let mut wxauth = Process::start_with_env(&database.url(), &args, &env).await;
        let (sent, got) = logins_until_killed(&mut wxauth, kill_at, delay_ms).await;
        codes.extend(sent);
        answered.extend(got);
    }
    assert!(
        answered.len() >= LOGINS,
        "kills came too early: {}",
        answered.len()
    );

    let wxauth = Process::start_with_env(&database.url(), &args, &env).await;
    if Backend::current() == Backend::Sqlite {
        assert_eq!(database.text("PRAGMA integrity_check", &[]).await, "ok");
    }
    let client = wxauth.client().await;
    for login in answered.values() {
        let verified = client
            .clone()
            .verify_token(VerifyTokenRequest {
                session_token: login.session_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("a token answered before the kill: {e:?}"))
            .into_inner();
        assert_eq!(
            verified.user.unwrap().user_id,
            login.user.as_ref().unwrap().user_id
        );
    }
    assert_every_login_whole(&database).await;

    // Retried codes, as clients whose call was cut retry them.
    let retries = codes.iter().map(|code| {
        let mut client = client.clone();
        async move { (code, client.exchange_code(exchange(code)).await) }
    });
    let retries: Vec<_> = futures::future::join_all(retries).await;
    for (code, retried) in retries {
        match retried {
            Ok(login) => {
                let login = login.into_inner();
                if let Some(first) = answered.get(code) {
                    assert_eq!(login.session_token, first.session_token);
                }
                let verify = VerifyTokenRequest {
                    session_token: login.session_token,
                    ..Default::default()
                };
                let verified = client.clone().verify_token(verify).await;
                assert!(verified.is_ok(), "a retry's token has no session: {verified:?}");
            }
            Err(status) => {
                assert!(
                    !answered.contains_key(code),
                    "an answered code now fails: {status:?}"
                );
                let clean = ["CODE_INVALID", "CODE_USED", "WECHAT_UNAVAILABLE"];
                assert!(clean.contains(&reason(&status).as_str()), "{status:?}");
            }
        }
    }
    assert_every_login_whole(&database).await;
}

/// Every user has the session its first login created, and every code
/// marked done points at a session.
async fn assert_every_login_whole(database: &Database) {
    let users = database.count("SELECT COUNT(*) FROM users", &[]).await;
    let sessions = database.count("SELECT COUNT(*) FROM sessions", &[]).await;
    // Every login here is a new user's first: one user, one session.
    assert_eq!(users, sessions, "users and sessions disagree");
    let lonely = "SELECT COUNT(*) FROM users u
                  WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.user_id)";
    assert_eq!(database.count(lonely, &[]).await, 0, "a user without its session");
    let dangling = "SELECT COUNT(*) FROM code_exchanges c WHERE c.state = 'done'
                    AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = c.session_id)";
    assert_eq!(
        database.count(dangling, &[]).await,
        0,
        "a done code without its session"
    );
}

fn exchange(code: &str) -> ExchangeCodeRequest {
    ExchangeCodeRequest {
        code: code.to_owned(),
        ..Default::default()
    }
}

/// Fires `LOGINS` logins of new users at once, the first half of their
/// WeChat calls delayed by `delay_ms`, and kills wxauth at `kill_at`.
async fn logins_until_killed(wxauth: &mut Process, kill_at: KillPoint, delay_ms: u64) -> Round {
    let codes: Vec<String> = wxauth
        .sim
        .new_codes(LOGINS)
        .await
        .into_iter()
        .map(|l| l.code)
        .collect();
    let delay = json!({"endpoint": "jscode2session", "delay_ms": delay_ms, "times": LOGINS / 2});
    wxauth.sim.fault(delay).await;
    let client = wxauth.client().await;
    let mut calls: FuturesUnordered<_> = codes
        .iter()
        .map(|code| {
            let (mut client, code) = (client.clone(), code.clone());
            async move {
                let result = client.exchange_code(exchange(&code)).await;
                (code, result)
            }
        })
        .collect();
    let mut answered = HashMap::new();
    let mut killed = false;
    let hang_guard = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(hang_guard);
    loop {
        let due = !killed
            && match kill_at {
                KillPoint::WechatCalls(n) => wxauth.sim.calls("jscode2session").await >= n,
                KillPoint::Tokens(n) => answered.len() >= n,
            };
        if due {
            wxauth.kill().await;
            killed = true;
        }
        let next = tokio::select! {
            next = calls.next() => next,
            () = tokio::time::sleep(std::time::Duration::from_millis(5)), if !killed => continue,
            () = &mut hang_guard => panic!("logins hung (kill at {kill_at:?})"),
        };
        match next {
            Some((code, Ok(login))) => {
                answered.insert(code, login.into_inner());
            }
            Some((_, Err(status))) => assert!(killed, "a login failed before the kill: {status:?}"),
            None => break,
        }
    }
    assert!(killed, "every login finished before {kill_at:?}");
    (codes, answered)
}

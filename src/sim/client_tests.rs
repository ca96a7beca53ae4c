//! The client against the simulator over real HTTP: the two halves of this
//! module must agree on WeChat's wire format.
use std::time::Duration;

use serde_json::{json, Value};

use super::{PhoneResponse, Simulator};
use crate::domain::clock::Clock;
use crate::domain::crypto;
use crate::domain::secret::Secret;
use crate::wechat::client::{AppCredentials, RetryPolicy};
use crate::wechat::{WechatClient, WechatError};

struct World {
    sim: Simulator,
    clock: Clock,
    client: WechatClient,
    app: AppCredentials,
    http: reqwest::Client,
}

impl World {
    async fn start() -> Self {
        let clock = Clock::adjustable();
        let apps = vec![("wxapp".to_owned(), "secret".to_owned())];
        let addr = "127.0.0.1:0".parse().unwrap();
        let sim = Simulator::start(addr, clock.clone(), apps).await.unwrap();
        let policy = RetryPolicy {
            deadline: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retries: 2,
            base_backoff: Duration::from_millis(1),
        };
        let guard = crate::wechat::guard::GuardConfig {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
            rate_per_second: 0,
        };
        let client = WechatClient::new(&sim.base_url(), policy, guard, clock.clone()).unwrap();
        let app = AppCredentials {
            app_id: "wxapp".into(),
            secret: Secret::new("secret".into()),
        };
        let http = reqwest::Client::new();
        Self {
            sim,
            clock,
            client,
            app,
            http,
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.sim.base_url());
        let response = self.http.post(url).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    /// A new user: (openid, session_key).
    async fn login(&self) -> (String, String) {
        let r = self.control("/sim/login", json!({})).await;
        (
            r["openid"].as_str().unwrap().into(),
            r["session_key"].as_str().unwrap().into(),
        )
    }

    async fn calls(&self, endpoint: &str) -> u64 {
        let url = format!("{}/sim/calls", self.sim.base_url());
        let calls: Value = self.http.get(url).send().await.unwrap().json().await.unwrap();
        calls[endpoint].as_u64().unwrap()
    }

    async fn token(&self, force_refresh: bool) -> String {
        let token = self.client.stable_token(&self.app, force_refresh).await.unwrap();
        token.token.expose().clone()
    }
}

/// What wxauth does with the legacy button payload.
fn decrypt(session_key: &str, button: &PhoneResponse) -> Value {
    let key = crypto::session_key_bytes(session_key).unwrap();
    let iv = crypto::decode_wechat_base64(&button.iv).unwrap();
    let data = crypto::decode_wechat_base64(&button.encrypted_data).unwrap();
    let plain = crypto::aes_cbc_decrypt(&key, &iv.try_into().unwrap(), &data).unwrap();
    serde_json::from_slice(&plain).unwrap()
}

#[tokio::test]
async fn a_phone_code_gives_the_phone_number_once() {
    let w = World::start().await;
    let (openid, key) = w.login().await;
    let button = w.control(
        "/sim/phone",
        json!({ "openid": openid, "phone_number": "13580006666" }),
    );
    let button: PhoneResponse = serde_json::from_value(button.await).unwrap();
    let token = w.token(false).await;
    let info = w
        .client
        .phone_number("wxapp", &token, &button.phone_code, &openid)
        .await
        .unwrap();
    assert_eq!(info.phone_number, "13580006666");
    assert_eq!(info.pure_phone_number, "13580006666");
    assert_eq!(info.country_code, "86");
    assert_eq!(info.watermark_appid, "wxapp");
    assert_eq!(info.watermark_timestamp, w.clock.now_ms() / 1000);
    let legacy = decrypt(&key, &button);
    assert_eq!(legacy["purePhoneNumber"], "13580006666");
    assert_eq!(legacy["countryCode"], "86");
    assert_eq!(legacy["watermark"]["timestamp"], info.watermark_timestamp);
    assert_eq!(legacy["watermark"]["appid"], "wxapp");
    let again = w
        .client
        .phone_number("wxapp", &token, &button.phone_code, &openid)
        .await;
    assert_eq!(again, Err(WechatError::CodeInvalid));
    assert_eq!(w.calls("getuserphonenumber").await, 2);
    assert_eq!(w.calls("stable_token").await, 1);
}

#[tokio::test]
async fn stale_tokens_are_access_token_invalid_and_leave_the_code_usable() {
    let w = World::start().await;
    let (openid, _) = w.login().await;
    let button = w.control(
        "/sim/phone",
        json!({ "openid": openid, "phone_number": "13580006666" }),
    );
    let code = button.await["phone_code"].as_str().unwrap().to_owned();
    let old = w.token(false).await;
    let new = w.token(true).await;
    assert_ne!(old, new);
    let stale = w.client.phone_number("wxapp", &old, &code, &openid).await;
    assert_eq!(stale, Err(WechatError::AccessTokenInvalid));
    w.clock.advance(Duration::from_secs(7200));
    let expired = w.client.phone_number("wxapp", &new, &code, &openid).await;
    assert_eq!(expired, Err(WechatError::AccessTokenInvalid));
    let fresh = w.token(false).await;
    assert!(
        w.client
            .phone_number("wxapp", &fresh, &code, &openid)
            .await
            .is_err(),
        "the code expired too"
    );
}

#[tokio::test]
async fn stable_token_counts_down_and_rejects_get_and_bad_secrets() {
    let w = World::start().await;
    let first = w.client.stable_token(&w.app, false).await.unwrap();
    assert_eq!(first.expires_in, 7200);
    w.clock.advance(Duration::from_secs(100));
    let again = w.client.stable_token(&w.app, false).await.unwrap();
    assert_eq!(again.token, first.token);
    assert!(again.expires_in <= 7100);
    let url = format!("{}/cgi-bin/stable_token", w.sim.base_url());
    let get: Value = w.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(get["errcode"], 43002);
    let wrong = AppCredentials {
        secret: Secret::new("nope".into()),
        ..w.app.clone()
    };
    let refused = w.client.stable_token(&wrong, false).await;
    assert_eq!(refused, Err(WechatError::Rejected(40125)));
}

#[tokio::test]
async fn a_rotated_key_fails_checksession_and_a_reset_key_passes() {
    let w = World::start().await;
    let (openid, key) = w.login().await;
    let token = w.token(false).await;
    assert_eq!(
        w.client.check_session("wxapp", &token, &openid, &key).await,
        Ok(())
    );
    let rotated = w.control("/sim/rotate", json!({ "openid": openid })).await;
    let rotated = rotated["session_key"].as_str().unwrap().to_owned();
    let stale = w.client.check_session("wxapp", &token, &openid, &key).await;
    assert_eq!(stale, Err(WechatError::InvalidSignature));
    let reset = w
        .client
        .reset_session_key("wxapp", &token, &openid, &rotated)
        .await
        .unwrap();
    assert_ne!(reset.expose(), &rotated);
    let stale = w.client.check_session("wxapp", &token, &openid, &rotated).await;
    assert_eq!(stale, Err(WechatError::InvalidSignature));
    let ok = w
        .client
        .check_session("wxapp", &token, &openid, reset.expose())
        .await;
    assert_eq!(ok, Ok(()));
    assert_eq!(w.calls("checksession").await, 4);
    assert_eq!(w.calls("resetusersessionkey").await, 1);
}

#[tokio::test]
async fn a_system_error_is_retried_and_counted() {
    let w = World::start().await;
    let (openid, key) = w.login().await;
    let token = w.token(false).await;
    let fault = json!({ "endpoint": "checksession", "errcode": -1, "times": 1 });
    w.control("/sim/faults", fault).await;
    assert_eq!(
        w.client.check_session("wxapp", &token, &openid, &key).await,
        Ok(())
    );
    assert_eq!(w.calls("checksession").await, 2);
}

#[tokio::test]
async fn sim_phone_refuses_unknown_users_with_a_json_400() {
    let w = World::start().await;
    let url = format!("{}/sim/phone", w.sim.base_url());
    let body = json!({ "openid": "ounknown", "phone_number": "13580006666" });
    let response = w.http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("unknown user"));
}

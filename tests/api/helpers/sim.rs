//! `SimControl`: the WeChat simulator's `/sim/` control API (codes, phone
//! payloads, key rotation, faults, call counts).
use std::collections::BTreeMap;

use serde_json::{json, Value};
use wxauth::sim::{LoginResponse, PhoneResponse, PushResponse};

/// The simulator's `/sim/` control API, as a mini program's test harness uses it.
#[derive(Clone)]
pub struct SimControl {
    pub base_url: String,
    http: reqwest::Client,
}

impl SimControl {
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            http: reqwest::Client::new(),
        }
    }

    /// Codes for `count` brand-new users, in one call.
    pub async fn new_codes(&self, count: usize) -> Vec<LoginResponse> {
        #[derive(serde::Deserialize)]
        struct Logins {
            logins: Vec<LoginResponse>,
        }
        let logins: Logins = self.control("/sim/logins", json!({ "count": count })).await;
        logins.logins
    }

    pub async fn login(&self, body: Value) -> LoginResponse {
        self.control("/sim/login", body).await
    }

    /// `POST /sim/push`: WeChat pushes an event to the app's push URL; what
    /// the receiver answered.
    pub async fn push(&self, body: Value) -> PushResponse {
        self.control("/sim/push", body).await
    }

    /// `POST /sim/push/verify`: the console's URL check.
    pub async fn verify_push_url(&self) -> PushResponse {
        self.control("/sim/push/verify", json!({})).await
    }

    /// A control call of the simulator that must succeed; its JSON answer.
    async fn control<T: serde::de::DeserializeOwned>(&self, path: &str, body: Value) -> T {
        let r = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "sim {path} failed: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// A code for a brand-new user.
    pub async fn new_code(&self) -> LoginResponse {
        self.login(json!({})).await
    }

    /// A code for an existing user.
    pub async fn code_for(&self, openid: &str) -> LoginResponse {
        self.login(json!({ "openid": openid })).await
    }

    /// What the getPhoneNumber button gives the mini program.
    pub async fn phone(&self, body: Value) -> PhoneResponse {
        self.control("/sim/phone", body).await
    }

    /// WeChat rotates the user's session_key; returns the new one.
    pub async fn rotate(&self, openid: &str) -> String {
        let r: Value = self.control("/sim/rotate", json!({ "openid": openid })).await;
        r["session_key"].as_str().unwrap().to_owned()
    }

    pub async fn fault(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/sim/faults", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn calls(&self, endpoint: &str) -> u64 {
        self.all_calls().await.get(endpoint).copied().unwrap_or(0)
    }

    /// Calls of every WeChat endpoint together.
    pub async fn total_calls(&self) -> u64 {
        self.all_calls().await.values().sum()
    }

    async fn all_calls(&self) -> BTreeMap<String, u64> {
        self.http
            .get(format!("{}/sim/calls", self.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

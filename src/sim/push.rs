//! WeChat's message push (消息推送), as WeChat sends it: `POST /sim/push`
//! builds a privacy event (`authorized_user_information_changes`), seals
//! it the way the console's mode and format say, and POSTs it to the
//! app's push URL; `POST /sim/push/verify` is the console's 提交 button,
//! the GET with `echostr`. Both answer what the receiver answered.
//!
//! The simulator builds every byte itself (query, JSON or XML, the
//! `random ‖ length ‖ message ‖ appid` layout); only the pure primitives
//! (SHA-1 signature, AES with 32-byte padding) are wxauth's.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::{random_string, SimState};
use crate::domain::crypto::push::{encrypt, signature, PushKey};
use crate::domain::secret::Secret;

/// The console's 消息加密方式.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// 安全模式: only `ToUserName` and `Encrypt`.
    Safe,
    /// 兼容模式: the plaintext fields and `Encrypt`.
    Compatible,
    /// 明文模式: the plaintext fields only.
    Plaintext,
}

/// The console's 数据格式.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PushFormat {
    Json,
    Xml,
}

/// An app's 消息推送 settings in the console.
#[derive(Clone, Debug)]
pub struct PushTarget {
    /// The full URL, e.g. `http://127.0.0.1:8082/wechat/push/wx...`.
    pub url: String,
    pub token: Secret<String>,
    /// The 43-character EncodingAESKey (not needed in plaintext mode).
    pub encoding_aes_key: Option<Secret<String>>,
    pub mode: PushMode,
    pub format: PushFormat,
}

/// The push targets by app id.
#[derive(Default)]
pub(super) struct Targets(Mutex<HashMap<String, PushTarget>>);

/// `POST /sim/push`.
#[derive(Debug, Default, Deserialize)]
pub struct PushRequest {
    /// Default: the simulator's first app.
    pub app_id: Option<String>,
    /// The user; left out, the event has no `OpenID` (WeChat has sent
    /// `user_info_modified` so).
    pub openid: Option<String>,
    /// `user_authorization_revoke`, `user_info_modified`,
    /// `user_authorization_cancellation`, or any other event name.
    pub event: String,
    /// RevokeInfo, e.g. `"8"`.
    pub revoke_info: Option<String>,
    /// Overrides the target's mode for this push.
    pub mode: Option<PushMode>,
    /// Overrides the target's format for this push.
    pub format: Option<PushFormat>,
    /// Pretend the push was sent at this Unix time (tests of stale pushes).
    pub timestamp: Option<i64>,
}

/// What the receiver answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct PushResponse {
    pub status: u16,
    pub body: String,
}

/// `POST /sim/push/verify`.
#[derive(Debug, Default, Deserialize)]
pub struct VerifyRequest {
    pub app_id: Option<String>,
}

/// Longest field value the simulator puts in a push.
const MAX_FIELD: usize = 256;
/// The platform account that sends privacy events (`FromUserName` is not
/// the user: /work/shared/wechat-push.md §5.2).
const PLATFORM: &str = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M";

impl Targets {
    pub(super) fn set(&self, app_id: &str, target: PushTarget) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app_id.to_owned(), target);
    }

    fn get(&self, app_id: &str) -> Option<PushTarget> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app_id)
            .cloned()
    }
}

/// A push, ready to send.
struct Built {
    url: String,
    content_type: &'static str,
    body: String,
}

impl SimState {
    fn push_target(&self, app_id: Option<String>) -> Result<(String, PushTarget), String> {
        let app_id = app_id.unwrap_or_else(|| self.default_app.clone());
        let target = self.push_targets.get(&app_id).ok_or_else(|| {
            format!("no push URL configured for {app_id} (--sim-push-url, or wxauth --wechat-push-listen)")
        })?;
        Ok((app_id, target))
    }

    fn build_push(&self, req: PushRequest) -> Result<Built, String> {
        let (app_id, target) = self.push_target(req.app_id)?;
        let mode = req.mode.unwrap_or(target.mode);
        let format = req.format.unwrap_or(target.format);
        let ts = req.timestamp.unwrap_or(self.clock.now_ms() / 1000);
        let mut fields = vec![
            ("ToUserName", "gh_5im0000000000".to_owned()),
            ("FromUserName", PLATFORM.to_owned()),
            ("CreateTime", ts.to_string()),
            ("MsgType", "event".to_owned()),
            ("Event", req.event),
        ];
        if let Some(openid) = req.openid {
            fields.push(("OpenID", openid));
        }
        fields.push(("AppID", app_id.clone()));
        if let Some(info) = req.revoke_info {
            fields.push(("RevokeInfo", info));
        }
        if fields
            .iter()
            .any(|(_, v)| v.len() > MAX_FIELD || v.contains("]]>"))
        {
            return Err(format!("a field is longer than {MAX_FIELD} bytes or holds ]]>"));
        }
        let ts = ts.to_string();
        let nonce = rand::random::<u32>().to_string();
        let token = target.token.expose();
        let mut query = vec![
            ("signature", signature(&[token, &ts, &nonce])),
            ("timestamp", ts.clone()),
            ("nonce", nonce.clone()),
        ];
        let body = if mode == PushMode::Plaintext {
            render(format, &fields)
        } else {
            let key = target
                .encoding_aes_key
                .as_ref()
                .and_then(|k| PushKey::from_encoding_aes_key(k.expose()))
                .ok_or("safe and compatible mode need a 43-character EncodingAESKey")?;
            let random: [u8; 16] = random_string(16)
                .into_bytes()
                .try_into()
                .expect("16 ASCII characters");
            let encrypted = encrypt(&key, &random, render(format, &fields).as_bytes(), &app_id);
            query.push(("encrypt_type", "aes".to_owned()));
            query.push(("msg_signature", signature(&[token, &ts, &nonce, &encrypted])));
            // In the official safe-mode example the (unsigned) openid rides along.
            if let Some((_, openid)) = fields.iter().find(|(k, _)| *k == "OpenID") {
                query.push(("openid", openid.clone()));
            }
            let mut envelope = match mode {
                PushMode::Compatible => fields.clone(),
                _ => vec![("ToUserName", fields[0].1.clone())],
            };
            envelope.push(("Encrypt", encrypted));
            render(format, &envelope)
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        Ok(Built {
            url: format!("{}?{query}", target.url),
            content_type: match format {
                PushFormat::Json => "application/json",
                PushFormat::Xml => "text/xml",
            },
            body,
        })
    }

    /// `POST /sim/push`: builds the event and delivers it.
    pub async fn push(&self, req: PushRequest) -> Result<PushResponse, String> {
        let built = self.build_push(req)?;
        let response = http()
            .post(&built.url)
            .header(reqwest::header::CONTENT_TYPE, built.content_type)
            .body(built.body)
            .send()
            .await;
        answer(response).await
    }

    /// `POST /sim/push/verify`: the console's URL check.
    pub async fn verify_push_url(&self, req: VerifyRequest) -> Result<PushResponse, String> {
        let (_, target) = self.push_target(req.app_id)?;
        let ts = (self.clock.now_ms() / 1000).to_string();
        let nonce = rand::random::<u32>().to_string();
        let echostr = rand::random::<u64>().to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("signature", &signature(&[target.token.expose(), &ts, &nonce]))
            .append_pair("echostr", &echostr)
            .append_pair("timestamp", &ts)
            .append_pair("nonce", &nonce)
            .finish();
        let answered = answer(http().get(format!("{}?{query}", target.url)).send().await).await?;
        if answered.status == 200 && answered.body != echostr {
            return Err(format!(
                "the URL answered 200 but not the echostr: {}",
                answered.body
            ));
        }
        Ok(answered)
    }
}

/// WeChat waits about 5 s for an answer.
fn http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds")
        })
        .clone()
}

async fn answer(response: reqwest::Result<reqwest::Response>) -> Result<PushResponse, String> {
    let response = response.map_err(|e| format!("the push URL did not answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(PushResponse { status, body })
}

/// The fields as WeChat writes them: a flat JSON object (CreateTime a
/// number) or `<xml>` with CDATA strings.
fn render(format: PushFormat, fields: &[(&str, String)]) -> String {
    match format {
        PushFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| {
                    let value = match (*k, v.parse::<i64>()) {
                        ("CreateTime", Ok(n)) => json!(n),
                        _ => json!(v),
                    };
                    ((*k).to_owned(), value)
                })
                .collect();
            serde_json::Value::Object(object).to_string()
        }
        PushFormat::Xml => {
            let mut xml = String::from("<xml>");
            for (k, v) in fields {
                if *k == "CreateTime" {
                    xml.push_str(&format!("<{k}>{v}</{k}>"));
                } else {
                    xml.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
                }
            }
            xml.push_str("</xml>");
            xml
        }
    }
}

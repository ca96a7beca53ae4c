//! The simulator's model of WeChat: apps, users, one-time codes, quotas and
//! injected faults. Pure state behind one mutex; the HTTP layer is in `mod.rs`.
use std::collections::{BTreeMap, HashMap};

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::{distr::Alphanumeric, Rng};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// A wx.login code lives 5 minutes.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// WeChat's per-user jscode2session quota ("每个用户每分钟100次").
pub const USER_MINUTE_QUOTA: u32 = 100;

/// Endpoints the simulator serves, as named in `/sim/faults` and `/sim/calls`.
pub const ENDPOINTS: &[&str] = &["jscode2session"];

#[derive(Debug)]
pub struct SimUser {
    pub unionid: Option<String>,
    pub session_key: String,
    pub blocked: bool,
    quota_minute: i64,
    quota_used: u32,
}

#[derive(Debug)]
struct SimCode {
    app_id: String,
    openid: String,
    issued_at: i64,
    used: bool,
}

/// A fault armed by `POST /sim/faults`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    pub endpoint: String,
    pub errcode: Option<i64>,
    pub http_status: Option<u16>,
    pub delay_ms: Option<u64>,
    pub times: u32,
}

/// `POST /sim/login` request.
#[derive(Debug, Default, Deserialize)]
pub struct LoginRequest {
    pub app_id: Option<String>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub session_key: Option<String>,
    pub blocked: Option<bool>,
}

/// `POST /sim/login` response: what wx.login gives the mini program, plus
/// what WeChat knows about the user (for tests).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    pub code: String,
    pub openid: String,
    pub unionid: String,
    pub session_key: String,
}

/// What jscode2session answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Code2Session {
    Ok {
        openid: String,
        unionid: Option<String>,
        session_key: String,
    },
    Err(i64),
}

pub struct SimState {
    clock: Clock,
    apps: HashMap<String, String>,
    default_app: String,
    inner: std::sync::Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<(String, String), SimUser>,
    codes: HashMap<String, SimCode>,
    faults: Vec<Fault>,
    calls: BTreeMap<String, u64>,
    last_purge: i64,
}

pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh session_key: base64 of 16 random bytes, 24 characters.
pub fn new_session_key() -> String {
    STANDARD.encode(rand::random::<[u8; 16]>())
}

impl SimState {
    /// `apps` maps app id to secret; the first is the default for `/sim/login`.
    pub fn new(clock: Clock, apps: Vec<(String, String)>) -> Self {
        let default_app = apps.first().map(|(id, _)| id.clone()).unwrap_or_default();
        Self {
            clock,
            apps: apps.into_iter().collect(),
            default_app,
            inner: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `wx.login` does: registers or updates the user and mints a code.
    pub fn login(&self, req: LoginRequest) -> Result<LoginResponse, String> {
        let app_id = req.app_id.unwrap_or_else(|| self.default_app.clone());
        if !self.apps.contains_key(&app_id) {
            return Err(format!("unknown app_id {app_id}"));
        }
        let openid = req.openid.unwrap_or_else(|| format!("o{}", random_string(27)));
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.purge_codes(now);
        let user = inner
            .users
            .entry((app_id.clone(), openid.clone()))
            .or_insert_with(|| SimUser {
                unionid: None,
                session_key: new_session_key(),
                blocked: false,
                quota_minute: 0,
                quota_used: 0,
            });
        if let Some(u) = req.unionid.filter(|u| !u.is_empty()) {
            user.unionid = Some(u);
        }
        if let Some(k) = req.session_key {
            user.session_key = k;
        }
        if let Some(b) = req.blocked {
            user.blocked = b;
        }
        let response = LoginResponse {
            code: random_string(32),
            openid: openid.clone(),
            unionid: user.unionid.clone().unwrap_or_default(),
            session_key: user.session_key.clone(),
        };
        inner.codes.insert(
            response.code.clone(),
            SimCode {
                app_id,
                openid,
                issued_at: now,
                used: false,
            },
        );
        Ok(response)
    }

    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        if !ENDPOINTS.contains(&fault.endpoint.as_str()) {
            return Err(format!("unknown endpoint {}", fault.endpoint));
        }
        self.lock().faults.push(fault);
        Ok(())
    }

    /// Counts a call and takes the next armed fault for the endpoint, if any.
    pub fn record_call(&self, endpoint: &str) -> Option<Fault> {
        let mut inner = self.lock();
        *inner.calls.entry(endpoint.to_owned()).or_default() += 1;
        let i = inner
            .faults
            .iter()
            .position(|f| f.endpoint == endpoint && f.times > 0)?;
        let fault = inner.faults[i].clone();
        inner.faults[i].times -= 1;
        if inner.faults[i].times == 0 {
            inner.faults.remove(i);
        }
        Some(fault)
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        let mut calls: BTreeMap<String, u64> = ENDPOINTS.iter().map(|e| (e.to_string(), 0)).collect();
        calls.extend(self.lock().calls.clone());
        calls
    }

    /// Checks an app's credentials the way every WeChat endpoint does.
    pub fn check_app(&self, app_id: &str, secret: &str) -> Result<(), i64> {
        match self.apps.get(app_id) {
            None if app_id.is_empty() => Err(41002),
            None => Err(40013),
            Some(_) if secret.is_empty() => Err(41004),
            Some(s) if s != secret => Err(40125),
            Some(_) => Ok(()),
        }
    }

    pub fn jscode2session(&self, app_id: &str, secret: &str, code: &str) -> Code2Session {
        if let Err(errcode) = self.check_app(app_id, secret) {
            return Code2Session::Err(errcode);
        }
        if code.is_empty() {
            return Code2Session::Err(41008);
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(entry) = inner.codes.get_mut(code) else {
            return Code2Session::Err(40029);
        };
        if entry.app_id != app_id || now - entry.issued_at > CODE_TTL_MS {
            return Code2Session::Err(40029);
        }
        if entry.used {
            return Code2Session::Err(40163);
        }
        entry.used = true;
        let key = (entry.app_id.clone(), entry.openid.clone());
        let user = inner
            .users
            .get_mut(&key)
            .expect("codes are minted for known users");
        if user.blocked {
            return Code2Session::Err(40226);
        }
        let minute = now / 60_000;
        if user.quota_minute != minute {
            user.quota_minute = minute;
            user.quota_used = 0;
        }
        user.quota_used += 1;
        if user.quota_used > USER_MINUTE_QUOTA {
            return Code2Session::Err(45011);
        }
        Code2Session::Ok {
            openid: key.1,
            unionid: user.unionid.clone(),
            session_key: user.session_key.clone(),
        }
    }
}

impl Inner {
    /// Forgets expired codes now and then, so a long-running simulator
    /// under load keeps bounded memory.
    fn purge_codes(&mut self, now: i64) {
        if now - self.last_purge < 10_000 {
            return;
        }
        self.last_purge = now;
        self.codes.retain(|_, c| now - c.issued_at <= CODE_TTL_MS);
    }
}

/// WeChat's errmsg for an errcode, with the trace suffix real answers carry.
pub fn errmsg(errcode: i64) -> String {
    let text = match errcode {
        -1 => "system error",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        _ => "error",
    };
    let r: [u32; 3] = rand::random();
    format!("{text}, rid: {:08x}-{:08x}-{:08x}", r[0], r[1], r[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sim() -> (SimState, Clock) {
        let clock = Clock::adjustable();
        let state = SimState::new(clock.clone(), vec![("wxapp".into(), "secret".into())]);
        (state, clock)
    }

    #[test]
    fn a_code_works_once_then_reports_used() {
        let (s, _) = sim();
        let login = s.login(LoginRequest::default()).unwrap();
        assert!(matches!(
            s.jscode2session("wxapp", "secret", &login.code),
            Code2Session::Ok { .. }
        ));
        assert_eq!(
            s.jscode2session("wxapp", "secret", &login.code),
            Code2Session::Err(40163)
        );
    }

    #[test]
    fn a_code_expires_after_five_minutes() {
        let (s, clock) = sim();
        let login = s.login(LoginRequest::default()).unwrap();
        clock.advance(Duration::from_secs(301));
        assert_eq!(
            s.jscode2session("wxapp", "secret", &login.code),
            Code2Session::Err(40029)
        );
    }

    #[test]
    fn wrong_secret_unknown_app_and_unknown_code() {
        let (s, _) = sim();
        let login = s.login(LoginRequest::default()).unwrap();
        assert_eq!(
            s.jscode2session("wxapp", "nope", &login.code),
            Code2Session::Err(40125)
        );
        assert_eq!(
            s.jscode2session("wxother", "secret", &login.code),
            Code2Session::Err(40013)
        );
        assert_eq!(
            s.jscode2session("wxapp", "secret", "unknown"),
            Code2Session::Err(40029)
        );
    }

    #[test]
    fn blocked_users_get_40226() {
        let (s, _) = sim();
        let login = s
            .login(LoginRequest {
                blocked: Some(true),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            s.jscode2session("wxapp", "secret", &login.code),
            Code2Session::Err(40226)
        );
    }

    #[test]
    fn the_per_user_minute_quota_gives_45011() {
        let (s, _) = sim();
        let first = s.login(LoginRequest::default()).unwrap();
        let mut last = None;
        for _ in 0..=USER_MINUTE_QUOTA {
            let code = s
                .login(LoginRequest {
                    openid: Some(first.openid.clone()),
                    ..Default::default()
                })
                .unwrap()
                .code;
            last = Some(s.jscode2session("wxapp", "secret", &code));
        }
        assert_eq!(last, Some(Code2Session::Err(45011)));
    }

    #[test]
    fn faults_fire_the_requested_number_of_times() {
        let (s, _) = sim();
        s.add_fault(Fault {
            endpoint: "jscode2session".into(),
            errcode: Some(-1),
            http_status: None,
            delay_ms: None,
            times: 2,
        })
        .unwrap();
        assert!(s.record_call("jscode2session").is_some());
        assert!(s.record_call("jscode2session").is_some());
        assert!(s.record_call("jscode2session").is_none());
        assert_eq!(s.calls()["jscode2session"], 3);
    }

    #[test]
    fn session_keys_look_like_wechats() {
        let key = new_session_key();
        assert_eq!(key.len(), 24);
        assert!(key.ends_with("=="));
        assert!(errmsg(40029).starts_with("invalid code, rid: "));
    }
}

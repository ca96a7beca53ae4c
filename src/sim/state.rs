//! The simulator's model of WeChat: apps, users, wx.login codes and quotas.
//! Pure state behind one mutex; the HTTP layer is in `mod.rs`. Access tokens,
//! phone codes, session_key checks and faults live in sibling files, each
//! with its part of [`Inner`].
use std::collections::HashMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::{distr::Alphanumeric, Rng};
use serde::{Deserialize, Serialize};

use super::faults::Faults;
use super::phone::PhoneCodes;
use super::tokens::Tokens;
use crate::domain::clock::Clock;
use crate::domain::secret::{redacted_debug, REDACTED};

/// A wx.login code lives 5 minutes.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// WeChat's per-user jscode2session quota ("每个用户每分钟100次").
pub const USER_MINUTE_QUOTA: u32 = 100;
/// Outstanding wx.login codes kept at most: a simulator flooded with
/// `/sim/login` keeps bounded memory (expired codes go first, then the oldest).
pub const MAX_CODES: usize = 100_000;
/// Users kept at most; past it, the one that logged in least recently is
/// forgotten (its codes then answer 40029, like an unknown code).
pub const MAX_USERS: usize = 100_000;

pub struct SimUser {
    pub unionid: Option<String>,
    pub session_key: String,
    pub blocked: bool,
    quota_minute: i64,
    quota_used: u32,
    /// When wx.login last ran for this user: who goes first past [`MAX_USERS`].
    last_login: i64,
}

#[derive(Debug)]
struct SimCode {
    app_id: String,
    openid: String,
    issued_at: i64,
    used: bool,
}

/// `POST /sim/login` request.
#[derive(Default, Deserialize)]
pub struct LoginRequest {
    pub app_id: Option<String>,
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub session_key: Option<String>,
    pub blocked: Option<bool>,
}

/// `POST /sim/login` response: what wx.login gives the mini program, plus
/// what WeChat knows about the user (for tests).
#[derive(Serialize, Deserialize)]
pub struct LoginResponse {
    pub code: String,
    pub openid: String,
    pub unionid: String,
    pub session_key: String,
}

redacted_debug!(SimUser { unionid, blocked, quota_minute, quota_used, last_login } hiding { session_key });
redacted_debug!(LoginRequest { app_id, openid, unionid, blocked } hiding { session_key });
redacted_debug!(LoginResponse { openid, unionid } hiding { code, session_key });

/// What jscode2session answers.
#[derive(PartialEq, Eq)]
pub enum Code2Session {
    Ok {
        openid: String,
        unionid: Option<String>,
        session_key: String,
    },
    Err(i64),
}

impl std::fmt::Debug for Code2Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok { openid, unionid, .. } => f
                .debug_struct("Ok")
                .field("openid", openid)
                .field("unionid", unionid)
                .field("session_key", &REDACTED)
                .finish(),
            Self::Err(errcode) => f.debug_tuple("Err").field(errcode).finish(),
        }
    }
}

pub struct SimState {
    pub(super) clock: Clock,
    apps: HashMap<String, String>,
    pub(super) default_app: String,
    /// [`MAX_CODES`] and [`MAX_USERS`], smaller in unit tests.
    caps: (usize, usize),
    inner: std::sync::Mutex<Inner>,
    /// Where `/sim/push` delivers, per app.
    pub(super) push_targets: super::push::Targets,
}

#[derive(Default)]
pub(super) struct Inner {
    /// Keyed by (app id, openid).
    pub(super) users: HashMap<(String, String), SimUser>,
    codes: HashMap<String, SimCode>,
    pub(super) faults: Faults,
    pub(super) tokens: Tokens,
    pub(super) phone_codes: PhoneCodes,
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
            caps: (MAX_CODES, MAX_USERS),
            inner: Default::default(),
            push_targets: Default::default(),
        }
    }

    #[cfg(test)]
    fn with_caps(mut self, codes: usize, users: usize) -> Self {
        self.caps = (codes, users);
        self
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
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
        let (max_codes, max_users) = self.caps;
        inner.make_room(now, max_codes, max_users, &(app_id.clone(), openid.clone()));
        let user = inner
            .users
            .entry((app_id.clone(), openid.clone()))
            .or_insert_with(|| SimUser {
                unionid: None,
                session_key: new_session_key(),
                blocked: false,
                quota_minute: 0,
                quota_used: 0,
                last_login: now,
            });
        user.last_login = now;
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
        // Forgotten past MAX_USERS: like a code WeChat no longer knows.
        let Some(user) = inner.users.get_mut(&key) else {
            return Code2Session::Err(40029);
        };
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

    /// Keeps the codes under `max_codes` (expired first, then the oldest)
    /// and, if `user` is new, the users under `max_users` (the least
    /// recently logged in goes). Scans only when a cap is reached.
    fn make_room(&mut self, now: i64, max_codes: usize, max_users: usize, user: &(String, String)) {
        if self.codes.len() >= max_codes {
            self.codes.retain(|_, c| now - c.issued_at <= CODE_TTL_MS);
        }
        while self.codes.len() >= max_codes.max(1) {
            let oldest = self.codes.iter().min_by_key(|(_, c)| c.issued_at);
            let Some(oldest) = oldest.map(|(code, _)| code.clone()) else {
                break;
            };
            self.codes.remove(&oldest);
        }
        if self.users.len() >= max_users.max(1) && !self.users.contains_key(user) {
            let stalest = self.users.iter().min_by_key(|(_, u)| u.last_login);
            if let Some(stalest) = stalest.map(|(key, _)| key.clone()) {
                self.users.remove(&stalest);
            }
        }
    }
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
    fn debug_output_of_the_simulators_types_hides_keys_and_codes() {
        let (s, _) = sim();
        let key = new_session_key();
        let request = LoginRequest {
            session_key: Some(key.clone()),
            ..Default::default()
        };
        let printed_request = format!("{request:?}");
        let login = s.login(request).unwrap();
        let answer = s.jscode2session("wxapp", "secret", &login.code);
        let user = format!("{:?}", s.lock().users.values().next().unwrap());
        let printed = [printed_request, format!("{login:?}"), format!("{answer:?}"), user];
        for text in &printed {
            assert!(text.contains("[redacted]"), "{text}");
            assert!(!text.contains(&key) && !text.contains(&login.code), "{text}");
        }
        assert!(
            printed[1].contains(&login.openid),
            "what is not secret still shows"
        );
    }

    #[test]
    fn codes_expire_after_their_life_and_the_maps_stay_capped() {
        let clock = Clock::adjustable();
        let s = SimState::new(clock.clone(), vec![("wxapp".into(), "secret".into())]).with_caps(3, 2);
        let first = s.login(LoginRequest::default()).unwrap();
        clock.advance(Duration::from_secs(301));
        let second = s.login(LoginRequest::default()).unwrap();
        assert_eq!(s.lock().codes.len(), 1, "the expired code is gone");
        assert_eq!(
            s.jscode2session("wxapp", "secret", &first.code),
            Code2Session::Err(40029)
        );
        let mut last = None;
        for _ in 0..10 {
            clock.advance(Duration::from_millis(1));
            let again = LoginRequest {
                openid: Some(second.openid.clone()),
                ..Default::default()
            };
            last = Some(s.login(again).unwrap());
        }
        assert_eq!(s.lock().codes.len(), 3, "capped");
        let last = last.unwrap();
        assert!(
            matches!(
                s.jscode2session("wxapp", "secret", &last.code),
                Code2Session::Ok { .. }
            ),
            "the newest codes are kept"
        );
        assert_eq!(
            s.jscode2session("wxapp", "secret", &second.code),
            Code2Session::Err(40029),
            "the oldest went first"
        );
        for _ in 0..5 {
            clock.advance(Duration::from_millis(1));
            s.login(LoginRequest::default()).unwrap();
        }
        assert_eq!(s.lock().users.len(), 2, "capped");
    }

    #[test]
    fn a_code_of_a_forgotten_user_is_invalid_not_a_panic() {
        let clock = Clock::adjustable();
        let s = SimState::new(clock.clone(), vec![("wxapp".into(), "secret".into())]).with_caps(10, 1);
        let forgotten = s.login(LoginRequest::default()).unwrap();
        clock.advance(Duration::from_millis(1));
        s.login(LoginRequest::default()).unwrap();
        assert_eq!(
            s.jscode2session("wxapp", "secret", &forgotten.code),
            Code2Session::Err(40029)
        );
    }

    #[test]
    fn session_keys_look_like_wechats() {
        let key = new_session_key();
        assert_eq!(key.len(), 24);
        assert!(key.ends_with("=="));
    }
}

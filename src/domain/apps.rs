//! The mini programs this deployment serves, and how a request picks one.
//! Users are per app; `unionid` links one person across apps.
use std::sync::Arc;

use crate::config::file::AppEntry;
use crate::config::Config;
use crate::domain::clock::ms;
use crate::domain::error::{Error, Result};
use crate::domain::limits::{LimitConfig, Limits};
use crate::domain::model::TokenPolicy;
use crate::wechat::client::AppCredentials;

/// One mini program: its WeChat credentials and its policies.
#[derive(Clone, Debug)]
pub struct App {
    pub creds: AppCredentials,
    /// VerifyToken refuses users without a bound phone (PHONE_REQUIRED).
    pub phone_required: bool,
    /// Token lifetimes and login window.
    pub policy: TokenPolicy,
    /// Per-user and per-app login and phone limits.
    pub limits: Arc<Limits>,
}

impl App {
    /// An app with the top-level settings of `config`.
    pub fn from_config(config: &Config, creds: AppCredentials) -> Self {
        Self::with_overrides(config, creds, None)
    }

    /// An app from a configuration file entry, falling back to the
    /// top-level settings for what it does not set.
    pub fn from_entry(config: &Config, entry: &AppEntry) -> anyhow::Result<Self> {
        let creds = AppCredentials {
            app_id: entry.app_id.clone(),
            secret: entry.secret()?,
        };
        Ok(Self::with_overrides(config, creds, Some(entry)))
    }

    fn with_overrides(config: &Config, creds: AppCredentials, entry: Option<&AppEntry>) -> Self {
        let e =
            |f: fn(&AppEntry) -> Option<std::time::Duration>, default| entry.and_then(f).unwrap_or(default);
        let n = |f: fn(&AppEntry) -> Option<u32>, default| entry.and_then(f).unwrap_or(default);
        Self {
            creds,
            phone_required: entry
                .and_then(|a| a.phone_required)
                .unwrap_or(config.phone_required),
            policy: TokenPolicy {
                idle_ms: ms(e(|a| a.token_idle_timeout, config.token_idle_timeout)),
                lifetime_ms: ms(e(|a| a.token_lifetime, config.token_lifetime)),
                login_window_ms: ms(e(|a| a.login_window, config.login_window)),
                touch_interval_ms: ms(config.touch_interval),
            },
            limits: Arc::new(Limits::new(LimitConfig {
                user_logins_per_minute: n(|a| a.user_login_limit, config.user_login_limit),
                user_phone_per_minute: n(|a| a.user_phone_limit, config.user_phone_limit),
                app_logins_per_minute: n(|a| a.app_login_limit, config.app_login_limit),
                app_phone_per_minute: n(|a| a.app_phone_limit, config.app_phone_limit),
                phone_lookups_per_day: n(|a| a.phone_lookups_per_day, config.phone_lookups_per_day),
            })),
        }
    }
}

impl App {
    pub fn id(&self) -> &str {
        &self.creds.app_id
    }
}

#[derive(Clone, Debug)]
pub struct Apps {
    apps: Vec<App>,
}

impl Apps {
    pub fn new(apps: Vec<App>) -> Self {
        Self { apps }
    }

    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.iter()
    }

    /// The app a request names; an empty `app_id` means the only app.
    pub fn resolve(&self, app_id: &str) -> Result<&App> {
        if app_id.is_empty() {
            return match self.apps.as_slice() {
                [only] => Ok(only),
                _ => Err(Error::invalid(
                    "app_id",
                    "required: several mini programs are configured",
                )),
            };
        }
        crate::domain::validation::app_id("app_id", app_id)?;
        self.apps
            .iter()
            .find(|a| a.id() == app_id)
            .ok_or(Error::AppUnknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> App {
        let creds = AppCredentials {
            app_id: id.into(),
            secret: "s".into(),
        };
        App::from_config(&Config::defaults(), creds)
    }

    #[test]
    fn empty_app_id_picks_the_only_app() {
        assert_eq!(Apps::new(vec![app("wxa")]).resolve("").unwrap().id(), "wxa");
    }

    #[test]
    fn empty_app_id_is_ambiguous_with_two_apps() {
        let apps = Apps::new(vec![app("wxa"), app("wxb")]);
        assert!(matches!(
            apps.resolve(""),
            Err(Error::InvalidArgument { field: "app_id", .. })
        ));
        assert_eq!(apps.resolve("wxb").unwrap().id(), "wxb");
        assert!(matches!(apps.resolve("wxc"), Err(Error::AppUnknown)));
    }

    #[test]
    fn an_apps_limits_override_the_flags_and_fall_back_to_them() {
        let mut config = Config::defaults();
        config.app_login_limit = 1;
        config.app_phone_limit = 1;
        let entry: AppEntry = toml::from_str("app_id = \"wxa\"\napp_login_limit = 2\n").unwrap();
        let creds = AppCredentials {
            app_id: "wxa".into(),
            secret: "s".into(),
        };
        let app = App::with_overrides(&config, creds, Some(&entry));
        assert!(app.limits.check_app_login().is_ok());
        assert!(app.limits.check_app_login().is_ok(), "the entry's 2");
        assert!(app.limits.check_app_login().is_err());
        assert!(app.limits.check_phone_attempt("u1").is_ok());
        assert!(app.limits.check_phone_attempt("u2").is_err(), "the flag's 1");
    }
}

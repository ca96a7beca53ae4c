//! The configured mini programs as domain [`App`]s: the top-level flags,
//! overridden per app by `[[apps]]` entries.
use std::sync::Arc;

use anyhow::bail;

use super::file::AppEntry;
use super::Config;
use crate::domain::apps::{App, AppCredentials, PushCredentials};
use crate::domain::clock::ms;
use crate::domain::crypto::push::PushKey;
use crate::domain::limits::{LimitConfig, Limits};
use crate::domain::model::TokenPolicy;
use crate::domain::secret::Secret;

impl Config {
    /// An app with the top-level settings of `config`.
    pub fn app(&self, creds: AppCredentials) -> App {
        app_with_overrides(self, creds, None)
    }

    /// The app given by flags, with the push secrets of
    /// `WXAUTH_WECHAT_PUSH_TOKEN` and `WXAUTH_WECHAT_PUSH_AES_KEY`.
    pub fn flag_app(&self, creds: AppCredentials) -> anyhow::Result<App> {
        let push = push_credentials(
            ("WXAUTH_WECHAT_PUSH_TOKEN", self.wechat_push_token.as_ref()),
            ("WXAUTH_WECHAT_PUSH_AES_KEY", self.wechat_push_aes_key.as_ref()),
        )?;
        Ok(App {
            push,
            ..self.app(creds)
        })
    }

    /// An app from a configuration file entry, falling back to the
    /// top-level settings for what it does not set.
    pub fn app_from_entry(&self, entry: &AppEntry) -> anyhow::Result<App> {
        let creds = AppCredentials {
            app_id: entry.app_id.clone(),
            secret: entry.secret()?,
        };
        let (token, key) = entry.push_secrets()?;
        let id = &entry.app_id;
        let push = push_credentials(
            (
                &format!("app {id}: push_token_env/push_token_file"),
                token.as_ref(),
            ),
            (
                &format!("app {id}: push_aes_key_env/push_aes_key_file"),
                key.as_ref(),
            ),
        )?;
        Ok(App {
            push,
            ..app_with_overrides(self, creds, Some(entry))
        })
    }
}

/// An app's push secrets, checked: both or neither, since wxauth acts only
/// on encrypted pushes; the key must be a 43-character EncodingAESKey.
/// Errors name where a secret comes from, never its value.
fn push_credentials(
    (token_name, token): (&str, Option<&Secret<String>>),
    (key_name, key): (&str, Option<&Secret<String>>),
) -> anyhow::Result<Option<PushCredentials>> {
    match (token, key) {
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            "{token_name} is set without {key_name}: wxauth acts only on encrypted pushes \
             (safe or compatible mode), which need the EncodingAESKey too"
        ),
        (None, Some(_)) => bail!("{key_name} is set without {token_name}"),
        (Some(token), Some(key)) => {
            let t = token.expose();
            if !t.bytes().all(|b| b.is_ascii_alphanumeric()) || !(3..=32).contains(&t.len()) {
                bail!("{token_name}: a push Token is 3 to 32 letters and digits");
            }
            let key = PushKey::from_encoding_aes_key(key.expose()).ok_or_else(|| {
                anyhow::anyhow!("{key_name}: an EncodingAESKey is 43 letters and digits (32 bytes)")
            })?;
            Ok(Some(PushCredentials {
                token: token.clone(),
                key,
            }))
        }
    }
}

fn app_with_overrides(config: &Config, creds: AppCredentials, entry: Option<&AppEntry>) -> App {
    let e = |f: fn(&AppEntry) -> Option<std::time::Duration>, default| entry.and_then(f).unwrap_or(default);
    let n = |f: fn(&AppEntry) -> Option<u32>, default| entry.and_then(f).unwrap_or(default);
    App {
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
        push: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::apps::Apps;
    use crate::domain::error::Error;
    use crate::domain::input::AppId;

    fn id(app_id: &str) -> AppId {
        AppId::parse("app_id", app_id.into()).unwrap()
    }

    fn app(id: &str) -> App {
        let creds = AppCredentials {
            app_id: id.into(),
            secret: "s".into(),
        };
        Config::defaults().app(creds)
    }

    #[test]
    fn empty_app_id_picks_the_only_app() {
        assert_eq!(Apps::new(vec![app("wxa")]).resolve(&id("")).unwrap().id(), "wxa");
    }

    #[test]
    fn empty_app_id_is_ambiguous_with_two_apps() {
        let apps = Apps::new(vec![app("wxa"), app("wxb")]);
        assert!(matches!(
            apps.resolve(&id("")),
            Err(Error::InvalidArgument { field: "app_id", .. })
        ));
        assert_eq!(apps.resolve(&id("wxb")).unwrap().id(), "wxb");
        assert!(matches!(apps.resolve(&id("wxc")), Err(Error::AppUnknown)));
    }

    #[test]
    fn push_secrets_come_in_pairs_and_the_key_must_decode_to_32_bytes() {
        let mut config = Config::defaults();
        let creds = || AppCredentials {
            app_id: "wxa".into(),
            secret: "s".into(),
        };
        assert!(config.flag_app(creds()).unwrap().push.is_none());
        config.wechat_push_token = Some("Token123".into());
        let alone = config.flag_app(creds()).unwrap_err().to_string();
        assert!(alone.contains("WXAUTH_WECHAT_PUSH_AES_KEY"), "{alone}");
        config.wechat_push_aes_key = Some("short-s3cret".into());
        let bad = config.flag_app(creds()).unwrap_err().to_string();
        assert!(bad.contains("43") && !bad.contains("short-s3cret"), "{bad}");
        config.wechat_push_aes_key = Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into());
        let app = config.flag_app(creds()).unwrap();
        assert_eq!(app.push.unwrap().token.expose(), "Token123");
        config.wechat_push_token = Some("not a token!".into());
        assert!(config.flag_app(creds()).is_err());
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
        let app = app_with_overrides(&config, creds, Some(&entry));
        assert!(app.limits.check_app_login().is_ok());
        assert!(app.limits.check_app_login().is_ok(), "the entry's 2");
        assert!(app.limits.check_app_login().is_err());
        assert!(app.limits.check_phone_attempt("u1").is_ok());
        assert!(app.limits.check_phone_attempt("u2").is_err(), "the flag's 1");
    }
}

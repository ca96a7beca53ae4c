//! The mini programs this deployment serves, and how a request picks one.
use crate::error::{Error, Result};
use crate::wechat::client::AppCredentials;

/// One mini program: its WeChat credentials and its policies.
#[derive(Clone, Debug)]
pub struct App {
    pub creds: AppCredentials,
    /// VerifyToken refuses users without a bound phone (PHONE_REQUIRED).
    pub phone_required: bool,
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
        if app_id.len() > 64 {
            return Err(Error::invalid("app_id", "longer than 64 characters"));
        }
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
        App {
            creds: AppCredentials {
                app_id: id.into(),
                secret: "s".into(),
            },
            phone_required: false,
        }
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
}

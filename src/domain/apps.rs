//! The mini programs this deployment serves, and how a request picks one.
//! Users are per app; `unionid` links one person across apps.
use std::sync::Arc;

use crate::domain::crypto::push::PushKey;
use crate::domain::error::{Error, Result};
use crate::domain::input::AppId;
use crate::domain::limits::Limits;
use crate::domain::model::TokenPolicy;
use crate::domain::secret::Secret;

/// The credentials of one mini program.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub app_id: String,
    pub secret: Secret<String>,
}

/// What verifies an app's WeChat pushes (消息推送): the console's Token
/// and EncodingAESKey, both secrets.
#[derive(Clone, Debug)]
pub struct PushCredentials {
    pub token: Secret<String>,
    pub key: PushKey,
}

/// One mini program: its WeChat credentials and its policies (built from
/// the configuration by [`crate::config`]).
#[derive(Clone, Debug)]
pub struct App {
    pub creds: AppCredentials,
    /// VerifyToken refuses users without a bound phone (PHONE_REQUIRED).
    pub phone_required: bool,
    /// Token lifetimes and login window.
    pub policy: TokenPolicy,
    /// Per-user and per-app login and phone limits.
    pub limits: Arc<Limits>,
    /// Its push endpoint's secrets; `None`: its push URL answers 404.
    pub push: Option<PushCredentials>,
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
    pub fn resolve(&self, app_id: &AppId) -> Result<&App> {
        self.find(app_id.as_str())
    }

    /// The app with exactly this id (an empty one names none).
    pub fn get(&self, app_id: &str) -> Option<&App> {
        self.apps.iter().find(|a| !app_id.is_empty() && a.id() == app_id)
    }

    /// The app of a stored session or user (its id came in as an
    /// [`AppId`]).
    pub fn stored(&self, app_id: &str) -> Result<&App> {
        self.find(app_id)
    }

    fn find(&self, app_id: &str) -> Result<&App> {
        if app_id.is_empty() {
            return match self.apps.as_slice() {
                [only] => Ok(only),
                _ => Err(Error::invalid(
                    "app_id",
                    "required: several mini programs are configured",
                )),
            };
        }
        self.apps
            .iter()
            .find(|a| a.id() == app_id)
            .ok_or(Error::AppUnknown)
    }
}

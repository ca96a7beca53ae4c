//! [`Users`], FindUsers: internal services look users up by unionid (one
//! person across mini programs), by user_id, or by phone number (customer
//! support); never by openid. Phone numbers are sealed in the database, so
//! a number is looked up by its blind index, under every configured server
//! key (see [`crate::domain::at_rest`]).
use std::sync::Arc;

use crate::domain::apps::Apps;
use crate::domain::at_rest::{open_user, phone_lookup};
use crate::domain::crypto::ServerKeys;
use crate::domain::error::Result;
use crate::domain::input::PhoneNumber;
use crate::domain::model::User;
use crate::store::Store;

/// What FindUsers looks up.
#[derive(Clone, Debug)]
pub enum UserKey {
    Unionid(String),
    UserId(String),
    /// Exactly this number, as WeChat gave it (normalised: see
    /// [`PhoneNumber`]); Chinese numbers come without `+86`.
    PhoneNumber(PhoneNumber),
}

pub struct Users {
    store: Arc<dyn Store>,
    apps: Apps,
    keys: ServerKeys,
}

impl Users {
    pub fn new(store: Arc<dyn Store>, apps: Apps, keys: ServerKeys) -> Self {
        Self { store, apps, keys }
    }

    /// FindUsers: the users with a unionid or a phone number (oldest
    /// first, at most 100), or the user with an id, limited to the apps this
    /// deployment serves.
    pub async fn find_users(&self, key: &UserKey) -> Result<Vec<User>> {
        let users = match key {
            UserKey::Unionid(unionid) => self.store.users_by_unionid(unionid).await?,
            UserKey::UserId(id) => self.store.user(id).await?.into_iter().collect(),
            UserKey::PhoneNumber(number) => {
                let indexes = phone_lookup(&self.keys, number);
                self.store.users_by_phone(&indexes).await?
            }
        };
        Ok(users
            .into_iter()
            .filter(|u| self.apps.stored(&u.app_id).is_ok())
            .map(|u| open_user(&self.keys, u))
            .collect())
    }

    /// The user WeChat knows by `openid` in an app, for WeChat's own
    /// (signed) pushes; identity from a caller never comes this way.
    pub async fn by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User>> {
        let user = self.store.user_by_openid(app_id, openid).await?;
        Ok(user.map(|u| open_user(&self.keys, u)))
    }
}

//! [`Users`], FindUsers: internal services look users up by unionid (one
//! person across mini programs) or by user_id; never by openid. How long
//! what wxauth holds on users is kept: [`retention`].
pub mod retention;

use std::sync::Arc;

use crate::domain::apps::Apps;
use crate::domain::error::Result;
use crate::domain::model::User;
use crate::store::Store;

/// What FindUsers looks up.
#[derive(Clone, Debug)]
pub enum UserKey {
    Unionid(String),
    UserId(String),
}

pub struct Users {
    store: Arc<dyn Store>,
    apps: Apps,
}

impl Users {
    pub fn new(store: Arc<dyn Store>, apps: Apps) -> Self {
        Self { store, apps }
    }

    /// FindUsers: the users with a unionid, or the user with an id, limited
    /// to the apps this deployment serves.
    pub async fn find_users(&self, key: &UserKey) -> Result<Vec<User>> {
        let users = match key {
            UserKey::Unionid(unionid) => self.store.users_by_unionid(unionid).await?,
            UserKey::UserId(id) => self.store.user(id).await?.into_iter().collect(),
        };
        Ok(users
            .into_iter()
            .filter(|u| self.apps.stored(&u.app_id).is_ok())
            .collect())
    }
}

//! [`Users`]: what concerns a user's account as a whole. FindUsers:
//! internal services look users up by unionid (one person across mini
//! programs) or by user_id, never by openid. The personal-data lifecycle:
//! deletion with its cooling-off period ([`deletion`]), the export of
//! everything held on a person ([`export`]), and the profile the user chose
//! ([`profile`]).
pub mod deletion;
pub mod export;
pub mod profile;

use std::sync::Arc;

use crate::domain::apps::Apps;
use crate::domain::clock::Clock;
use crate::domain::error::{Error, Result};
use crate::domain::model::{User, UserChanges};
use crate::store::Store;

pub use export::UserExport;

/// What FindUsers looks up.
#[derive(Clone, Debug)]
pub enum UserKey {
    Unionid(String),
    UserId(String),
}

pub struct Users {
    store: Arc<dyn Store>,
    apps: Apps,
    clock: Clock,
    /// Told when a user's row changes or their sessions are revoked, so
    /// that this replica's VerifyToken cache drops them at once (the others
    /// hear it from the store's change feed).
    user_changes: Arc<dyn UserChanges>,
    /// The cooling-off period of a deletion, in milliseconds; 0 erases at once.
    deletion_delay_ms: i64,
}

impl Users {
    pub fn new(
        store: Arc<dyn Store>,
        apps: Apps,
        clock: Clock,
        user_changes: Arc<dyn UserChanges>,
        deletion_delay_ms: i64,
    ) -> Self {
        Self {
            store,
            apps,
            clock,
            user_changes,
            deletion_delay_ms,
        }
    }

    /// FindUsers: the users with a unionid, or the user with an id, limited
    /// to the apps this deployment serves.
    pub async fn find_users(&self, key: &UserKey) -> Result<Vec<User>> {
        let users = match key {
            UserKey::Unionid(unionid) => self.store.users_by_unionid(unionid).await?,
            UserKey::UserId(id) => self.store.user(id).await?.into_iter().collect(),
        };
        Ok(users.into_iter().filter(|u| self.serves(&u.app_id)).collect())
    }

    /// A user of an app this deployment serves, by id (an operator's subject).
    pub async fn served_user(&self, user_id: &str) -> Result<User> {
        let user = self.store.user(user_id).await?.ok_or(Error::UserNotFound)?;
        if !self.serves(&user.app_id) {
            return Err(Error::UserNotFound);
        }
        Ok(user)
    }

    fn serves(&self, app_id: &str) -> bool {
        self.apps.stored(app_id).is_ok()
    }
}

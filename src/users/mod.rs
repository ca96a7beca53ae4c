//! [`Users`]: what concerns a user's account as a whole. FindUsers:
//! internal services look users up by unionid (one person across mini
//! programs), by user_id, or by phone number (customer support); never by
//! openid. Phone numbers are sealed in the database, so a number is looked
//! up by its blind index, under every configured server key (see
//! [`crate::domain::at_rest`]). The personal-data lifecycle: deletion with
//! its cooling-off period ([`deletion`]), the export of everything held on
//! a person ([`export`]), and the profile the user chose ([`profile`]).
//! And [`privacy`]: WeChat's privacy events, which name users by openid
//! (the only lookup by openid, for a verified push). How long what wxauth
//! holds on users is kept: [`retention`].
pub mod deletion;
pub mod export;
pub mod privacy;
pub mod profile;
pub mod retention;

use std::sync::Arc;

use crate::domain::apps::Apps;
use crate::domain::at_rest::{open_user, phone_lookup};
use crate::domain::clock::Clock;
use crate::domain::crypto::ServerKeys;
use crate::domain::error::{Error, Result};
use crate::domain::input::PhoneNumber;
use crate::domain::model::{User, UserChanges};
use crate::store::Store;

pub use export::UserExport;

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
        keys: ServerKeys,
        clock: Clock,
        user_changes: Arc<dyn UserChanges>,
        deletion_delay_ms: i64,
    ) -> Self {
        Self {
            store,
            apps,
            keys,
            clock,
            user_changes,
            deletion_delay_ms,
        }
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
            .filter(|u| self.serves(&u.app_id))
            .map(|u| open_user(&self.keys, u))
            .collect())
    }

    /// A user of an app this deployment serves, by id (an operator's subject).
    pub async fn served_user(&self, user_id: &str) -> Result<User> {
        let user = self.store.user(user_id).await?.ok_or(Error::UserNotFound)?;
        if !self.serves(&user.app_id) {
            return Err(Error::UserNotFound);
        }
        Ok(open_user(&self.keys, user))
    }

    fn serves(&self, app_id: &str) -> bool {
        self.apps.stored(app_id).is_ok()
    }

    /// The user WeChat knows by `openid` in an app, for WeChat's own
    /// (signed) pushes; identity from a caller never comes this way.
    pub async fn by_openid(&self, app_id: &str, openid: &str) -> Result<Option<User>> {
        let user = self.store.user_by_openid(app_id, openid).await?;
        Ok(user.map(|u| open_user(&self.keys, u)))
    }
}

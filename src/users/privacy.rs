//! What WeChat's privacy events do ([`actions`]), and the parts of it that
//! belong to this flow: finding the user an event names, erasing a profile,
//! and remembering handled events so that WeChat's retries (up to ~4
//! deliveries, possibly overlapping) take effect once.
//!
//! The facade ([`crate::service`]) runs the actions; unbinding the phone and
//! deleting the user belong to the flows that own them.
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::clock::Clock;
use crate::domain::error::Result;
use crate::domain::model::{User, UserChanges};
use crate::domain::privacy::{revoke, PrivacyEvent, PrivacyKind};
use crate::store::Store;

/// One thing a privacy event makes wxauth do to the user it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nickname and avatar erased.
    EraseProfile,
    /// The phone unbound and its history erased.
    UnbindPhone,
    /// The user deleted at once, whatever `--deletion-delay` says.
    DeleteUser,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::EraseProfile => "erase_profile",
            Self::UnbindPhone => "unbind_phone",
            Self::DeleteUser => "delete_user",
        }
    }
}

/// The actions an event calls for, in order; none for events wxauth has
/// nothing to do about. Deleting the user erases everything, so it comes
/// alone.
pub fn actions(kind: &PrivacyKind) -> Vec<Action> {
    match kind {
        PrivacyKind::AccountCancelled => vec![Action::DeleteUser],
        PrivacyKind::UserInfoModified => vec![Action::EraseProfile],
        PrivacyKind::AuthorizationRevoked(items) => {
            let profile = [
                revoke::NICKNAME_AND_AVATAR,
                revoke::KEYBOARD_NICKNAME,
                revoke::AVATAR_COMPONENT,
            ];
            let mut actions = Vec::new();
            if items.iter().any(|i| profile.contains(i)) {
                actions.push(Action::EraseProfile);
            }
            if items.contains(&revoke::PHONE) {
                actions.push(Action::UnbindPhone);
            }
            actions
        }
        PrivacyKind::Other(_) => Vec::new(),
    }
}

/// RevokeInfo values wxauth holds nothing for (address, camera, ...):
/// acknowledged, and logged so that an operator sees them.
pub fn unhandled_revocations(kind: &PrivacyKind) -> Vec<u32> {
    let handled = [
        revoke::NICKNAME_AND_AVATAR,
        revoke::PHONE,
        revoke::KEYBOARD_NICKNAME,
        revoke::AVATAR_COMPONENT,
    ];
    match kind {
        PrivacyKind::AuthorizationRevoked(items) => {
            items.iter().copied().filter(|i| !handled.contains(i)).collect()
        }
        _ => Vec::new(),
    }
}

/// What handling an event came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The actions ran.
    Done(Vec<Action>),
    /// A delivery of an event already handled.
    Repeat,
    /// Nothing to do: an event wxauth does not act on, one without an
    /// openid, or a user wxauth does not know (never logged in, or deleted).
    Nothing(&'static str),
}

pub struct Privacy {
    store: Arc<dyn Store>,
    clock: Clock,
    user_changes: Arc<dyn UserChanges>,
    /// Keyed hashes of handled events (no openid kept in memory).
    handled: moka::sync::Cache<[u8; 32], ()>,
}

impl Privacy {
    /// `replay_window`: how long a handled event is remembered; beyond it
    /// the push endpoint refuses the delivery as stale anyway.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        user_changes: Arc<dyn UserChanges>,
        replay_window: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            user_changes,
            handled: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(replay_window.max(Duration::from_secs(60)))
                .build(),
        }
    }

    /// Whether this event (of this app) was handled already.
    pub fn is_repeat(&self, app_id: &str, event: &PrivacyEvent) -> bool {
        self.handled.contains_key(&key(app_id, event))
    }

    /// Remembers a handled event.
    pub fn remember(&self, app_id: &str, event: &PrivacyEvent) {
        self.handled.insert(key(app_id, event), ());
    }

    /// Erases the user's nickname and avatar; every VerifyToken cache drops
    /// its copy (this replica's at once, the others through the change feed).
    pub async fn erase_profile(&self, user: &User) -> Result<()> {
        self.store
            .erase_profile(&user.user_id, self.clock.now_ms())
            .await?;
        self.user_changes.user_changed(&user.user_id);
        Ok(())
    }
}

/// A retried delivery carries the same event: same app, user, kind,
/// CreateTime and RevokeInfo (the event has no MsgId).
fn key(app_id: &str, event: &PrivacyEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    let revoked = match &event.kind {
        PrivacyKind::AuthorizationRevoked(items) => {
            items.iter().map(u32::to_string).collect::<Vec<_>>().join("|")
        }
        _ => String::new(),
    };
    let time = event.create_time.map(|t| t.to_string()).unwrap_or_default();
    let parts = [
        app_id,
        event.openid.as_deref().unwrap_or(""),
        event.kind.name(),
        &time,
        &revoked,
    ];
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_maps_to_its_actions() {
        use Action::*;
        let revoked = |items: &[u32]| actions(&PrivacyKind::AuthorizationRevoked(items.to_vec()));
        assert_eq!(revoked(&[8]), [UnbindPhone]);
        assert_eq!(revoked(&[6]), [EraseProfile]);
        assert_eq!(revoked(&[19]), [EraseProfile]);
        assert_eq!(revoked(&[20, 8, 6]), [EraseProfile, UnbindPhone]);
        assert_eq!(revoked(&[1, 2, 99]), []);
        assert_eq!(revoked(&[]), []);
        assert_eq!(actions(&PrivacyKind::UserInfoModified), [EraseProfile]);
        assert_eq!(actions(&PrivacyKind::AccountCancelled), [DeleteUser]);
        assert_eq!(actions(&PrivacyKind::Other("event:debug_demo".into())), []);
        let kind = PrivacyKind::AuthorizationRevoked(vec![1, 8, 99]);
        assert_eq!(unhandled_revocations(&kind), [1, 99]);
    }

    #[test]
    fn a_retry_has_the_key_of_its_event_and_another_event_another() {
        let event = PrivacyEvent {
            openid: Some("o1".into()),
            kind: PrivacyKind::AuthorizationRevoked(vec![6, 8]),
            create_time: Some(7),
        };
        assert_eq!(key("wxa", &event), key("wxa", &event.clone()));
        assert_ne!(key("wxa", &event), key("wxb", &event));
        let later = PrivacyEvent {
            create_time: Some(8),
            ..event.clone()
        };
        assert_ne!(key("wxa", &event), key("wxa", &later));
        let other = PrivacyEvent {
            kind: PrivacyKind::AuthorizationRevoked(vec![6]),
            ..event.clone()
        };
        assert_ne!(key("wxa", &event), key("wxa", &other));
    }
}

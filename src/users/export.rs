//! ExportUser: everything wxauth holds on a person (PIPL Art. 45), without
//! secrets: the user row as VerifyToken shows it, the phone history, the
//! sessions by their public ids, and a pending deletion. Never a token, a
//! session_key or a code: the store's export reads do not return them.
use crate::domain::at_rest::open_phone_history;
use crate::domain::error::Result;
use crate::domain::model::{Deletion, PhoneHistoryEntry, SessionRecord, User};

use super::Users;

/// What ExportUser returns.
#[derive(Clone, Debug)]
pub struct UserExport {
    pub user: User,
    /// Oldest first.
    pub phone_history: Vec<PhoneHistoryEntry>,
    /// Newest first.
    pub sessions: Vec<SessionRecord>,
    /// Set while a deletion is pending.
    pub deletion: Option<Deletion>,
}

impl Users {
    /// The export of a user the caller is entitled to (the facade resolved
    /// the subject).
    pub async fn export(&self, user: User) -> Result<UserExport> {
        let (phone_history, sessions, deletion) = tokio::try_join!(
            self.store.phone_history(&user.user_id),
            self.store.user_sessions(&user.user_id),
            self.store.deletion(&user.user_id),
        )?;
        // Sealed like the user's number, under the user's id; a row that
        // does not open (its key was dropped) is left out, as a number that
        // does not open counts as not bound.
        let phone_history = phone_history
            .into_iter()
            .filter_map(|h| {
                let (phone_number, country_code) = open_phone_history(
                    &self.keys,
                    &user.user_id,
                    &h.phone_number,
                    h.country_code.as_ref(),
                )?;
                Some(PhoneHistoryEntry {
                    phone_number,
                    country_code,
                    replaced_at: h.replaced_at,
                })
            })
            .collect();
        tracing::info!(user_id = %user.user_id, "user data exported");
        Ok(UserExport {
            user,
            phone_history,
            sessions,
            deletion: deletion.filter(|d| d.erased_at.is_none()),
        })
    }
}

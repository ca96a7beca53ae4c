//! DeleteUser: account deletion. Every session is revoked at once (on every
//! replica within the revocation bound: the store's revocation reaches the
//! change feed, and this replica's cache is told directly); the user's rows
//! are erased at once, or when the cooling-off period (`--deletion-delay`)
//! is over, by [`Users::erase_due_deletions`] from the background janitor
//! or by the user's next login. What stays is the deletion record, without
//! personal data.
use crate::domain::error::{Error, Result};
use crate::domain::input::Reason;
use crate::domain::model::{Deletion, DeletionRequest, Requester};

use super::Users;

/// Due deletions erased per store round trip of the janitor.
const ERASE_BATCH: u32 = 100;

impl Users {
    /// Deletes a user: at once when there is no cooling-off period or
    /// WeChat asks (the WeChat account is gone), else when it ends. A
    /// repeated request answers the existing deletion (see
    /// [`crate::store::Store::schedule_deletion`]). A user already erased
    /// answers their record; an unknown one is USER_NOT_FOUND.
    pub async fn delete(&self, user_id: &str, requested_by: Requester, reason: &Reason) -> Result<Deletion> {
        match self.store.user(user_id).await? {
            Some(user) if !self.serves(&user.app_id) => return Err(Error::UserNotFound),
            Some(_) => {}
            // Erased already: a retry answers the same deletion.
            None => {
                return self
                    .store
                    .deletion(user_id)
                    .await?
                    .filter(|r| self.serves(&r.app_id))
                    .ok_or(Error::UserNotFound)
            }
        }
        let now = self.clock.now_ms();
        let delay = match requested_by {
            Requester::Wechat => 0,
            Requester::User | Requester::Operator => self.deletion_delay_ms,
        };
        let request = DeletionRequest {
            requested_by,
            reason: reason.as_str(),
            now,
            delete_at: now.saturating_add(delay),
        };
        let record = self
            .store
            .schedule_deletion(user_id, request)
            .await?
            .ok_or(Error::UserNotFound)?;
        // The sessions were revoked in the store; this replica's cache
        // learns it here, the others' from the change feed.
        self.user_changes.user_changed(user_id);
        tracing::info!(
            user_id,
            requested_by = requested_by.as_str(),
            delete_at = record.delete_at,
            "user deletion requested"
        );
        if record.erased_at.is_none() && record.delete_at <= now {
            self.erase(user_id, now).await?;
            return self.store.deletion(user_id).await?.ok_or(Error::UserNotFound);
        }
        Ok(record)
    }

    /// Erases every user whose deletion is due at `now`, in batches;
    /// returns how many were erased. Safe on several replicas at once: a
    /// user is erased once, and a deletion cancelled meanwhile is skipped.
    pub async fn erase_due_deletions(&self, now: i64) -> Result<u64> {
        let mut erased = 0;
        loop {
            let due = self.store.due_deletions(now, ERASE_BATCH).await?;
            for user_id in &due {
                erased += u64::from(self.erase(user_id, now).await?);
            }
            if due.len() < ERASE_BATCH as usize {
                return Ok(erased);
            }
        }
    }

    /// The deletion a user's own DeleteUser scheduled, for its retry: the
    /// token it sent was revoked by that very deletion (its revocation time
    /// is the request's), so the retry is answered, changing nothing. Any
    /// other dead token stays refused.
    pub async fn deletion_that_revoked(
        &self,
        user_id: &str,
        revoked_at: Option<i64>,
    ) -> Result<Option<Deletion>> {
        let record = self.store.deletion(user_id).await?;
        Ok(record.filter(|r| r.erased_at.is_none() && revoked_at == Some(r.requested_at)))
    }

    async fn erase(&self, user_id: &str, now: i64) -> Result<bool> {
        let erased = self.store.erase_user(user_id, now).await?;
        if erased {
            self.user_changes.user_changed(user_id);
            tracing::info!(user_id, "user erased");
        }
        Ok(erased)
    }
}

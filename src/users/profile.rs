//! UpdateProfile: the nickname and avatar the user chose in the mini
//! program (nickname input, chooseAvatar). Since 2022-11 getUserProfile
//! gives new mini program versions only "微信用户" and a grey avatar, so
//! this is where profiles come from now: user-supplied and unsigned, kept
//! within the limits [`crate::domain::input::ProfileUpdate`] checked.
use crate::domain::at_rest::open_user;
use crate::domain::error::Result;
use crate::domain::input::ProfileUpdate;
use crate::domain::model::User;

use super::Users;

impl Users {
    /// Stores the fields the update gives, keeping the others.
    pub async fn update_profile(&self, user: &User, update: &ProfileUpdate) -> Result<User> {
        let now = self.clock.now_ms();
        let user = self
            .store
            .set_profile(&user.user_id, update.profile(), now)
            .await?;
        // VerifyToken answers with the new profile: on this replica at
        // once, on the others through the change feed.
        self.user_changes.user_changed(&user.user_id);
        Ok(open_user(&self.keys, user))
    }
}

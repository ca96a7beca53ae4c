//! WeChat's privacy events as the domain sees them, once [`crate::wechat`]
//! has verified, decrypted and parsed a push: who (an openid of the app the
//! push was for) and what happened.

/// RevokeInfo values (/work/shared/wechat-push.md §5.2) wxauth acts on;
/// every other value is acknowledged and logged.
pub mod revoke {
    /// 昵称和头像: the nickname and avatar (legacy getUserInfo).
    pub const NICKNAME_AND_AVATAR: u32 = 6;
    /// 手机号: the phone number.
    pub const PHONE: u32 = 8;
    /// A nickname picked in the nickname keyboard.
    pub const KEYBOARD_NICKNAME: u32 = 19;
    /// An avatar picked in the avatar component (chooseAvatar).
    pub const AVATAR_COMPONENT: u32 = 20;
}

/// One verified event about one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyEvent {
    /// The user, within the app. WeChat has been seen to send
    /// `user_info_modified` without one: then there is nothing to do.
    pub openid: Option<String>,
    pub kind: PrivacyKind,
    /// `CreateTime` (Unix seconds) when present: with the rest, what tells a
    /// retried delivery from a new event (the event has no MsgId).
    pub create_time: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrivacyKind {
    /// `user_authorization_revoke`: the RevokeInfo values, in order.
    AuthorizationRevoked(Vec<u32>),
    /// `user_info_modified`: WeChat cleaned up the profile; refresh or clear it.
    UserInfoModified,
    /// `user_authorization_cancellation`: the WeChat account itself is gone.
    AccountCancelled,
    /// Any other event or message (its `Event` or `MsgType`, cut to a safe
    /// log field): acknowledged, nothing to do.
    Other(String),
}

impl PrivacyKind {
    /// A name for logs and metrics (never personal data).
    pub fn name(&self) -> &str {
        match self {
            Self::AuthorizationRevoked(_) => "user_authorization_revoke",
            Self::UserInfoModified => "user_info_modified",
            Self::AccountCancelled => "user_authorization_cancellation",
            Self::Other(name) => name,
        }
    }
}

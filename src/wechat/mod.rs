//! The WeChat HTTP client: the only code that knows WeChat's JSON, errcodes
//! and payload format (the simulator in [`crate::sim`] speaks the same).
pub mod client;
pub mod guard;
pub mod payload;
pub mod push;

pub use client::{AccessToken, PhoneInfo, WechatClient, WechatError};

//! Everything that knows WeChat's wire format: the HTTP client wxauth uses
//! and the simulator that stands in for WeChat in development and tests.
pub mod client;
pub mod guard;
pub mod payload;
pub mod sim;

pub use client::{AccessToken, PhoneInfo, WechatClient, WechatError};

#[cfg(test)]
mod tests;

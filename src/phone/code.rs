//! Phone codes are single use, and WeChat bills every exchange: each code
//! is exchanged once, whoever presents it and however often. As with
//! wx.login codes (`login/`), the code is claimed in the database before
//! WeChat is asked, so that concurrent or retried requests, on this replica
//! or another, wait for the claimant and share its answer; within one
//! process they also share one future ([`crate::domain::single_flight`]).
use std::sync::Arc;

use crate::domain::apps::App;
use crate::domain::at_rest::open_phone_code;
use crate::domain::error::{Error, Result};
use crate::domain::input::Code;
use crate::domain::model::{Phone, User};
use crate::domain::single_flight::{settled, Attempt};
use crate::phone::Phones;
use crate::store::PhoneClaim;

impl Phones {
    /// The phone a phone code stands for, if it was (or is now) exchanged
    /// for `user`; PHONE_CODE_USED if it went to someone else.
    pub(super) async fn phone_from_code(
        self: &Arc<Self>,
        app: &App,
        user: &User,
        code: &Code,
    ) -> Result<Phone> {
        let code_hash = self.keys.code_hash("phone", app.id(), code.expose());
        let shared = self
            .flights
            .run(
                &code_hash,
                self.settled_phone_exchange(app, user, code, &code_hash),
            )
            .await
            .result?;
        let (owner, phone) = &*shared;
        if *owner != user.user_id {
            return Err(Error::PhoneCodeUsed);
        }
        Ok(phone.clone())
    }

    /// [`Self::exchange_phone_code`] on a task of its own, so that a claim
    /// is settled even when the caller stops waiting.
    async fn settled_phone_exchange(
        self: &Arc<Self>,
        app: &App,
        user: &User,
        code: &Code,
        code_hash: &str,
    ) -> Result<(String, Phone)> {
        let this = self.clone();
        let (app, user) = (app.clone(), user.clone());
        let (code, code_hash) = (code.clone(), code_hash.to_owned());
        settled("phone code", async move {
            this.exchange_phone_code(&app, &user, &code, &code_hash).await
        })
        .await
    }

    /// Claims the code and asks WeChat, or waits for the claimant's answer.
    async fn exchange_phone_code(
        &self,
        app: &App,
        user: &User,
        code: &Code,
        code_hash: &str,
    ) -> Result<(String, Phone)> {
        let claim = self
            .claims
            .wait(|now, lease| async move {
                let claim = self
                    .store
                    .claim_phone_code(code_hash, &user.user_id, now, now - lease)
                    .await?;
                Ok(match claim {
                    PhoneClaim::Pending => Attempt::Pending,
                    settled => Attempt::Settled(settled),
                })
            })
            .await?;
        match claim {
            PhoneClaim::Done(owner, sealed) => match open_phone_code(&self.keys, code_hash, &sealed) {
                Some(phone) => Ok((owner, phone)),
                // Sealed under a server key no longer configured: the code
                // is spent at WeChat, and its answer is lost.
                None if owner == user.user_id => Err(Error::PhoneCodeInvalid),
                None => Err(Error::PhoneCodeUsed),
            },
            PhoneClaim::Acquired => {
                let looked_up = self.lookup_phone(app, user, code, code_hash).await;
                if looked_up.is_err() {
                    // No answer worth keeping: a retry may claim it again.
                    if let Err(e) = self.store.release_phone_code(code_hash).await {
                        tracing::warn!(error = %e, "could not release a phone code claim");
                    }
                }
                looked_up.map(|phone| (user.user_id.clone(), phone))
            }
            // Never settled: `wait` gives up instead.
            PhoneClaim::Pending => Err(Error::WechatUnavailable),
        }
    }
}

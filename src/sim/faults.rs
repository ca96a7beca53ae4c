//! Fault injection (`POST /sim/faults`) and call counting (`GET /sim/calls`).
use std::collections::BTreeMap;

use serde::Deserialize;

use super::state::SimState;

/// Endpoints the simulator serves, as named in `/sim/faults` and `/sim/calls`.
pub const ENDPOINTS: &[&str] = &[
    "jscode2session",
    "stable_token",
    "getuserphonenumber",
    "checksession",
    "resetusersessionkey",
];

/// A fault armed by `POST /sim/faults`: the next `times` calls of
/// `endpoint` wait `delay_ms`, then answer `http_status`, `errcode` or
/// `body` (sent as is with HTTP 200, e.g. malformed JSON).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fault {
    pub endpoint: String,
    pub errcode: Option<i64>,
    pub http_status: Option<u16>,
    pub delay_ms: Option<u64>,
    pub body: Option<String>,
    pub times: u32,
}

#[derive(Debug, Default)]
pub(super) struct Faults {
    armed: Vec<Fault>,
    calls: BTreeMap<String, u64>,
}

impl SimState {
    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        if !ENDPOINTS.contains(&fault.endpoint.as_str()) {
            return Err(format!("unknown endpoint {}", fault.endpoint));
        }
        self.lock().faults.armed.push(fault);
        Ok(())
    }

    /// Counts a call and takes the next armed fault for the endpoint, if any.
    pub fn record_call(&self, endpoint: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let faults = &mut inner.faults;
        *faults.calls.entry(endpoint.to_owned()).or_default() += 1;
        let i = faults
            .armed
            .iter()
            .position(|f| f.endpoint == endpoint && f.times > 0)?;
        let fault = faults.armed[i].clone();
        faults.armed[i].times -= 1;
        if faults.armed[i].times == 0 {
            faults.armed.remove(i);
        }
        Some(fault)
    }

    /// Calls per endpoint since start, every endpoint listed.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let mut calls: BTreeMap<String, u64> = ENDPOINTS.iter().map(|e| (e.to_string(), 0)).collect();
        calls.extend(self.lock().faults.calls.clone());
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::Clock;

    #[test]
    fn faults_fire_the_requested_number_of_times() {
        let s = SimState::new(Clock::adjustable(), vec![("wxapp".into(), "secret".into())]);
        s.add_fault(Fault {
            endpoint: "getuserphonenumber".into(),
            errcode: Some(-1),
            times: 2,
            ..Default::default()
        })
        .unwrap();
        assert!(s.record_call("getuserphonenumber").is_some());
        assert!(s.record_call("getuserphonenumber").is_some());
        assert!(s.record_call("getuserphonenumber").is_none());
        assert_eq!(s.calls()["getuserphonenumber"], 3);
        assert_eq!(s.calls()["checksession"], 0);
    }

    #[test]
    fn unknown_endpoints_are_refused() {
        let s = SimState::new(Clock::adjustable(), vec![]);
        let fault = Fault {
            endpoint: "getuserinfo".into(),
            errcode: Some(-1),
            times: 1,
            ..Default::default()
        };
        assert!(s.add_fault(fault).is_err());
    }
}

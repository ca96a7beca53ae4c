//! What `/metrics` shows: every app's circuit state from startup, billed
//! phone lookups counted only when WeChat was asked, latency by method and
//! status code, and never an identity or a secret as a label.
use std::collections::BTreeMap;

use serde_json::json;
use tonic::Code;

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(the_circuit_state_and_billed_lookups_are_scraped_with_their_values_and_no_identity_in_labels);

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            let Some((name, labels)) = series.split_once('{') else {
                return (series.to_owned(), BTreeMap::new(), value);
            };
            (name.to_owned(), labels_of(labels.trim_end_matches('}')), value)
        })
        .collect()
}

/// `a="x",b="y"`; wxauth's label values never contain quotes or commas.
fn labels_of(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
            (key.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

/// The value of the sample with this name whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn the_circuit_state_and_billed_lookups_are_scraped_with_their_values_and_no_identity_in_labels() {
    // Metrics are process-wide: an app id of its own keeps other tests' calls out.
    let app_id = format!("wxmetrics{}", hex::encode(rand::random::<[u8; 4]>()));
    let app = TestApp::spawn_for_app(&app_id, |c| {
        c.wechat_retries = 0;
        c.wechat_breaker_threshold = 1;
    })
    .await;
    let circuit = [("app_id", app_id.as_str())];
    let before = samples(&app.metrics().await);
    assert_eq!(
        value(&before, "wxauth_wechat_circuit_state", &circuit),
        Some(0.0),
        "registered closed before the first call"
    );
    assert_eq!(value(&before, "wxauth_phone_lookups_total", &circuit), None);

    let login = app.sim.new_code().await;
    let response = app.exchange(&login.code).await.unwrap();
    let token = response.session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
        .await;
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    app.access_token("").await.unwrap();

    // A failed login opens the breaker; the next lookup is refused unsent.
    app.sim
        .fault(json!({"endpoint": "jscode2session", "errcode": -1, "times": 1}))
        .await;
    let failed = app.sim.new_code().await.code;
    assert!(app.exchange(&failed).await.is_err());
    let refused = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
        .await;
    assert_error(
        app.bind_code(&token, &refused.phone_code).await,
        Code::Unavailable,
        "WECHAT_UNAVAILABLE",
    );

    let text = app.metrics().await;
    let after = samples(&text);
    assert_eq!(
        value(&after, "wxauth_wechat_circuit_state", &circuit),
        Some(1.0),
        "open"
    );
    assert_eq!(
        value(&after, "wxauth_phone_lookups_total", &circuit),
        Some(1.0),
        "the refused lookup was not billed"
    );
    let bind_unavailable = [("method", "BindPhone"), ("code", "Unavailable")];
    assert!(value(&after, "wxauth_rpc_duration_seconds_count", &bind_unavailable).unwrap() >= 1.0);
    for cache in ["access_token", "code_flight"] {
        assert!(
            value(&after, "wxauth_cache_requests_total", &[("cache", cache)]).is_some(),
            "{cache} cache lookups are counted:\n{text}"
        );
    }

    // No label of any sample (of any test in this process) is an identity or a secret.
    let user = response.user.unwrap();
    let identities = [
        &login.openid,
        &login.session_key,
        &login.code,
        &token,
        &user.user_id,
        &phone.phone_code,
    ];
    for (name, labels, _) in &after {
        for value in labels.values() {
            assert!(
                !identities.contains(&value),
                "{name} has an identity label {value}"
            );
            assert!(
                !value.starts_with("usr_") && !value.starts_with("wxa1_"),
                "{name} has a label that looks like an identity: {value}"
            );
        }
    }
}

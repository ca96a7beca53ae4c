//! Prometheus metrics (served on their own port by `crate::app::metrics`). Labels are
//! method names, status codes, endpoints, errcodes and app ids: never a
//! secret, an openid, a user id or a token.
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder (metrics are global by nature; installing it
/// twice, as tests with several servers do, returns the first one). Installed
/// when wxauth is built, served or not, so that handles registered early
/// are the recorder's and not no-ops.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist when wxauth is embedded; then ours
        // renders nothing, which beats failing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Metric handles by their labels, registered once: recording through a
/// handle is an atomic add, where the macros would build and look up the
/// key on every call (they are on the path of every RPC).
struct Handles<K, H>(RwLock<HashMap<K, H, FixedHasher>>);

// `HashMap::new` is not const; a fixed hasher is fine for a handful of
// static labels chosen by wxauth, never by a caller.
type FixedHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

impl<K: std::hash::Hash + Eq + Copy, H: Clone> Handles<K, H> {
    const fn new() -> Self {
        Self(RwLock::new(HashMap::with_hasher(FixedHasher::new())))
    }

    fn get(&self, key: K, register: impl FnOnce() -> H) -> H {
        if let Some(h) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return h.clone();
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(register).clone()
    }
}

/// One served RPC.
pub fn rpc(method: &'static str, code: tonic::Code, elapsed: Duration) {
    static HANDLES: Handles<(&'static str, i32), (Counter, Histogram)> = Handles::new();
    let (count, latency) = HANDLES.get((method, code as i32), || {
        let code = format!("{code:?}");
        (
            counter!("wxauth_rpc_requests_total", "method" => method, "code" => code.clone()),
            histogram!("wxauth_rpc_duration_seconds", "method" => method, "code" => code),
        )
    });
    count.increment(1);
    latency.record(elapsed.as_secs_f64());
}

/// A request AuthService's caller policy refused (`reason` is
/// `CALLER_UNKNOWN` or `CALLER_FORBIDDEN`).
pub fn caller_refused(reason: &'static str, method: &'static str) {
    counter!("wxauth_caller_refusals_total", "reason" => reason, "method" => method).increment(1);
}

/// One HTTP attempt at WeChat; `outcome` is the errcode, or `http_5xx`,
/// `transport`, `malformed`.
pub fn wechat_attempt(endpoint: &'static str, outcome: String, elapsed: Duration) {
    counter!("wxauth_wechat_calls_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    histogram!("wxauth_wechat_call_duration_seconds", "endpoint" => endpoint).record(elapsed.as_secs_f64());
}

pub fn wechat_retry(endpoint: &'static str) {
    counter!("wxauth_wechat_retries_total", "endpoint" => endpoint).increment(1);
}

/// Circuit breaker state per app: 0 closed, 1 open, 2 probing.
pub fn circuit_state(app_id: &str, state: u8) {
    gauge!("wxauth_wechat_circuit_state", "app_id" => app_id.to_owned()).set(f64::from(state));
}

/// Every app's circuit starts closed: its gauge exists before the first
/// WeChat call, so dashboards and alerts see every app from the start.
pub fn register_apps<'a>(app_ids: impl IntoIterator<Item = &'a str>) {
    for app_id in app_ids {
        circuit_state(app_id, 0);
    }
}

/// 1 while the built-in WeChat simulator stands in for WeChat (fake
/// logins): an alert on it catches a production replica started without
/// its app secret.
pub fn simulator_active(active: bool) {
    gauge!("wxauth_simulator_active").set(if active { 1.0 } else { 0.0 });
}

/// A lookup in one of the in-process caches: `access_token` (an app's
/// WeChat access token), `code_flight` (a hit joined a concurrent exchange
/// of the same login code), `check_session` (WeChat's checksession answer).
pub fn cache(cache: &'static str, hit: bool) {
    static HANDLES: Handles<(&'static str, bool), Counter> = Handles::new();
    HANDLES
        .get((cache, hit), || {
            let result = if hit { "hit" } else { "miss" };
            counter!("wxauth_cache_requests_total", "cache" => cache, "result" => result)
        })
        .increment(1);
}

/// Database pool usage, sampled at scrape time.
pub fn pool(size: u32, idle: u32, max: u32) {
    gauge!("wxauth_db_pool_connections").set(f64::from(size));
    gauge!("wxauth_db_pool_idle_connections").set(f64::from(idle));
    gauge!("wxauth_db_pool_max_connections").set(f64::from(max));
}

/// One billed getuserphonenumber call.
pub fn phone_lookup(app_id: &str) {
    counter!("wxauth_phone_lookups_total", "app_id" => app_id.to_owned()).increment(1);
}

/// `count` connections a listener (`grpc`, `metrics`, `simulator`) closed
/// at once because it had as many as it may hold; `0` registers the series.
pub fn connection_refused(listener: &'static str, count: u64) {
    counter!("wxauth_connections_refused_total", "listener" => listener).increment(count);
}

/// One WeChat push to a configured app's push URL, by what became of it
/// (`handled`, `repeat`, `ignored`, `refused_*`, `malformed`, `failed`).
pub fn wechat_push(app_id: &str, outcome: &'static str) {
    counter!("wxauth_wechat_pushes_total", "app_id" => app_id.to_owned(), "outcome" => outcome).increment(1);
}

/// A request whose protobuf `message` (e.g. `ExchangeCodeRequest`) did not
/// decode: a client bug, counted apart from server faults.
pub fn malformed_request(message: &'static str) {
    counter!("wxauth_malformed_requests_total", "message" => message).increment(1);
}

/// Rows the janitor deleted from `table` (`crate::users::retention`);
/// `0` registers the series, so a dashboard sees every table from startup.
pub fn purged_rows(table: &'static str, count: u64) {
    static HANDLES: Handles<&'static str, Counter> = Handles::new();
    HANDLES
        .get(table, || counter!("wxauth_purged_rows_total", "table" => table))
        .increment(count);
}

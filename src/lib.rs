//! wxauth: a gRPC identity service for WeChat Mini Programs.
//!
//! # Layout
//! Folders depend downwards only: each may use the ones listed after it (a
//! unit test below checks it, and that this map names every module).
//! - [`app`]: startup. Builds everything from the configuration, binds, serves
//!   gRPC with health and reflection, drains on shutdown; [`app::health`]
//!   (SERVING while the database answers), [`app::metrics`] (`/metrics`),
//!   [`app::check`] (`wxauth check`), [`app::telemetry`] (logging).
//! - [`grpc`]: the edge, the only code that touches generated proto types.
//!   [`grpc::auth`] holds the AuthService handlers; [`grpc::requests`]
//!   parses request fields once into domain types and [`grpc::convert`]
//!   turns domain answers into messages; [`grpc::status`] is the only
//!   mapping from the error enum to `tonic::Status`; [`grpc::codec`] answers
//!   undecodable requests INVALID_ARGUMENT; [`grpc::access`] sets TLS and the
//!   HTTP/2 limits of the port and [`grpc::callers`] decides who may call
//!   which method; the fuzz entry points ([`grpc::fuzzing`], feature
//!   `fuzzing`).
//! - [`http`]: the HTTP edges beside gRPC: WeChat's message-push URL
//!   ([`http::push`], `--wechat-push-listen`), which picks its own HTTP
//!   statuses; the push fuzz entry points ([`http::fuzzing`], feature
//!   `fuzzing`).
//! - [`config`]: flags, `WXAUTH_*` environment and the TOML file
//!   ([`config::file`]), the only code reading the environment; secrets in
//!   redacting wrappers; [`config::apps`] turns them into the domain's apps.
//! - [`service`]: [`service::Wxauth`], the facade `grpc` talks to: it owns
//!   one component per flow and composes them where one RPC needs two
//!   (ExchangeCode with a phone, BindPhone with a login code).
//! - One folder per flow, each a component owning its state (`Logins`,
//!   `Phones`, `Sessions`, `Users`) with its shared dependencies given to its
//!   constructor; no tonic or prost inside, and no flow imports another:
//!   - [`login`]: ExchangeCode: code claims and single flight, first-sight
//!     registration, legacy user info ([`login::user_info`]).
//!   - [`phone`]: BindPhone and UnbindPhone: the legacy payload, phone
//!     codes ([`phone::code`]), and what phone data may bind
//!     ([`phone::checks`]).
//!   - [`session`]: VerifyToken, CheckSession, RevokeToken, and their hot
//!     path: recently verified sessions ([`session::cache`]), cold lookups
//!     batched ([`session::loader`]), last-seen times written in batches
//!     ([`session::last_seen`]).
//!   - [`users`]: FindUsers, by unionid, user id or phone number (its blind
//!     index), and the personal-data lifecycle: DeleteUser with its
//!     cooling-off period and the erasure ([`users::deletion`]), ExportUser
//!     ([`users::export`]), UpdateProfile ([`users::profile`]), and WeChat's
//!     privacy events ([`users::privacy`]: what each does, profile erasure,
//!     retried deliveries taking effect once); the janitor that deletes
//!     what is past its retention ([`users::retention`]).
//! - [`access_token`]: GetAccessToken: `AccessTokens`, one WeChat access
//!   token per app shared by every replica; below the flows, since phone and
//!   session call WeChat with it.
//! - [`sim`]: the WeChat simulator, a product of its own over real HTTP:
//!   its routes ([`sim::api`]), users and codes ([`sim::state`]), session_key
//!   signatures ([`sim::session_key`]), phone data ([`sim::phone`]), access
//!   tokens ([`sim::tokens`]), injected faults ([`sim::faults`]), WeChat's
//!   error messages ([`sim::errmsg`]) and message pushes ([`sim::push`]).
//! - [`wechat`]: the WeChat HTTP client ([`wechat::client`]), the only code
//!   that knows WeChat's JSON, errcodes and payload format
//!   ([`wechat::payload`]) and its message pushes ([`wechat::push`]: query,
//!   JSON/XML body, modes, signatures, the privacy event); the circuit
//!   breaker and outbound limit ([`wechat::guard`]).
//! - [`store`]: the `Store` trait and all SQL: [`store::sqlite`],
//!   [`store::postgres`], the statements both share ([`store::shared`]),
//!   row types ([`store::rows`]), database errors ([`store::errors`]), the
//!   PostgreSQL change feed ([`store::pg_changes`]), the contract tests both
//!   pass, and the PostgreSQL test schema ([`store::testing`], feature
//!   `testing`).
//! - [`domain`]: what every layer shares: the model ([`domain::model`]), the
//!   one error enum ([`domain::error`]), the clock ([`domain::clock`]),
//!   secrets ([`domain::secret`]), tokens, hashes, AES and sealing
//!   ([`domain::crypto`], pure functions, WeChat's push crypto among them;
//!   [`domain::at_rest`] seals what the store keeps and opens what it
//!   returns), WeChat's privacy events as the domain sees them
//!   ([`domain::privacy`]), field limits ([`domain::validation`]), request fields
//!   as parsed types ([`domain::input`]: codes, app ids), the configured apps
//!   ([`domain::apps`]) and their rate limits ([`domain::limits`]), metrics
//!   ([`domain::metrics`]), the one accept loop of every listener
//!   ([`domain::listener`]: connection cap, handshake and idle timeouts), the
//!   caller's deadline ([`domain::deadline`], set by `grpc`, read by
//!   `wechat`), and [`domain::single_flight`], the one "once, whoever asks"
//!   mechanism (in process and by database claim) behind login codes, phone
//!   codes and access tokens.
//!
//! # Invariants
//! - A session_key, the app secret, a raw token or a code never reaches a
//!   response, a log line or an error message: they live in
//!   [`domain::secret::Secret`], whose `Debug`/`Display` are redacted.
//! - The database holds only session ids; a token also needs the server key's MAC.
//! - The database holds secrets (session_keys, access tokens) and phone
//!   numbers only sealed under the server key: the store takes and returns
//!   [`domain::crypto::Sealed`] (users as `User<Sealed>`), and
//!   [`domain::at_rest`] alone seals and opens them; the flows see
//!   plaintext `User`s. Phone numbers are compared by a keyed blind index,
//!   never by their ciphertexts.
//! - Identity comes from a code or a token, never from an openid a caller
//!   sends; the one lookup by openid is for a WeChat push whose body
//!   `msg_signature` and the app's EncodingAESKey authenticate.
//! - Only [`grpc`] touches generated proto types, and only [`grpc::status`]
//!   chooses gRPC status codes (and [`http::push`] the push URL's HTTP
//!   ones); only [`wechat`] (and the [`sim`] that imitates it) knows
//!   WeChat's JSON, XML and errcodes; only [`store`] holds
//!   SQL; only [`config`] reads the environment (test support aside).
//! - Parse, don't re-validate: [`grpc::requests`] turns request fields into
//!   [`domain::input`] types once; the flows take those types and do not
//!   check them again.
//! - With `[[callers]]`, no AuthService handler runs for an unknown caller or
//!   a method outside its policy; health and reflection stay open. Naming a
//!   user by id (DeleteUser, ExportUser) needs an operator caller.
//! - An erased user leaves only a deletion record without personal data;
//!   SQLite overwrites the freed bytes and empties the WAL after erasing. API keys
//!   exist in wxauth only as SHA-256 hashes and are never logged.
#![forbid(unsafe_code)]

pub mod access_token;
pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod login;
pub mod phone;
pub mod service;
pub mod session;
pub mod sim;
pub mod store;
pub mod users;
pub mod wechat;

pub use app::Application;
pub use config::Config;
pub use domain::clock::Clock;

/// The `# Layout` above is the code tour: these tests keep it true.
#[cfg(test)]
mod layout {
    use std::path::{Path, PathBuf};

    /// Top-level modules from the highest layer down. A module may use
    /// only the ones after its own rank; the flows share one rank, so no
    /// flow uses another.
    const RANKS: &[&[&str]] = &[
        &["app"],
        &["grpc", "http"],
        &["config"],
        &["service"],
        &["login", "phone", "session", "users"],
        &["access_token"],
        &["sim"],
        &["wechat"],
        &["store"],
        &["domain"],
    ];

    fn rank(module: &str) -> Option<usize> {
        RANKS.iter().position(|rank| rank.contains(&module))
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// Every `.rs` file below `dir`.
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The module path of a file: `src/session/cache.rs` is `session::cache`.
    fn module_of(file: &Path) -> Vec<String> {
        let rel = file.strip_prefix(src()).unwrap().with_extension("");
        rel.iter()
            .map(|c| c.to_string_lossy().into_owned())
            .filter(|c| c != "mod")
            .collect()
    }

    /// The top-level modules a file names in code (comments skipped).
    fn uses(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        }
        found
    }

    #[test]
    fn the_tree_has_at_most_sixteen_entries_and_the_ranks_name_them_all() {
        let entries: Vec<String> = std::fs::read_dir(src())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // 16: `http/` (the HTTP edges beside gRPC) joined the 15 of issue 12.
        assert!(
            entries.len() <= 16,
            "src/ has {} entries: {entries:?}",
            entries.len()
        );
        for entry in entries {
            let module = entry.trim_end_matches(".rs");
            assert!(
                rank(module).is_some() || module == "lib" || module == "main",
                "{entry} has no rank in the layout test"
            );
        }
    }

    #[test]
    fn folders_depend_downwards_only() {
        let mut all = Vec::new();
        files(&src(), &mut all);
        let mut wrong = Vec::new();
        for file in all {
            let module = module_of(&file);
            let Some(own) = module.first().and_then(|m| rank(m)) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text) {
                let Some(theirs) = rank(&used) else { continue };
                if used != module[0] && theirs <= own {
                    wrong.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
        wrong.sort();
        wrong.dedup();
        assert!(wrong.is_empty(), "upward or sideways uses:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_layout_names_every_module() {
        let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
        let layout = &lib[lib.find("# Layout").unwrap()..lib.find("# Invariants").unwrap()];
        let mut all = Vec::new();
        files(&src(), &mut all);
        let mut missing = Vec::new();
        for file in all {
            let module = module_of(&file);
            // Test-only modules are documented where they live.
            if module.len() > 2 || module.iter().any(|m| m.contains("tests")) {
                continue;
            }
            let name = module.join("::");
            if name == "lib" || name == "main" {
                continue;
            }
            if !layout.contains(&format!("[`{name}`]")) {
                missing.push(name);
            }
        }
        missing.sort();
        assert!(missing.is_empty(), "missing from the Layout: {missing:?}");
    }
}

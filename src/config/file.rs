//! The optional TOML configuration file (`--config` / `WXAUTH_CONFIG`).
//!
//! Precedence is the usual one: flags, then `WXAUTH_*` environment
//! variables, then the file, then built-in defaults. The file's top-level
//! keys are the long flag names with `_` for `-` (`login_window = "90s"`);
//! `[[apps]]` tables configure several mini programs and `[[callers]]` the
//! services allowed to call AuthService. Secrets are never accepted inline:
//! an app's secret comes from an environment variable (`secret_env`) or a
//! file (`secret_file`); a caller's API key appears only as its SHA-256.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches};
use serde::Deserialize;

use crate::config::Cli;
use crate::domain::secret::Secret;

/// Flags whose values are secrets: not allowed in the file.
const SECRET_KEYS: &[&str] = &[
    "app_secret",
    "server_key",
    "previous_server_keys",
    "wechat_push_token",
    "wechat_push_aes_key",
];

/// One mini program from `[[apps]]`. Unset settings fall back to the
/// top-level ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    pub app_id: String,
    /// Environment variable holding the AppSecret.
    pub secret_env: Option<String>,
    /// File holding the AppSecret (e.g. a mounted Kubernetes Secret).
    pub secret_file: Option<PathBuf>,
    pub phone_required: Option<bool>,
    #[serde(default, with = "humantime_serde_opt")]
    pub token_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub token_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub login_window: Option<Duration>,
    pub user_login_limit: Option<u32>,
    pub user_phone_limit: Option<u32>,
    pub app_login_limit: Option<u32>,
    pub app_phone_limit: Option<u32>,
    pub phone_lookups_per_day: Option<u32>,
    /// Environment variable holding the message-push Token.
    pub push_token_env: Option<String>,
    /// File holding the message-push Token.
    pub push_token_file: Option<PathBuf>,
    /// Environment variable holding the message-push EncodingAESKey.
    pub push_aes_key_env: Option<String>,
    /// File holding the message-push EncodingAESKey.
    pub push_aes_key_file: Option<PathBuf>,
}

/// An app's push Token and EncodingAESKey, as configured (unchecked).
pub type PushSecrets = (Option<Secret<String>>, Option<Secret<String>>);

impl AppEntry {
    /// The app's secret, from its environment variable or file.
    pub fn secret(&self) -> anyhow::Result<Secret<String>> {
        self.read("secret", &self.secret_env, &self.secret_file)?
            .with_context(|| {
                format!(
                    "app {}: set exactly one of secret_env and secret_file",
                    self.app_id
                )
            })
    }

    /// The app's push Token and EncodingAESKey, each from its environment
    /// variable or file; `None` when neither is configured.
    pub fn push_secrets(&self) -> anyhow::Result<PushSecrets> {
        Ok((
            self.read("push_token", &self.push_token_env, &self.push_token_file)?,
            self.read("push_aes_key", &self.push_aes_key_env, &self.push_aes_key_file)?,
        ))
    }

    /// The secret `{what}_env` or `{what}_file` names; `None` with neither.
    fn read(
        &self,
        what: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> anyhow::Result<Option<Secret<String>>> {
        let value = match (env, file) {
            (Some(var), None) => std::env::var(var)
                .with_context(|| format!("app {}: environment variable {var} is not set", self.app_id))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("app {}: reading {}", self.app_id, path.display()))?,
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => bail!("app {}: set {what}_env or {what}_file, not both", self.app_id),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            bail!("app {}: the {what} is empty", self.app_id);
        }
        Ok(Some(Secret::new(value)))
    }
}

/// One service allowed to call AuthService, from `[[callers]]`: how it
/// proves who it is (any one of its credentials will do) and which methods
/// it may call. Checked when the server starts (`grpc::callers`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerEntry {
    /// Shown in logs and errors; never a secret.
    pub name: String,
    /// SHA-256 (hex) of the caller's API key, sent as `authorization: Bearer KEY`.
    /// A list during a key rotation.
    #[serde(default, deserialize_with = "one_or_many")]
    pub api_key_sha256: Vec<String>,
    /// SHA-256 fingerprint (hex, `:` allowed) of the caller's client certificate.
    #[serde(default, deserialize_with = "one_or_many")]
    pub cert_sha256: Vec<String>,
    /// A DNS name in the subjectAltName of the caller's client certificate,
    /// which `--tls-client-ca` has verified.
    pub cert_dns_name: Option<String>,
    /// The AuthService methods it may call, e.g. `["VerifyToken"]`.
    pub methods: Vec<String>,
    /// An operator may name users by id in DeleteUser and ExportUser
    /// (other callers only act for the user whose session token they send).
    #[serde(default)]
    pub operator: bool,
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::config::duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses the command line, layering the configuration file under flags
/// and environment variables.
pub fn parse_cli<I, T>(args: I) -> anyhow::Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    let mut tables = Tables::default();
    if let Some(path) = config_path(&args) {
        tables = read(&path)?;
        for (key, value) in std::mem::take(&mut tables.settings) {
            if SECRET_KEYS.contains(&key.as_str()) {
                bail!(
                    "{}: `{key}` is a secret: set it in the environment, not in a file",
                    path.display()
                );
            }
            if key == "config" || !command.get_arguments().any(|a| a.get_id() == key.as_str()) {
                bail!("{}: unknown setting `{key}`", path.display());
            }
            command = command.mut_arg(key.as_str(), |a| a.default_value(value));
        }
    }
    let matches = command.try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.read_secrets(|name| std::env::var_os(name))?;
    cli.config.apps = tables.apps;
    cli.config.callers = tables.callers;
    Ok(cli)
}

/// `--config PATH`, `--config=PATH` or `WXAUTH_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(|p| PathBuf::from(p.as_ref()));
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("WXAUTH_CONFIG").map(PathBuf::from)
}

/// A setting's long name (with `_`) and its value as a flag would give it.
type Setting = (String, String);

/// What a configuration file holds.
#[derive(Default)]
struct Tables {
    settings: Vec<Setting>,
    apps: Vec<AppEntry>,
    callers: Vec<CallerEntry>,
}

/// The file's top-level settings as strings, its apps and its callers.
fn read(path: &Path) -> anyhow::Result<Tables> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("parsing {}: {}", path.display(), redacted(&text, &e))
    })?;
    let apps = array_of_tables(&mut table, "apps", path)?;
    let callers = array_of_tables(&mut table, "callers", path)?;
    let mut settings = Vec::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!(
                "{}: `{key}` must be a string, number or boolean, not {}",
                path.display(),
                other.type_str()
            ),
        };
        settings.push((key, value));
    }
    Ok(Tables {
        settings,
        apps,
        callers,
    })
}

/// Where a parse error is and what is wrong, without the line itself,
/// which toml's own message quotes and which may hold a password (a
/// database URL).
fn redacted(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', "; ");
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// `[[name]]` entries, removed from the top-level table.
fn array_of_tables<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
    path: &Path,
) -> anyhow::Result<Vec<T>> {
    match table.remove(name) {
        Some(value) => value
            .try_into::<Vec<T>>()
            .with_context(|| format!("{}: [[{name}]]", path.display())),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let f = file("login_window = \"90s\"\ntoken_lifetime = \"10d\"\n");
        let path = f.path().to_str().unwrap();
        let cli = parse_cli(["wxauth", "--config", path, "--login-window", "5s"]).unwrap();
        assert_eq!(cli.config.login_window, Duration::from_secs(5));
        assert_eq!(cli.config.token_lifetime, Duration::from_secs(10 * 86400));
        assert_eq!(
            cli.config.token_idle_timeout,
            Duration::from_secs(7 * 86400),
            "default"
        );
    }

    #[test]
    fn secrets_and_unknown_keys_are_refused() {
        for text in [
            "app_secret = \"x\"\n",
            "server_key = \"x\"\n",
            "previous_server_keys = \"x\"\n",
            "wechat_push_token = \"x\"\n",
            "no_such_thing = 1\n",
        ] {
            let f = file(text);
            let path = f.path().to_str().unwrap();
            assert!(parse_cli(["wxauth", "--config", path]).is_err(), "{text}");
        }
    }

    #[test]
    fn apps_come_from_the_file_with_secrets_from_files() {
        let secret = file("s3cret\n");
        let f = file(&format!(
            "[[apps]]\napp_id = \"wxa\"\nsecret_file = \"{}\"\nphone_required = true\nlogin_window = \"0s\"\n\n\
             [[apps]]\napp_id = \"wxb\"\nsecret_env = \"WXAUTH_TEST_NO_SUCH_VAR\"\n",
            secret.path().display()
        ));
        let cli = parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).unwrap();
        let apps = &cli.config.apps;
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].secret().unwrap().expose(), "s3cret");
        assert_eq!(apps[0].login_window, Some(Duration::ZERO));
        assert!(apps[1].secret().is_err(), "unset variable");
        assert!(!format!("{apps:?}").contains("s3cret"));
    }

    #[test]
    fn callers_come_from_the_file_with_one_or_several_hashes() {
        let f = file(
            "[[callers]]\nname = \"bff\"\napi_key_sha256 = \"ab\"\nmethods = [\"ExchangeCode\"]\n\n\
             [[callers]]\nname = \"orders\"\ncert_sha256 = [\"01\", \"02\"]\ncert_dns_name = \"orders.internal\"\n\
             methods = [\"VerifyToken\", \"FindUsers\"]\n",
        );
        let cli = parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).unwrap();
        let callers = &cli.config.callers;
        assert_eq!(callers.len(), 2);
        assert_eq!(callers[0].api_key_sha256, ["ab"]);
        assert!(callers[0].cert_sha256.is_empty());
        assert_eq!(callers[1].cert_sha256, ["01", "02"]);
        assert_eq!(callers[1].cert_dns_name.as_deref(), Some("orders.internal"));
        assert_eq!(callers[1].methods, ["VerifyToken", "FindUsers"]);
    }

    #[test]
    fn a_parse_error_names_the_line_but_never_quotes_it() {
        for text in [
            "log = \"info\"\ndatabase_url = postgres://wxauth:hunter2@db/wxauth\n",
            "log = \"info\"\ndatabase_url = \"postgres://wxauth:hunter2@db/wxauth\n",
            "log = \"info\"\ndatabase_url = \"postgres://wxauth:hunter2@db/wxauth\" x\n",
            "log = \"info\"\ndatabase_url = [\"postgres://wxauth:hunter2@db/wxauth\"]\n",
        ] {
            let f = file(text);
            let error = parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).unwrap_err();
            let shown = format!("{error:#} {error:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(&f.path().display().to_string()), "{shown}");
        }
        let f = file("log = \"info\"\ndatabase_url = postgres://wxauth:hunter2@db/wxauth\n");
        let error = parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(format!("{error:#}").contains("line 2, column"), "{error:#}");
    }

    #[test]
    fn a_file_duration_beyond_a_hundred_years_is_refused() {
        let f = file("[[apps]]\napp_id = \"wxa\"\nsecret_env = \"X\"\ntoken_lifetime = \"2000y\"\n");
        let error = parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(format!("{error:#}").contains("at most 100 years"), "{error:#}");
        let f = file("token_cache_ttl = \"2000y\"\n");
        assert!(parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).is_err());
    }

    #[test]
    fn an_inline_api_key_is_refused() {
        let f = file("[[callers]]\nname = \"bff\"\napi_key = \"k\"\nmethods = []\n");
        assert!(parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).is_err());
    }

    #[test]
    fn an_inline_app_secret_is_refused() {
        let f = file("[[apps]]\napp_id = \"wxa\"\nsecret = \"inline\"\n");
        assert!(parse_cli(["wxauth", "--config", f.path().to_str().unwrap()]).is_err());
    }
}

//! The deployment files name only settings wxauth reads: the Kubernetes
//! ConfigMap is a configuration file wxauth accepts, and every `WXAUTH_*`
//! variable in the Dockerfile and the manifests is one of its options, one
//! of its secrets, or an app secret the ConfigMap points at.
use std::collections::BTreeSet;

use clap::CommandFactory;
use wxauth::config::file::parse_cli;
use wxauth::config::Cli;

const CONFIG_MAP: &str = include_str!("../../deploy/kubernetes/configmap.yaml");
const DEPLOYMENT: &str = include_str!("../../deploy/kubernetes/deployment.yaml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");

/// The ConfigMap's `wxauth.toml: |` block, unindented.
fn config_map_toml() -> String {
    let block = CONFIG_MAP
        .split_once("  wxauth.toml: |\n")
        .expect("configmap.yaml holds wxauth.toml")
        .1;
    block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start_matches("    ")))
        .collect()
}

/// The configuration wxauth builds from the ConfigMap's file.
fn config_map_cli() -> Cli {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxauth.toml");
    std::fs::write(&path, config_map_toml()).unwrap();
    parse_cli(["wxauth", "--config", path.to_str().unwrap()]).expect("wxauth accepts the ConfigMap")
}

#[test]
fn the_config_map_is_a_configuration_file_wxauth_accepts() {
    let cli = config_map_cli();
    assert_eq!(cli.config.apps.len(), 2, "both example apps");
    assert!(cli
        .config
        .apps
        .iter()
        .all(|a| a.secret_env.is_some() != a.secret_file.is_some()));
}

#[test]
fn every_wxauth_variable_in_the_deployment_files_is_one_wxauth_reads() {
    let mut known: BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| Some(a.get_env()?.to_string_lossy().into_owned()))
        .collect();
    // Secrets are environment variables (or `_FILE` ones), not flags.
    known.extend(
        wxauth::config::SECRET_VARIABLES
            .iter()
            .flat_map(|name| [(*name).to_owned(), format!("{name}_FILE")]),
    );
    known.extend(
        config_map_cli()
            .config
            .apps
            .into_iter()
            .filter_map(|a| a.secret_env),
    );
    for (file, text) in [("Dockerfile", DOCKERFILE), ("deployment.yaml", DEPLOYMENT)] {
        let named = text
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|word| word.starts_with("WXAUTH_") && word.len() > "WXAUTH_".len());
        for name in named {
            assert!(
                known.contains(name),
                "{file} names {name}, which wxauth does not read"
            );
        }
    }
}

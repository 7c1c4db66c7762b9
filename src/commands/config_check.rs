//! `junction config check [FILE]`: validate without starting anything; `junction config
//! diff OLD NEW`: what a change of configuration would change, key by key.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::{Cli, ConfigAction};
use crate::commands::Failure;
use crate::config;

pub fn run(cli: &Cli, action: &ConfigAction) -> Result<(), Failure> {
    match action {
        ConfigAction::Check { file } => check(cli, file.as_deref()),
        ConfigAction::Diff { old, new } => {
            for line in diff(old, new)? {
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn check(cli: &Cli, file: Option<&Path>) -> Result<(), Failure> {
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| config::locate(cli.config.as_deref()));
    config::load(file.as_deref(), std::env::vars())?;
    match file {
        Some(path) => {
            println!("{}: OK", path.display());
            for (key, role) in read_by_one_role(&flat(&path)?) {
                println!("note: {key} is read by `junction {role}` only");
            }
        }
        None => println!(
            "no {} here; the built-in defaults are valid",
            config::DEFAULT_FILE
        ),
    }
    Ok(())
}

/// Settings only one role reads, and which: the others have nothing they apply to (the
/// stand-alone router has no database, so no API keys and no tokens of its own; `serve`
/// composes its own supergraph). Every other setting of `[gateway]` is read by both.
const ONE_ROLE: &[(&str, &str)] = &[
    ("gateway.oauth", "serve"),
    ("gateway.api_key_cache_ttl", "serve"),
    ("gateway.caches.api_keys_bytes", "serve"),
    ("gateway.supergraph", "gateway"),
    ("gateway.watch_interval", "gateway"),
];

/// The keys of a flattened file that one role only reads, with that role.
pub fn read_by_one_role(keys: &BTreeMap<String, toml::Value>) -> Vec<(String, &'static str)> {
    keys.keys()
        .filter_map(|key| {
            ONE_ROLE
                .iter()
                .find(|(prefix, _)| key == prefix || key.starts_with(&format!("{prefix}.")))
                .map(|(_, role)| (key.clone(), *role))
        })
        .collect()
}

/// The changes from `old` to `new`, one line per key: `+` added, `-` removed, `~` changed.
fn diff(old: &Path, new: &Path) -> Result<Vec<String>, Failure> {
    let before = flat(old)?;
    let after = flat(new)?;
    let mut lines = Vec::new();
    for (key, value) in &before {
        match after.get(key) {
            None => lines.push(format!("- {key} = {}", shown(key, value))),
            Some(changed) if changed != value => lines.push(format!(
                "~ {key}: {} -> {}",
                shown(key, value),
                shown(key, changed)
            )),
            Some(_) => {}
        }
    }
    for (key, value) in &after {
        if !before.contains_key(key) {
            lines.push(format!("+ {key} = {}", shown(key, value)));
        }
    }
    lines.sort_by(|a, b| a[2..].cmp(&b[2..]));
    if lines.is_empty() {
        lines.push("no changes".into());
    }
    Ok(lines)
}

/// A valid configuration file as `dotted.key -> value` (the environment is left out: this
/// compares files).
pub fn flat(path: &Path) -> Result<BTreeMap<String, toml::Value>, Failure> {
    config::load(Some(path), std::iter::empty())?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("{}: cannot read: {e}", path.display())))?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    flatten(String::new(), value, &mut out);
    Ok(out)
}

fn flatten(prefix: String, value: toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(key, value, out);
            }
        }
        // Routes and the like, by name: a change shows which one and where, as decK does.
        toml::Value::Array(items) if is_named_list(&items) => {
            for item in items {
                let name = item
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                flatten(format!("{prefix}[{name}]"), item, out);
            }
        }
        other => {
            out.insert(prefix, other);
        }
    }
}

/// Tables that each have a distinct `name`.
fn is_named_list(items: &[toml::Value]) -> bool {
    let names: Vec<&str> = items
        .iter()
        .filter_map(|item| item.as_table()?.get("name")?.as_str())
        .collect();
    !items.is_empty()
        && names.len() == items.len()
        && names
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == names.len()
}

/// A value as printed, with secrets masked.
fn shown(key: &str, value: &toml::Value) -> String {
    let secret = ["secret", "password", "signing_key", "keys"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with(".token")
        || key.ends_with("url") && value.as_str().is_some_and(|v| v.contains('@'));
    if secret {
        "(secret)".into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn routes_are_compared_by_name() {
        let dir = tempfile::TempDir::new().unwrap();
        let old = file(
            &dir,
            "old.toml",
            "[[gateway.routes]]\nname = \"a\"\npath = \"/a\"\nupstreams = [\"http://127.0.0.1:1\"]\n\n[[gateway.routes]]\nname = \"gone\"\npath = \"/g\"\nupstreams = [\"http://127.0.0.1:9\"]\n",
        );
        let new = file(
            &dir,
            "new.toml",
            "[[gateway.routes]]\nname = \"b\"\npath = \"/b\"\nupstreams = [\"http://127.0.0.1:3\"]\n\n[[gateway.routes]]\nname = \"a\"\npath = \"/a\"\nupstreams = [\"http://127.0.0.1:2\"]\nplugins = [{ name = \"auth\" }]\n",
        );
        assert_eq!(
            diff(&old, &new).unwrap(),
            [
                "+ gateway.routes[a].plugins[auth].name = \"auth\"",
                "~ gateway.routes[a].upstreams: [\"http://127.0.0.1:1\"] -> [\"http://127.0.0.1:2\"]",
                "+ gateway.routes[b].name = \"b\"",
                "+ gateway.routes[b].path = \"/b\"",
                "+ gateway.routes[b].upstreams = [\"http://127.0.0.1:3\"]",
                "- gateway.routes[gone].name = \"gone\"",
                "- gateway.routes[gone].path = \"/g\"",
                "- gateway.routes[gone].upstreams = [\"http://127.0.0.1:9\"]",
            ]
        );
    }

    #[test]
    fn changes_are_listed_key_by_key_with_secrets_masked() {
        let dir = tempfile::TempDir::new().unwrap();
        let old = file(
            &dir,
            "old.toml",
            "[gateway]\nlisten = \"127.0.0.1:4000\"\n[gateway.limits]\nmax_depth = 10\n[database]\nurl = \"postgres://u:pw@db/j\"\n",
        );
        let new = file(
            &dir,
            "new.toml",
            "[gateway]\nlisten = \"127.0.0.1:4001\"\n[gateway.rate_limit]\nrequests_per_second = 5\n[database]\nurl = \"postgres://u:other@db/j\"\n",
        );
        assert_eq!(
            diff(&old, &new).unwrap(),
            [
                "~ database.url: (secret) -> (secret)",
                "- gateway.limits.max_depth = 10",
                "~ gateway.listen: \"127.0.0.1:4000\" -> \"127.0.0.1:4001\"",
                "+ gateway.rate_limit.requests_per_second = 5",
            ]
        );
        assert_eq!(diff(&old, &old).unwrap(), ["no changes"]);
    }

    #[test]
    fn an_invalid_side_is_refused_before_any_diff() {
        let dir = tempfile::TempDir::new().unwrap();
        let good = file(&dir, "good.toml", "");
        let bad = file(&dir, "bad.toml", "[gateway]\nlisten = 7\n");
        assert!(diff(&good, &bad).is_err());
    }

    #[test]
    fn settings_one_role_reads_are_named_with_the_role() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = file(
            &dir,
            "junction.toml",
            "[gateway]\napi_key_cache_ttl = \"5s\"\nsubgraph_timeout = \"3s\"\n[gateway.oauth]\nissuer = \"me\"\n",
        );
        let notes = read_by_one_role(&flat(&path).unwrap());
        assert_eq!(
            notes,
            vec![
                ("gateway.api_key_cache_ttl".to_owned(), "serve"),
                ("gateway.oauth.issuer".to_owned(), "serve"),
            ]
        );
    }
}

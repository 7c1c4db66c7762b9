//! Reading a manifest file: YAML into [`Manifest`], every error named as
//! `FILE:LINE:COL: key: message`, then the checks that need the whole file (stream names).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use reqwest::header::HeaderName;

use super::model::{Auth, KeyPlace, Manifest, Pagination};

/// Why a manifest cannot be used, and where in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: String,
    /// 1-based, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The key path (`streams[1].pagination.cursor.param`); empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: file.clone(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text)
    }

    /// Reads and checks a manifest's `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ManifestError> {
        let error = |key: String, location: Option<(u64, u64)>, message: String| ManifestError {
            file: file.to_owned(),
            line: location.map(|(line, _)| line).filter(|l| *l > 0),
            column: location.map(|(_, column)| column).filter(|c| *c > 0),
            key,
            message,
        };
        let at =
            |location: Option<serde_saphyr::Location>| location.map(|l| (l.line(), l.column()));
        // The key path is kept aside: the YAML crate's error must come out of the closure for
        // it to stop reading there.
        let mut key = None;
        let parsed = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            serde_path_to_error::deserialize::<_, Manifest>(deserializer).map_err(|wrapped| {
                key = Some(wrapped.path().to_string());
                wrapped.into_inner()
            })
        });
        let manifest = match parsed {
            Ok(manifest) => manifest,
            Err(inner) => {
                let key = key.filter(|k| k != ".").unwrap_or_default();
                return Err(error(key, at(inner.location()), message_of(&inner)));
            }
        };
        manifest.check_whole().map_err(|(key, message)| {
            let location = locate(text, &key, &key_hint(&message));
            error(key, location, message)
        })?;
        Ok(manifest)
    }

    /// The checks no single key can make: stream names unique and known, header names valid,
    /// page sizes above zero.
    fn check_whole(&self) -> Result<(), (String, String)> {
        if self.streams.is_empty() {
            return Err((
                "streams".into(),
                "a manifest needs at least one stream".into(),
            ));
        }
        let mut names = HashSet::new();
        for (i, stream) in self.streams.iter().enumerate() {
            if !names.insert(stream.name.as_str()) {
                return Err((
                    format!("streams[{i}].name"),
                    format!("stream `{}` is named twice", stream.name),
                ));
            }
            let size = match &stream.pagination {
                Pagination::Offset { limit, .. } => Some(("limit", *limit)),
                Pagination::PageNumber { size, .. } => Some(("size", *size)),
                Pagination::Cursor {
                    limit: Some(limit), ..
                } => Some(("limit", *limit)),
                _ => None,
            };
            if let Some((key, 0)) = size {
                return Err((
                    format!("streams[{i}].pagination.{key}"),
                    "a page size of 0 reads nothing".into(),
                ));
            }
        }
        if let Some(check) = &self.check
            && !names.contains(check.stream.as_str())
        {
            return Err((
                "check.stream".into(),
                format!("no stream is named `{}`", check.stream),
            ));
        }
        for name in self.headers.keys() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((
                    format!("headers.{name}"),
                    format!("`{name}` is not a header name"),
                ));
            }
        }
        if let Auth::ApiKey {
            place: KeyPlace::Header,
            name,
            ..
        } = &self.auth
            && HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err((
                "auth.api_key.name".into(),
                format!("`{name}` is not a header name"),
            ));
        }
        Ok(())
    }
}

/// The text a whole-file error is about (the `` `name` `` it quotes), to find its line.
fn key_hint(message: &str) -> String {
    message.split('`').nth(1).unwrap_or_default().to_owned()
}

/// Where a whole-file error's subject is: the last line holding its key and the value it
/// quotes (a name given twice is pointed at its second use). A hint; `None` when not found.
fn locate(text: &str, key: &str, hint: &str) -> Option<(u64, u64)> {
    if hint.is_empty() {
        return None;
    }
    let last_key = format!("{}:", key.rsplit('.').next().unwrap_or(key));
    let (line, column) = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(&last_key))
        .filter_map(|(n, line)| line.find(hint).map(|column| (n + 1, column + 1)))
        .last()?;
    Some((u64::try_from(line).ok()?, u64::try_from(column).ok()?))
}

/// The error's message without the location the crate appends (the caller prints its own).
fn message_of(error: &serde_saphyr::Error) -> String {
    let text = error.without_snippet().to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
name: tiny
version: 1.0.0
base_url: https://api.example.com
streams:
  - name: items
    path: /items
    schema: {type: object}
";

    #[test]
    fn the_example_in_manifest_md_reads() {
        let doc = include_str!("../../MANIFEST.md");
        let start = doc.find("```yaml\n").map(|at| at + 8).unwrap();
        let end = start + doc[start..].find("```").unwrap();
        let manifest =
            Manifest::parse("MANIFEST.md", &doc[start..end]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(manifest.streams.len(), 5);
        assert_eq!(manifest.errors.len(), 4);
    }

    #[test]
    fn a_minimal_manifest_reads() {
        let manifest = Manifest::parse("tiny.yaml", MINIMAL).unwrap();
        assert_eq!(manifest.streams[0].name, "items");
        assert_eq!(manifest.auth, Auth::None);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line_and_column() {
        let text = MINIMAL.replace(
            "    path: /items\n",
            "    path: /items\n    paginaton: none\n",
        );
        let error = Manifest::parse("tiny.yaml", &text).unwrap_err();
        println!("{error}");
        assert_eq!(error.line, Some(7), "{error}");
        assert_eq!(error.column, Some(5), "{error}");
        assert!(error.key.starts_with("streams[0]"), "{error}");
        assert!(error.message.contains("paginaton"), "{error}");
        assert!(
            error.to_string().starts_with("tiny.yaml:7:5: streams[0]"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_value_deep_inside_is_named_by_its_key_path() {
        let text = MINIMAL.replace(
            "    schema: {type: object}\n",
            "    schema: {type: object}\n    pagination:\n      offset:\n        offset_param: offset\n        limit_param: limit\n        limit: many\n",
        );
        let error = Manifest::parse("tiny.yaml", &text).unwrap_err();
        println!("{error}");
        assert_eq!(error.key, "streams[0].pagination.offset.limit", "{error}");
        assert_eq!(error.line, Some(12), "{error}");
    }

    #[test]
    fn templates_selectors_and_schemas_are_checked_as_they_are_read() {
        for (from, to, key) in [
            (
                "path: /items",
                "path: /items/{{ secrets.x }}",
                "streams[0].path",
            ),
            (
                "schema: {type: object}",
                "schema: {type: 12}",
                "streams[0].schema",
            ),
            (
                "schema: {type: object}",
                "schema: {type: object}\n    records: $..x",
                "streams[0].records",
            ),
        ] {
            let error = Manifest::parse("tiny.yaml", &MINIMAL.replace(from, to)).unwrap_err();
            println!("{error}");
            assert_eq!(error.key, key, "{error}");
            assert!(error.line.is_some(), "{error}");
        }
    }

    #[test]
    fn broken_yaml_names_its_place() {
        let error = Manifest::parse("tiny.yaml", "name: [unclosed\nversion: 1\n").unwrap_err();
        println!("{error}");
        assert!(error.line.is_some(), "{error}");
    }

    #[test]
    fn whole_file_checks_point_at_the_offending_line() {
        let twice = format!("{MINIMAL}  - name: items\n    path: /other\n    schema: {{}}\n");
        let error = Manifest::parse("tiny.yaml", &twice).unwrap_err();
        assert_eq!(
            error.to_string(),
            "tiny.yaml:8:11: streams[1].name: stream `items` is named twice"
        );
        let unknown = format!("{MINIMAL}check:\n  stream: nope\n");
        let error = Manifest::parse("tiny.yaml", &unknown).unwrap_err();
        assert_eq!(error.key, "check.stream");
        assert_eq!(error.line, Some(9));
    }
}

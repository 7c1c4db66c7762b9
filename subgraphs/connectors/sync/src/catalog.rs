//! The connectors a process knows, by name: the manifests built into the binary (Stripe),
//! manifests from a configured folder (community connectors), and any connector written in
//! Rust that the embedding code adds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use junction_connector_sdk::http::HttpClient;
use junction_connector_sdk::{Connector, Manifest, ManifestConnector, ManifestError, Spec};

/// The pre-built manifests: (file name for errors, text).
const BUILT_IN: &[(&str, &str)] = &[(
    "stripe.yaml",
    include_str!("../../sdk/manifests/stripe.yaml"),
)];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: cannot read the manifests folder: {message}")]
    Folder { path: String, message: String },
    #[error("connector {name:?} is defined twice (the second in {origin})")]
    Duplicate { name: String, origin: String },
}

/// Connector names to connectors. Built once at start and shared (`Arc<Catalog>`).
#[derive(Default, Clone)]
pub struct Catalog {
    connectors: BTreeMap<String, Arc<dyn Connector>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.connectors.keys()).finish()
    }
}

impl Catalog {
    /// No connectors at all (tests add their own).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The connectors built into the binary, sending through `client`.
    pub fn built_in(client: &HttpClient) -> Result<Self, CatalogError> {
        let mut catalog = Self::empty();
        for (file, text) in BUILT_IN {
            let manifest = Manifest::parse(file, text)?;
            catalog.add(Arc::new(ManifestConnector::new(manifest, client)), file)?;
        }
        Ok(catalog)
    }

    /// Adds every `*.yaml` and `*.yml` manifest in `folder`, in name order; returns the
    /// connector names added. The first bad file stops it, named with its line and key.
    pub fn load_folder(
        &mut self,
        folder: &Path,
        client: &HttpClient,
    ) -> Result<Vec<String>, CatalogError> {
        let folder_error = |e: std::io::Error| CatalogError::Folder {
            path: folder.display().to_string(),
            message: e.to_string(),
        };
        let mut files: Vec<_> = std::fs::read_dir(folder)
            .map_err(folder_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(folder_error)?
            .into_iter()
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        files.sort();
        let mut added = Vec::with_capacity(files.len());
        for file in files {
            let connector = ManifestConnector::from_file(&file, client)?;
            let name = connector.manifest().name.clone();
            self.add(Arc::new(connector), &file.display().to_string())?;
            added.push(name);
        }
        Ok(added)
    }

    /// Adds `connector` under its spec's name; `origin` names where it came from in errors.
    pub fn add(&mut self, connector: Arc<dyn Connector>, origin: &str) -> Result<(), CatalogError> {
        let name = connector.spec().name;
        if self.connectors.contains_key(&name) {
            return Err(CatalogError::Duplicate {
                name,
                origin: origin.to_owned(),
            });
        }
        self.connectors.insert(name, connector);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(name).cloned()
    }

    /// Every connector's spec, by name.
    pub fn specs(&self) -> Vec<Spec> {
        self.connectors.values().map(|c| c.spec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use junction_connector_sdk::http::HttpOptions;

    use super::*;

    fn client() -> HttpClient {
        HttpClient::new(HttpOptions::default()).unwrap()
    }

    #[test]
    fn the_built_in_catalog_holds_stripe() {
        let catalog = Catalog::built_in(&client()).unwrap();
        let stripe = catalog.get("stripe").expect("stripe is built in");
        assert_eq!(stripe.spec().name, "stripe");
        assert!(catalog.get("nope").is_none());
    }

    #[test]
    fn a_folder_adds_its_manifests_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = |name: &str| {
            format!(
                "name: {name}\nversion: 0.1.0\nbase_url: https://example.com\nstreams:\n  - name: items\n    path: /items\n    schema: {{type: object}}\n"
            )
        };
        std::fs::write(dir.path().join("acme.yaml"), manifest("acme")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let mut catalog = Catalog::built_in(&client()).unwrap();
        let added = catalog.load_folder(dir.path(), &client()).unwrap();
        assert_eq!(added, vec!["acme".to_owned()]);
        assert!(catalog.get("acme").is_some());

        // The same name again is refused, naming the file.
        let again = tempfile::tempdir().unwrap();
        std::fs::write(again.path().join("stripe.yml"), manifest("stripe")).unwrap();
        let error = catalog.load_folder(again.path(), &client()).unwrap_err();
        assert!(error.to_string().contains("stripe.yml"), "{error}");

        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join("bad.yaml"), "name: bad\nversoin: 1\n").unwrap();
        let error = catalog.load_folder(broken.path(), &client()).unwrap_err();
        assert!(error.to_string().contains("bad.yaml:2"), "{error}");
    }
}

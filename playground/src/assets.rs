//! The playground's files, compiled into the binary.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            path,
            content_type,
            body,
            etag: OnceLock::new(),
        }
    }

    /// A validator of the content, computed once.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let mut hasher = DefaultHasher::new();
            self.body.hash(&mut hasher);
            format!("\"{:016x}\"", hasher.finish())
        })
    }
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset::new($path, $type, include_bytes!(concat!("../assets/", $path)))
    };
}

pub static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
pub static ICON: Asset = asset!("favicon.svg", "image/svg+xml");

static ASSETS: [Asset; 10] = [
    asset!("playground.js", JS),
    asset!("playground.css", CSS),
    asset!("vendor/graphiql.min.js", JS),
    asset!("vendor/graphiql.min.css", CSS),
    asset!("vendor/react.production.min.js", JS),
    asset!("vendor/react-dom.production.min.js", JS),
    asset!("vendor/licenses/graphiql.LICENSE", TEXT),
    asset!("vendor/licenses/react.LICENSE", TEXT),
    asset!("vendor/licenses/react-dom.LICENSE", TEXT),
    asset!("vendor/VERSIONS", TEXT),
];

/// The asset at `path` (relative to `/playground/assets/`); only the listed files exist.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

//! `junction compose`: subgraph SDLs (from files or from running subgraphs) into a supergraph.

use std::path::PathBuf;
use std::time::Duration;

use junction_federation::compose::{self, SubgraphSource};

use crate::commands::Failure;

/// `NAME=URL` (the SDL is fetched from the running subgraph) or `NAME=URL@FILE`.
pub async fn run(subgraphs: &[String], output: Option<&PathBuf>) -> Result<(), Failure> {
    if subgraphs.is_empty() {
        return Err(Failure::Usage(
            "name at least one --subgraph NAME=URL[@FILE]".into(),
        ));
    }
    let mut sources = Vec::new();
    for spec in subgraphs {
        let (name, rest) = spec.split_once('=').ok_or_else(|| {
            Failure::Usage(format!(
                "--subgraph {spec:?}: expected NAME=URL or NAME=URL@FILE"
            ))
        })?;
        let (url, sdl) = match rest.rsplit_once('@') {
            Some((url, file)) if !file.contains('/') || std::path::Path::new(file).exists() => {
                let sdl = std::fs::read_to_string(file)
                    .map_err(|e| Failure::Usage(format!("{file}: cannot read: {e}")))?;
                (url.to_owned(), sdl)
            }
            _ => {
                let sdl = junction_router::executor::http::fetch_sdl(rest, Duration::from_secs(10))
                    .await
                    .map_err(|e| Failure::Usage(format!("subgraph {name}: {e}")))?;
                (rest.to_owned(), sdl)
            }
        };
        sources.push(SubgraphSource {
            name: name.to_owned(),
            url,
            sdl,
        });
    }
    let supergraph = compose::compose(&sources).map_err(|e| Failure::Usage(e.to_string()))?;
    match output {
        Some(path) => {
            std::fs::write(path, &supergraph)
                .map_err(|e| Failure::Usage(format!("{}: cannot write: {e}", path.display())))?;
            eprintln!("wrote {} ({} subgraphs)", path.display(), sources.len());
        }
        None => print!("{supergraph}"),
    }
    Ok(())
}

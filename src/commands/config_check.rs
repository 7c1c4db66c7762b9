//! `junction config check [FILE]`: validate without starting anything.

use crate::cli::{Cli, ConfigAction};
use crate::commands::Failure;
use crate::config;

pub fn run(cli: &Cli, action: &ConfigAction) -> Result<(), Failure> {
    let ConfigAction::Check { file } = action;
    let file = file
        .clone()
        .or_else(|| config::locate(cli.config.as_deref()));
    config::load(file.as_deref(), std::env::vars())?;
    match file {
        Some(path) => println!("{}: OK", path.display()),
        None => println!(
            "no {} here; the built-in defaults are valid",
            config::DEFAULT_FILE
        ),
    }
    Ok(())
}

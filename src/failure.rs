//! How a failed command reports itself: what the user must fix, or what went wrong.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Why a command failed, and so its exit code: 2 for what the user must fix (configuration,
/// input, a part not built yet), 1 for everything else.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn not_built(command: &str, why: &str) -> Self {
        Failure::Usage(format!("`junction {command}` is not built yet: {why}"))
    }

    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
            Failure::Runtime(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(message) => f.write_str(message),
            Failure::Runtime(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Failure::Usage(error.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Runtime(error)
    }
}

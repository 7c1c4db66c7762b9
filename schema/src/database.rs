//! Connecting to the store: SQLite (embedded default) or PostgreSQL, chosen by the URL.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use serde::{Deserialize, Deserializer};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/junction.db";

/// The `[database]` section of `junction.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default)]
    pub url: DatabaseUrl,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_max_connections() -> u32 {
    10
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default(),
            max_connections: default_max_connections(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database URL whose scheme Junction supports. `Display` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unsupported database URL {0:?}: expected sqlite://PATH (for example {DEFAULT_DATABASE_URL}) or postgres://USER:PASSWORD@HOST:PORT/DB"
)]
pub struct InvalidDatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, InvalidDatabaseUrl> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(InvalidDatabaseUrl(redact(url)));
        };
        Ok(Self {
            url: url.to_owned(),
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The SQLite file, if this is a file-backed SQLite URL.
    pub fn sqlite_file(&self) -> Option<&Path> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self
            .url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
    }
}

impl Default for DatabaseUrl {
    fn default() -> Self {
        Self::parse(DEFAULT_DATABASE_URL).expect("the default URL is valid")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DatabaseUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot create the database folder {path}: {source}")]
    CreateFolder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: DbErr },
}

/// Opens a pool. A SQLite file and its folder are created when missing.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, ConnectError> {
    let mut url = config.url.expose().to_owned();
    if let Some(file) = config.url.sqlite_file() {
        if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| ConnectError::CreateFolder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        if !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
    }
    // SQLite has one writer at a time, and a transaction that reads before it writes fails
    // at once (not after a wait) when another connection wrote meanwhile. One connection per
    // process serialises access instead; across processes the busy timeout applies.
    let max_connections = match config.url.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => config.max_connections,
    };
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.connect_timeout)
        .sqlx_logging(false);
    if config.url.backend() == Backend::Sqlite {
        // WAL lets readers (other processes, the CLI) work while a write is under way;
        // synchronous=NORMAL in WAL mode survives any process crash (only a power loss can take
        // the last commits); the busy timeout makes other processes wait instead of failing.
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    }
    Database::connect(options)
        .await
        .map_err(|source| ConnectError::Connect {
            url: config.url.to_string(),
            source,
        })
}

/// Whether `error` means the database cannot serve right now (unreachable, restarting, out of
/// connections, busy, or a transaction lost to a conflict) rather than that the statement is
/// wrong: what a caller may answer as retryable (`UNAVAILABLE`) instead of as a fault.
pub fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(error) = runtime else {
        return false;
    };
    match error.as_ref() {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        Sqlx::Database(database) => database.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    }
}

/// SQLSTATEs of PostgreSQL that say "not now" (connection exceptions, shutting down or
/// starting up, out of resources, serialization failures and deadlocks), and SQLite's busy
/// and locked result codes (extended codes keep the primary one in their low byte). A
/// SQLSTATE is always five characters, some all digits; SQLite's codes have at most four.
fn transient_code(code: &str) -> bool {
    if code.len() < 5 {
        return code
            .parse::<u32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6));
    }
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for code in ["08006", "57P01", "57P03", "53300", "40001", "5", "517", "6"] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["23505", "42P01", "1", "19", "2067"] {
            assert!(!transient_code(code), "{code}");
        }
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout
        )));
        assert!(!is_unavailable(&DbErr::RecordNotFound("x".into())));
    }

    #[test]
    fn schemes_are_checked() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/x.db")
                .unwrap()
                .backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u:p@h/db")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        let error = DatabaseUrl::parse("mysql://root:hunter2@h/db").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn password_is_redacted_in_display() {
        let url = DatabaseUrl::parse("postgres://junction:s3cret@localhost:5432/j").unwrap();
        assert_eq!(url.to_string(), "postgres://junction:***@localhost:5432/j");
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn sqlite_file_is_found() {
        let url = DatabaseUrl::parse("sqlite://./data/junction.db?mode=rwc").unwrap();
        assert_eq!(url.sqlite_file(), Some(Path::new("./data/junction.db")));
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap().sqlite_file(),
            None
        );
    }
}

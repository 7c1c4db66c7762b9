//! A fresh, empty database per test.

use junction_schema::database::{DatabaseConfig, DatabaseUrl};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tempfile::TempDir;

/// Names the PostgreSQL server the suite uses: `postgres://USER@HOST:PORT/DB` with the right
/// to create databases. `tests/run` starts a throwaway server and sets it.
pub const POSTGRES_ENV: &str = "TEST_POSTGRES_URL";

pub struct TestDatabase {
    pub url: String,
    /// Holds the SQLite file (and anything else a test writes) until the test ends.
    pub dir: TempDir,
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let url = format!("sqlite://{}/junction.db", dir.path().display());
        Self { url, dir }
    }

    pub async fn postgres() -> Self {
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_ENV} is not set: the PostgreSQL half of the suite needs a server \
                 (run tests/run, which starts one, or point {POSTGRES_ENV} at yours)"
            )
        });
        let admin = Database::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {POSTGRES_ENV}: {e}"));
        let name = format!("junction_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("TEST_POSTGRES_URL ends with /DATABASE");
        Self {
            url: format!("{base}/{name}"),
            dir: TempDir::new().expect("temp dir"),
        }
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: DatabaseUrl::parse(&self.url).expect("valid test URL"),
            ..DatabaseConfig::default()
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        junction_schema::database::connect(&self.config())
            .await
            .expect("connect to the test database")
    }

    /// Connected and fully migrated, as `junction serve` leaves it.
    pub async fn migrated(&self) -> DatabaseConnection {
        let db = self.connect().await;
        junction_migrations::up(&db).await.expect("migrate up");
        db
    }
}

//! The foundation as a user meets it: `junction serve` on embedded defaults, migrations,
//! API keys, configuration errors, and clean shutdown; on SQLite and on PostgreSQL.

use crate::support;

use chrono::{Duration, Utc};
use junction_schema::apikeys::{self, AuthError};
use junction_schema::tenants;
use support::{Junction, TestDatabase, cli};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The admin key from the first start's banner.
fn printed_key(text: &str) -> String {
    text.split_whitespace()
        .find(|word| word.starts_with(apikeys::KEY_PREFIX))
        .unwrap_or_else(|| panic!("no API key printed in:\n{text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_embedded_defaults_creates_the_database_and_stops_cleanly() {
    let dir = tempfile::TempDir::new().unwrap();
    let junction = Junction::serve(dir.path(), None);
    assert!(dir.path().join("data/junction.db").is_file());
    printed_key(&junction.stdout);
    // Where to try it, and how to authenticate there, on every start.
    let playground = junction.url("/playground");
    assert!(
        junction
            .stdout
            .contains(&format!("Playground: {playground}"))
            && junction.stdout.contains("it asks for your API key"),
        "{}",
        junction.stdout
    );
    let page = support::http_get(playground).await.unwrap();
    assert_eq!(page.status(), 200);

    let ready = support::http_get(junction.url("/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "ready");
    let live = support::http_get(junction.url("/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let (status, logs) = junction.stop_with("INT");
    assert!(
        status.success(),
        "exit status {status}; logs:\n{}",
        logs.join("\n")
    );
    assert!(logs.iter().any(|line| line.contains("stopped")), "{logs:?}");

    // The second start finds its tenant and prints no new key.
    let again = Junction::serve(dir.path(), None);
    assert!(
        !again.stdout.contains(apikeys::KEY_PREFIX),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("Playground: "), "{}", again.stdout);
    let (status, _) = again.stop_with("TERM");
    assert!(status.success());
}

on_both_databases!(
    serve_migrates_bootstraps_and_answers_ready,
    readiness_fails_while_migrations_are_pending,
    migrations_go_up_and_down,
    api_keys_authenticate_until_revoked_or_expired,
    bootstrap_happens_once,
    admin_commands_refuse_an_unmigrated_database,
);

async fn serve_migrates_bootstraps_and_answers_ready(db: TestDatabase) {
    let junction = Junction::serve(db.dir.path(), Some(&db.url));
    let key = printed_key(&junction.stdout);

    let ready = support::http_get(junction.url("/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The printed key is a working admin key of the default tenant.
    let conn = db.connect().await;
    let identity = apikeys::authenticate(&conn, &key).await.unwrap();
    let tenant = tenants::find(&conn, tenants::DEFAULT_TENANT).await.unwrap();
    assert_eq!(identity.tenant, tenant.id);
    assert!(identity.scopes.contains(tenants::ADMIN_SCOPE));

    let (status, _) = junction.stop_with("TERM");
    assert!(status.success(), "{status}");
}

async fn readiness_fails_while_migrations_are_pending(db: TestDatabase) {
    let junction = Junction::serve(db.dir.path(), Some(&db.url));
    let down = cli(db.dir.path(), Some(&db.url), &["migrate", "down"]);
    assert!(down.status.success(), "{}", stderr(&down));

    let ready = support::http_get(junction.url("/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body["checks"]["database"]["reason"],
        "1 migration(s) pending"
    );
    // Liveness is about the process, not its dependencies.
    let live = support::http_get(junction.url("/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let up = cli(db.dir.path(), Some(&db.url), &["migrate", "up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let ready = support::http_get(junction.url("/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

async fn migrations_go_up_and_down(db: TestDatabase) {
    let dir = db.dir.path();
    let url = Some(db.url.as_str());
    let names = junction_migrations::names();
    let listing = |word: &str, names: &[String]| -> String {
        names
            .iter()
            .map(|name| format!("{word:<11} {name}\n"))
            .collect()
    };
    let last = names.last().unwrap().clone();
    let (earlier, _) = names.split_at(names.len() - 1);

    let status = cli(dir, url, &["migrate", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(stdout(&status), listing("pending", &names));

    let up = cli(dir, url, &["migrate", "up"]);
    assert_eq!(stdout(&up), listing("applied", &names));
    let status = cli(dir, url, &["migrate", "status"]);
    assert_eq!(stdout(&status), listing("applied", &names));
    let again = cli(dir, url, &["migrate", "up"]);
    assert!(
        stdout(&again).starts_with("nothing to apply"),
        "{}",
        stdout(&again)
    );

    // The tables exist and work after `up`...
    let conn = db.connect().await;
    tenants::create(&conn, "acme").await.unwrap();

    // ...`down` rolls back the newest migration only...
    let down = cli(dir, url, &["migrate", "down"]);
    assert_eq!(stdout(&down), format!("rolled back {last}\n"));
    let status = cli(dir, url, &["migrate", "status"]);
    assert_eq!(
        stdout(&status),
        listing("applied", earlier) + &listing("pending", std::slice::from_ref(&last))
    );

    // ...and all the way down, every table is gone.
    let steps = names.len().to_string();
    let down = cli(dir, url, &["migrate", "down", "--steps", &steps]);
    assert!(down.status.success(), "{}", stderr(&down));
    let status = cli(dir, url, &["migrate", "status"]);
    assert_eq!(stdout(&status), listing("pending", &names));
    assert!(tenants::list(&conn).await.is_err());

    let up = cli(dir, url, &["migrate", "up"]);
    assert!(up.status.success());
    assert!(tenants::list(&conn).await.unwrap().is_empty());
}

async fn api_keys_authenticate_until_revoked_or_expired(db: TestDatabase) {
    let conn = db.migrated().await;
    let bootstrap = tenants::bootstrap(&conn).await.unwrap().unwrap();
    let dir = db.dir.path();
    let url = Some(db.url.as_str());

    // A key issued from the command line, printed once on stdout.
    let created = cli(
        dir,
        url,
        &[
            "apikey",
            "create",
            "--tenant",
            "default",
            "--scopes",
            "webhooks:read,webhooks:write",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let key = stdout(&created).trim().to_owned();
    let identity = apikeys::authenticate(&conn, &key).await.unwrap();
    assert_eq!(identity.tenant, bootstrap.tenant.id);
    assert_eq!(identity.scopes.to_string(), "webhooks:read webhooks:write");
    assert_eq!(identity.expires_at, None);

    // The database holds a digest, never the key.
    let listed = cli(dir, url, &["apikey", "list", "--tenant", "default"]);
    assert!(!stdout(&listed).contains(&key));
    let id = identity.subject.clone();
    let stored = junction_schema::entities::api_key::Entity::find_by_id(id.clone())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.key_hash.contains(&key[8..]));
    assert_eq!(stored.key_hash.len(), 64);

    // The right id with a wrong secret, and garbage, are refused.
    let wrong_secret = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('A') { 'B' } else { 'A' }
    );
    assert!(matches!(
        apikeys::authenticate(&conn, &wrong_secret).await,
        Err(AuthError::Unknown)
    ));
    assert!(matches!(
        apikeys::authenticate(&conn, "Bearer nonsense").await,
        Err(AuthError::Malformed)
    ));

    // Revocation takes effect at once.
    let revoked = cli(dir, url, &["apikey", "revoke", "--tenant", "default", &id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(matches!(
        apikeys::authenticate(&conn, &key).await,
        Err(AuthError::Revoked)
    ));

    // A key is refused once its expiry passes.
    let scopes = "admin".parse().unwrap();
    let expiry = Utc::now() + Duration::hours(1);
    let expiring = apikeys::create(&conn, &bootstrap.tenant.id, "short", &scopes, Some(expiry))
        .await
        .unwrap();
    let identity = apikeys::authenticate(&conn, expiring.reveal())
        .await
        .unwrap();
    assert_eq!(
        identity.expires_at.map(|t| t.timestamp()),
        Some(expiry.timestamp())
    );
    let after = expiry + Duration::seconds(1);
    assert!(matches!(
        apikeys::authenticate_at(&conn, expiring.reveal(), after).await,
        Err(AuthError::Expired)
    ));

    // Another tenant's key carries that tenant, and cannot revoke the first tenant's keys.
    let other = tenants::create(&conn, "other").await.unwrap();
    let other_key = apikeys::create(&conn, &other.id, "k", &scopes, None)
        .await
        .unwrap();
    let other_identity = apikeys::authenticate(&conn, other_key.reveal())
        .await
        .unwrap();
    assert_eq!(other_identity.tenant, other.id);
    let cross = cli(
        dir,
        url,
        &["apikey", "revoke", "--tenant", "other", &expiring.model.id],
    );
    assert_eq!(cross.status.code(), Some(2), "{}", stderr(&cross));
    assert!(
        apikeys::authenticate(&conn, expiring.reveal())
            .await
            .is_ok()
    );

    // Use is recorded.
    let used = junction_schema::entities::api_key::Entity::find_by_id(other_key.model.id.clone())
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert!(used.last_used_at.is_some());
}

async fn bootstrap_happens_once(db: TestDatabase) {
    let conn = db.migrated().await;
    let first = tenants::bootstrap(&conn).await.unwrap();
    assert!(first.is_some());
    assert!(tenants::bootstrap(&conn).await.unwrap().is_none());
    assert_eq!(tenants::list(&conn).await.unwrap().len(), 1);
}

async fn admin_commands_refuse_an_unmigrated_database(db: TestDatabase) {
    let output = cli(
        db.dir.path(),
        Some(&db.url),
        &["apikey", "create", "--tenant", "default"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("run `junction migrate up` first"),
        "{}",
        stderr(&output)
    );
}

use sea_orm::EntityTrait;

#[test]
fn config_check_names_the_bad_key_and_line_and_exits_2() {
    let dir = tempfile::TempDir::new().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[gateway]\nlisten = \"127.0.0.1:4000\"\nshutdown_grce = \"5s\"\n",
    )
    .unwrap();
    let output = cli(
        dir.path(),
        None,
        &["config", "check", typo.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("typo.toml:3:1: key `gateway.shutdown_grce`: unknown field `shutdown_grce`"),
        "{error}"
    );

    let wrong_type = dir.path().join("type.toml");
    std::fs::write(&wrong_type, "[database]\nmax_connections = true\n").unwrap();
    let output = cli(
        dir.path(),
        None,
        &["config", "check", wrong_type.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains("type.toml:2:19: key `database.max_connections`: invalid type: boolean `true`, expected u32"), "{error}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/junction.example.toml");
    let output = cli(dir.path(), None, &["config", "check", example]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stdout(&output);
    assert!(said.contains("junction.example.toml: OK\n"), "{said}");
    // Settings one role reads are named with it, so none is ignored in silence.
    assert!(
        said.contains("note: gateway.oauth.issuer is read by `junction serve` only"),
        "{said}"
    );

    // A bad file refuses to serve, with the same message.
    let output = cli(
        dir.path(),
        None,
        &["--config", typo.to_str().unwrap(), "serve"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("gateway.shutdown_grce"));
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn parts_not_built_yet_say_so_and_exit_2() {
    let dir = tempfile::TempDir::new().unwrap();
    let output = cli(dir.path(), None, &["subgraph", "connectors"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not built yet"),
        "{}",
        stderr(&output)
    );
    // The router alone needs a supergraph, and says so.
    let output = cli(dir.path(), None, &["gateway"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--supergraph FILE"),
        "{}",
        stderr(&output)
    );
    let output = cli(
        dir.path(),
        None,
        &["gateway", "--supergraph", "missing.graphql"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("missing.graphql: cannot read"),
        "{}",
        stderr(&output)
    );
}

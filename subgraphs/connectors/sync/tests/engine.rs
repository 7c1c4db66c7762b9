//! The sync engine against the SDK's real local HTTP source, through a manifest connector, on
//! SQLite and PostgreSQL: what a sync stores and publishes, how a run that was interrupted is
//! taken over, how workers share runs, and how failures end a run.

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use junction_connector_sync::connections::{self, NewConnection};
use junction_connector_sync::{SyncError, lag, records, runs};
use junction_schema::entities::{connection_stream, delivery, outbox, sync_run};
use sea_orm::{ConnectionTrait, EntityTrait};
use support::wrappers::{Behaviour, Watch, Wrapped};
use support::*;

const CREATED: &str = "connector.test-source.items.created";
const UPDATED: &str = "connector.test-source.items.updated";

on_both_databases!(
    the_first_sync_reads_everything_and_the_next_only_what_is_new,
    an_interrupted_run_is_taken_over_and_resumes_from_its_checkpoint,
    two_workers_never_run_one_connection_twice_at_once,
    a_source_answering_500s_fails_the_run_and_leaves_the_state_untouched,
    refused_credentials_fail_the_run_with_the_connectors_message,
    a_rate_limit_holds_its_connection_and_not_the_others,
    a_cancelled_run_stops_between_pages,
    connections_are_checked_and_scoped_to_their_tenant,
);

async fn the_first_sync_reads_everything_and_the_next_only_what_is_new(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    endpoint(&db, &tenant).await;
    let source = Source::start(Chaos::default()).await;
    let catalog = catalog_of(connector());
    let connection = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({}),
    )
    .await;
    let runner = runner(&db, Arc::clone(&catalog));

    // The connection is due at once: the runner queues its first run and runs it.
    assert_eq!(runner.run_until_idle().await.unwrap(), 1);
    let first = runs(&db, &connection.id).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, sync_run::SUCCEEDED, "{:?}", first[0].error);
    assert_eq!(first[0].reason, sync_run::SCHEDULED);
    assert_eq!(
        first[0].counts["items"],
        serde_json::json!({"read": 53, "created": 53, "updated": 0, "done": true})
    );
    let stored = records(&db, &connection.id).await;
    assert_eq!(stored.len(), source::RECORDS);
    assert_eq!(stored[0].record_key, "it_0000");
    assert_eq!(stored[0].data, source::record(0));

    // Each record's event is in the outbox, with a delivery to the endpoint.
    let created = events(&db, CREATED).await;
    assert_eq!(created.len(), source::RECORDS);
    assert_eq!(created[0].payload["record"], source::record(0));
    assert_eq!(created[0].payload["key"], "it_0000");
    assert_eq!(created[0].payload["connection_id"], connection.id.as_str());
    assert_eq!(created[0].channels, serde_json::json!([connection.id]));
    assert_eq!(count::<delivery::Entity>(&db).await, source::RECORDS as u64);
    assert!(count::<outbox::Entity>(&db).await >= 1);

    // Lag: the newest `created` stored, as a time.
    let lags = lag::of_connection(&db, &tenant, &connection.id, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(lags.len(), 1);
    let newest = source::FIRST_CREATED + (source::RECORDS as i64 - 1) / 3;
    assert_eq!(lags[0].cursor, Some(serde_json::json!(newest)));
    let behind = chrono::Utc::now().timestamp() - newest;
    let lag = lags[0].lag.unwrap().as_secs() as i64;
    assert!(
        (behind - 2..=behind + 2).contains(&lag),
        "{lag} vs {behind}"
    );

    // Nothing new: a second sync stores and publishes nothing.
    runs::trigger(&db, &tenant, &connection.id).await.unwrap();
    assert_eq!(runner.run_until_idle().await.unwrap(), 1);
    assert_eq!(events(&db, CREATED).await.len(), source::RECORDS);

    // Three new records: the next sync reads them, once.
    let added = source.add(3);
    let triggered = runs::trigger(&db, &tenant, &connection.id).await.unwrap();
    assert!(triggered.queued);
    assert_eq!(triggered.run.reason, sync_run::MANUAL);
    assert_eq!(runner.run_until_idle().await.unwrap(), 1);
    let third = runs::get(&db, &tenant, &triggered.run.id).await.unwrap();
    assert_eq!(third.status, sync_run::SUCCEEDED, "{:?}", third.error);
    assert_eq!(third.counts["items"]["created"], 3);
    assert_eq!(
        records(&db, &connection.id).await.len(),
        source::RECORDS + 3
    );
    let created = events(&db, CREATED).await;
    assert_eq!(created.len(), source::RECORDS + 3);
    let last: Vec<_> = created[source::RECORDS..]
        .iter()
        .map(|m| m.payload["record"].clone())
        .collect();
    assert_eq!(last, added);
    assert!(events(&db, UPDATED).await.is_empty());

    // Reading records back, page by page.
    let page = records::list(
        &db,
        &tenant,
        &connection.id,
        "items",
        Some("it_0050"),
        None,
        10,
    )
    .await
    .unwrap();
    let keys: Vec<_> = page.iter().map(|r| r.record_key.as_str()).collect();
    assert_eq!(
        keys,
        ["it_0051", "it_0052", "it_0053", "it_0054", "it_0055"]
    );
    let history = runs::list(&db, &tenant, &connection.id, None, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].id, third.id, "newest first");
}

async fn an_interrupted_run_is_taken_over_and_resumes_from_its_checkpoint(db: TestDatabase) {
    let first_worker_db = db.connect().await;
    let tenant = migrated(&first_worker_db).await;
    endpoint(&first_worker_db, &tenant).await;
    let source = Source::start(Chaos::default()).await;
    let connection = connection_to(
        &first_worker_db,
        &catalog_of(connector()),
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({}),
    )
    .await;

    // The first worker reads four pages and hangs; then it is killed.
    let hanging = runner(
        &first_worker_db,
        catalog_of(Wrapped::wrap(connector(), Behaviour::StallAfter(4))),
    );
    let lease = hanging.lease_one().await.unwrap().expect("a run is due");
    let run_id = lease.run.id.clone();
    let task = tokio::spawn(async move { hanging.execute(lease).await });
    eventually("four pages stored", || async {
        records(&first_worker_db, &connection.id).await.len() == 4 * PAGE
    })
    .await;
    task.abort();
    let _ = task.await;
    let state = connection_stream::Entity::find_by_id((connection.id.clone(), "items".into()))
        .one(&first_worker_db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        state.state.is_some(),
        "the fourth page's checkpoint is stored"
    );

    // Another worker (another pool, as another process) takes it over once the lease runs
    // out, and resumes from the checkpoint.
    let second_worker_db = db.connect().await;
    let taker = runner(&second_worker_db, catalog_of(connector()));
    assert!(
        taker.lease_one().await.unwrap().is_none(),
        "the lease still holds"
    );
    second_worker_db
        .execute_unprepared("UPDATE sync_runs SET lease_expires_at = '2000-01-01 00:00:00+00:00'")
        .await
        .unwrap();
    let requests_before = source.seen().len();
    let lease = taker.lease_one().await.unwrap().expect("the abandoned run");
    assert_eq!(lease.run.id, run_id, "the same run, taken over");
    taker.execute(lease).await;

    let run = runs::get(&second_worker_db, &tenant, &run_id)
        .await
        .unwrap();
    assert_eq!(run.status, sync_run::SUCCEEDED, "{:?}", run.error);
    // Every record stored once, each published once: nothing lost, nothing repeated.
    let stored = records(&second_worker_db, &connection.id).await;
    assert_eq!(stored.len(), source::RECORDS);
    assert_eq!(run.counts["items"]["read"], source::RECORDS);
    assert_eq!(run.counts["items"]["created"], source::RECORDS);
    assert_eq!(
        events(&second_worker_db, CREATED).await.len(),
        source::RECORDS
    );
    // The rest was read from the fifth page on: 53 records are 11 pages, 7 were left.
    let requests = source.seen().len() - requests_before;
    assert_eq!(
        requests, 7,
        "resumed from the checkpoint, not from the start"
    );
}

async fn two_workers_never_run_one_connection_twice_at_once(db: TestDatabase) {
    let setup = db.connect().await;
    let tenant = migrated(&setup).await;
    let source = Source::start(Chaos::default()).await;
    let watch = Arc::new(Watch::default());
    let catalog = catalog_of(Wrapped::wrap(
        connector(),
        Behaviour::Watch(Arc::clone(&watch)),
    ));
    let mut connections = Vec::new();
    for n in 0..8 {
        let tag = serde_json::json!({"tag": format!("c{n}")});
        connections
            .push(connection_to(&setup, &catalog, &tenant, &source, source::BEARER, tag).await);
    }
    // Two workers, as two processes: their own pools, four runs each at once.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for _ in 0..2 {
        let pool = db.connect().await;
        let mut config = config();
        config.concurrency = 4;
        let runner = junction_connector_sync::SyncRunner::new(pool, Arc::clone(&catalog), config);
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(runner.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    // The first tick queues a run of each connection, once whichever worker sees it.
    eventually("a scheduled run of each connection", || async {
        let runs = sync_run::Entity::find().all(&setup).await.unwrap();
        runs.iter()
            .filter(|r| r.reason == sync_run::SCHEDULED)
            .count()
            == connections.len()
    })
    .await;
    // Meanwhile, syncs are asked for again and again: a live run answers instead.
    for _ in 0..5 {
        for connection in &connections {
            runs::trigger(&setup, &tenant, &connection.id)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually("every run ended", || async {
        let live = sync_run::Entity::find()
            .all(&setup)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.is_live())
            .count();
        live == 0
    })
    .await;
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }

    assert_eq!(
        watch.most.load(Ordering::SeqCst),
        1,
        "a connection read twice at once"
    );
    assert!(watch.reads.load(Ordering::SeqCst) >= connections.len());
    for connection in &connections {
        let runs = runs(&setup, &connection.id).await;
        assert!(
            runs.iter().all(|r| r.status == sync_run::SUCCEEDED),
            "{runs:?}"
        );
        // One scheduled run per tick: the first tick only, the next is 30 s away.
        let scheduled = runs
            .iter()
            .filter(|r| r.reason == sync_run::SCHEDULED)
            .count();
        assert_eq!(scheduled, 1, "{runs:?}");
        assert_eq!(records(&setup, &connection.id).await.len(), source::RECORDS);
    }
    assert_eq!(
        events(&setup, CREATED).await.len(),
        source::RECORDS * connections.len(),
        "each record published once"
    );
}

async fn a_source_answering_500s_fails_the_run_and_leaves_the_state_untouched(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    let source = Source::start(Chaos {
        error_every: 1,
        limit_every: 0,
    })
    .await;
    let catalog = catalog_of(connector());
    let connection = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({}),
    )
    .await;
    runner(&db, catalog).run_until_idle().await.unwrap();

    let run = &runs(&db, &connection.id).await[0];
    assert_eq!(run.status, sync_run::FAILED);
    let error = run.error.as_deref().unwrap();
    assert!(
        error.starts_with("temporary failure: stream items: "),
        "{error}"
    );
    assert!(error.contains("500"), "{error}");
    assert!(error.ends_with("(gave up after 3 tries)"), "{error}");
    // Three tries of the stream, each with the manifest's two retries of the request.
    assert_eq!(source.seen().len(), 9);
    assert!(run.finished_at.is_some() && run.lease_token.is_none());
    assert_eq!(
        count::<connection_stream::Entity>(&db).await,
        0,
        "no state stored"
    );
    assert!(records(&db, &connection.id).await.is_empty());
    assert!(events(&db, CREATED).await.is_empty());
}

async fn refused_credentials_fail_the_run_with_the_connectors_message(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    let source = Source::start(Chaos::default()).await;
    let catalog = catalog_of(connector());
    let connection = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        "revoked",
        serde_json::json!({}),
    )
    .await;
    runner(&db, catalog).run_until_idle().await.unwrap();

    let run = &runs(&db, &connection.id).await[0];
    assert_eq!(run.status, sync_run::FAILED);
    let error = run.error.as_deref().unwrap();
    assert!(
        error.starts_with("credentials rejected: stream items: "),
        "{error}"
    );
    assert_eq!(source.seen().len(), 1, "not retried");
    assert!(records(&db, &connection.id).await.is_empty());
}

async fn a_rate_limit_holds_its_connection_and_not_the_others(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    let source = Source::start(Chaos::default()).await;
    let catalog = catalog_of(Wrapped::wrap(
        connector(),
        Behaviour::RateLimit("limited".into()),
    ));
    let limited = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({"tag": "limited"}),
    )
    .await;
    let other = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({"tag": "other"}),
    )
    .await;
    let started = chrono::Utc::now();
    runner(&db, catalog).run_until_idle().await.unwrap();

    let run = &runs(&db, &limited.id).await[0];
    assert_eq!(
        run.status,
        sync_run::QUEUED,
        "back in the queue, holding the connection"
    );
    let waits = (run.run_after - started).num_seconds();
    assert!((118..=122).contains(&waits), "{waits}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("rate limited: stream items: 429: slow down; waiting until ")
    );
    // Asking again answers the waiting run.
    let again = runs::trigger(&db, &tenant, &limited.id).await.unwrap();
    assert!(!again.queued);
    assert_eq!(again.run.id, run.id);

    let other_run = &runs(&db, &other.id).await[0];
    assert_eq!(other_run.status, sync_run::SUCCEEDED);
    assert_eq!(records(&db, &other.id).await.len(), source::RECORDS);
}

async fn a_cancelled_run_stops_between_pages(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    let source = Source::start(Chaos::default()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let catalog = catalog_of(Wrapped::wrap(
        connector(),
        Behaviour::GateAfterFirst(Arc::clone(&gate)),
    ));
    let connection = connection_to(
        &db,
        &catalog,
        &tenant,
        &source,
        source::BEARER,
        serde_json::json!({}),
    )
    .await;
    let runner = runner(&db, catalog);
    let lease = runner.lease_one().await.unwrap().unwrap();
    let run_id = lease.run.id.clone();
    let task = tokio::spawn(async move { runner.execute(lease).await });
    eventually("the first page stored", || async {
        records(&db, &connection.id).await.len() == PAGE
    })
    .await;

    let asked = runs::cancel(&db, &tenant, &run_id).await.unwrap();
    assert_eq!(asked.status, sync_run::RUNNING);
    assert!(asked.cancel_requested);
    gate.add_permits(1_000);
    task.await.unwrap();

    let run = runs::get(&db, &tenant, &run_id).await.unwrap();
    assert_eq!(run.status, sync_run::CANCELLED);
    assert_eq!(
        records(&db, &connection.id).await.len(),
        PAGE,
        "nothing after the cancel"
    );
    let error = runs::cancel(&db, &tenant, &run_id).await.unwrap_err();
    assert!(matches!(error, SyncError::Conflict(_)), "{error}");
}

async fn connections_are_checked_and_scoped_to_their_tenant(db: TestDatabase) {
    let db = db.connect().await;
    let tenant = migrated(&db).await;
    let other = junction_schema::tenants::create(&db, "other")
        .await
        .unwrap()
        .id;
    let source = Source::start(Chaos::default()).await;
    let catalog = catalog_of(connector());
    let input = |schedule: u64, streams: &[&str], config: serde_json::Value| NewConnection {
        connector: "test-source".into(),
        config,
        credentials: [("token".to_owned(), source::BEARER.to_owned())].into(),
        schedule: Duration::from_secs(schedule),
        streams: streams.iter().map(|s| s.to_string()).collect(),
    };
    let good = serde_json::json!({"base_url": source.base_url()});
    let refused = |result: Result<_, SyncError>| match result {
        Err(SyncError::BadInput(message)) => message,
        other => panic!("expected a bad input, got {other:?}"),
    };
    let message =
        refused(connections::create(&db, &catalog, &tenant, input(10, &[], good.clone())).await);
    assert!(message.contains("at least 30 seconds"), "{message}");
    let message = refused(
        connections::create(&db, &catalog, &tenant, input(30, &["nope"], good.clone())).await,
    );
    assert!(message.contains("no stream \"nope\""), "{message}");
    let message = refused(
        connections::create(
            &db,
            &catalog,
            &tenant,
            input(30, &[], serde_json::json!({})),
        )
        .await,
    );
    assert!(message.contains("base_url"), "{message}");
    let mut unknown = input(30, &[], good.clone());
    unknown.connector = "nope".into();
    refused(connections::create(&db, &catalog, &tenant, unknown).await);

    // `check` asks the source, and answers with the connector's own message.
    connections::check(&catalog, &input(30, &[], good.clone()))
        .await
        .unwrap();
    let mut revoked = input(30, &[], good.clone());
    revoked.credentials.insert("token".into(), "revoked".into());
    let error = connections::check(&catalog, &revoked).await.unwrap_err();
    assert!(
        error.to_string().starts_with("credentials rejected"),
        "{error}"
    );

    let created = connections::create(&db, &catalog, &tenant, input(60, &["items"], good))
        .await
        .unwrap();
    assert!(matches!(
        connections::get(&db, &other, &created.id).await,
        Err(SyncError::NotFound(_))
    ));
    assert!(matches!(
        runs::trigger(&db, &other, &created.id).await,
        Err(SyncError::NotFound(_))
    ));
    assert!(matches!(
        connections::delete(&db, &other, &created.id).await,
        Err(SyncError::NotFound(_))
    ));
    assert!(
        connections::list(&db, &other, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        connections::list(&db, &tenant, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Paused: no scheduled run; resumed: due at once. Deleted: its runs go with it.
    connections::pause(&db, &tenant, &created.id).await.unwrap();
    let runner = runner(&db, Arc::clone(&catalog));
    assert_eq!(runner.run_until_idle().await.unwrap(), 0);
    connections::resume(&db, &tenant, &created.id)
        .await
        .unwrap();
    assert_eq!(runner.run_until_idle().await.unwrap(), 1);
    assert_eq!(records(&db, &created.id).await.len(), source::RECORDS);
    connections::delete(&db, &tenant, &created.id)
        .await
        .unwrap();
    assert!(records(&db, &created.id).await.is_empty());
    assert!(runs(&db, &created.id).await.is_empty());
}

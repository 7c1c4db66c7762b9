//! Lists bound as statement parameters, in a few lengths only. A statement's text changes
//! with the number of its parameters, and every new text is parsed and planned anew and
//! pushes another out of the connection's prepared-statement cache; with lengths rounded to
//! powers of two a busy dispatcher runs on a dozen texts per statement.
//!
//! And batches of key lookups, planned as such whatever the table's statistics say.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};

/// `sql` written with `$n` placeholders, as `backend` takes them (SQLite: `?n`).
pub fn placeholders(backend: DbBackend, sql: &str) -> String {
    match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    }
}

/// Prices table scans out for the rest of `txn`, whose statements find rows by key.
///
/// PostgreSQL's planner joins a batch of a few hundred keys against a scan of the whole table
/// whenever it believes the table small: at tens of thousands of rows by its cost model, and
/// at any size while statistics lag a growing table (autovacuum analyzes it a minute or more
/// late). Such a scan costs the batch as much as the table has rows: settling 512 deliveries
/// that way took 20 ms at 25,000 rows, by index 7 ms.
pub async fn prefer_key_lookups(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await?;
    }
    Ok(())
}

/// Begins a transaction whose statements find rows by key: see [`prefer_key_lookups`].
pub async fn begin_key_lookups(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    prefer_key_lookups(&txn).await?;
    Ok(txn)
}

/// `values` with the last one repeated up to the next power of two: for `IN (...)` lists and
/// `UPDATE ... FROM (VALUES ...)`, where a repeat changes nothing.
pub fn padded<T: Clone>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut values: Vec<T> = values.into_iter().collect();
    if let Some(last) = values.last().cloned() {
        values.resize(values.len().next_power_of_two(), last);
    }
    values
}

/// `items` in runs whose lengths are powers of two, longest first: for multi-row INSERTs,
/// where a repeat would be one row more.
pub fn power_of_two_runs<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let longest = 1 << rest.len().ilog2();
        let (run, tail) = rest.split_at(longest);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_padded_with_their_last_value() {
        assert_eq!(padded(Vec::<u8>::new()), Vec::<u8>::new());
        assert_eq!(padded([7]), vec![7]);
        assert_eq!(padded([1, 2, 3]), vec![1, 2, 3, 3]);
        assert_eq!(padded([1, 2, 3, 4]), vec![1, 2, 3, 4]);
        assert_eq!(padded(1..=5).len(), 8);
    }

    #[test]
    fn runs_cover_every_item_once_in_power_of_two_lengths() {
        let items: Vec<u32> = (0..86).collect();
        let runs: Vec<&[u32]> = power_of_two_runs(&items).collect();
        let lengths: Vec<usize> = runs.iter().map(|run| run.len()).collect();
        assert_eq!(lengths, vec![64, 16, 4, 2]);
        assert_eq!(runs.concat(), items);
        assert_eq!(power_of_two_runs::<u32>(&[]).count(), 0);
    }
}

//! The fan-out cursor: the audit log is the outbox, and `notify_cursor.seq` is the last event
//! turned into deliveries and mails.

use crate::{Conn, StoreError};

/// The last event fanned out, locked until the transaction ends (on PostgreSQL the UPDATE holds
/// the row; on SQLite the transaction holds the database), so two servers never fan out the same
/// events.
pub async fn lock_cursor(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("UPDATE notify_cursor SET seq = seq WHERE id = 1 RETURNING seq")
            .fetch_one(conn)
            .await?,
    )
}

/// Whether events were written after the cursor: one read, no lock, for the fan-out to skip
/// its transaction when there is nothing to do.
pub async fn behind(conn: &mut Conn) -> Result<bool, StoreError> {
    let behind: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_head h, notify_cursor c WHERE h.id = 1 AND c.id = 1 AND h.seq > c.seq",
    )
    .fetch_one(conn)
    .await?;
    Ok(behind > 0)
}

/// Moves the cursor to `seq`.
pub async fn set_cursor(conn: &mut Conn, seq: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE notify_cursor SET seq = $1 WHERE id = 1")
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// The sequence number of the newest audit event.
pub async fn audit_head(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

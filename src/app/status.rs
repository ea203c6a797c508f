//! `drugsync status`: where replication stands, for a person (a table) or a
//! machine (`--output json`), whether drugsync is running or not.
//!
//! The running writer publishes a [`StatusRecord`] to Redis once a second
//! (`<state_prefix><index version>:status`); `status` reads it with the
//! positions, the lease, the index and the source's binlogs. Nothing here
//! writes, and the checkpoint file is only read when no process holds it.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::config::Config;
use crate::observe::health::unix_ms;
use crate::position::Position;
use crate::sink::{Documents, Fencing, IndexAdmin, Lease, RemotePositions, VectorCache, WorkQueues};

/// What the writer publishes about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusRecord {
    /// The writer's instance id.
    pub holder: String,
    /// When this record was written (Unix seconds).
    pub written_at: u64,
    /// Source commit time of the last applied transaction (Unix seconds; 0: none yet).
    pub last_commit: u64,
    /// Its lag when applied, in milliseconds.
    pub lag_ms: u64,
    /// The last error a step failed with, and when (Unix seconds).
    pub last_error: Option<(String, u64)>,
    /// The visibility gate the writer's re-reads go through (snapshot, gtid, fence, none).
    #[serde(default)]
    pub visibility_gate: Option<String>,
}

/// Everything `drugsync status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The alias searches use.
    pub index: String,
    /// The index version this config writes.
    pub version: String,
    /// Lease holder, when a writer runs.
    pub writer: Option<String>,
    /// Milliseconds until the lease expires unless renewed.
    pub lease_ttl_ms: Option<u64>,
    /// The local checkpoint: a position, "none", or that a running process holds it.
    pub local_position: String,
    /// The position stored in Redis with the last applied batch.
    pub redis_position: Option<String>,
    /// Source commit time of the last applied transaction (Unix seconds).
    pub last_commit: Option<u64>,
    /// Seconds since that commit.
    pub last_commit_age_secs: Option<u64>,
    /// Its lag when applied, in milliseconds.
    pub lag_ms: Option<u64>,
    /// Seconds since the writer last published its status.
    pub status_age_secs: Option<u64>,
    /// Documents in the index version (FT.INFO num_docs).
    pub documents: u64,
    /// Documents in the quarantine.
    pub quarantined: u64,
    /// Every quarantined document with its reason, by key (the table shows
    /// the first [`QUARANTINE_SHOWN`]).
    pub quarantine: Vec<QuarantineEntry>,
    /// Keys a reconcile handed to the writer, not yet rebuilt.
    pub pending_repairs: usize,
    /// Documents written without their vector, waiting for it (see `sink::queues`).
    pub owed_vectors: u64,
    /// Seconds the oldest of them has waited.
    pub owed_max_age_secs: u64,
    /// Vectors in the cache of this embedding space.
    pub cached_vectors: u64,
    /// The source's binlogs against the stored position.
    pub source: SourceStatus,
    /// The last error the writer met, and seconds since.
    pub last_error: Option<(String, u64)>,
    /// The visibility gate the running writer's re-reads go through.
    pub visibility_gate: Option<String>,
    /// How Redis keeps its data across a restart (rdb, aof, none, declared).
    pub redis_persistence: String,
}

/// One quarantined document, as `sink::queues` records it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuarantineEntry {
    /// The document key.
    pub key: String,
    /// Why it is there (the source's or the embedding service's refusal).
    pub reason: String,
    /// Since when (Unix seconds; 0 when the entry does not say).
    pub since: u64,
    /// The position of the batch that quarantined it.
    pub position: Option<String>,
}

impl QuarantineEntry {
    /// Reads a stored entry (JSON: reason, since, position); an entry that
    /// is not that JSON is shown whole as the reason, never dropped.
    pub fn parse(key: String, stored: &str) -> Self {
        #[derive(Deserialize)]
        struct Stored {
            reason: String,
            #[serde(default)]
            since: u64,
            #[serde(default)]
            position: Option<String>,
        }
        match serde_json::from_str::<Stored>(stored) {
            Ok(s) => Self { key, reason: s.reason, since: s.since, position: s.position },
            Err(_) => Self { key, reason: stored.to_owned(), since: 0, position: None },
        }
    }
}

/// Quarantined documents the table lists; `--output json` lists all.
pub const QUARANTINE_SHOWN: usize = 10;

/// The source's side of the status.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Its binlog files, oldest and newest.
    pub binlog_files: Option<(String, String)>,
    /// Whether the file of the Redis position is still on the source.
    pub position_file_present: Option<bool>,
    /// How long it keeps binlogs.
    pub retention: Option<String>,
    /// Why the source could not be asked, if it could not.
    pub error: Option<String>,
}

/// Gathers the report. Fails only when Redis cannot be reached (it holds
/// most of it); a source that cannot be asked is reported as such.
pub async fn gather(config: &Config) -> Result<StatusReport, StatusError> {
    let sink = crate::app::compose::redis_sink(config).await?;
    let lease = sink.lease(String::new(), Duration::from_secs(config.redis.lease_ttl_secs));
    let writer = lease.current_holder().await?;
    let lease_ttl_ms = if writer.is_some() { lease.ttl_left_ms().await? } else { None };
    let local_position = match CheckpointStore::open(&config.checkpoint.path) {
        Ok(store) => store.load()?.map_or_else(|| "none".to_owned(), |p| p.to_string()),
        Err(CheckpointError::Locked { .. }) => "held by a running drugsync (see the Redis position)".to_owned(),
        Err(e) => return Err(e.into()),
    };
    let redis_position = sink.stored_position().await?;
    let record: Option<StatusRecord> = sink.status_record().await?.and_then(|text| serde_json::from_str(&text).ok());
    let now = unix_ms() / 1000;
    let last_commit = record.as_ref().map(|r| r.last_commit).filter(|c| *c > 0);
    let owed = sink.owed().await?;
    let mut quarantine: Vec<QuarantineEntry> =
        sink.quarantine().await?.into_iter().map(|(key, stored)| QuarantineEntry::parse(key.0, &stored)).collect();
    quarantine.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(StatusReport {
        index: config.index.name.clone(),
        version: sink.version().index.clone(),
        writer,
        lease_ttl_ms,
        local_position,
        redis_position: redis_position.as_ref().map(Position::to_string),
        last_commit,
        last_commit_age_secs: last_commit.map(|c| now.saturating_sub(c)),
        lag_ms: record.as_ref().map(|r| r.lag_ms),
        status_age_secs: record.as_ref().map(|r| now.saturating_sub(r.written_at)),
        documents: sink.document_count().await?,
        quarantined: quarantine.len() as u64,
        quarantine,
        pending_repairs: sink.pending_repairs().await?,
        owed_vectors: owed.count,
        owed_max_age_secs: owed.max_age_secs(now),
        cached_vectors: sink.vector_cache_len().await?,
        source: source_status(config, redis_position.as_ref()).await,
        visibility_gate: record.as_ref().and_then(|r| r.visibility_gate.clone()),
        redis_persistence: sink.persistence().await?.kind(config.redis.declared_durable).to_string(),
        last_error: record.and_then(|r| r.last_error).map(|(e, at)| (e, now.saturating_sub(at))),
    })
}

async fn source_status(config: &Config, position: Option<&Position>) -> SourceStatus {
    let mut status = SourceStatus { binlog_files: None, position_file_present: None, retention: None, error: None };
    let asked = async {
        let opts = crate::mysql::connect::mysql_opts(&config.mysql)?;
        let mut conn = tokio::time::timeout(crate::mysql::connect::CONNECT_TIMEOUT, mysql_async::Conn::new(opts))
            .await
            .map_err(|_| crate::mysql::SourceError::Connection("no MySQL connection in time".into()))?
            .map_err(|e| crate::mysql::SourceError::from_driver(e, "connect"))?;
        let files: Vec<String> = conn
            .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| row.get::<String, _>(0).unwrap_or_default())
            .await
            .map_err(|e| crate::mysql::SourceError::from_driver(e, "SHOW BINARY LOGS"))?;
        let retention = crate::mysql::preflight::binlog_retention(&mut conn).await?;
        conn.disconnect().await.ok();
        Ok::<_, crate::mysql::SourceError>((files, retention))
    };
    match asked.await {
        Ok((files, retention)) => {
            status.binlog_files = files.first().cloned().zip(files.last().cloned());
            status.position_file_present = position.filter(|p| !p.is_gtid_only()).map(|p| files.contains(&p.file));
            status.retention =
                Some(retention.map_or_else(|| "binlogs never expire".to_owned(), |r| format!("{:.1} h ({})", r.hours, r.setting)));
        }
        Err(e) => status.error = Some(e.to_string()),
    }
    status
}

impl StatusReport {
    /// The report as aligned lines for a person.
    pub fn to_table(&self) -> String {
        let or = |v: Option<String>, none: &str| v.unwrap_or_else(|| none.to_owned());
        let writer = match (&self.writer, self.lease_ttl_ms) {
            (Some(holder), Some(ttl)) => format!("{holder} (lease expires in {:.1} s unless renewed)", ttl as f64 / 1000.0),
            (Some(holder), None) => holder.clone(),
            (None, _) => "none running".to_owned(),
        };
        let commit = match (self.last_commit, self.last_commit_age_secs) {
            (Some(at), Some(age)) => format!("{} ({age} s ago; lag at apply {} ms)", utc(at), self.lag_ms.unwrap_or(0)),
            _ => "none recorded".to_owned(),
        };
        let source = match &self.source.error {
            Some(e) => format!("cannot ask: {e}"),
            None => format!(
                "binlogs {}; the Redis position's file is {}; retention {}",
                self.source.binlog_files.as_ref().map_or("none".to_owned(), |(a, b)| format!("{a} .. {b}")),
                match self.source.position_file_present {
                    Some(true) => "present",
                    Some(false) => "GONE (the next start takes the lost-position path)",
                    None => "not applicable",
                },
                or(self.source.retention.clone(), "unknown"),
            ),
        };
        let rows = [
            ("index", format!("{} (version {})", self.index, self.version)),
            ("writer", writer),
            ("local position", self.local_position.clone()),
            ("redis position", or(self.redis_position.clone(), "none")),
            ("last commit", commit),
            ("status age", self.status_age_secs.map_or("no status published".to_owned(), |s| format!("{s} s"))),
            ("documents", self.documents.to_string()),
            ("quarantined", self.quarantined.to_string()),
            ("pending repairs", self.pending_repairs.to_string()),
            (
                "owed vectors",
                match self.owed_vectors {
                    0 => "0".to_owned(),
                    n => format!("{n} (oldest waiting {} s; filled when the embedding service answers)", self.owed_max_age_secs),
                },
            ),
            ("cached vectors", self.cached_vectors.to_string()),
            (
                "redis persistence",
                match self.redis_persistence.as_str() {
                    "none" => "none: a Redis restart empties the index and the vector cache (see the start-up warning)".to_owned(),
                    "declared" => "declared durable (redis.declared_durable)".to_owned(),
                    kind => kind.to_owned(),
                },
            ),
            ("source", source),
            (
                "visibility gate",
                match self.visibility_gate.as_deref() {
                    Some("none") => "none: re-reads may miss a commit (mysql.visibility.allow_ungated_reads)".to_owned(),
                    Some(mode) => mode.to_owned(),
                    None => "no writer has reported one".to_owned(),
                },
            ),
            ("last error", self.last_error.as_ref().map_or("none".to_owned(), |(e, age)| format!("{e} ({age} s ago)"))),
        ];
        let mut out: String = rows.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect();
        for entry in self.quarantine.iter().take(QUARANTINE_SHOWN) {
            let since = if entry.since > 0 { format!(" (since {})", utc(entry.since)) } else { String::new() };
            out.push_str(&format!("  quarantined    {}: {}{since}\n", entry.key, entry.reason));
        }
        if self.quarantine.len() > QUARANTINE_SHOWN {
            out.push_str(&format!(
                "  quarantined    ... and {} more (drugsync status --output json lists all)\n",
                self.quarantine.len() - QUARANTINE_SHOWN
            ));
        }
        out
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (the civil-from-days algorithm).
fn utc(unix: u64) -> String {
    let (days, rest) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Why the status could not be gathered (Redis or the checkpoint file; a
/// source that cannot be asked is part of the report instead).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Redis.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The local checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl crate::error::Classify for StatusError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            StatusError::Sink(e) => e.class(),
            StatusError::Checkpoint(e) => e.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_entries_are_read_with_their_reason_and_the_table_lists_the_first_few() {
        let stored = r#"{"reason":"the embedding service refused this text","since":1795998065,"position":"1/binlog.000002:4"}"#;
        let entry = QuarantineEntry::parse("00002".into(), stored);
        assert_eq!(
            (entry.reason.as_str(), entry.since, entry.position.as_deref()),
            ("the embedding service refused this text", 1_795_998_065, Some("1/binlog.000002:4"))
        );
        assert_eq!(QuarantineEntry::parse("x".into(), "not json").reason, "not json", "an odd entry is shown, not dropped");
        let quarantine: Vec<QuarantineEntry> = (0..12).map(|i| QuarantineEntry::parse(format!("{i:05}"), stored)).collect();
        let report = StatusReport {
            index: "drugs_idx".into(),
            version: "drugs_idx_v1".into(),
            writer: None,
            lease_ttl_ms: None,
            local_position: "none".into(),
            redis_position: None,
            last_commit: None,
            last_commit_age_secs: None,
            lag_ms: None,
            status_age_secs: None,
            documents: 0,
            quarantined: 12,
            quarantine,
            pending_repairs: 0,
            owed_vectors: 0,
            owed_max_age_secs: 0,
            cached_vectors: 0,
            source: SourceStatus { binlog_files: None, position_file_present: None, retention: None, error: None },
            last_error: None,
            visibility_gate: None,
            redis_persistence: "rdb".into(),
        };
        let table = report.to_table();
        assert!(table.contains("quarantined    00000: the embedding service refused this text (since 2026-11-30T00:21:05Z)"), "{table}");
        assert!(table.contains("00009:") && !table.contains("00010:"), "the first 10: {table}");
        assert!(table.contains("... and 2 more (drugsync status --output json lists all)"), "{table}");
    }

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_795_998_065), "2026-11-30T00:21:05Z");
    }
}

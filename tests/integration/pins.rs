//! What must not change when the code is reorganised (issue 29, step 0):
//! each is read by something outside this build, so a change is a migration,
//! never a refactoring's side effect.
//!
//! - the reference config's index version: a new hash means a full rebuild
//!   and re-embedding of every text in production;
//! - the Redis key names: searches, dashboards, runbooks and running
//!   standbys of the previous build read them;
//! - the checkpoint file's layout: the next build opens this build's file;
//! - the metric names: alert rules and dashboards query them;
//! - the `applied` log line's fields: the SST alarms parse them.
//!
//! The expected values are written out here, not computed by drugsync.

use std::collections::BTreeSet;

use crate::common::{Flavour, REFERENCE_CONFIG, TestEnv, parse_config};

#[test]
fn the_reference_configs_index_version_and_embedding_space_are_pinned() {
    let config = parse_config(REFERENCE_CONFIG);
    let version = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config));
    assert_eq!((version.alias.as_str(), version.index.as_str(), version.prefix.as_str()), PINNED_VERSION);
    assert_eq!(drugsync::sink::keys::space_id(&config.embed), PINNED_SPACE);
    // The file as the binary loads it (through `extends` resolution) gives the same version.
    let loaded =
        drugsync::config::Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/drugsync.toml"))).unwrap();
    assert_eq!(drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&loaded)), version);
}

const PINNED_VERSION: (&str, &str, &str) = ("drugs_idx", "drugs_idx_va90e363c", "drug_va90e363c:");
const PINNED_SPACE: &str = "e3fd89eb";

#[test]
fn the_state_keys_of_a_version_are_pinned() {
    let keys = drugsync::sink::keys::VersionKeys::of("drugsync:", "drugs_idx_v0011aabb");
    let all: BTreeSet<&str> = keys.all().into_iter().collect();
    let pinned: BTreeSet<&str> = [
        "drugsync:drugs_idx_v0011aabb:position",
        "drugsync:drugs_idx_v0011aabb:load_epoch",
        "drugsync:drugs_idx_v0011aabb:mapping",
        "drugsync:drugs_idx_v0011aabb:space",
        "drugsync:drugs_idx_v0011aabb:quarantine",
        "drugsync:drugs_idx_v0011aabb:pending",
        "drugsync:drugs_idx_v0011aabb:status",
    ]
    .into_iter()
    .collect();
    assert_eq!(all, pinned);
}

/// Every key a writer leaves in Redis after an initial load and a change,
/// with the test's own names replaced by placeholders: `<state>` for the
/// state prefix, `<index>` for the alias, `<v>` for the version hash,
/// `<ndc>` for a document key, `<text>` for a text hash, `<space>` for the
/// embedding space.
#[tokio::test(flavor = "multi_thread")]
async fn the_keys_a_writer_leaves_in_redis_are_pinned() {
    let env = TestEnv::new(Flavour::Mariadb, "pins_keys", 60).await;
    let run = env.start().await;
    env.wait_caught_up().await;
    env.exec(&["UPDATE rlblrid3 SET MFG = 'PINNED LABS' WHERE LBLRID = '000001'"]).await;
    env.wait_caught_up().await;
    let config = env.config();
    let version = drugsync::sink::IndexVersion::of(&drugsync::app::compose::index_definition(&config));
    let state = config.redis.state_prefix.clone();
    let space = drugsync::sink::keys::space_id(&config.embed);
    let mut redis = env.redis.clone();
    let mut shapes = BTreeSet::new();
    for pattern in [format!("{state}*"), format!("{}*", version.prefix)] {
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
        for key in keys {
            let shape = key
                .replace(&version.prefix, "<docs>")
                .replace(&state, "<state>")
                .replace(&version.index, "<index>_v<v>")
                .replace(&config.index.name, "<index>")
                .replace(&space, "<space>");
            let shape = match shape.split_once("<docs>") {
                Some((before, _)) => format!("{before}<docs><ndc>"),
                None => shape,
            };
            let shape = match shape.strip_prefix("<state>vec:") {
                Some(rest) if rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()) => "<state>vec:<text>".to_owned(),
                _ => shape,
            };
            shapes.insert(shape);
        }
    }
    run.stop().await;
    let pinned: BTreeSet<String> = [
        "<docs><ndc>",
        "<state><index>:writer",
        "<state><index>_v<v>:load_epoch",
        "<state><index>_v<v>:mapping",
        "<state><index>_v<v>:position",
        "<state><index>_v<v>:space",
        "<state><index>_v<v>:status",
        "<state>vec:<text>",
        "<state>vec:space:<space>",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(shapes, pinned, "(documents live under {:?})", version.prefix);
}

/// The checkpoint is a redb file with one table `checkpoint` of text keys and
/// text values: `position` in the position's display form, `instance`.
#[test]
fn the_checkpoint_files_layout_is_pinned() {
    use redb::{ReadableDatabase, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.redb");
    let position: drugsync::position::Position = "1/binlog.000042:1234@0-1-77".parse().unwrap();
    {
        let store = drugsync::checkpoint::CheckpointStore::open(&path).unwrap();
        store.reset(&position).unwrap();
        store.instance_id().unwrap();
    }
    let db = redb::Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    let table = read.open_table(TableDefinition::<&str, &str>::new("checkpoint")).unwrap();
    assert_eq!(table.get("position").unwrap().unwrap().value(), "1/binlog.000042:1234@0-1-77");
    assert!(!table.get("instance").unwrap().unwrap().value().is_empty());
}

/// The metric names the build describes: alert rules and dashboards query them.
#[test]
fn the_metric_names_are_pinned() {
    let source = include_str!("../../src/app/metrics.rs");
    // `describe_counter!(` / `describe_gauge!(` / `describe_histogram!(`, then the name: the first string after it.
    let described: BTreeSet<String> = source
        .split("describe_")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .filter(|name| name.starts_with("drugsync_"))
        .map(str::to_owned)
        .collect();
    let pinned: BTreeSet<String> = PINNED_METRICS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(described, pinned);
}

const PINNED_METRICS: &[&str] = &[
    "drugsync_batches_total",
    "drugsync_canary_enabled",
    "drugsync_canary_freshness_seconds",
    "drugsync_canary_lag_seconds",
    "drugsync_documents_deleted_total",
    "drugsync_documents_owed_vector_total",
    "drugsync_documents_quarantined_total",
    "drugsync_documents_unchanged_total",
    "drugsync_documents_upserted_total",
    "drugsync_embed_calls_total",
    "drugsync_embed_estimated_cost_usd",
    "drugsync_embed_texts_cut_total",
    "drugsync_embed_texts_total",
    "drugsync_embed_tokens_total",
    "drugsync_full_diffs_total",
    "drugsync_index_hash_indexing_failures",
    "drugsync_index_percent_indexed",
    "drugsync_last_source_commit_timestamp_seconds",
    "drugsync_quarantined_documents",
    "drugsync_ready",
    "drugsync_redis_evicted_keys",
    "drugsync_redis_may_evict",
    "drugsync_redis_persistence",
    "drugsync_redis_rewinds_total",
    "drugsync_replication_lag_seconds",
    "drugsync_transactions_total",
    "drugsync_ungated_batches_total",
    "drugsync_vector_cache_hits_total",
    "drugsync_vectors_owed",
    "drugsync_vectors_owed_max_age_seconds",
    "drugsync_visibility_gate",
    "drugsync_writer",
];

//! The index administration role: this version's index and the alias in
//! front of it, what RediSearch says of them, and the records the writers
//! of one index agree on (mapping fingerprint, status), and the server's memory.
//!
//! Creating this version checks an existing one against the spec it was
//! built for (a mismatch is a start-up error, never a silent drop);
//! switching the alias to it is fenced; an index drugsync did not build is
//! never dropped.

use std::future::Future;

use redis::{RedisError, Value};

use super::index::IndexSpec;
use super::memory::MemoryInfo;
use super::ops::WriteOp;
use super::verdict::IndexVerdict;
use super::{AliasState, Documents, IndexVersion, RedisSink, SinkError};
use crate::document::DocumentKey;

/// This index version, its alias and the records beside them.
pub trait IndexAdmin: Sync {
    /// The index version this sink writes.
    fn version(&self) -> &IndexVersion;

    /// Creates this version's index if needed (an existing one must match
    /// the spec the sink was built with) and says where the alias stands.
    fn prepare_index(&self) -> impl Future<Output = Result<AliasState, SinkError>> + Send;

    /// Points the alias at this version (under the lease's fence); `old` is
    /// what it named, dropped with it unless drugsync did not build it.
    fn switch_alias(&self, old: Option<&str>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// What the search index of this version says of itself (`None`: no such index).
    fn verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send;

    /// The same, of the index the alias names (`None`: the alias answers
    /// nothing: Redis emptied, the index dropped).
    fn alias_verdict(&self) -> impl Future<Output = Result<Option<IndexVerdict>, SinkError>> + Send;

    /// Of `keys` (documents the sink holds), those the search index has not indexed.
    fn unindexed(&self, keys: &[DocumentKey]) -> impl Future<Output = Result<Vec<DocumentKey>, SinkError>> + Send;

    /// The mapping fingerprint (fields part, see `mapping::fingerprint`)
    /// this version's documents were built with, if recorded.
    fn mapping_fingerprint(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// Records that every document now follows `fields` (fenced like every write).
    fn store_mapping_fingerprint(&self, fields: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Publishes the writer's status record (JSON) for `drugsync status`, fenced.
    fn store_status(&self, json: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The last status record, if any.
    fn status_record(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;

    /// The server's memory limit, policy, use and evictions now.
    fn memory_info(&self) -> impl Future<Output = Result<MemoryInfo, SinkError>> + Send;
}

impl IndexAdmin for RedisSink {
    fn version(&self) -> &IndexVersion {
        &self.version
    }

    async fn prepare_index(&self) -> Result<AliasState, SinkError> {
        let mut conn = self.conn.clone();
        let want = &self.spec;
        match self.index_info(&want.name).await? {
            Some(info) => {
                let have = IndexSpec::from_ft_info(&want.name, &info).ok_or_else(|| SinkError::Command {
                    message: format!("cannot read FT.INFO {}", want.name),
                    hint: "the RediSearch version may be unsupported (2.8+ is)",
                })?;
                let differences = want.differences(&have);
                if !differences.is_empty() {
                    return Err(SinkError::IndexMismatch { name: want.name.clone(), differences: differences.join("; ") });
                }
            }
            None => {
                redis::cmd("FT.CREATE").arg(&self.create_args).query_async::<()>(&mut conn).await?;
                tracing::info!(index = %want.name, prefix = %want.prefix, dimensions = want.dimensions, "created index version");
            }
        }
        let current = self.live_index().await?.map(|live| live.name);
        Ok(match current {
            Some(name) if name == self.version.index => AliasState::Current,
            old => {
                if let Some(old) = &old {
                    self.check_replaceable(old).await?;
                }
                AliasState::Switch { old }
            }
        })
    }

    /// Fenced like every write of the lease holder, though FT.* commands cannot
    /// run inside the fencing script: on a connection of its own, the lease key
    /// is WATCHed, its holder checked, and the switch done in one MULTI/EXEC
    /// that Redis refuses if the lease changed meanwhile. A paused former
    /// writer can therefore never move the alias or drop the live index.
    async fn switch_alias(&self, old: Option<&str>) -> Result<(), SinkError> {
        let (alias, index) = (&self.version.alias, &self.version.index);
        if let Some(old) = old {
            // Again: the alias may have been moved while this version loaded.
            self.check_replaceable(old).await?;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        match old {
            None => {
                pipe.cmd("FT.ALIASADD").arg(alias).arg(index).ignore();
            }
            // A legacy index carries the alias's name: drop it and add the alias atomically.
            Some(old) if old == alias => {
                let drop = pipe.cmd("FT.DROPINDEX").arg(old);
                if self.legacy_documents_are_its_own(old).await? {
                    tracing::warn!(
                        index = %old,
                        "taking over the legacy index named index.name: the configuration names it as the index drugsync replaces, and none of its prefixes holds drugsync's own keys, so it is dropped with its documents"
                    );
                    drop.arg("DD");
                } else {
                    tracing::warn!(index = %old, "the legacy index covers keys drugsync keeps (no PREFIX, or one of drugsync's): dropping it without its documents");
                }
                drop.ignore();
                pipe.cmd("FT.ALIASADD").arg(alias).arg(index).ignore();
            }
            Some(old) => {
                // The old version's state goes with it; its space record stays
                // until its cached vectors are dropped (`drop_vector_cache_of`).
                let old_keys = super::keys::VersionKeys::of(&self.state_prefix, old);
                let state: Vec<&str> = old_keys.all().into_iter().filter(|k| *k != old_keys.space).collect();
                pipe.cmd("FT.ALIASUPDATE").arg(alias).arg(index).ignore();
                pipe.cmd("FT.DROPINDEX").arg(old).arg("DD").ignore();
                pipe.cmd("DEL").arg(state).ignore();
            }
        }
        self.fenced_exec(&pipe).await?;
        tracing::info!(%alias, %index, old = ?old, "alias switched to the new index version");
        Ok(())
    }

    async fn verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        self.verdict_of(&self.version.index.clone()).await
    }

    async fn alias_verdict(&self) -> Result<Option<IndexVerdict>, SinkError> {
        self.verdict_of(&self.version.alias.clone()).await
    }

    /// One `FT.SEARCH … INKEYS` for the lot.
    async fn unindexed(&self, keys: &[DocumentKey]) -> Result<Vec<DocumentKey>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(&self.version.index).arg("*").arg("INKEYS").arg(keys.len());
        for key in keys {
            cmd.arg(self.key_of(key));
        }
        cmd.arg("NOCONTENT").arg("LIMIT").arg(0).arg(keys.len());
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = cmd.query_async(&mut conn).await?;
        let indexed: std::collections::HashSet<String> =
            reply.into_iter().skip(1).filter_map(|v| redis::from_redis_value::<String>(v).ok()).collect();
        Ok(keys.iter().filter(|k| !indexed.contains(&self.key_of(k))).cloned().collect())
    }

    async fn mapping_fingerprint(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(&self.keys.mapping).query_async(&mut conn).await?)
    }

    async fn store_mapping_fingerprint(&self, fields: &str) -> Result<(), SinkError> {
        self.write(vec![WriteOp::Set { key: self.keys.mapping.clone(), value: fields.as_bytes().to_vec() }]).await
    }

    async fn store_status(&self, json: &str) -> Result<(), SinkError> {
        self.write(vec![WriteOp::Set { key: self.keys.status.clone(), value: json.as_bytes().to_vec() }]).await
    }

    async fn status_record(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(&self.keys.status).query_async(&mut conn).await?)
    }

    /// INFO memory and INFO stats.
    async fn memory_info(&self) -> Result<MemoryInfo, SinkError> {
        let mut conn = self.conn.clone();
        let memory: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
        let stats: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await?;
        Ok(MemoryInfo::parse(&format!("{memory}\n{stats}")))
    }
}

impl RedisSink {
    /// Refuses to move the alias away from (and so drop) an index drugsync
    /// did not build. drugsync replaces only:
    /// - its own versions: named `<alias>_v<8 hex digits>` and holding state
    ///   drugsync wrote for them (their position or embedding-space key);
    /// - a legacy index named exactly `index.name`: the configuration names
    ///   it as the index drugsync takes over (the nightly job's `drugs_idx`).
    async fn check_replaceable(&self, old: &str) -> Result<(), SinkError> {
        if old == self.version.alias || self.is_own_version(old).await? {
            return Ok(());
        }
        Err(SinkError::ForeignIndex { alias: self.version.alias.clone(), index: old.to_owned() })
    }

    /// Whether `index` is a version drugsync built (see [`Self::check_replaceable`]).
    async fn is_own_version(&self, index: &str) -> Result<bool, SinkError> {
        if !super::IndexVersion::is_named_version_of(&self.version.alias, index) {
            return Ok(false);
        }
        let keys = super::keys::VersionKeys::of(&self.state_prefix, index);
        let mut conn = self.conn.clone();
        let found: u64 = redis::cmd("EXISTS").arg(&keys.position).arg(&keys.space).query_async(&mut conn).await?;
        Ok(found > 0)
    }

    /// True when every prefix of the legacy index `name` lies outside
    /// drugsync's own keys (its state and versioned documents), so dropping
    /// it with DD deletes only its documents. An index created without PREFIX
    /// covers every key.
    async fn legacy_documents_are_its_own(&self, name: &str) -> Result<bool, SinkError> {
        let Some(info) = self.index_info(name).await? else { return Ok(false) };
        let prefixes = super::index::prefixes_of(&info);
        let ours = [self.prefix.as_str(), self.cache_prefix.as_str(), self.keys.position.as_str(), self.lease_key.as_str()];
        Ok(!prefixes.is_empty()
            && prefixes.iter().all(|p| !p.is_empty() && ours.iter().all(|o| !o.starts_with(p.as_str()) && !p.starts_with(*o))))
    }

    async fn verdict_of(&self, name: &str) -> Result<Option<IndexVerdict>, SinkError> {
        match self.index_info(name).await? {
            Some(info) => Ok(Some(IndexVerdict::of(&info)?)),
            None => Ok(None),
        }
    }

    /// `FT.INFO name`, or `None` when there is no such index or alias.
    pub(super) async fn index_info(&self, name: &str) -> Result<Option<Value>, SinkError> {
        let mut conn = self.conn.clone();
        match redis::cmd("FT.INFO").arg(name).query_async::<Value>(&mut conn).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if is_unknown_command(&e) => Err(SinkError::NoSearchModule { url: self.url.clone() }),
            Err(e) if is_unknown_index(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// RediSearch answers `Unknown index name` (2.x) or `no such index` (older/newer wording).
fn is_unknown_index(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    (text.contains("unknown") && text.contains("index name")) || text.contains("no such index")
}

fn is_unknown_command(err: &RedisError) -> bool {
    err.to_string().to_ascii_lowercase().contains("unknown command")
}

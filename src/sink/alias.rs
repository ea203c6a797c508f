//! The index and its alias: creating this config's version, checking an
//! existing one against the config, and switching the alias to it (fenced).

use redis::{RedisError, Value};

use super::index::IndexSpec;
use super::{RedisSink, SinkError};
use crate::config::Config;

impl RedisSink {
    /// Creates this config's index version when absent (an existing one must
    /// match), and says whether the alias still has to be switched to it.
    pub async fn prepare_index(&self, config: &Config) -> Result<super::AliasState, SinkError> {
        let mut conn = self.conn.clone();
        let want = IndexSpec::from_config(config, &self.version.index, &self.version.prefix);
        match self.index_info(&want.name).await? {
            Some(info) => {
                let have = IndexSpec::from_ft_info(&want.name, &info).ok_or_else(|| SinkError::Command {
                    message: format!("cannot read FT.INFO {}", want.name),
                    hint: "the RediSearch version may be unsupported (2.8+ is)",
                })?;
                let differences = want.differences(&have);
                if !differences.is_empty() {
                    return Err(SinkError::IndexMismatch { name: want.name, differences: differences.join("; ") });
                }
            }
            None => {
                redis::cmd("FT.CREATE")
                    .arg(IndexSpec::create_args(config, &self.version.index, &self.version.prefix))
                    .query_async::<()>(&mut conn)
                    .await?;
                tracing::info!(index = %want.name, prefix = %want.prefix, dimensions = want.dimensions, "created index version");
            }
        }
        let current = self.live_index().await?.map(|live| live.name);
        Ok(match current {
            Some(name) if name == self.version.index => super::AliasState::Current,
            old => {
                if let Some(old) = &old {
                    self.check_replaceable(old).await?;
                }
                super::AliasState::Switch { old }
            }
        })
    }

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

    /// Points the alias at this version in one step, then drops `old` (with
    /// its documents when they are surely its own).
    ///
    /// Fenced like every write of the lease holder, though FT.* commands cannot
    /// run inside the fencing script: on a connection of its own, the lease key
    /// is WATCHed, its holder checked, and the switch done in one MULTI/EXEC
    /// that Redis refuses if the lease changed meanwhile. A paused former
    /// writer can therefore never move the alias or drop the live index.
    pub async fn switch_alias(&self, old: Option<&str>) -> Result<(), SinkError> {
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

    /// Documents in this index version (`FT.INFO num_docs`; 0 when it does not exist yet).
    pub async fn document_count(&self) -> Result<u64, SinkError> {
        let info = self.index_info(&self.version.index).await?;
        Ok(info.and_then(|info| info_text(&info, "num_docs")).and_then(|n| n.parse().ok()).unwrap_or(0))
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

/// A top-level text field of an FT.INFO reply.
pub(super) fn info_text(info: &Value, field: &str) -> Option<String> {
    let Value::Array(items) = info else { return None };
    items.chunks_exact(2).find_map(|kv| match (&kv[0], &kv[1]) {
        (Value::SimpleString(k) | Value::VerbatimString { text: k, .. }, v) if k == field => {
            redis::from_redis_value::<String>(v.clone()).ok()
        }
        (Value::BulkString(k), v) if k == field.as_bytes() => redis::from_redis_value::<String>(v.clone()).ok(),
        _ => None,
    })
}

/// RediSearch answers `Unknown index name` (2.x) or `no such index` (older/newer wording).
fn is_unknown_index(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    (text.contains("unknown") && text.contains("index name")) || text.contains("no such index")
}

fn is_unknown_command(err: &RedisError) -> bool {
    err.to_string().to_ascii_lowercase().contains("unknown command")
}

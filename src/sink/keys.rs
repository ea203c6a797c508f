//! Names of drugsync's own keys in Redis, built in one place.
//!
//! Per index version, `<redis.state_prefix><version index>:<what>`: a new
//! version starts with none of them (no position: it is loaded in full), and
//! an old version's go with it when the alias leaves it. Per index (the
//! alias), the writer lease and the repair queue, which outlive versions.
//! And the embedding space's id, which names the vector cache's sets.

use sha2::{Digest, Sha256};

use crate::config::EmbedConfig;

/// The state keys of one index version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionKeys {
    /// The position stored with the last applied batch.
    pub position: String,
    /// The initial load's epoch (see `apply::load`).
    pub load_epoch: String,
    /// The fields part of the mapping fingerprint the documents were built with.
    pub mapping: String,
    /// The embedding space the version's vectors are in.
    pub space: String,
    /// Documents left out for good (see `queues.rs`).
    pub quarantine: String,
    /// Documents whose vector is owed (see `queues.rs`).
    pub pending: String,
    /// The writer's status record (`drugsync status`).
    pub status: String,
}

impl VersionKeys {
    /// The keys of version `index` (`drugs_idx_v1a2b3c4d`) under `state_prefix`.
    pub fn of(state_prefix: &str, index: &str) -> Self {
        let key = |what: &str| format!("{state_prefix}{index}:{what}");
        Self {
            position: key("position"),
            load_epoch: key("load_epoch"),
            mapping: key("mapping"),
            space: key("space"),
            quarantine: key("quarantine"),
            pending: key("pending"),
            status: key("status"),
        }
    }

    /// Every key, for dropping a version's state with it.
    pub fn all(&self) -> [&str; 7] {
        [&self.position, &self.load_epoch, &self.mapping, &self.space, &self.quarantine, &self.pending, &self.status]
    }
}

/// What identifies an embedding space in config: provider, model,
/// dimensions, normalisation, template version. Vectors are only
/// interchangeable within one (the index version hashes these too).
pub fn space_parts(embed: &EmbedConfig) -> Vec<String> {
    let mut parts = vec![
        format!("{:?}", embed.provider),
        embed.model_id.clone(),
        embed.dimensions.to_string(),
        embed.normalize.to_string(),
        embed.template_version.to_string(),
    ];
    // A long text's vector depends on where it was cut. Only a limit set by
    // hand is a part, so configs that leave the model's default keep their version.
    if let Some(limit) = embed.max_input_chars {
        parts.push(format!("cut:{limit}"));
    }
    parts
}

/// The embedding space of `embed`, 8 hex digits: what a cached vector is only good for.
pub fn space_id(embed: &EmbedConfig) -> String {
    let mut h = Sha256::new();
    for part in space_parts(embed) {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

#[cfg(test)]
mod tests {
    use super::VersionKeys;

    #[test]
    fn every_key_is_under_the_state_prefix_and_the_version() {
        let keys = VersionKeys::of("drugsync:", "drugs_idx_v0011aabb");
        assert_eq!(keys.position, "drugsync:drugs_idx_v0011aabb:position");
        assert!(keys.all().iter().all(|k| k.starts_with("drugsync:drugs_idx_v0011aabb:")));
        let distinct: std::collections::HashSet<_> = keys.all().into_iter().collect();
        assert_eq!(distinct.len(), 7);
    }
}

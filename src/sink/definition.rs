//! What the Redis side is built from besides `[redis]`: the index this
//! configuration asks for, with everything its version hash covers. Built
//! from the sections it reads (`[index]`, `[embed]`, `[mapping]`), so that
//! the sink never sees the whole configuration.

use crate::config::{EmbedConfig, IndexConfig, MappingConfig};
use crate::mapping::MappingFingerprint;

/// The index a configuration asks for (see `version.rs` for the version
/// hash over it, `index.rs` for its `FT.CREATE`).
#[derive(Debug, Clone)]
pub struct IndexDefinition {
    /// `[index]`: the alias, the key prefix base, fields, vector field and algorithm.
    pub index: IndexConfig,
    /// Vector length (`embed.dimensions`).
    pub dimensions: usize,
    /// What identifies the embedding space (provider, model, dimensions,
    /// normalisation, template version, a hand-set cut): hashed into the version.
    pub space_parts: Vec<String>,
    /// The embedding space, 8 hex digits: the vector cache it may use.
    pub space_id: String,
    /// `embed.cache_max_vectors` (0: no cache).
    pub cache_max_vectors: u64,
    /// The text side of the mapping fingerprint: hashed into the version.
    pub text_fingerprint: String,
}

impl IndexDefinition {
    /// The definition of these sections.
    pub fn new(index: &IndexConfig, embed: &EmbedConfig, mapping: &MappingConfig) -> Self {
        Self {
            index: index.clone(),
            dimensions: embed.dimensions,
            space_parts: super::keys::space_parts(embed),
            space_id: super::keys::space_id(embed),
            cache_max_vectors: embed.cache_max_vectors,
            text_fingerprint: MappingFingerprint::of(mapping).text,
        }
    }
}

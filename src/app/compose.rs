//! The composition root's constructors: each component built from its own
//! sections of the configuration. Apart from `config/` itself, only this
//! module, the replicator's assembly and the command-line modes read the
//! configuration whole; components never do.

use crate::config::Config;
use crate::document::EmbeddingSpace;
use crate::mapping::DocumentLoader;
use crate::sink::{IndexDefinition, RedisSink, SinkError};

/// The index `config` asks for (`[index]`, `[embed]`, `[mapping]`).
pub fn index_definition(config: &Config) -> IndexDefinition {
    IndexDefinition::new(&config.index, &config.embed, &config.mapping)
}

/// The Redis side of `config`: `[redis]` and the index it asks for.
pub async fn redis_sink(config: &Config) -> Result<RedisSink, SinkError> {
    RedisSink::connect(&config.redis, &index_definition(config)).await
}

/// The document loader of `config`'s mapping, hashing texts in `space`.
pub fn document_loader(config: &Config, space: EmbeddingSpace) -> DocumentLoader {
    DocumentLoader::new(
        &config.mapping,
        &config.index.fields,
        space,
        config.pipeline.load_chunk,
        std::time::Duration::from_secs(config.mysql.query_timeout_secs),
    )
}

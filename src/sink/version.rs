//! Index versions behind an alias.
//!
//! The configured `index.name` is an alias. The physical index is
//! `<name>_v<hash>` with keys under `<prefix base>_v<hash>:`, where the hash
//! covers everything that shapes the index or its documents: fields, vector
//! definition, embedding provider, model, dimensions, normalisation, template
//! version, and the part of the mapping that can change embedded text (see
//! `mapping::fingerprint`; a change to other fields is reconciled in place).
//! No index ever holds vectors of two mappings. Changing any of them yields a
//! new version, built beside the old
//! one while the alias keeps answering from the old; the alias then switches
//! in one step and the old version is dropped with its keys. Versions never
//! share a key prefix, so no index ever indexes another version's documents.

use sha2::{Digest, Sha256};

use super::IndexDefinition;
use super::index::IndexSpec;

/// Names of the index version a config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexVersion {
    /// The alias searches use (`index.name`).
    pub alias: String,
    /// The physical index (`<alias>_v<hash>`).
    pub index: String,
    /// Key prefix of its documents (`<prefix base>_v<hash>:`).
    pub prefix: String,
    /// The hash, 8 hex digits.
    pub hash: String,
}

impl IndexVersion {
    /// The version `definition` describes.
    pub fn of(definition: &IndexDefinition) -> Self {
        let mut h = Sha256::new();
        // Everything after the name and prefix: the schema itself.
        for arg in IndexSpec::schema_args(definition) {
            h.update(arg.as_bytes());
            h.update([0]);
        }
        for part in definition.space_parts.iter().chain([&definition.text_fingerprint]) {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let hash = hex::encode(&h.finalize()[..4]);
        let alias = definition.index.name.clone();
        let base = definition.index.prefix.trim_end_matches(':');
        Self { index: format!("{alias}_v{hash}"), prefix: format!("{base}_v{hash}:"), alias, hash }
    }
}

impl IndexVersion {
    /// Whether `index` is named as a version behind `alias` is
    /// (`<alias>_v<8 hex digits>`, as [`Self::of`] names them).
    pub fn is_named_version_of(alias: &str, index: &str) -> bool {
        index
            .strip_prefix(alias)
            .and_then(|rest| rest.strip_prefix("_v"))
            .is_some_and(|hash| hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// Where the alias stands relative to the wanted version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasState {
    /// The alias already points at the wanted version.
    Current,
    /// The alias is missing or points elsewhere (`old`): the wanted version
    /// must be loaded, then the alias switched and `old` dropped.
    Switch {
        /// Index the alias points at now, or a legacy index named like the alias.
        old: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// The definition of a configuration's text.
    fn config(text: &str) -> IndexDefinition {
        let c = Config::from_toml(text, Path::new("t"), |_| None).unwrap();
        IndexDefinition::new(&c.index, &c.embed, &c.mapping)
    }

    #[test]
    fn the_names_drugsync_gives_its_versions_are_the_ones_it_recognises() {
        let version = IndexVersion::of(&config(include_str!("../../config/drugsync.toml")));
        assert!(IndexVersion::is_named_version_of(&version.alias, &version.index), "{}", version.index);
        for foreign in ["products", "drugs_idx", "drugs_idx_v1234567", "drugs_idx_vnothexxx", "other_v1a2b3c4d", "drugs_idx_v1a2b3c4d5"] {
            assert!(!IndexVersion::is_named_version_of("drugs_idx", foreign), "{foreign}");
        }
    }

    #[test]
    fn version_changes_with_the_definition_only() {
        let reference = include_str!("../../config/drugsync.toml");
        let base = IndexVersion::of(&config(reference));
        assert_eq!(base.alias, "drugs_idx");
        assert!(base.index.starts_with("drugs_idx_v") && base.prefix.starts_with("drug_v") && base.prefix.ends_with(':'));
        assert_eq!(
            IndexVersion::of(&config(&reference.replacen("batch_max_transactions = 1000", "batch_max_transactions = 100", 1))),
            base
        );
        let other_dims = IndexVersion::of(&config(&reference.replacen("dimensions = 1024", "dimensions = 512", 1)));
        assert_ne!(other_dims.index, base.index);
        assert!(!other_dims.prefix.starts_with(&base.prefix) && !base.prefix.starts_with(&other_dims.prefix));
        let other_field = IndexVersion::of(&config(&reference.replacen(
            "{ name = \"route\", type = \"TAG\", separator = \"|\" }",
            "{ name = \"route\", type = \"TEXT\" }",
            1,
        )));
        assert_ne!(other_field.hash, base.hash);
        // The text side of the mapping is part of the version; its layout is not.
        let strength = "COALESCE(NULLIF(g.STR60, ''), g.STR) AS strength";
        assert!(reference.contains(strength));
        let other_sql = IndexVersion::of(&config(&reference.replacen(strength, "g.STR AS strength", 1)));
        assert_ne!(other_sql.hash, base.hash, "select_sql");
        let reflowed =
            IndexVersion::of(&config(&reference.replacen(strength, "COALESCE(NULLIF(g.STR60, ''),\n         g.STR)   AS strength", 1)));
        assert_eq!(reflowed.hash, base.hash, "whitespace only");
        let manufacturer = IndexVersion::of(&config(&reference.replacen("l.MFG AS manufacturer", "UPPER(l.MFG) AS manufacturer", 1)));
        assert_eq!(manufacturer.hash, base.hash, "a field the text does not use is reconciled in place, not rebuilt");
        for (from, to) in [
            ("text_template = \"{drug_name} |", "text_template = \"{drug_name} -"),
            ("filter_sql = \"n.OBSDTEC = '0000-00-00'\"", "filter_sql = \"n.OBSDTEC = '0000-00-00' AND n.DEA <> '1'\""),
            ("trim_trailing_spaces = true", "trim_trailing_spaces = false"),
        ] {
            assert!(reference.contains(from), "{from}");
            assert_ne!(IndexVersion::of(&config(&reference.replacen(from, to, 1))).hash, base.hash, "{from}");
        }
    }
}

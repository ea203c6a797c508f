//! The mapping as part of the index state, split by what a change to it costs.
//!
//! A mapping change must reach every document (architecture invariant 8), in
//! one of two ways:
//!
//! - **It can change embedded text** (the text template, the expression of a
//!   field the template uses, the joins, the filter, the key, trimming): the
//!   [`MappingFingerprint::text`] part is in the index version's hash, so a
//!   new version is built beside the live one and the alias switches to it,
//!   as for a model change. No index ever holds vectors of two mappings.
//! - **It can change only other field values** (say the `manufacturer`
//!   expression): the [`MappingFingerprint::fields`] part is stored in Redis
//!   with the index version, and a start that finds another one compares every
//!   document with MySQL in place (a reconcile: no text, so no embedding call,
//!   changes).
//!
//! Which expressions feed which alias is read from `select_sql`'s select list
//! (top-level commas, a trailing `AS alias`). When that reading fails, the
//! whole statement counts as text: a rebuild beside is never wrong, only slower.

use sha2::{Digest, Sha256};

use crate::config::MappingConfig;
use crate::document::template_fields;
use crate::sql_text::{split_top_level, top_level};

/// See the module docs. Both parts are hex SHA-256 prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingFingerprint {
    /// What can change embedded text (goes into the index version).
    pub text: String,
    /// What can change only other field values (stored with the index state).
    pub fields: String,
}

impl MappingFingerprint {
    /// The fingerprint of `mapping`.
    pub fn of(mapping: &MappingConfig) -> Self {
        let text_fields = template_fields(&mapping.text_template).unwrap_or_default();
        let mut text = vec![
            normalise(&mapping.filter_sql),
            normalise(&mapping.key_expr),
            mapping.key_field.clone(),
            mapping.text_template.clone(),
            mapping.trim_trailing_spaces.to_string(),
        ];
        let mut fields = Vec::new();
        match SelectList::parse(&mapping.select_sql) {
            Some(select) => {
                text.push(select.rest);
                for (alias, expression) in select.items {
                    let item = format!("{alias}={expression}");
                    if text_fields.iter().any(|f| f.eq_ignore_ascii_case(&alias)) || alias.eq_ignore_ascii_case(&mapping.key_field) {
                        text.push(item);
                    } else {
                        fields.push(item);
                    }
                }
            }
            None => text.push(normalise(&mapping.select_sql)),
        }
        fields.sort();
        Self { text: digest(&text), fields: digest(&fields) }
    }
}

fn digest(parts: &[String]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Every run of whitespace as one space, trimmed.
fn normalise(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `SELECT <items> FROM <rest>`, items as (lower-cased alias, normalised expression).
struct SelectList {
    items: Vec<(String, String)>,
    rest: String,
}

impl SelectList {
    fn parse(sql: &str) -> Option<Self> {
        let sql = normalise(sql);
        let body = sql.get(..7).filter(|head| head.eq_ignore_ascii_case("SELECT "))?;
        let body = &sql[body.len()..];
        let (list, rest) = split_at_top_level_from(body)?;
        let mut items = Vec::new();
        for item in split_top_level(list, ',') {
            let item = item.trim();
            let lower = item.to_ascii_lowercase();
            let at = lower.rfind(" as ")?;
            let alias = item[at + 4..].trim().trim_matches('`').to_ascii_lowercase();
            if alias.is_empty() || alias.contains([' ', '(', ')']) {
                return None;
            }
            items.push((alias, item[..at].trim().to_owned()));
        }
        Some(Self { items, rest: rest.to_owned() })
    }
}

/// The select list and everything from the first top-level ` FROM ` on.
fn split_at_top_level_from(body: &str) -> Option<(&str, &str)> {
    let lower = body.to_ascii_lowercase();
    top_level(body).find(|&(i, c)| c == ' ' && lower[i..].starts_with(" from ")).map(|(i, _)| (&body[..i], &body[i + 1..]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn fingerprint(text: &str) -> MappingFingerprint {
        MappingFingerprint::of(&Config::from_toml(text, Path::new("t"), |_| None).unwrap().mapping)
    }

    #[test]
    fn a_field_the_template_does_not_use_changes_only_the_fields_part() {
        let reference = include_str!("../../config/drugsync.toml");
        let base = fingerprint(reference);
        let manufacturer = fingerprint(&reference.replacen("l.MFG AS manufacturer", "CONCAT('M:', l.MFG) AS manufacturer", 1));
        assert_eq!(manufacturer.text, base.text, "not embedded");
        assert_ne!(manufacturer.fields, base.fields);
        let strength = fingerprint(&reference.replacen("COALESCE(NULLIF(g.STR60, ''), g.STR) AS strength", "g.STR AS strength", 1));
        assert_ne!(strength.text, base.text, "strength is in the template");
        let join =
            fingerprint(&reference.replacen("LEFT JOIN rlblrid3 l ON l.LBLRID = n.LBLRID", "JOIN rlblrid3 l ON l.LBLRID = n.LBLRID", 1));
        assert_ne!(join.text, base.text, "the joins shape every field");
        let reflowed = fingerprint(&reference.replacen("n.DEA AS dea_schedule", "n.DEA   AS\n  dea_schedule", 1));
        assert_eq!(reflowed, base, "whitespace is not a change");
    }

    #[test]
    fn a_select_list_it_cannot_read_counts_as_text() {
        assert!(SelectList::parse("SELECT n.NDC AS ndc, n.LN drug_name FROM rndc14 n").is_none(), "an alias without AS");
        let list = SelectList::parse("SELECT CONCAT(a, ',', b) AS x, `c` AS `Y` FROM t WHERE q = 'from x'").unwrap();
        assert_eq!(list.items, [("x".to_owned(), "CONCAT(a, ',', b)".to_owned()), ("y".to_owned(), "`c`".to_owned())]);
        assert_eq!(list.rest, "FROM t WHERE q = 'from x'");
    }
}

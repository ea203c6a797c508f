//! `extends = "base.toml"`: a configuration file written as the changes to
//! another one (the demo's `config/demo.toml` is the reference config with
//! another embedder). Tables merge key by key; any other value, arrays
//! included, replaces the base's whole. The base's path is relative to the
//! file that names it, and may itself extend another.

use std::path::Path;

use super::ConfigError;

/// How deep `extends` may chain: enough for layered environments, and a
/// loop of files stops here instead of recursing forever.
const MAX_DEPTH: usize = 4;

/// The text of `path` with what it extends merged in, as one TOML document.
pub(super) fn resolved_text(path: &Path) -> Result<String, ConfigError> {
    let table = resolved(path, 0)?;
    toml::to_string(&table).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
}

fn resolved(path: &Path, depth: usize) -> Result<toml::Table, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    let Some(base) = table.remove("extends") else { return Ok(table) };
    let toml::Value::String(base) = base else {
        return Err(parse_error("field `extends`: must be the path of another config file".into()));
    };
    if depth == MAX_DEPTH {
        return Err(parse_error(format!("field `extends`: more than {MAX_DEPTH} files chained (does one extend itself?)")));
    }
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
    let mut merged = resolved(&base_path, depth + 1)?;
    merge(&mut merged, table);
    Ok(merged)
}

/// `overlay` onto `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("drugsync-extends-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tables_merge_key_by_key_and_other_values_replace() {
        let dir = scratch("merge");
        std::fs::write(dir.join("base.toml"), "[embed]\nprovider = \"local\"\ndimensions = 1024\n[index]\nfields = [1, 2]\n").unwrap();
        std::fs::write(dir.join("demo.toml"), "extends = \"base.toml\"\n[embed]\ndimensions = 384\n[index]\nfields = [3]\n").unwrap();
        let merged: toml::Table = resolved_text(&dir.join("demo.toml")).unwrap().parse().unwrap();
        assert_eq!(merged["embed"]["provider"].as_str(), Some("local"), "kept from the base");
        assert_eq!(merged["embed"]["dimensions"].as_integer(), Some(384), "replaced");
        assert_eq!(merged["index"]["fields"].as_array().map(Vec::len), Some(1), "an array replaced whole");
        assert!(!merged.contains_key("extends"));
    }

    #[test]
    fn a_loop_or_a_missing_base_is_refused_with_the_file_named() {
        let dir = scratch("loop");
        std::fs::write(dir.join("a.toml"), "extends = \"a.toml\"\n").unwrap();
        let err = resolved_text(&dir.join("a.toml")).unwrap_err().to_string();
        assert!(err.contains("extends") && err.contains("a.toml"), "{err}");
        std::fs::write(dir.join("b.toml"), "extends = \"nowhere.toml\"\n").unwrap();
        let err = resolved_text(&dir.join("b.toml")).unwrap_err().to_string();
        assert!(err.contains("nowhere.toml"), "{err}");
    }
}

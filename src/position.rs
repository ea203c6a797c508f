//! Binlog positions as a domain type.
//!
//! A [`Position`] names the byte after a committed transaction in one binlog
//! file (`file:offset`), optionally with the server that wrote the file and
//! the GTID state there. Positions compare by (file sequence number, offset)
//! and only within one lineage: one file-name stem (`mysql-bin-changelog.000123`
//! and `binlog.000007` are different lineages) of one server. Comparing
//! across lineages is an error rather than a guess.
//!
//! Text form: `[server/]file:offset[@gtid]`, or `@gtid` alone.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A place in the source's binlog stream, always at a transaction boundary
/// when stored by drugsync.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Binlog file name as the server reports it (e.g. `mysql-bin-changelog.000123`).
    pub file: String,
    /// Byte offset of the next event in `file`.
    pub offset: u64,
    /// The server whose binlog `file` is (MySQL `@@server_uuid`, MariaDB
    /// `@@server_id`). An offset means nothing on another server, even in a
    /// file of the same name (a promoted replica, a restored copy): there the
    /// stream resumes by GTID or takes the lost-position path. `None` for
    /// positions typed by an operator or stored before drugsync recorded it.
    pub server: Option<String>,
    /// GTID of the last transaction before this point, where the server has
    /// one (MariaDB `domain-server-seq`, MySQL `uuid:n`). Informational: resume
    /// uses `file:offset`, which works on both server families.
    pub gtid: Option<String>,
}

/// Why a position string could not be parsed or two positions compared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    /// The text is not `file:offset[@gtid]`.
    #[error(
        "malformed binlog position {text:?}: expected FILE:OFFSET (e.g. mysql-bin.000042:1234), optionally followed by @GTID, or @GTID alone"
    )]
    Malformed {
        /// The offending input.
        text: String,
    },
    /// The two positions come from binlog files of different names and cannot be ordered.
    #[error("binlog positions {a} and {b} belong to different binlog lineages and cannot be compared")]
    Incomparable {
        /// Left-hand position.
        a: String,
        /// Right-hand position.
        b: String,
    },
}

impl Position {
    /// A position at `offset` in `file`, without GTID.
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        Self { file: file.into(), offset, server: None, gtid: None }
    }

    /// The same position, marked as `server`'s.
    pub fn on_server(mut self, server: Option<String>) -> Self {
        self.server = server;
        self
    }

    /// Whether this position names a server other than `server`: its file
    /// and offset are then not `server`'s to resume at.
    pub fn is_from_another_server(&self, server: &str) -> bool {
        self.server.as_deref().is_some_and(|own| own != server)
    }

    /// Splits the file name into its stem and numeric sequence
    /// (`binlog.000012` -> (`binlog`, 12)). Files without a numeric suffix get
    /// sequence 0, so they compare by offset only against their own name.
    fn stem_and_sequence(&self) -> (&str, u64) {
        match self.file.rsplit_once('.') {
            Some((stem, seq)) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => (stem, seq.parse().unwrap_or(u64::MAX)),
            _ => (self.file.as_str(), 0),
        }
    }

    /// A position known only by its GTID state (`--replay-from @0-1-42`): the
    /// stream is requested by GTID and learns the file from the server.
    pub fn gtid_only(gtid: impl Into<String>) -> Self {
        Self { file: String::new(), offset: 4, server: None, gtid: Some(gtid.into()) }
    }

    /// True for a position known only by its GTID state.
    pub fn is_gtid_only(&self) -> bool {
        self.file.is_empty()
    }

    /// Orders two positions of the same lineage; errs across lineages.
    pub fn try_cmp(&self, other: &Position) -> Result<Ordering, PositionError> {
        let (stem_a, seq_a) = self.stem_and_sequence();
        let (stem_b, seq_b) = other.stem_and_sequence();
        let other_server = matches!((&self.server, &other.server), (Some(a), Some(b)) if a != b);
        if stem_a != stem_b || other_server {
            return Err(PositionError::Incomparable { a: self.to_string(), b: other.to_string() });
        }
        Ok((seq_a, self.offset).cmp(&(seq_b, other.offset)))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_gtid_only() {
            if let Some(server) = &self.server {
                write!(f, "{server}/")?;
            }
            write!(f, "{}:{}", self.file, self.offset)?;
        }
        if let Some(gtid) = &self.gtid {
            write!(f, "@{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || PositionError::Malformed { text: text.to_owned() };
        if let Some(gtid) = text.trim().strip_prefix('@') {
            return if gtid.trim().is_empty() { Err(malformed()) } else { Ok(Position::gtid_only(gtid.trim())) };
        }
        let (location, gtid) = match text.split_once('@') {
            Some((loc, gtid)) if !gtid.trim().is_empty() => (loc, Some(gtid.trim().to_owned())),
            Some(_) => return Err(malformed()),
            None => (text, None),
        };
        let (server, location) = match location.trim().split_once('/') {
            Some((server, rest)) => {
                let valid = !server.is_empty() && server.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
                if !valid {
                    return Err(malformed());
                }
                (Some(server.to_owned()), rest)
            }
            None => (None, location),
        };
        let (file, offset) = location.trim().rsplit_once(':').ok_or_else(malformed)?;
        let valid_file = !file.is_empty() && file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_file {
            return Err(malformed());
        }
        let offset = offset.parse::<u64>().map_err(|_| malformed())?;
        if offset < 4 {
            // Every binlog file starts with a 4-byte magic number.
            return Err(malformed());
        }
        Ok(Position { file: file.to_owned(), offset, server, gtid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let p: Position = "mysql-bin-changelog.000123:4567@0-1-15".parse().unwrap();
        assert_eq!(p.file, "mysql-bin-changelog.000123");
        assert_eq!(p.offset, 4567);
        assert_eq!(p.gtid.as_deref(), Some("0-1-15"));
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        assert_eq!(Position::new("binlog.000001", 4).to_string(), "binlog.000001:4");
    }

    #[test]
    fn gtid_only_positions_round_trip() {
        let p: Position = "@0-1-42,1-1-7".parse().unwrap();
        assert!(p.is_gtid_only());
        assert_eq!(p.gtid.as_deref(), Some("0-1-42,1-1-7"));
        assert_eq!(p.to_string(), "@0-1-42,1-1-7");
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "@", "@ ", "binlog.000001", "binlog.000001:", ":12", "binlog.000001:x", "bin log:12", "binlog.1:2", "b:5@"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn orders_by_file_sequence_then_offset() {
        let a = Position::new("binlog.000009", 900);
        let b = Position::new("binlog.000010", 4);
        assert_eq!(a.try_cmp(&b), Ok(Ordering::Less));
        assert_eq!(b.try_cmp(&a), Ok(Ordering::Greater));
        assert_eq!(a.try_cmp(&a.clone()), Ok(Ordering::Equal));
    }

    #[test]
    fn a_file_without_a_numeric_suffix_compares_only_with_its_own_name() {
        let odd = Position::new("relay.log", 100);
        assert_eq!(odd.try_cmp(&Position::new("relay.log", 200)), Ok(Ordering::Less), "by offset within the file");
        for numbered in ["relay.000001", "relay.", "relay"] {
            let other = Position::new(numbered, 4);
            assert!(matches!(odd.try_cmp(&other), Err(PositionError::Incomparable { .. })), "{numbered}: no order to guess");
        }
    }

    #[test]
    fn refuses_to_compare_different_lineages() {
        let a = Position::new("binlog.000009", 900);
        let b = Position::new("mysql-bin-changelog.000010", 4);
        assert!(matches!(a.try_cmp(&b), Err(PositionError::Incomparable { .. })));
        // The same file name on two servers: two lineages.
        let here = Position::new("binlog.000009", 900).on_server(Some("uuid-a".into()));
        let there = Position::new("binlog.000009", 900).on_server(Some("uuid-b".into()));
        assert!(matches!(here.try_cmp(&there), Err(PositionError::Incomparable { .. })));
        assert!(here.is_from_another_server("uuid-b") && !here.is_from_another_server("uuid-a"));
        // A position without a server (typed, or stored before) compares by file.
        assert_eq!(here.try_cmp(&Position::new("binlog.000010", 4)), Ok(Ordering::Less));
        assert!(!Position::new("binlog.000009", 900).is_from_another_server("uuid-b"));
    }

    #[test]
    fn the_server_round_trips_through_text() {
        let text = "3e11fa47-71ca-11e1-9e33-c80aa9429562/binlog.000003:1234@3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42";
        let p: Position = text.parse().unwrap();
        assert_eq!(p.server.as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562"));
        assert_eq!((p.file.as_str(), p.offset), ("binlog.000003", 1234));
        assert_eq!(p.gtid.as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42"));
        assert_eq!(p.to_string(), text);
        assert_eq!("1/binlog.000001:4".parse::<Position>().unwrap().server.as_deref(), Some("1"));
        for bad in ["/binlog.000001:4", "a b/binlog.000001:4", "x/y/binlog.000001:4"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} should not parse");
        }
    }
}

//! Small, pure pieces of binlog interpretation, kept apart from the network
//! loop so each can be unit-tested: MariaDB GTID bodies, the checksum bytes
//! on MariaDB's first rotate event, and recognising DDL on tracked tables.

/// MariaDB's GTID event (type 162); mysql_common delivers it as raw bytes.
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MySQL 8's newer heartbeat event, not decoded by mysql_common; a heartbeat all the same.
pub const MYSQL_HEARTBEAT_V2: u8 = 0x29;
/// MariaDB flag: the GTID event starts a standalone statement (DDL), not BEGIN ... COMMIT.
pub const MARIADB_FL_STANDALONE: u8 = 1;

/// A decoded MariaDB GTID event body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbGtid {
    /// Sequence number.
    pub seq: u64,
    /// Replication domain.
    pub domain: u32,
    /// Event flags (`FL_STANDALONE` = 1, ...).
    pub flags: u8,
}

impl MariadbGtid {
    /// Parses `seq u64, domain u32, flags u8` (little-endian).
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.len() < 13 {
            return None;
        }
        Some(Self {
            seq: u64::from_le_bytes(body[0..8].try_into().ok()?),
            domain: u32::from_le_bytes(body[8..12].try_into().ok()?),
            flags: body[12],
        })
    }

    /// `domain-server-seq`, MariaDB's GTID text form.
    pub fn to_text(&self, server_id: u32) -> String {
        format!("{}-{}-{}", self.domain, server_id, self.seq)
    }
}

/// The file name of a (fake) rotate event, without the 4 checksum bytes
/// MariaDB appends before the stream knows checksums are on (mysql_async
/// issue #189). The suffix is removed only when it is the CRC32 of the event
/// (header + body), so a real name is never cut.
pub fn rotate_file_name(header: &[u8; 19], body_name: &[u8], body_prefix: &[u8]) -> Vec<u8> {
    if body_name.len() > 4 {
        let (name, crc) = body_name.split_at(body_name.len() - 4);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(header);
        hasher.update(body_prefix);
        hasher.update(name);
        if hasher.finalize().to_le_bytes() == crc {
            return name.to_vec();
        }
    }
    body_name.to_vec()
}

/// Statement kinds that are transaction control, never DDL.
fn is_transaction_control(statement: &str) -> bool {
    let head = statement.trim_start().split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(head.as_str(), "BEGIN" | "COMMIT" | "ROLLBACK" | "XA" | "SAVEPOINT" | "RELEASE")
}

/// The first tracked table a non-transactional statement names, if any.
/// Matching is by whole identifier (optionally back-quoted or schema-qualified),
/// case-insensitive, so `rndc14_backup` does not match `rndc14`.
pub fn ddl_touching<'a>(statement: &str, tracked: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if is_transaction_control(statement) {
        return None;
    }
    let words: Vec<String> = statement
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    tracked.into_iter().find(|table| words.iter().any(|w| w.eq_ignore_ascii_case(table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mariadb_gtid() {
        let mut body = 15u64.to_le_bytes().to_vec();
        body.extend(0u32.to_le_bytes());
        body.push(MARIADB_FL_STANDALONE);
        let gtid = MariadbGtid::parse(&body).unwrap();
        assert_eq!(gtid, MariadbGtid { seq: 15, domain: 0, flags: 1 });
        assert_eq!(gtid.to_text(1), "0-1-15");
        assert!(MariadbGtid::parse(&body[..10]).is_none());
    }

    #[test]
    fn strips_only_a_real_checksum_from_rotate_names() {
        let header = [7u8; 19];
        let prefix = 4u64.to_le_bytes();
        let name = b"binlog.000003".to_vec();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header);
        hasher.update(&prefix);
        hasher.update(&name);
        let mut with_crc = name.clone();
        with_crc.extend(hasher.finalize().to_le_bytes());
        assert_eq!(rotate_file_name(&header, &with_crc, &prefix), name);
        assert_eq!(rotate_file_name(&header, &name, &prefix), name);
    }

    #[test]
    fn recognises_ddl_on_tracked_tables_only() {
        let tracked = ["rndc14", "rlblrid3"];
        assert_eq!(ddl_touching("TRUNCATE TABLE `fdb`.`RNDC14`", tracked), Some("rndc14"));
        assert_eq!(ddl_touching("ALTER TABLE rlblrid3 ADD COLUMN x INT", tracked), Some("rlblrid3"));
        assert_eq!(ddl_touching("CREATE TABLE rndc14_backup LIKE other", tracked), None);
        assert_eq!(ddl_touching("BEGIN", tracked), None);
        assert_eq!(ddl_touching("COMMIT", tracked), None);
    }
}

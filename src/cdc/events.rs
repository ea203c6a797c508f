//! Small, pure pieces of binlog interpretation, kept apart from the network
//! loop so each can be unit-tested: MariaDB GTID bodies, the checksum bytes
//! on MariaDB's first rotate event, and recognising DDL on tracked tables.

/// MariaDB's GTID event (type 162); mysql_common delivers it as raw bytes.
pub const MARIADB_GTID_EVENT: u8 = 162;
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

/// Identifiers of a statement, lower-cased, quotes removed, qualified names
/// kept whole (`fdb`.`RNDC14` -> `fdb.rndc14`), in order.
fn identifiers(statement: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut qualified = false;
    let flush = |current: &mut String, out: &mut Vec<String>, qualified: &mut bool| {
        if !current.is_empty() {
            let name = current.to_ascii_lowercase();
            match out.last_mut() {
                Some(schema) if *qualified => *schema = format!("{schema}.{name}"),
                _ => out.push(name),
            }
            current.clear();
        }
        *qualified = false;
    };
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                for q in chars.by_ref() {
                    if q == '`' {
                        break;
                    }
                    current.push(q);
                }
            }
            '.' if !current.is_empty() => {
                out.push(std::mem::take(&mut current).to_ascii_lowercase());
                qualified = true;
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => current.push(c),
            _ => flush(&mut current, &mut out, &mut qualified),
        }
    }
    flush(&mut current, &mut out, &mut qualified);
    out
}

/// The statement without comments: `/* ... */`, `-- ...` and `# ...` are
/// dropped (gh-ost writes `rename /* gh-ost */ table ...`), while the content
/// of executable comments (`/*!50001 ... */`, MariaDB's `/*M!100100 ... */`),
/// which the server runs, is kept. Quoted text is left alone.
pub fn strip_comments(statement: &str) -> String {
    let chars: Vec<char> = statement.chars().collect();
    let mut out = String::with_capacity(statement.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                        out.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if chars[i - 1] == c {
                        break;
                    }
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let executable =
                    matches!(chars.get(i + 2), Some('!')) || (chars.get(i + 2) == Some(&'M') && chars.get(i + 3) == Some(&'!'));
                let mut j = i + 2;
                if executable {
                    j += if chars[j] == 'M' { 2 } else { 1 };
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                let start = j;
                while j + 1 < chars.len() && !(chars[j] == '*' && chars[j + 1] == '/') {
                    j += 1;
                }
                out.push(' ');
                if executable {
                    out.extend(&chars[start..j.min(chars.len())]);
                    out.push(' ');
                }
                i = j + 2;
            }
            '-' if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Tables a DDL statement changes (not the ones it merely reads):
/// ALTER/DROP/TRUNCATE/CREATE/RENAME TABLE, CREATE/DROP INDEX ... ON, and the
/// table an `ALTER TABLE ... EXCHANGE PARTITION ... WITH TABLE` swaps rows into.
/// `DROP DATABASE db` yields `db.*`.
pub fn ddl_targets(statement: &str) -> Vec<String> {
    let words = identifiers(&strip_comments(statement));
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let skip_if_exists = |mut i: usize| {
        if w(i) == "if" {
            i += if w(i + 1) == "not" { 3 } else { 2 };
        }
        i
    };
    let first_table_after = |i: usize| -> Vec<String> { words.get(skip_if_exists(i)).cloned().into_iter().collect() };
    match (w(0), w(1)) {
        ("truncate", "table") => first_table_after(2),
        ("truncate", _) => first_table_after(1),
        ("alter", "table") | ("alter", "online") | ("alter", "ignore") => {
            let i = if w(1) == "table" { 2 } else { 3 };
            let mut targets = first_table_after(i);
            // EXCHANGE PARTITION p WITH TABLE t: t's rows change with no row event.
            if let Some(at) = words.windows(2).position(|pair| pair[0] == "with" && pair[1] == "table") {
                targets.extend(words.get(at + 2).cloned());
            }
            targets
        }
        ("drop", "database") | ("drop", "schema") => first_table_after(2).into_iter().map(|db| format!("{db}.*")).collect(),
        ("create", _) if words.iter().take(4).any(|x| x == "table") => {
            let at = words.iter().position(|x| x == "table").unwrap_or(0);
            first_table_after(at + 1)
        }
        ("drop", "table") | ("drop", "temporary") => {
            let at = words.iter().position(|x| x == "table").unwrap_or(1);
            let start = skip_if_exists(at + 1);
            words[start.min(words.len())..]
                .iter()
                .filter(|x| !matches!(x.as_str(), "restrict" | "cascade" | "wait" | "nowait"))
                .cloned()
                .collect()
        }
        ("rename", "table") => words[2..].iter().filter(|x| x.as_str() != "to").cloned().collect(),
        ("create", _) | ("drop", "index") => match words.iter().position(|x| x == "on") {
            Some(at) if words.iter().take(at).any(|x| x == "index") => first_table_after(at + 1),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Row-changing statements: logged as text (a session with
/// `binlog_format=STATEMENT`, or a non-transactional engine), their rows
/// come with no row events.
fn is_dml(statement: &str) -> bool {
    let words = identifiers(&strip_comments(statement));
    matches!(words.first().map(String::as_str), Some("insert" | "update" | "delete" | "replace" | "load"))
}

/// The first tracked table of `schema` whose rows a statement may change
/// without row events: DDL on it, or DML naming it logged as a statement.
/// Unqualified names belong to `default_schema` (the session's database).
/// Reading a tracked table (`CREATE TABLE copy AS SELECT * FROM rndc14`) does not count.
pub fn ddl_touching<'a>(
    statement: &str,
    default_schema: &str,
    schema: &str,
    tracked: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let qualify = |t: &str| match t.split_once('.') {
        Some((s, table)) => (s.to_owned(), table.to_owned()),
        None => (default_schema.to_ascii_lowercase(), t.to_owned()),
    };
    let targets: Vec<(String, String)> = if is_dml(statement) {
        // Which name is the target is a matter of the statement's grammar; any
        // tracked name in it is enough to distrust the binlog (a reconcile too many is harmless).
        identifiers(&strip_comments(statement)).iter().map(|t| qualify(t)).collect()
    } else {
        ddl_targets(statement).iter().map(|t| qualify(t)).collect()
    };
    tracked
        .into_iter()
        .find(|table| targets.iter().any(|(s, t)| s.eq_ignore_ascii_case(schema) && (t == "*" || t.eq_ignore_ascii_case(table))))
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
        let ddl_touching = |statement: &str, tracked: [&'static str; 2]| super::ddl_touching(statement, "fdb", "fdb", tracked);
        assert_eq!(ddl_touching("TRUNCATE TABLE `fdb`.`RNDC14`", tracked), Some("rndc14"));
        assert_eq!(ddl_touching("ALTER TABLE rlblrid3 ADD COLUMN x INT", tracked), Some("rlblrid3"));
        assert_eq!(ddl_touching("CREATE TABLE rndc14_backup LIKE other", tracked), None);
        assert_eq!(ddl_touching("CREATE TABLE copy AS SELECT * FROM rndc14", tracked), None);
        assert_eq!(ddl_touching("DROP TABLE IF EXISTS `x`, fdb.rlblrid3", tracked), Some("rlblrid3"));
        assert_eq!(ddl_touching("RENAME TABLE rndc14_new TO rndc14, rndc14 TO rndc14_old", tracked), Some("rndc14"));
        assert_eq!(ddl_touching("CREATE TABLE IF NOT EXISTS rndc14 (x int)", tracked), Some("rndc14"));
        assert_eq!(ddl_touching("CREATE INDEX i ON rlblrid3 (MFG)", tracked), Some("rlblrid3"));
        // In ROW format DML arrives as row events; as a Query event it was logged as a statement.
        assert_eq!(ddl_touching("INSERT INTO rndc14 VALUES (1)", tracked), Some("rndc14"));
        assert_eq!(ddl_touching("BEGIN", tracked), None);
        assert_eq!(ddl_touching("COMMIT", tracked), None);
        assert_eq!(super::ddl_touching("TRUNCATE rndc14", "other", "fdb", tracked), None, "another schema's table");
        assert_eq!(super::ddl_touching("TRUNCATE fdb.rndc14", "other", "fdb", tracked), Some("rndc14"));
        assert_eq!(super::ddl_touching("ALTER TABLE other.rndc14 ADD x INT", "fdb", "fdb", tracked), None);
    }

    #[test]
    fn comments_quotes_databases_and_partition_swaps_are_seen_through() {
        let tracked = ["rndc14", "rlblrid3"];
        let touching = |statement: &str| super::ddl_touching(statement, "fdb", "fdb", tracked);
        // gh-ost's cut-over.
        assert_eq!(
            touching("rename /* gh-ost */ table `fdb`.`rndc14` to `fdb`.`_rndc14_del`, `fdb`.`_rndc14_gho` to `fdb`.`rndc14`"),
            Some("rndc14")
        );
        assert_eq!(touching("/* nightly */ TRUNCATE rlblrid3"), Some("rlblrid3"));
        assert_eq!(touching("-- reload\nTRUNCATE TABLE rlblrid3"), Some("rlblrid3"));
        assert_eq!(touching("# reload\nDROP TABLE rndc14"), Some("rndc14"));
        assert_eq!(touching("/*!40000 ALTER TABLE `rndc14` DISABLE KEYS */"), Some("rndc14"), "executable comments run");
        assert_eq!(touching("/*M!100100 TRUNCATE rlblrid3 */"), Some("rlblrid3"));
        assert_eq!(touching("ALTER TABLE `weird name` COMMENT '/* rndc14 */'"), None, "a quoted comment is text, not a comment");
        assert_eq!(touching("DROP DATABASE fdb"), Some("rndc14"));
        assert_eq!(touching("DROP SCHEMA IF EXISTS `fdb`"), Some("rndc14"));
        assert_eq!(touching("DROP DATABASE other"), None);
        assert_eq!(touching("ALTER TABLE staging EXCHANGE PARTITION p0 WITH TABLE rndc14"), Some("rndc14"));
        assert_eq!(touching("ALTER TABLE staging EXCHANGE PARTITION p0 WITH TABLE unrelated"), None);
        // DML logged as a statement carries no row events.
        assert_eq!(touching("UPDATE rlblrid3 SET MFG = 'X' WHERE LBLRID = '1'"), Some("rlblrid3"));
        assert_eq!(touching("insert /* batch */ into `fdb`.`rndc14` values ('1')"), Some("rndc14"));
        assert_eq!(touching("DELETE l FROM rlblrid3 l JOIN other o ON o.id = l.LBLRID"), Some("rlblrid3"));
        assert_eq!(touching("UPDATE other SET x = 1"), None);
        assert_eq!(touching("SAVEPOINT rndc14"), None);
    }
}

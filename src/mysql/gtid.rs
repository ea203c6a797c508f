//! GTID state: the set of transactions applied up to a position.
//!
//! Stored with every position (after `@`) so a replica can resume by GTID
//! when the binlog file it was reading no longer exists (failover to another
//! server, renamed binlogs). MariaDB's state is one `domain-server-seq` per
//! domain; MySQL's is an executed GTID set (`uuid:1-100:105,uuid2:1-7`).

use std::collections::BTreeMap;
use std::fmt;

use mysql_common::packets::Sid;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidState {
    /// MariaDB: domain -> (server id, sequence number) of the last transaction.
    Mariadb(BTreeMap<u32, (u32, u64)>),
    /// MySQL: source uuid, or `uuid:tag` for a tagged GTID (MySQL 8.4+) ->
    /// sorted, merged, inclusive intervals of transaction numbers.
    Mysql(BTreeMap<String, Vec<(u64, u64)>>),
}

impl GtidState {
    /// Parses either form; whitespace (MySQL prints newlines) is ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.is_empty() {
            return Err("empty GTID state".into());
        }
        if text.contains(':') {
            // MySQL: uuid:ranges[:tag:ranges...] (tags since 8.4), parts joined by ','.
            let mut set = BTreeMap::new();
            for part in text.split(',') {
                let mut tokens = part.split(':');
                let uuid = tokens.next().unwrap_or_default();
                if uuid.len() != 36 || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                    return Err(format!("{uuid:?} is not a server uuid"));
                }
                let uuid = uuid.to_ascii_lowercase();
                let mut key = uuid.clone();
                let mut any = false;
                for token in tokens {
                    if !token.starts_with(|c: char| c.is_ascii_digit()) {
                        key = format!("{uuid}:{}", parse_tag(token)?);
                        continue;
                    }
                    let (a, b) = token.split_once('-').unwrap_or((token, token));
                    let (a, b): (u64, u64) = (
                        a.parse().map_err(|_| format!("bad GTID range {token:?}"))?,
                        b.parse().map_err(|_| format!("bad GTID range {token:?}"))?,
                    );
                    if a == 0 || a > b {
                        return Err(format!("bad GTID range {token:?}"));
                    }
                    let intervals: &mut Vec<(u64, u64)> = set.entry(key.clone()).or_default();
                    intervals.push((a, b));
                    normalise(intervals);
                    any = true;
                }
                if !any {
                    return Err(format!("GTID set part {part:?} lacks uuid:range"));
                }
            }
            Ok(GtidState::Mysql(set))
        } else {
            let mut state = BTreeMap::new();
            for part in text.split(',') {
                let numbers: Vec<&str> = part.split('-').collect();
                let [domain, server, seq] = numbers[..] else { return Err(format!("MariaDB GTID {part:?} is not domain-server-seq")) };
                let parse = |n: &str| n.parse::<u64>().map_err(|_| format!("MariaDB GTID {part:?} is not numeric"));
                let (domain, server, seq) = (parse(domain)?, parse(server)?, parse(seq)?);
                state.insert(u32::try_from(domain).map_err(|e| e.to_string())?, (u32::try_from(server).map_err(|e| e.to_string())?, seq));
            }
            Ok(GtidState::Mariadb(state))
        }
    }

    /// Records a MariaDB transaction.
    pub fn observe_mariadb(&mut self, domain: u32, server: u32, seq: u64) {
        if let GtidState::Mariadb(state) = self {
            state.insert(domain, (server, seq));
        }
    }

    /// Records a MySQL transaction (`tag` for a tagged GTID, `uuid:tag:gno`).
    pub fn observe_mysql(&mut self, uuid: &str, tag: Option<&str>, gno: u64) {
        if let GtidState::Mysql(set) = self {
            let uuid = uuid.to_ascii_lowercase();
            let key = match tag {
                Some(tag) => format!("{uuid}:{}", tag.to_ascii_lowercase()),
                None => uuid,
            };
            let intervals = set.entry(key).or_default();
            intervals.push((gno, gno));
            normalise(intervals);
        }
    }

    /// MySQL's executed set before a binlog file, from that file's
    /// `PREVIOUS_GTIDS` event (intervals there are `[start, end)`).
    pub fn from_previous_gtids(event: &mysql_common::binlog::events::PreviousGtidsEvent<'_>) -> Self {
        let mut set = BTreeMap::new();
        for sid in event.sids() {
            let uuid = uuid_text(sid.uuid());
            let key = match sid.tag() {
                Some(tag) => format!("{uuid}:{}", tag.as_str().to_ascii_lowercase()),
                None => uuid,
            };
            let intervals: &mut Vec<(u64, u64)> = set.entry(key).or_default();
            intervals.extend(sid.intervals().iter().filter(|i| i.end() > i.start()).map(|i| (i.start(), i.end() - 1)));
            normalise(intervals);
        }
        set.retain(|_, intervals| !intervals.is_empty());
        GtidState::Mysql(set)
    }

    /// Whether the state names no transaction at all.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::Mariadb(state) => state.is_empty(),
            GtidState::Mysql(set) => set.is_empty(),
        }
    }

    /// The set in the form `COM_BINLOG_DUMP_GTID` takes (MySQL only; empty for MariaDB).
    pub fn mysql_sids(&self) -> Result<Vec<Sid<'static>>, String> {
        match self {
            GtidState::Mariadb(_) => Ok(Vec::new()),
            GtidState::Mysql(set) => set
                .iter()
                .map(|(uuid, intervals)| {
                    let ranges: Vec<String> = intervals.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                    format!("{uuid}:{}", ranges.join(":")).parse::<Sid<'static>>().map_err(|e| e.to_string())
                })
                .collect(),
        }
    }
}

/// A server UUID in its text form (`3e11fa47-71ca-11e1-9e33-c80aa9429562`).
pub fn uuid_text(bytes: [u8; 16]) -> String {
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Sorts and merges touching or overlapping inclusive intervals.
/// A GTID tag as MySQL 8.4 allows it: a letter or `_`, then letters, digits
/// or `_`, at most 32, compared without case.
fn parse_tag(token: &str) -> Result<String, String> {
    let tag = token.to_ascii_lowercase();
    let valid = (1..=32).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid { Ok(tag) } else { Err(format!("{token:?} is neither a GTID range nor a tag")) }
}

fn normalise(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(a, b) in intervals.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *intervals = merged;
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = match self {
            GtidState::Mariadb(state) => state.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect(),
            // MySQL's form: per uuid its untagged ranges, then each tag and its ranges
            // (keys sort "uuid" before "uuid:tag", so a uuid's entries are adjacent).
            GtidState::Mysql(set) => {
                let mut parts: Vec<String> = Vec::new();
                let mut current_uuid = "";
                for (key, intervals) in set {
                    let (uuid, tag) = key.split_once(':').map_or((key.as_str(), None), |(u, t)| (u, Some(t)));
                    let ranges: Vec<String> =
                        intervals.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
                    let text = match tag {
                        Some(tag) => format!("{tag}:{}", ranges.join(":")),
                        None => ranges.join(":"),
                    };
                    match parts.last_mut() {
                        Some(last) if uuid == current_uuid => {
                            last.push(':');
                            last.push_str(&text);
                        }
                        _ => parts.push(format!("{uuid}:{text}")),
                    }
                    current_uuid = uuid;
                }
                parts
            }
        };
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_state_round_trips_and_advances_per_domain() {
        let mut state = GtidState::parse("0-1-15,2-7-3").unwrap();
        state.observe_mariadb(0, 1, 16);
        state.observe_mariadb(5, 9, 1);
        assert_eq!(state.to_string(), "0-1-16,2-7-3,5-9-1");
        assert!(GtidState::parse("0-1").is_err());
        assert!(GtidState::parse("").is_err());
    }

    #[test]
    fn mysql_set_merges_intervals() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut set = GtidState::parse(&format!("{uuid}:1-5:7,\n{uuid}:9")).unwrap();
        assert_eq!(set.to_string(), format!("{uuid}:1-5:7:9"));
        set.observe_mysql(uuid, None, 6);
        set.observe_mysql(uuid, None, 8);
        assert_eq!(set.to_string(), format!("{uuid}:1-9"));
        let sids = set.mysql_sids().unwrap();
        assert_eq!(sids.len(), 1);
        assert_eq!((sids[0].intervals()[0].start(), sids[0].intervals()[0].end()), (1, 10));
        assert!(GtidState::parse("nonsense:1-2").is_err());
        assert!(GtidState::parse(&format!("{uuid}:5-2")).is_err());
    }

    #[test]
    fn tagged_gtids_keep_their_tags_in_mysql_form() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut set = GtidState::parse(&format!("{uuid}:1-5:Nightly:1-2")).unwrap();
        set.observe_mysql(uuid, Some("nightly"), 3);
        set.observe_mysql(uuid, Some("aa"), 1);
        set.observe_mysql(uuid, None, 6);
        assert_eq!(set.to_string(), format!("{uuid}:1-6:aa:1:nightly:1-3"), "untagged first, then tags in order, one part per uuid");
        assert_eq!(GtidState::parse(&set.to_string()).unwrap(), set);
        assert_eq!(set.mysql_sids().unwrap().len(), 3, "one Sid per (uuid, tag)");
        assert!(GtidState::parse(&format!("{uuid}:9tag:1")).is_err(), "a tag starts with a letter or _");
        assert!(GtidState::parse(&format!("{uuid}:tag")).is_err(), "a tag without ranges");
    }
}

//! XA transactions: rows written at `XA PREPARE`, made visible (or undone)
//! by a later `XA COMMIT` / `XA ROLLBACK` that carries no rows.
//!
//! The binlog holds an XA transaction as: its rows, `XA END xid`, an
//! XA_PREPARE event; then, any time later and after other transactions,
//! `XA COMMIT xid` or `XA ROLLBACK xid` on its own. Re-reading the documents
//! at the prepare would find the rows still invisible; routing nothing at the
//! commit would leave them stale. So the prepared transaction's routing
//! values are held here until its commit (applied then) or rollback (dropped).
//!
//! A commit of an xid not held here (prepared before the stream's start
//! position, or held values given up) cannot say what changed: the decoder
//! treats it like DDL, and every document is compared with MySQL.

use std::collections::VecDeque;

use super::RoutingValues;
use crate::sql_text::split_top_level;

/// Most prepared, uncommitted XA transactions held at once. Past it the oldest
/// is forgotten (its commit then triggers a full diff), so memory stays bounded.
const MAX_PREPARED: usize = 64;

/// An XA transaction id: (gtrid, bqual, formatID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xid {
    gtrid: Vec<u8>,
    bqual: Vec<u8>,
    format_id: u32,
}

impl Xid {
    /// From an XA_PREPARE event body: one-phase flag, formatID, gtrid and
    /// bqual lengths (little-endian u32 each), then gtrid and bqual.
    /// Returns the xid and whether it was `XA COMMIT ... ONE PHASE`.
    pub fn from_prepare_event(body: &[u8]) -> Option<(Self, bool)> {
        let one_phase = *body.first()? != 0;
        let u32_at = |at: usize| body.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        let format_id = u32_at(1)?;
        let (gtrid_len, bqual_len) = (u32_at(5)? as usize, u32_at(9)? as usize);
        let data = body.get(13..13 + gtrid_len + bqual_len)?;
        let (gtrid, bqual) = data.split_at(gtrid_len);
        Some((Self { gtrid: gtrid.to_vec(), bqual: bqual.to_vec(), format_id }, one_phase))
    }

    /// From the xid part of `XA COMMIT|ROLLBACK|END <xid>` as servers log it
    /// (`X'7131',X'',1`) or as people write it (`'q1'`, `'q1','b',3`).
    pub fn parse(text: &str) -> Option<Self> {
        let parts = split_top_level(text.trim(), ',');
        let gtrid = literal(parts.first()?)?;
        let bqual = parts.get(1).map(|p| literal(p)).unwrap_or(Some(Vec::new()))?;
        let format_id = match parts.get(2) {
            Some(n) => n.trim().parse().ok()?,
            None => 1,
        };
        Some(Self { gtrid, bqual, format_id })
    }
}

/// `'text'`, `"text"` or `X'hex'` as bytes.
fn literal(part: &str) -> Option<Vec<u8>> {
    let part = part.trim();
    if let Some(hex) = part.strip_prefix(['X', 'x']).and_then(|r| r.strip_prefix('\'')).and_then(|r| r.strip_suffix('\'')) {
        return hex::decode(hex).ok();
    }
    let quote = part.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    part.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)).map(|s| s.as_bytes().to_vec())
}

/// What an `XA ...` statement in the binlog is.
#[derive(Debug, PartialEq, Eq)]
pub enum XaStatement {
    /// `XA START xid` (MySQL logs it as the transaction's first statement).
    Start,
    /// `XA END xid`: the transaction's rows are complete (its prepare follows).
    End,
    /// `XA COMMIT xid` (two-phase: a standalone statement after the prepare).
    Commit(Xid),
    /// `XA ROLLBACK xid`.
    Rollback(Xid),
    /// Another XA statement (PREPARE as text, RECOVER).
    Other,
}

impl XaStatement {
    /// Recognises `statement`; `None` when it is not an XA statement.
    pub fn recognise(statement: &str) -> Option<Self> {
        let mut words = statement.trim_start().splitn(3, char::is_whitespace);
        if !words.next()?.eq_ignore_ascii_case("XA") {
            return None;
        }
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let rest = words.next().unwrap_or("");
        let xid = || Xid::parse(rest.trim_end_matches(|c: char| c.is_whitespace() || c == ';'));
        Some(match verb.as_str() {
            "START" | "BEGIN" => XaStatement::Start,
            "END" => XaStatement::End,
            "COMMIT" => xid().map(XaStatement::Commit).unwrap_or(XaStatement::Other),
            "ROLLBACK" => xid().map(XaStatement::Rollback).unwrap_or(XaStatement::Other),
            _ => XaStatement::Other,
        })
    }
}

/// Prepared XA transactions' routing values, oldest first.
#[derive(Debug, Default)]
pub struct PreparedXa {
    held: VecDeque<(Xid, RoutingValues)>,
}

impl PreparedXa {
    /// Holds a prepared transaction's values until its commit or rollback.
    pub fn prepare(&mut self, xid: Xid, routing: RoutingValues) {
        self.held.retain(|(x, _)| *x != xid);
        if self.held.len() == MAX_PREPARED {
            self.held.pop_front();
        }
        self.held.push_back((xid, routing));
    }

    /// The values held for `xid`, removed; `None` when not held.
    pub fn take(&mut self, xid: &Xid) -> Option<RoutingValues> {
        let at = self.held.iter().position(|(x, _)| x == xid)?;
        self.held.remove(at).map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_read_the_same_from_events_and_statements() {
        let mut body = vec![0u8];
        body.extend(1u32.to_le_bytes());
        body.extend(2u32.to_le_bytes());
        body.extend(0u32.to_le_bytes());
        body.extend(b"q1");
        let (from_event, one_phase) = Xid::from_prepare_event(&body).unwrap();
        assert!(!one_phase);
        assert_eq!(Xid::parse("X'7131',X'',1"), Some(from_event.clone()));
        assert_eq!(Xid::parse("'q1'"), Some(from_event.clone()));
        assert_eq!(Xid::parse(" 'q1' , '' , 1 "), Some(from_event));
        assert_ne!(Xid::parse("'q1','b',1"), Xid::parse("'q1'"));
        assert_eq!(Xid::parse("'a,b'").map(|x| x.gtrid), Some(b"a,b".to_vec()));
        assert!(Xid::from_prepare_event(&body[..10]).is_none());
    }

    #[test]
    fn xa_statements_are_recognised() {
        assert_eq!(XaStatement::recognise("XA END X'7131',X'',1"), Some(XaStatement::End));
        assert_eq!(XaStatement::recognise("XA COMMIT X'7131',X'',1"), Some(XaStatement::Commit(Xid::parse("'q1'").unwrap())));
        assert_eq!(XaStatement::recognise("xa rollback 'q2'"), Some(XaStatement::Rollback(Xid::parse("'q2'").unwrap())));
        assert_eq!(XaStatement::recognise("XA START 'q1'"), Some(XaStatement::Start));
        assert_eq!(XaStatement::recognise("XA RECOVER"), Some(XaStatement::Other));
        assert_eq!(XaStatement::recognise("COMMIT"), None);
    }

    #[test]
    fn a_branch_qualifier_double_quotes_and_a_trailing_semicolon_are_read() {
        let mut body = vec![1u8];
        body.extend(7u32.to_le_bytes());
        body.extend(2u32.to_le_bytes());
        body.extend(3u32.to_le_bytes());
        body.extend(b"q1b22");
        let (xid, one_phase) = Xid::from_prepare_event(&body).unwrap();
        assert!(one_phase);
        assert_eq!(xid, Xid { gtrid: b"q1".to_vec(), bqual: b"b22".to_vec(), format_id: 7 });
        assert_eq!(Xid::parse("'q1','b22',7"), Some(xid));
        assert_eq!(Xid::parse("\"q1\""), Xid::parse("'q1'"), "double quotes as single");
        assert_eq!(Xid::parse("q1"), None, "an unquoted word is no literal");
        let q1 = Xid::parse("'q1'").unwrap();
        assert_eq!(XaStatement::recognise("XA COMMIT 'q1';"), Some(XaStatement::Commit(q1.clone())));
        assert_eq!(XaStatement::recognise("XA ROLLBACK 'q1' ;\n"), Some(XaStatement::Rollback(q1)));
    }

    #[test]
    fn a_transaction_prepared_again_is_held_once_with_its_latest_values() {
        let (a, b) = (Xid::parse("'a'").unwrap(), Xid::parse("'b'").unwrap());
        let values = |n: usize| {
            let (mut r, table) = (RoutingValues::with_limit(10), std::sync::Arc::<str>::from("rndc14"));
            for i in 0..n {
                r.insert(&table, format!("{i:011}"));
            }
            r
        };
        let mut held = PreparedXa::default();
        held.prepare(a.clone(), values(1));
        held.prepare(b.clone(), values(3));
        held.prepare(a.clone(), values(2));
        assert_eq!(held.take(&b).map(|r| r.len()), Some(3), "another transaction's values stay");
        assert_eq!(held.take(&a).map(|r| r.len()), Some(2), "the latest prepare's values");
        assert!(held.take(&a).is_none(), "held once");
    }

    #[test]
    fn held_transactions_are_bounded() {
        let mut held = PreparedXa::default();
        for i in 0..(MAX_PREPARED + 1) {
            held.prepare(Xid::parse(&format!("'x{i}'")).unwrap(), RoutingValues::with_limit(1));
        }
        assert!(held.take(&Xid::parse("'x0'").unwrap()).is_none(), "the oldest was forgotten");
        assert!(held.take(&Xid::parse(&format!("'x{MAX_PREPARED}'")).unwrap()).is_some());
    }
}

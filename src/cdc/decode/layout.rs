//! What the decoder keeps of one table map: how wide each column's value is
//! on the wire, and which column routes.
//!
//! mysql_common decodes every column of every row and looks up each column's
//! metadata by walking all the columns before it, so a 67-column row costs
//! thousands of steps and allocations. A [`TableLayout`] is built once per
//! table map; with it a row is crossed by reading only length prefixes, and
//! only the routing column is decoded.

use std::io;
use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

use crate::mysql::value::{TextCharset, value_to_string};

/// How many bytes a non-NULL value of a column takes in a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Always this many bytes.
    Fixed(usize),
    /// A little-endian length of this many bytes (1 to 4), then that many bytes.
    Prefixed(usize),
}

impl Width {
    /// The width of a column of type `ty` with table-map metadata `meta`
    /// (`ty` is the real type: ENUM and SET already resolved from STRING).
    pub fn of(ty: ColumnType, meta: &[u8]) -> Result<Self, String> {
        use ColumnType::*;
        let m = |i: usize| meta.get(i).copied().map(usize::from).ok_or_else(|| format!("column type {ty:?} without metadata"));
        let frac = |dec: usize| dec.div_ceil(2);
        Ok(match ty {
            MYSQL_TYPE_NULL => Width::Fixed(0),
            MYSQL_TYPE_TINY | MYSQL_TYPE_YEAR => Width::Fixed(1),
            MYSQL_TYPE_SHORT => Width::Fixed(2),
            MYSQL_TYPE_INT24 | MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE | MYSQL_TYPE_TIME => Width::Fixed(3),
            MYSQL_TYPE_LONG | MYSQL_TYPE_FLOAT | MYSQL_TYPE_TIMESTAMP => Width::Fixed(4),
            MYSQL_TYPE_LONGLONG | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DATETIME => Width::Fixed(8),
            MYSQL_TYPE_TIMESTAMP2 => Width::Fixed(4 + frac(m(0)?)),
            MYSQL_TYPE_DATETIME2 => Width::Fixed(5 + frac(m(0)?)),
            MYSQL_TYPE_TIME2 => Width::Fixed(3 + frac(m(0)?)),
            MYSQL_TYPE_BIT => Width::Fixed((m(1)? * 8 + m(0)?).div_ceil(8)),
            MYSQL_TYPE_NEWDECIMAL => Width::Fixed(decimal_width(m(0)?, m(1)?)),
            MYSQL_TYPE_ENUM | MYSQL_TYPE_SET => Width::Fixed(m(1)?),
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                let max = m(0)? | (m(1)? << 8);
                Width::Prefixed(if max < 256 { 1 } else { 2 })
            }
            MYSQL_TYPE_STRING => {
                let max = string_max_len(meta)?;
                Width::Prefixed(if max < 256 { 1 } else { 2 })
            }
            // mysql_common reads JSON with a 4-byte length whatever the metadata says.
            MYSQL_TYPE_JSON => Width::Prefixed(4),
            MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_VECTOR => match m(0)? {
                n @ 1..=4 => Width::Prefixed(n),
                n => return Err(format!("column type {ty:?} with a {n}-byte length")),
            },
            other => return Err(format!("column type {other:?} cannot appear in a row event drugsync understands")),
        })
    }

    /// Bytes the value starting at `data[0]` occupies, length prefix included.
    pub fn len_at(self, data: &[u8]) -> io::Result<usize> {
        match self {
            Width::Fixed(n) => Ok(n),
            Width::Prefixed(n) => {
                let prefix = data.get(..n).ok_or_else(short)?;
                let len = prefix.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                Ok(n + len)
            }
        }
    }
}

/// Declared length of a CHAR column from its two metadata bytes (a long
/// CHAR's high bits hide in the type byte: MySQL bug #37426).
fn string_max_len(meta: &[u8]) -> Result<usize, String> {
    let (b0, b1) = match meta {
        [b0, b1, ..] => (usize::from(*b0), usize::from(*b1)),
        _ => return Err("CHAR column without metadata".into()),
    };
    Ok(if b0 & 0x30 != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 })
}

/// Bytes of a packed DECIMAL(precision, scale): nine digits per four bytes,
/// the leftover digits in as few bytes as hold them.
fn decimal_width(precision: usize, scale: usize) -> usize {
    const LEFTOVER: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let integral = precision.saturating_sub(scale);
    (integral / 9) * 4 + LEFTOVER[integral % 9] + (scale / 9) * 4 + LEFTOVER[scale % 9]
}

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "row image ends inside a value")
}

/// One column as the decoder needs it.
#[derive(Debug, Clone)]
pub struct ColumnLayout {
    /// Wire width of a non-NULL value.
    pub width: Width,
    /// Real column type.
    pub ty: ColumnType,
    /// Table-map metadata bytes.
    pub meta: Vec<u8>,
    /// Unsigned numeric column.
    pub unsigned: bool,
}

/// A tracked table's layout, built from its table map.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// Lower-cased table name.
    pub table: Arc<str>,
    /// Every column, in table order.
    pub columns: Vec<ColumnLayout>,
    /// Index of the routing column.
    pub route: usize,
    /// How the routing column's text is decoded: its charset from the table
    /// map, `None` when the map carries none (then UTF-8 if valid, else latin1).
    pub route_charset: Option<TextCharset>,
    /// Number of JSON columns (sizes the partial-update bitmap).
    pub json_columns: usize,
}

/// Routing column types whose binlog form differs from what SELECT returns
/// (ENUM and SET arrive as indexes, TIMESTAMP as epoch seconds), or which
/// cannot be keys.
fn routable(ty: ColumnType) -> bool {
    use ColumnType::*;
    !matches!(
        ty,
        MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_VECTOR
            | MYSQL_TYPE_BIT
            | MYSQL_TYPE_NULL
    )
}

/// Why a table map gives no layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The event carries no column names (`binlog_row_metadata=MINIMAL` when
    /// it was written): which value belongs to which column is unknown, so
    /// its rows cannot be routed and are never guessed at.
    Unnamed,
    /// The table cannot be routed as configured; says what to change.
    Unusable(String),
}

impl TableLayout {
    /// The layout of `tme`, routing by the column named `route_column`
    /// (case-insensitive). Errors say what the operator must change.
    pub fn build(tme: &TableMapEvent<'_>, table: Arc<str>, route_column: &str) -> Result<Self, LayoutError> {
        let count = tme.columns_count() as usize;
        let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| LayoutError::Unusable(format!("table map of `{table}`: {e}")))?;
        let names: Vec<String> = extractor
            .iter_column_name()
            .map(|n| n.map(|n| n.name().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| LayoutError::Unusable(format!("column names of `{table}`: {e}")))?;
        if names.len() != count {
            return Err(LayoutError::Unnamed);
        }
        Self::build_named(tme, table, route_column, &names).map_err(LayoutError::Unusable)
    }

    /// [`Self::build`] with the column names given (tests of files written
    /// with minimal metadata, whose names are known from their DDL).
    pub(super) fn build_named(tme: &TableMapEvent<'_>, table: Arc<str>, route_column: &str, names: &[String]) -> Result<Self, String> {
        let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| format!("table map of `{table}`: {e}"))?;
        let mut signedness = extractor.iter_signedness();
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| format!("column {name} of `{table}`: {e}"))?
                .ok_or_else(|| format!("column {name} of `{table}` has no type"))?;
            // Walks the columns before i each time: fine once per table map.
            let meta = tme.get_column_metadata(i).unwrap_or_default();
            let unsigned = if ty.is_numeric_type() { signedness.next().unwrap_or(false) } else { false };
            let width = Width::of(ty, meta).map_err(|e| format!("column {name} of `{table}`: {e}"))?;
            columns.push(ColumnLayout { width, ty, meta: meta.to_vec(), unsigned });
        }
        let route = names.iter().position(|n| n.eq_ignore_ascii_case(route_column)).ok_or_else(|| {
            format!("table `{table}` has no column `{route_column}` (the routing column of its mapping.tables entry): fix the mapping or the table")
        })?;
        if !routable(columns[route].ty) {
            return Err(format!(
                "the routing column `{route_column}` of `{table}` is of type {:?}, whose binlog form differs from its SELECT form: route by another column",
                columns[route].ty
            ));
        }
        let route_charset = route_charset(&extractor, &columns, route).map_err(|e| format!("`{table}`.`{route_column}`: {e}"))?;
        let json_columns = columns.iter().filter(|c| c.ty == ColumnType::MYSQL_TYPE_JSON).count();
        Ok(Self { table, columns, route, route_charset, json_columns })
    }

    /// Decodes the routing column's value from exactly its bytes, as the
    /// string the router and the document loader compare.
    pub fn route_value(&self, bytes: &[u8]) -> io::Result<String> {
        let column = &self.columns[self.route];
        let mut buf = ParseBuf(bytes);
        let value = BinlogValue::deserialize((column.ty, column.meta.as_slice(), column.unsigned, false), &mut buf)?;
        match value {
            BinlogValue::Value(mysql_common::Value::Bytes(bytes)) if self.route_charset.is_some() => {
                Ok(self.route_charset.unwrap_or(TextCharset::Utf8).decode(&bytes))
            }
            BinlogValue::Value(v) => Ok(value_to_string(&v)),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "routing column decoded as JSON")),
        }
    }
}

/// Whether the table map counts `ty` as a character column: one that has an
/// entry in its charset metadata (MySQL's `is_character_type`; ENUM and SET
/// have their own list).
fn has_charset(ty: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        ty,
        MYSQL_TYPE_STRING
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
    )
}

/// The charset of the routing column (`None`: not a text column, or the
/// map carries no charsets). A charset drugsync cannot decode as the server
/// would is refused with the way out.
fn route_charset(extractor: &OptionalMetaExtractor<'_>, columns: &[ColumnLayout], route: usize) -> Result<Option<TextCharset>, String> {
    if !has_charset(columns[route].ty) {
        return Ok(None);
    }
    let nth = columns[..route].iter().filter(|c| has_charset(c.ty)).count();
    let Some(collation) = extractor.iter_charset().nth(nth) else { return Ok(None) };
    let collation = collation.map_err(|e| format!("charset metadata: {e}"))?;
    TextCharset::of_collation(collation).map(Some).ok_or_else(|| {
        format!(
            "the routing column's collation (id {collation}) is not latin1, utf8mb3, utf8mb4, ascii or binary, so its binlog bytes cannot be decoded as SELECT returns them: route by another column"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    #[test]
    fn widths_follow_the_server_formats() {
        assert_eq!(Width::of(MYSQL_TYPE_LONG, &[]).unwrap(), Width::Fixed(4));
        assert_eq!(Width::of(MYSQL_TYPE_INT24, &[]).unwrap(), Width::Fixed(3));
        // DECIMAL(11,3): 8 integral digits -> 4 bytes, 3 fraction digits -> 2 bytes.
        assert_eq!(Width::of(MYSQL_TYPE_NEWDECIMAL, &[11, 3]).unwrap(), Width::Fixed(6));
        // DECIMAL(20,10): 10 integral -> 4 + 1, 10 fraction -> 4 + 1.
        assert_eq!(Width::of(MYSQL_TYPE_NEWDECIMAL, &[20, 10]).unwrap(), Width::Fixed(10));
        assert_eq!(Width::of(MYSQL_TYPE_DATETIME2, &[6]).unwrap(), Width::Fixed(8));
        assert_eq!(Width::of(MYSQL_TYPE_TIMESTAMP2, &[0]).unwrap(), Width::Fixed(4));
        assert_eq!(Width::of(MYSQL_TYPE_VARCHAR, &[30, 0]).unwrap(), Width::Prefixed(1));
        assert_eq!(Width::of(MYSQL_TYPE_VARCHAR, &[0x2c, 0x01]).unwrap(), Width::Prefixed(2));
        // CHAR(11) latin1: type byte 0xfe, length 11.
        assert_eq!(Width::of(MYSQL_TYPE_STRING, &[0xfe, 11]).unwrap(), Width::Prefixed(1));
        // CHAR(255) utf8mb4 = 1020 bytes: the high bits sit in the type byte.
        assert_eq!(Width::of(MYSQL_TYPE_STRING, &[0xce, 0xfc]).unwrap(), Width::Prefixed(2));
        assert_eq!(Width::of(MYSQL_TYPE_BLOB, &[2]).unwrap(), Width::Prefixed(2));
        assert_eq!(Width::of(MYSQL_TYPE_ENUM, &[0xf7, 1]).unwrap(), Width::Fixed(1));
        assert_eq!(Width::of(MYSQL_TYPE_BIT, &[3, 1]).unwrap(), Width::Fixed(2));
        assert!(Width::of(MYSQL_TYPE_BLOB, &[]).is_err());
        assert!(Width::of(MYSQL_TYPE_TYPED_ARRAY, &[]).is_err());
    }

    #[test]
    fn column_widths_follow_the_table_map_metadata() {
        let fixed = |ty, meta: &[u8]| match Width::of(ty, meta).unwrap() {
            Width::Fixed(n) => n,
            other => panic!("{ty:?}: {other:?}"),
        };
        let prefix = |ty, meta: &[u8]| match Width::of(ty, meta).unwrap() {
            Width::Prefixed(n) => n,
            other => panic!("{ty:?}: {other:?}"),
        };
        // Fractional seconds take (digits + 1) / 2 bytes after the integral part.
        assert_eq!(fixed(MYSQL_TYPE_TIMESTAMP2, &[3]), 4 + 2);
        assert_eq!(fixed(MYSQL_TYPE_DATETIME2, &[6]), 5 + 3);
        assert_eq!(fixed(MYSQL_TYPE_TIME2, &[5]), 3 + 3);
        // BIT(m): metadata is (bits % 8, bytes); BIT(19) takes 3 bytes, BIT(8) one.
        assert_eq!(fixed(MYSQL_TYPE_BIT, &[3, 2]), 3);
        assert_eq!(fixed(MYSQL_TYPE_BIT, &[0, 1]), 1);
        // VARCHAR: a one-byte length up to 255 bytes, two from 256.
        assert_eq!(prefix(MYSQL_TYPE_VARCHAR, &[255, 0]), 1);
        assert_eq!(prefix(MYSQL_TYPE_VARCHAR, &[0, 1]), 2);
        assert_eq!(prefix(MYSQL_TYPE_VARCHAR, &[1, 1]), 2);
    }

    /// The type byte of a CHAR is 0xfe with bits 4-5 flipped by bits 8-9 of
    /// its length in bytes: CHAR(n) in utf8mb4 is 4n bytes.
    #[test]
    fn a_long_char_keeps_the_high_bits_of_its_length_in_the_type_byte() {
        assert_eq!(string_max_len(&[0xfe, 200]).unwrap(), 200, "CHAR(200) latin1");
        assert_eq!(string_max_len(&[0xee, 0x90]).unwrap(), 400, "CHAR(100) utf8mb4");
        assert_eq!(string_max_len(&[0xde, 0x2c]).unwrap(), 556, "CHAR(139) utf8mb4");
        assert_eq!(string_max_len(&[0xce, 0xfc]).unwrap(), 1020, "CHAR(255) utf8mb4");
        // CHAR(64) utf8mb4 is 256 bytes: the first length that needs two bytes.
        assert_eq!(Width::of(MYSQL_TYPE_STRING, &[0xee, 0x00]).unwrap(), Width::Prefixed(2));
        assert_eq!(Width::of(MYSQL_TYPE_STRING, &[0xfe, 0xff]).unwrap(), Width::Prefixed(1));
        assert!(string_max_len(&[0xfe]).is_err());
    }

    #[test]
    fn prefixed_lengths_are_little_endian() {
        assert_eq!(Width::Prefixed(1).len_at(&[5, b'a']).unwrap(), 6);
        assert_eq!(Width::Prefixed(2).len_at(&[0x01, 0x02]).unwrap(), 2 + 0x0201);
        assert!(Width::Prefixed(2).len_at(&[1]).is_err());
        assert_eq!(Width::Fixed(3).len_at(&[]).unwrap(), 3);
    }
}

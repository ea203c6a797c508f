//! Turning MySQL values into the strings documents and keys are made of.

use mysql_async::Value;

/// Text form of a value: `""` for NULL, UTF-8 (falling back to latin1) for
/// bytes, ISO dates, plain numbers. MySQL zero dates stay `0000-00-00`.
pub fn value_to_string(value: &Value) -> String {
    match value {
        Value::NULL => String::new(),
        Value::Bytes(bytes) => bytes_to_string(bytes),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(y, m, d, 0, 0, 0, 0) => format!("{y:04}-{m:02}-{d:02}"),
        Value::Date(y, m, d, h, mi, s, 0) => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        Value::Date(y, m, d, h, mi, s, us) => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"),
        Value::Time(neg, days, h, m, s, us) => {
            let hours = u32::from(*h) + days * 24;
            let sign = if *neg { "-" } else { "" };
            if *us == 0 { format!("{sign}{hours:02}:{m:02}:{s:02}") } else { format!("{sign}{hours:02}:{m:02}:{s:02}.{us:06}") }
        }
    }
}

/// How the bytes of a text column are decoded, from its collation id (the
/// table map's charset metadata): as the server converts them for a
/// drugsync session (`utf8mb4`), so a key routed from the binlog equals the
/// same key read with SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCharset {
    /// `utf8mb3` / `utf8mb4`, and `ascii` (its subset).
    Utf8,
    /// MySQL's `latin1` (Windows-1252): every byte is one character, also
    /// bytes that happen to form valid UTF-8 ("Ã©" stored as C3 A9).
    Latin1,
    /// `binary` (BINARY, VARBINARY, BLOB): SELECT returns the raw bytes,
    /// which drugsync reads as [`bytes_to_string`] does.
    Binary,
}

impl TextCharset {
    /// The charset of collation `id` (`INFORMATION_SCHEMA.COLLATIONS`),
    /// or `None` for one drugsync does not decode keys of.
    pub fn of_collation(id: u16) -> Option<Self> {
        match id {
            // latin1_german1_ci, _swedish_ci, _danish_ci, _german2_ci, _bin, _general_ci, _general_cs, _spanish_ci
            5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Some(Self::Latin1),
            63 => Some(Self::Binary),
            // ascii_general_ci, ascii_bin
            11 | 65 => Some(Self::Utf8),
            // utf8mb3: _general_ci, _bin, _unicode_ci.. (192-215), _general_mysql500_ci, _tolower_ci
            33 | 83 | 192..=215 | 223 | 76 => Some(Self::Utf8),
            // utf8mb4: _general_ci, _bin, _unicode_ci.. (224-247), the 0900 collations (255-323), MariaDB's uca1400 ones
            45 | 46 | 224..=247 | 255..=323 => Some(Self::Utf8),
            2048..=4095 => Some(Self::Utf8),
            _ => None,
        }
    }

    /// `bytes` as text in this charset.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Self::Latin1 => latin1(bytes),
            Self::Utf8 | Self::Binary => bytes_to_string(bytes),
        }
    }
}

/// UTF-8 when valid, otherwise MySQL's `latin1` (which is Windows-1252), so
/// no input can fail to decode. Right for what SELECT returns to a
/// `utf8mb4` session (text already converted, binary raw); a binlog value
/// arrives in its column's charset and is decoded by [`TextCharset`] where
/// the table map names it: a guess would read latin1 "Ã©" as "é".
pub fn bytes_to_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => latin1(bytes),
    }
}

/// `bytes` as MySQL `latin1` text.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| latin1_char(b)).collect()
}

/// One byte of MySQL `latin1`: ISO-8859-1 except 0x80-0x9F, which are
/// Windows-1252's (the five bytes it leaves undefined map to C1 controls, as in MySQL).
fn latin1_char(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•',
        '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9F => HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_every_kind() {
        assert_eq!(value_to_string(&Value::NULL), "");
        assert_eq!(value_to_string(&Value::Bytes(b"00002323230".to_vec())), "00002323230");
        assert_eq!(value_to_string(&Value::Bytes(vec![0x43, 0x41, 0x46, 0xC9])), "CAFÉ");
        assert_eq!(value_to_string(&Value::Bytes(vec![0x80, 0x20, 0x99, 0xFF, 0x81])), "€ ™ÿ\u{81}");
        assert_eq!(value_to_string(&Value::Int(-3)), "-3");
        assert_eq!(value_to_string(&Value::Date(0, 0, 0, 0, 0, 0, 0)), "0000-00-00");
        assert_eq!(value_to_string(&Value::Date(2024, 1, 2, 3, 4, 5, 0)), "2024-01-02 03:04:05");
    }

    #[test]
    fn a_latin1_key_is_latin1_even_when_its_bytes_are_valid_utf8() {
        let bytes = [0xC3, 0xA9, b'0', b'1'];
        assert_eq!(TextCharset::of_collation(8), Some(TextCharset::Latin1), "latin1_swedish_ci, FDB's");
        assert_eq!(TextCharset::Latin1.decode(&bytes), "Ã©01", "what SELECT returns for that latin1 column");
        assert_eq!(TextCharset::of_collation(255), Some(TextCharset::Utf8), "utf8mb4_0900_ai_ci");
        assert_eq!(TextCharset::Utf8.decode(&bytes), "é01");
        assert_eq!(TextCharset::of_collation(63), Some(TextCharset::Binary));
        assert_eq!(TextCharset::Latin1.decode(&[0x80, 0xFF]), "€ÿ");
        assert_eq!(TextCharset::of_collation(95), None, "cp932: not decoded, refused where it routes");
    }
}

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

/// UTF-8 when valid, otherwise MySQL's `latin1` (which is Windows-1252), so
/// no input can fail to decode. Binlog values arrive in the column's charset
/// (FDB's tables are latin1); decoding them as the server would keeps a key
/// routed from the binlog equal to the same key read with SELECT.
pub fn bytes_to_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| latin1_char(b)).collect(),
    }
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
}

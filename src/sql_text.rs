//! Reading SQL text without a parser: the characters that stand outside
//! quotes and parentheses, where list commas and clause keywords live.

/// `(byte offset, char)` of every character of `text` outside quotes
/// (`'`, `"`, `` ` ``) and parentheses.
pub fn top_level(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut depth, mut quote) = (0i32, None::<char>);
    text.char_indices().filter(move |&(_, c)| match (c, quote) {
        ('\'' | '"' | '`', None) => {
            quote = Some(c);
            false
        }
        (c, Some(q)) => {
            if c == q {
                quote = None;
            }
            false
        }
        ('(', None) => {
            depth += 1;
            false
        }
        (')', None) => {
            depth -= 1;
            false
        }
        _ => depth == 0,
    })
}

/// `text` split at `separator` where it stands at the top level.
pub fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in top_level(text) {
        if c == separator {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_quotes_and_calls_do_not_split() {
        assert_eq!(split_top_level("a, f(b, c), 'd,e', `f,g`", ','), ["a", " f(b, c)", " 'd,e'", " `f,g`"]);
        assert_eq!(split_top_level("", ','), [""]);
    }
}

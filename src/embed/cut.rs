//! The one rule for texts longer than a model takes.
//!
//! A text over `embed.max_input_chars` characters is cut before it is sent,
//! never refused: the start of a drug's text (name, generic, strength) is
//! what search needs most. The cut falls on the last whitespace within the
//! limit, so no word is halved, unless that would drop more than a tenth of
//! the limit (one giant token), in which case it falls at the limit itself.
//! Characters, not bytes: a cut never splits a UTF-8 sequence. Every cut is
//! counted (`drugsync_embed_texts_cut_total`) and logged.

/// `text` within `max_chars` characters by the rule above, and whether it was cut.
pub fn cut_to_limit(text: &str, max_chars: usize) -> (&str, bool) {
    let Some((end, _)) = text.char_indices().nth(max_chars) else { return (text, false) };
    let hard = &text[..end];
    let floor = max_chars - max_chars / 10;
    // The last whitespace with at least `floor` characters before it (the n-th character has n before it).
    let soft = hard
        .char_indices()
        .enumerate()
        .filter(|(n, (_, c))| *n >= floor && c.is_whitespace())
        .last()
        .map(|(_, (i, _))| hard[..i].trim_end());
    (soft.filter(|s| !s.is_empty()).unwrap_or(hard), true)
}

#[cfg(test)]
mod tests {
    use super::cut_to_limit;

    #[test]
    fn short_texts_pass_untouched() {
        assert_eq!(cut_to_limit("LIPITOR 10 MG", 13), ("LIPITOR 10 MG", false));
        assert_eq!(cut_to_limit("", 5), ("", false));
    }

    #[test]
    fn a_long_text_is_cut_at_the_last_whitespace_within_the_limit() {
        let (cut, was_cut) = cut_to_limit("ATORVASTATIN CALCIUM 10 MG TABLET", 25);
        assert!(was_cut);
        assert_eq!(cut, "ATORVASTATIN CALCIUM 10");
    }

    #[test]
    fn a_giant_word_is_cut_at_the_limit_in_characters_not_bytes() {
        let text = "é".repeat(30);
        let (cut, was_cut) = cut_to_limit(&text, 20);
        assert!(was_cut);
        assert_eq!(cut.chars().count(), 20, "a whitespace too far back is not used, and no UTF-8 sequence is split");
        let (cut, _) = cut_to_limit("A BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", 20);
        assert_eq!(cut.chars().count(), 20, "a space that would drop more than a tenth is ignored");
    }
}

//! Quoting what a client sent in a message about it, without echoing all of it.

/// How many characters an excerpt keeps on each side of the position it is about.
const AROUND: usize = 30;

/// The part of `text` around character `at` (where a parser stopped), `…` marking what was
/// left out on either side: what an error message quotes of a long input.
pub fn excerpt(text: &str, at: usize) -> String {
    let start = at.saturating_sub(AROUND);
    let mut chars = text.chars().skip(start);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(chars.by_ref().take(at - start + AROUND));
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_text_is_quoted_whole_and_a_long_one_around_the_position() {
        assert_eq!(excerpt("level:error AND", 15), "level:error AND");
        let long = format!("{}x{}", "-".repeat(100_000), "y".repeat(100));
        let e = excerpt(&long, 100_000);
        assert_eq!(e, format!("…{}x{}…", "-".repeat(30), "y".repeat(29)));
        assert_eq!(excerpt("abc", 10), "abc");
        assert_eq!(excerpt("", 0), "");
    }
}

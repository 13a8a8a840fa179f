//! Version ordering as the package managers themselves order: dpkg's for Debian (epoch,
//! upstream, revision; `~` sorts before everything, even the end) and apk-tools' for Alpine
//! (numbers, a letter, `_alpha` ... `_p` suffixes, `-rN`). A wrong order is a wrong answer to
//! "is this fixed?", so both are tested against the managers' documented cases.

use std::cmp::Ordering;

/// Orders two Debian versions (`[epoch:]upstream[-revision]`) as `dpkg --compare-versions`.
pub fn compare_deb(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split_deb(a);
    let (eb, ub, rb) = split_deb(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

fn split_deb(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a character in the non-digit parts: `~` first (before the end of the
/// string), then the end and digits, then letters, then everything else.
fn weight(c: Option<&u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
        Some(c) => i32::from(*c) + 256,
    }
}

fn verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit())
            || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let (wa, wb) = (weight(a.first()), weight(b.first()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        while a.first() == Some(&b'0') {
            a = &a[1..];
        }
        while b.first() == Some(&b'0') {
            b = &b[1..];
        }
        let mut first_diff = Ordering::Equal;
        while let (Some(x), Some(y)) = (a.first(), b.first()) {
            if !x.is_ascii_digit() || !y.is_ascii_digit() {
                break;
            }
            if first_diff == Ordering::Equal {
                first_diff = x.cmp(y);
            }
            a = &a[1..];
            b = &b[1..];
        }
        if a.first().is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.first().is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// apk's suffixes, in order; the unsuffixed release sits between `_rc` and `_cvs`.
const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

#[derive(Debug, PartialEq, Eq)]
struct Apk<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    /// (rank, number): rank of the suffix (pre-release ones below 0, post ones above).
    suffixes: Vec<(i32, u64)>,
    revision: u64,
}

fn parse_apk(v: &str) -> Apk<'_> {
    let v = v.trim();
    let (body, revision) = match v.rsplit_once("-r") {
        Some((body, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
            (body, r.parse().unwrap_or(0))
        }
        _ => (v, 0),
    };
    let (head, suffix_text) = match body.split_once('_') {
        Some((h, s)) => (h, Some(s)),
        None => (body, None),
    };
    let (numbers_text, letter) = match head.as_bytes().last() {
        Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(*c)),
        _ => (head, None),
    };
    let numbers = numbers_text.split('.').filter(|n| !n.is_empty()).collect();
    let mut suffixes = Vec::new();
    if let Some(text) = suffix_text {
        for s in text.split('_') {
            let name_len = s.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (name, number) = s.split_at(name_len);
            let rank = if let Some(i) = PRE.iter().position(|p| *p == name) {
                i as i32 - PRE.len() as i32
            } else if let Some(i) = POST.iter().position(|p| *p == name) {
                i as i32 + 1
            } else {
                0
            };
            suffixes.push((rank, number.parse().unwrap_or(0)));
        }
    }
    Apk {
        numbers,
        letter,
        suffixes,
        revision,
    }
}

/// Two dot-separated number parts: the first numerically; a later one with a leading zero
/// as a decimal fraction (`1.01` < `1.1`), as apk-tools does.
fn compare_number(a: &str, b: &str, first: bool) -> Ordering {
    if !first && (a.starts_with('0') || b.starts_with('0')) {
        let (a, b) = (a.trim_end_matches('0'), b.trim_end_matches('0'));
        return a.cmp(b);
    }
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Orders two Alpine package versions as `apk version -t`.
pub fn compare_apk(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse_apk(a), parse_apk(b));
    for i in 0..a.numbers.len().max(b.numbers.len()) {
        match (a.numbers.get(i), b.numbers.get(i)) {
            (Some(x), Some(y)) => match compare_number(x, y, i == 0) {
                Ordering::Equal => {}
                other => return other,
            },
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (None, None) => {}
        }
    }
    match a.letter.cmp(&b.letter) {
        Ordering::Equal => {}
        other => return other,
    }
    for i in 0..a.suffixes.len().max(b.suffixes.len()) {
        let x = a.suffixes.get(i).copied().unwrap_or((0, 0));
        let y = b.suffixes.get(i).copied().unwrap_or((0, 0));
        match x.cmp(&y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.revision.cmp(&b.revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn debian_versions_order_as_dpkg_does() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1:0.9", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0~rc1", "1.0~beta2", Greater),
            ("1.0+deb12u1", "1.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.001", "1.1", Equal),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
            ("2.36-9+deb12u4", "2.36-9", Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("7.88.1-10+deb12u5", "7.88.1-10", Greater),
            ("252.22-1~deb12u1", "252.19-1~deb12u1", Greater),
            ("1:9.18.24-1", "1:9.18.19-1~deb12u1", Greater),
            ("2:1.0", "1:9.9", Greater),
            ("1.2-3-4", "1.2-3-5", Less),
            ("0", "0~", Greater),
        ] {
            assert_eq!(compare_deb(a, b), want, "{a} vs {b}");
            assert_eq!(compare_deb(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn alpine_versions_order_as_apk_does() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0-r0", "1.0", Equal),
            ("1.0-r1", "1.0-r0", Greater),
            ("1.10", "1.9", Greater),
            ("1.0_alpha1", "1.0_beta", Less),
            ("1.0_beta2", "1.0_pre1", Less),
            ("1.0_pre1", "1.0_rc1", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.0", "1.0_p1", Less),
            ("1.0_p1", "1.0-r9", Greater),
            ("1.0_p2", "1.0_p10", Less),
            ("1.0_alpha", "1.0_alpha1", Less),
            ("2.0_rc1-r2", "2.0-r0", Less),
            ("1.2a", "1.2", Greater),
            ("1.2a", "1.2b", Less),
            ("1.2.3", "1.2", Greater),
            ("1.01", "1.1", Less),
            ("3.1.4-r5", "3.1.4-r10", Less),
            ("1.36.1-r15", "1.36.1-r2", Greater),
            ("1.0_git20230101", "1.0", Greater),
        ] {
            assert_eq!(compare_apk(a, b), want, "{a} vs {b}");
            assert_eq!(compare_apk(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}

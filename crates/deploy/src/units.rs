//! The units Compose files use: Go durations, byte sizes, cpu counts.

/// A Go-style duration (`1m30s`, `500ms`, `2h`, `1.5s`, `0`) in nanoseconds.
pub fn duration_nanos(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total = 0_f64;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?} is missing a unit (ns, us, ms, s, m, h)"))?;
        let (num, after) = rest.split_at(num_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 10s, 1m30s, 500ms"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {unit:?} (ns, us, ms, s, m, h)"
                ));
            }
        };
        total += n * scale;
        rest = next;
    }
    Ok(total.round() as i64)
}

/// A size (`64m`, `1g`, `512k`, `1024`, `100b`; binary multiples, case-insensitive) in bytes.
pub fn size_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64m or 1g"))?;
    let mult = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (b, k, m, g)")),
    };
    Ok((n * mult).round() as i64)
}

/// A cpu count (`0.5`, `2`) in billionths of a cpu.
pub fn nano_cpus(s: &str) -> Result<i64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of cpus like 0.5"))?;
    if n <= 0.0 {
        return Err(format!("{s:?}: cpus must be more than 0"));
    }
    Ok((n * 1e9).round() as i64)
}

/// Splits a command line like a POSIX shell would (quotes and backslashes; no expansion).
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" in {s:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_nanos("1s").unwrap(), 1_000_000_000);
        assert_eq!(duration_nanos("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration_nanos("500ms").unwrap(), 500_000_000);
        assert_eq!(duration_nanos("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(duration_nanos("0").unwrap(), 0);
        for bad in ["", "10", "5 s", "1d", "s"] {
            assert!(duration_nanos(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(size_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(size_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(size_bytes("1gb").unwrap(), 1 << 30);
        assert_eq!(size_bytes("512KiB").unwrap(), 512 << 10);
        assert_eq!(size_bytes("1024").unwrap(), 1024);
        assert!(size_bytes("lots").is_err());
        assert!(size_bytes("5x").is_err());
        assert_eq!(nano_cpus("0.5").unwrap(), 500_000_000);
        assert!(nano_cpus("0").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            ["sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(shell_split("  sleep   3600 ").unwrap(), ["sleep", "3600"]);
        assert_eq!(shell_split("''").unwrap(), [""]);
        assert!(shell_split("echo 'open").is_err());
    }
}

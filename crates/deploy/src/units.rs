//! The units Compose files use beside durations and sizes (one grammar for those, in
//! `capstan_model::units`): cpu counts and shell-split command lines.

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
    fn cpus() {
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

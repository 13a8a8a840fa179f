//! `.env` files (and `env_file:`): `KEY=VALUE` lines, `export` allowed, `#` comments, single and
//! double quotes (double quotes know `\n`, `\t`, `\"`, `\\`).

/// Parses an env file. Errors name the 1-based line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            // a bare name: the variable is set from the environment by Compose; we keep it unset
            if is_name(line) {
                continue;
            }
            return Err((i + 1, format!("expected KEY=VALUE, found {line:?}")));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err((i + 1, format!("{key:?} is not a variable name")));
        }
        out.push((
            key.to_owned(),
            unquote(value.trim_start()).map_err(|m| (i + 1, m))?,
        ));
    }
    Ok(out)
}

/// Whether `s` is a valid variable name.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unquote(value: &str) -> Result<String, String> {
    if let Some(rest) = value.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("unterminated single quote")?;
        return Ok(rest[..end].to_owned());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote".into());
    }
    // unquoted: an inline comment starts at " #"
    let value = value.find(" #").map_or(value, |i| &value[..i]);
    Ok(value.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotenv_forms() {
        let vars = parse(
            "# comment\nA=1\nexport B = two words \nC='lit $X #x'\nD=\"a\\nb\"\nE=v # note\nF=\nBARE\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit $X #x"),
                ("D", "a\nb"),
                ("E", "v"),
                ("F", "")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(parse("A=1\n1BAD=2\n").unwrap_err().0, 2);
        assert_eq!(parse("A=\"open\n").unwrap_err().0, 1);
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().0, 2);
    }
}

//! `${VAR}` interpolation as the Compose spec defines it: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, and `$$` for a
//! literal `$`. Defaults and alternatives may themselves hold interpolations.

use crate::env::is_name;

/// How deep defaults and alternatives may hold interpolations (`${A:-${B:-...}}`).
pub const MAX_DEPTH: usize = 32;

/// Replaces every interpolation in `text`. `lookup` answers a variable's value (`None`: unset).
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    interpolate_at(text, lookup, 0)
}

/// [`interpolate`], `depth` levels inside defaults and alternatives.
fn interpolate_at(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid interpolation: defaults hold interpolations deeper than {MAX_DEPTH} levels"
        ));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = closing_brace(braced).ok_or_else(|| {
                format!(
                    "invalid interpolation in {text:?}: unclosed `${{` (write $$ for a literal $)"
                )
            })?;
            out.push_str(&expand(&braced[..end], text, lookup, depth)?);
            rest = &braced[end + 1..];
        } else {
            let len = rest
                .char_indices()
                .find(|&(i, c)| {
                    !(c.is_ascii_alphanumeric() || c == '_') || (i == 0 && c.is_ascii_digit())
                })
                .map_or(rest.len(), |(i, _)| i);
            if len == 0 {
                return Err(format!(
                    "invalid interpolation in {text:?}: `$` must start $NAME or ${{NAME}} (write $$ for a literal $)"
                ));
            }
            out.push_str(&lookup(&rest[..len]).unwrap_or_default());
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${`, counting nested `${...}`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0_usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_len);
    if !is_name(name) {
        return Err(format!(
            "invalid interpolation in {whole:?}: {inner:?} is not a variable name"
        ));
    }
    let value = lookup(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (kind, arg) = if op.is_empty() {
        return Ok(value.unwrap_or_default());
    } else if let Some(arg) = op.strip_prefix(":-") {
        ("default-if-empty", arg)
    } else if let Some(arg) = op.strip_prefix(":?") {
        ("error-if-empty", arg)
    } else if let Some(arg) = op.strip_prefix(":+") {
        ("alt-if-nonempty", arg)
    } else if let Some(arg) = op.strip_prefix('-') {
        ("default-if-unset", arg)
    } else if let Some(arg) = op.strip_prefix('?') {
        ("error-if-unset", arg)
    } else if let Some(arg) = op.strip_prefix('+') {
        ("alt-if-set", arg)
    } else {
        return Err(format!(
            "invalid interpolation in {whole:?}: unknown operator in ${{{inner}}}"
        ));
    };
    let arg = || interpolate_at(arg, lookup, depth + 1);
    match kind {
        "default-if-empty" if !set_nonempty => arg(),
        "default-if-unset" if value.is_none() => arg(),
        "error-if-empty" if !set_nonempty => Err(missing(name, &arg()?)),
        "error-if-unset" if value.is_none() => Err(missing(name, &arg()?)),
        "alt-if-nonempty" => {
            if set_nonempty {
                arg()
            } else {
                Ok(String::new())
            }
        }
        "alt-if-set" => {
            if value.is_some() {
                arg()
            } else {
                Ok(String::new())
            }
        }
        _ => Ok(value.unwrap_or_default()),
    }
}

fn missing(name: &str, message: &str) -> String {
    if message.is_empty() {
        format!("required variable {name} is missing a value")
    } else {
        format!("required variable {name} is missing a value: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, String> {
        interpolate(s, &env)
    }

    #[test]
    fn every_form() {
        assert_eq!(i("a-${SET}-$SET-$PORT/x").unwrap(), "a-v-v-8080/x");
        assert_eq!(i("${UNSET}").unwrap(), "");
        assert_eq!(i("${UNSET:-d}|${EMPTY:-d}|${SET:-d}").unwrap(), "d|d|v");
        assert_eq!(i("${UNSET-d}|${EMPTY-d}|${SET-d}").unwrap(), "d||v");
        assert_eq!(i("${UNSET:+a}|${EMPTY:+a}|${SET:+a}").unwrap(), "||a");
        assert_eq!(i("${UNSET+a}|${EMPTY+a}|${SET+a}").unwrap(), "|a|a");
        assert_eq!(i("$$SET costs $$5").unwrap(), "$SET costs $5");
        assert_eq!(i("${UNSET:-${PORT:-1}}").unwrap(), "8080");
        assert_eq!(i("${UNSET:-a}b}").unwrap(), "ab}");
    }

    #[test]
    fn errors_say_what() {
        assert_eq!(i("${SET:?x}").unwrap(), "v");
        let e = i("${EMPTY:?set EMPTY please}").unwrap_err();
        assert!(
            e.contains("required variable EMPTY") && e.contains("set EMPTY please"),
            "{e}"
        );
        assert!(i("${EMPTY?x}").is_ok());
        assert!(i("${UNSET?x}").unwrap_err().contains("UNSET"));
        assert!(i("${SET").unwrap_err().contains("unclosed"));
        assert!(i("cost: $5").unwrap_err().contains("$$"));
        assert!(i("${1BAD}").unwrap_err().contains("not a variable name"));
        assert!(i("${SET/x/y}").unwrap_err().contains("unknown operator"));
    }

    #[test]
    fn deep_defaults_are_refused_not_overflowed() {
        // 100,000 defaults inside defaults overflowed the stack before depths were counted
        let n = 100_000;
        let deep = format!("{}x{}", "${UNSET:-".repeat(n), "}".repeat(n));
        assert!(i(&deep).unwrap_err().contains("deeper than 32"));
        let ok = format!(
            "{}x{}",
            "${UNSET:-".repeat(MAX_DEPTH),
            "}".repeat(MAX_DEPTH)
        );
        assert_eq!(i(&ok).unwrap(), "x");
    }
}

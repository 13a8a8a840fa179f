//! Parsers, chosen per container (label `io.capstan.logs.parser`, else a `[[logs.rules]]` entry,
//! else `auto`):
//!
//! | spec | reads |
//! | --- | --- |
//! | `auto` | JSON object lines; any other line is kept as it is (never a parse error) |
//! | `json` | JSON object lines; anything else is a parse error |
//! | `logfmt` | `key=value key="quoted value"` lines |
//! | `regex:PATTERN` | named captures `(?P<name>...)` |
//! | `grok:PATTERN` | grok, with the standard pattern set (`%{COMBINEDAPACHELOG}`, `%{SYSLOGLINE}`, `%{TIMESTAMP_ISO8601:ts}`, `%{LOGLEVEL:level}`, ...); `SYSLOG` and `ISO8601` are accepted as short names |
//! | `none` | nothing: lines stay raw |
//!
//! Whatever the parser, a field named like a level (`level`, `lvl`, `severity`, ...) becomes the
//! line's level, and one named like a message (`msg`, `message`, ...) its message. A line that
//! fails keeps its raw text and is marked (`parse_error`).

/// Parsed fields by name.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// Names a level goes by, in order of preference.
const LEVEL_KEYS: [&str; 7] = [
    "level",
    "lvl",
    "severity",
    "loglevel",
    "log.level",
    "levelname",
    "LOGLEVEL",
];
/// Names a message goes by.
const MESSAGE_KEYS: [&str; 5] = ["msg", "message", "text", "log", "event"];

/// What a parser found in a line.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub level: Option<String>,
    pub message: Option<String>,
    pub fields: Fields,
    /// `fields` is the line's own JSON object, as it is: the store keeps it once, as the
    /// line's text, and reads it back from there.
    pub fields_are_raw: bool,
    /// The parser could not read the line.
    pub failed: bool,
}

/// A configured parser.
pub enum Parser {
    Auto,
    Json,
    Logfmt,
    Regex(regex::Regex),
    Grok(Box<grok::Pattern>),
    None,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Parser::Auto => "auto",
            Parser::Json => "json",
            Parser::Logfmt => "logfmt",
            Parser::Regex(_) => "regex",
            Parser::Grok(_) => "grok",
            Parser::None => "none",
        })
    }
}

impl Parser {
    /// Reads a parser spec (see the module's table).
    ///
    /// # Errors
    /// An unknown parser, or a pattern that does not compile, named.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        match spec {
            "" | "auto" => return Ok(Parser::Auto),
            "json" => return Ok(Parser::Json),
            "logfmt" => return Ok(Parser::Logfmt),
            "none" | "raw" => return Ok(Parser::None),
            _ => {}
        }
        if let Some(pattern) = spec.strip_prefix("regex:") {
            let re = regex::Regex::new(pattern)
                .map_err(|e| format!("parser regex: the pattern does not compile: {e}"))?;
            if re.capture_names().flatten().next().is_none() {
                return Err("parser regex: the pattern has no named capture (?P<name>...)".into());
            }
            return Ok(Parser::Regex(re));
        }
        if let Some(pattern) = spec.strip_prefix("grok:") {
            let mut g = grok::Grok::with_default_patterns();
            g.add_pattern("SYSLOG", "%{SYSLOGLINE}");
            g.add_pattern("ISO8601", "%{TIMESTAMP_ISO8601}");
            let compiled = g
                .compile(pattern, true)
                .map_err(|e| format!("parser grok: {e}"))?;
            return Ok(Parser::Grok(Box::new(compiled)));
        }
        Err(format!(
            "unknown parser {spec:?}: use auto, json, logfmt, regex:PATTERN, grok:PATTERN or none"
        ))
    }

    /// Parses one line.
    pub fn parse(&self, raw: &str) -> Parsed {
        let fields_are_raw = matches!(self, Parser::Auto | Parser::Json);
        let fields: Option<Fields> = match self {
            Parser::None => return Parsed::default(),
            Parser::Auto => match json(raw) {
                Some(f) => Some(f),
                None => return Parsed::default(),
            },
            Parser::Json => json(raw),
            Parser::Logfmt => logfmt(raw),
            Parser::Regex(re) => re.captures(raw).map(|c| {
                re.capture_names()
                    .flatten()
                    .filter_map(|n| c.name(n).map(|m| (n.to_owned(), scalar(m.as_str()))))
                    .collect()
            }),
            Parser::Grok(p) => p.match_against(raw).map(|m| {
                m.iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_owned(), scalar(v)))
                    .collect()
            }),
        };
        let Some(fields) = fields else {
            return Parsed {
                failed: true,
                ..Parsed::default()
            };
        };
        let pick = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| fields.get(*k).and_then(serde_json::Value::as_str))
                .map(str::to_owned)
        };
        Parsed {
            level: pick(&LEVEL_KEYS).map(|l| normalise_level(&l)),
            message: pick(&MESSAGE_KEYS),
            fields,
            fields_are_raw,
            failed: false,
        }
    }
}

/// A JSON object line's fields.
/// The fields of a line that is a JSON object (what the `auto` and `json` parsers take).
pub(crate) fn json(raw: &str) -> Option<Fields> {
    let trimmed = raw.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_json::from_str(trimmed).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// `key=value key="quoted \" value" flag`: a line with no `key=` pair at all is not logfmt.
fn logfmt(raw: &str) -> Option<Fields> {
    let mut out = Fields::new();
    let chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    let mut pairs = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        if key.is_empty() {
            if i < chars.len() {
                // `=` with no key
                return None;
            }
            break;
        }
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            let value = if i < chars.len() && chars[i] == '"' {
                i += 1;
                let mut v = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    v.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return None; // unclosed quote
                }
                i += 1;
                serde_json::Value::String(v)
            } else {
                let s = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                scalar(&chars[s..i].iter().collect::<String>())
            };
            pairs += 1;
            out.insert(key, value);
        } else {
            out.insert(key, serde_json::Value::Bool(true));
        }
    }
    (pairs > 0).then_some(out)
}

/// Numbers as numbers, `true`/`false` as booleans, the rest as text.
fn scalar(s: &str) -> serde_json::Value {
    if let Ok(n) = s.parse::<i64>() {
        return n.into();
    }
    if let Ok(x) = s.parse::<f64>()
        && x.is_finite()
        && s.contains('.')
    {
        return x.into();
    }
    match s {
        "true" => true.into(),
        "false" => false.into(),
        _ => s.into(),
    }
}

/// `ERROR`, `Err`, `error` → `error`; `WARNING` → `warn`; others lowercased.
pub fn normalise_level(level: &str) -> String {
    let l = level.trim().to_lowercase();
    match l.as_str() {
        "err" | "eror" => "error".into(),
        "warning" => "warn".into(),
        "critical" | "crit" | "emerg" | "alert" | "panic" => "fatal".into(),
        "information" | "informational" | "notice" => "info".into(),
        "dbg" => "debug".into(),
        _ => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_level_message_and_fields() {
        let p = Parser::Auto.parse(
            r#"{"level":"WARNING","msg":"disk almost full","used":0.93,"host":{"name":"a"}}"#,
        );
        assert_eq!(p.level.as_deref(), Some("warn"));
        assert_eq!(p.message.as_deref(), Some("disk almost full"));
        assert_eq!(p.fields["used"], serde_json::json!(0.93));
        for raw in ["plain text line", "{not json", "[1,2]"] {
            let p = Parser::Auto.parse(raw);
            assert!(p.fields.is_empty() && !p.failed, "{raw}");
        }
        // json is strict: anything else is a parse error, raw kept by the caller
        assert!(Parser::from_spec("json").unwrap().parse("plain").failed);
        assert!(!Parser::from_spec("auto").unwrap().parse("plain").failed);
    }

    #[test]
    fn logfmt_lines() {
        let p = Parser::from_spec("logfmt").unwrap().parse(
            r#"time=2026-11-22T08:00:00Z level=error msg="db \"main\" down" retries=3 ratio=0.5 cached"#,
        );
        assert!(!p.failed);
        assert_eq!(p.level.as_deref(), Some("error"));
        assert_eq!(p.message.as_deref(), Some(r#"db "main" down"#));
        assert_eq!(p.fields["retries"], serde_json::json!(3));
        assert_eq!(p.fields["ratio"], serde_json::json!(0.5));
        assert_eq!(p.fields["cached"], serde_json::json!(true));
        assert!(
            Parser::from_spec("logfmt")
                .unwrap()
                .parse("just words here")
                .failed
        );
        assert!(
            Parser::from_spec("logfmt")
                .unwrap()
                .parse("a=\"open")
                .failed
        );
    }

    #[test]
    fn regex_and_grok() {
        let re =
            Parser::from_spec(r"regex:^(?P<level>\w+): (?P<msg>.*) \((?P<ms>\d+)ms\)$").unwrap();
        let p = re.parse("WARN: slow query (1200ms)");
        assert_eq!(p.level.as_deref(), Some("warn"));
        assert_eq!(p.fields["ms"], serde_json::json!(1200));
        assert!(re.parse("no match").failed);
        assert!(
            Parser::from_spec("regex:(unclosed")
                .unwrap_err()
                .contains("does not compile")
        );
        assert!(
            Parser::from_spec(r"regex:\d+")
                .unwrap_err()
                .contains("named capture")
        );

        let apache = Parser::from_spec("grok:%{COMBINEDAPACHELOG}").unwrap();
        let p = apache.parse(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08""#);
        assert!(!p.failed, "{p:?}");
        assert_eq!(p.fields["clientip"], serde_json::json!("127.0.0.1"));
        assert_eq!(p.fields["response"], serde_json::json!(200));
        assert_eq!(p.fields["verb"], serde_json::json!("GET"));
        let common = Parser::from_spec("grok:%{COMMONAPACHELOG}").unwrap();
        assert!(
            !common
                .parse(r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 404 12"#)
                .failed
        );
        let syslog = Parser::from_spec("grok:%{SYSLOG}").unwrap();
        let p = syslog.parse("Nov 22 08:00:01 web1 sshd[4242]: Accepted publickey for root");
        assert!(!p.failed, "{p:?}");
        assert_eq!(p.message.as_deref(), Some("Accepted publickey for root"));
        let custom =
            Parser::from_spec("grok:%{ISO8601:ts} %{LOGLEVEL:level} %{GREEDYDATA:msg}").unwrap();
        let p = custom.parse("2026-11-22T08:00:00Z ERROR payment failed");
        assert_eq!(
            (p.level.as_deref(), p.message.as_deref()),
            (Some("error"), Some("payment failed"))
        );
        assert!(Parser::from_spec("grok:%{NO_SUCH_PATTERN}").is_err());
        assert!(
            Parser::from_spec("xml")
                .unwrap_err()
                .contains("unknown parser")
        );
    }
}

//! Multiline joining, per container (label `io.capstan.logs.multiline` or a config rule):
//! lines that continue an entry (a stack trace's frames) are joined to it with `\n`. An entry
//! ends when a line starts a new one, or when its stream stays quiet for the timeout (1 s).
//!
//! | spec | a line continues the entry when |
//! | --- | --- |
//! | `java` | it is a frame (`\tat ...`), `... N more`, `Caused by: ...` or `Suppressed: ...` |
//! | `python` | it is indented (a `File ...` line or code), or it is the exception line that ends a `Traceback` |
//! | `go` | the entry is a `panic:` / `fatal error:` and the line is a goroutine header, a frame, a file line or blank |
//! | `start:REGEX` | it does not match REGEX (matching lines start entries) |
//! | `continue:REGEX` | it matches REGEX |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jsonfile::Line;

/// How long a stream may stay quiet before its entry is complete.
const TIMEOUT_NS: i64 = 1_000_000_000;

/// An entry being joined (saved with the read position, so a restart loses nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub text: String,
    pub time_ns: i64,
    pub offset: u64,
    /// The last line joined (some rules look at it).
    pub last: String,
    /// Engine time of the last line joined.
    pub last_ns: i64,
    /// Lines joined so far.
    #[serde(default)]
    pub lines: usize,
    /// A line in it was cut at the line cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The most lines one entry joins by default (`[logs] max_group_lines`): a rule that never
/// starts a new entry ends one there, and the next line starts another, so nothing is lost.
pub const DEFAULT_MAX_GROUP_LINES: usize = 1000;

enum Rule {
    Java,
    Python,
    Go,
    Start(regex::Regex),
    Continue(regex::Regex),
}

/// A configured joiner.
pub struct Multiline {
    rule: Rule,
    /// The most bytes one entry holds (the line cap).
    max_bytes: usize,
    /// The most lines one entry joins.
    max_lines: usize,
}

impl std::fmt::Debug for Multiline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiline").finish_non_exhaustive()
    }
}

fn java_frame(line: &str) -> bool {
    let t = line.trim_start();
    (line.starts_with(char::is_whitespace) && (t.starts_with("at ") || t.starts_with("... ")))
        || t.starts_with("Caused by:")
        || t.starts_with("Suppressed:")
        || (line.starts_with(char::is_whitespace) && t.starts_with("Suppressed:"))
}

fn go_line(line: &str) -> bool {
    line.is_empty()
        || line.starts_with(char::is_whitespace)
        || line.starts_with("goroutine ")
        || line.starts_with("created by ")
        || line.starts_with("[signal ")
        || line.starts_with("exit status ")
        || (line.ends_with(')') && line.contains('(') && !line.contains(' '))
}

impl Multiline {
    /// Reads a multiline spec (see the module's table).
    ///
    /// # Errors
    /// An unknown preset, or a pattern that does not compile.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let rule = match spec {
            "java" => Rule::Java,
            "python" => Rule::Python,
            "go" => Rule::Go,
            _ => {
                let (kind, pattern) = spec.split_once(':').ok_or_else(|| {
                    format!("unknown multiline {spec:?}: use java, python, go, start:REGEX or continue:REGEX")
                })?;
                let re = regex::Regex::new(pattern)
                    .map_err(|e| format!("multiline {kind}: the pattern does not compile: {e}"))?;
                match kind {
                    "start" => Rule::Start(re),
                    "continue" => Rule::Continue(re),
                    _ => {
                        return Err(format!(
                            "unknown multiline {spec:?}: use java, python, go, start:REGEX or continue:REGEX"
                        ));
                    }
                }
            }
        };
        Ok(Self {
            rule,
            max_bytes: crate::jsonfile::DEFAULT_MAX_LINE,
            max_lines: DEFAULT_MAX_GROUP_LINES,
        })
    }

    /// The same joiner, an entry ending at `max_bytes` or `max_lines` (0: the default).
    #[must_use]
    pub fn with_limits(mut self, max_bytes: usize, max_lines: usize) -> Self {
        if max_bytes > 0 {
            self.max_bytes = max_bytes;
        }
        if max_lines > 0 {
            self.max_lines = max_lines;
        }
        self
    }

    fn continues(&self, group: &Group, line: &str) -> bool {
        match &self.rule {
            Rule::Java => java_frame(line),
            Rule::Python => {
                line.starts_with(char::is_whitespace)
                    || (group.text.starts_with("Traceback (most recent call last):")
                        && group.last.starts_with(char::is_whitespace)
                        && !line.is_empty())
            }
            Rule::Go => {
                (group.text.starts_with("panic: ") || group.text.starts_with("fatal error: "))
                    && go_line(line)
            }
            Rule::Start(re) => !re.is_match(line),
            Rule::Continue(re) => re.is_match(line),
        }
    }

    /// Feeds a line; returns the entry it completes (the previous one of its stream), if any.
    /// An entry holds at most the line cap in bytes and the group limit in lines: a full one
    /// ends there, and the line starts the next.
    pub fn feed(&self, groups: &mut BTreeMap<String, Group>, line: Line) -> Option<Line> {
        if let Some(g) = groups.get_mut(&line.stream)
            && self.continues(g, &line.text)
            && g.lines < self.max_lines
            && g.text.len() + 1 + line.text.len() <= self.max_bytes
        {
            g.text.push('\n');
            g.text.push_str(&line.text);
            g.lines += 1;
            g.truncated |= line.truncated;
            g.last = line.text;
            g.last_ns = line.time_ns;
            return None;
        }
        let done = groups
            .remove(&line.stream)
            .map(|g| finish(line.stream.clone(), g));
        groups.insert(
            line.stream,
            Group {
                text: line.text.clone(),
                time_ns: line.time_ns,
                offset: line.offset,
                last: line.text,
                last_ns: line.time_ns,
                lines: 1,
                truncated: line.truncated,
            },
        );
        done
    }

    /// Entries whose stream has been quiet for the timeout at `now_ns` (or all, with `all`).
    pub fn due(groups: &mut BTreeMap<String, Group>, now_ns: i64, all: bool) -> Vec<Line> {
        let streams: Vec<String> = groups
            .iter()
            .filter(|(_, g)| all || now_ns - g.last_ns >= TIMEOUT_NS)
            .map(|(s, _)| s.clone())
            .collect();
        streams
            .into_iter()
            .filter_map(|s| groups.remove(&s).map(|g| finish(s, g)))
            .collect()
    }
}

fn finish(stream: String, g: Group) -> Line {
    Line {
        stream,
        time_ns: g.time_ns,
        text: g.text,
        offset: g.offset,
        truncated: g.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &str, lines: &[&str]) -> Vec<String> {
        let m = Multiline::from_spec(spec).unwrap();
        let mut groups = BTreeMap::new();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let line = Line {
                stream: "stdout".into(),
                time_ns: i as i64,
                text: (*l).into(),
                offset: i as u64,
                truncated: false,
            };
            out.extend(m.feed(&mut groups, line).map(|l| l.text));
        }
        out.extend(
            Multiline::due(&mut groups, 0, true)
                .into_iter()
                .map(|l| l.text),
        );
        out
    }

    #[test]
    fn a_java_stack_trace_is_one_entry() {
        let out = run(
            "java",
            &[
                "12:00:01 INFO starting",
                "Exception in thread \"main\" java.lang.IllegalStateException: boom",
                "\tat com.example.App.run(App.java:42)",
                "\tat com.example.App.main(App.java:7)",
                "Caused by: java.io.IOException: disk",
                "\tat com.example.Disk.read(Disk.java:9)",
                "\t... 2 more",
                "12:00:02 INFO next",
            ],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[1].starts_with("Exception in thread") && out[1].ends_with("... 2 more"));
        assert_eq!(out[1].lines().count(), 6);
    }

    #[test]
    fn python_and_go_presets() {
        let out = run(
            "python",
            &[
                "handling request",
                "Traceback (most recent call last):",
                "  File \"app.py\", line 3, in <module>",
                "    main()",
                "ValueError: bad input",
                "next line",
            ],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[1].ends_with("ValueError: bad input"));
        let out = run(
            "go",
            &[
                "listening",
                "panic: runtime error: index out of range",
                "",
                "goroutine 1 [running]:",
                "main.main()",
                "\t/src/main.go:12 +0x1d",
                "exit status 2",
                "restarted",
            ],
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[1].lines().count(), 6);
    }

    #[test]
    fn start_and_continue_patterns_and_timeouts() {
        let out = run(
            r"start:^\d{4}-",
            &["2026-01-01 a", "  more", "2026-01-02 b"],
        );
        assert_eq!(out, ["2026-01-01 a\n  more", "2026-01-02 b"]);
        let out = run(r"continue:^\s", &["a", " b", "c"]);
        assert_eq!(out, ["a\n b", "c"]);
        assert!(Multiline::from_spec("cobol").is_err());
        assert!(Multiline::from_spec("start:(").is_err());
        // a quiet stream completes its entry
        let m = Multiline::from_spec("java").unwrap();
        let mut groups = BTreeMap::new();
        assert!(
            m.feed(
                &mut groups,
                Line {
                    stream: "stderr".into(),
                    time_ns: 0,
                    text: "x".into(),
                    offset: 0,
                    truncated: false,
                }
            )
            .is_none()
        );
        assert!(Multiline::due(&mut groups, 500_000_000, false).is_empty());
        assert_eq!(Multiline::due(&mut groups, 1_000_000_000, false).len(), 1);
    }

    #[test]
    fn a_group_that_never_ends_is_cut_into_entries_and_loses_nothing() {
        let m = Multiline::from_spec(r"continue:^\s")
            .unwrap()
            .with_limits(64, 3);
        let mut groups = BTreeMap::new();
        let mut out = Vec::new();
        let line = |i: usize, text: &str| Line {
            stream: "stdout".into(),
            time_ns: i as i64,
            text: text.into(),
            offset: i as u64,
            truncated: false,
        };
        out.extend(m.feed(&mut groups, line(0, "start")));
        for i in 1..8 {
            out.extend(m.feed(&mut groups, line(i, &format!("  {i}"))));
        }
        out.extend(Multiline::due(&mut groups, 0, true));
        let texts: Vec<&str> = out.iter().map(|l| l.text.as_str()).collect();
        // three lines an entry at most; every line is kept
        assert_eq!(texts, ["start\n  1\n  2", "  3\n  4\n  5", "  6\n  7"]);
        // the byte cap ends an entry too
        let m = Multiline::from_spec(r"continue:^\s")
            .unwrap()
            .with_limits(10, 100);
        let mut groups = BTreeMap::new();
        let mut out = Vec::new();
        out.extend(m.feed(&mut groups, line(0, "start")));
        out.extend(m.feed(&mut groups, line(1, " abcdefgh")));
        out.extend(Multiline::due(&mut groups, 0, true));
        assert_eq!(out.len(), 2);
    }
}

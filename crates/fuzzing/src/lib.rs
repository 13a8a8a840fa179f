//! The fuzz targets: each takes any bytes and feeds them to one parser of input capstan does
//! not control. A target must never panic, overflow its stack or run away; what it answers is
//! not its business (an error is a fine answer). `fuzz/fuzz_targets/*.rs` runs each under
//! libFuzzer (`scripts/fuzz`), and `tests/corpora.rs` replays every corpus and every crash
//! found, in the ordinary suite.

/// A fuzz target: any bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target by name: the name of its corpus directory under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 13] = [
    ("compose", compose),
    ("interpolate", interpolate),
    ("log_query", log_query),
    ("metrics_query", metrics_query),
    ("log_parsers", log_parsers),
    ("multiline", multiline),
    ("jsonfile", jsonfile),
    ("osv", osv),
    ("registry_hook", registry_hook),
    ("reference", reference),
    ("challenge", challenge),
    ("manifest", manifest),
    ("tag_page", tag_page),
];

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or_default()
}

/// A Compose file, as `POST …/plan` receives one.
pub fn compose(data: &[u8]) {
    let _ = capstan_compose::load(&capstan_compose::Options {
        project_name: Some("fuzz".to_owned()),
        working_dir: std::env::temp_dir(),
        text: Some(text(data).to_owned()),
        ..Default::default()
    });
}

/// `${VAR:-default}` interpolation, every variable set to its own name but `UNSET`.
pub fn interpolate(data: &[u8]) {
    let lookup = |name: &str| (name != "UNSET").then(|| name.to_owned());
    let _ = capstan_compose::interpolate(text(data), &lookup);
}

/// The log query language (`GET /api/v1/logs?q=`).
pub fn log_query(data: &[u8]) {
    let _ = capstan_logs::query::parse(text(data));
}

/// The metrics query language (`GET /api/v1/metrics/query`).
pub fn metrics_query(data: &[u8]) {
    let _ = capstan_metrics::Query::parse(text(data));
}

/// A log line through each parser; the first line of the input, when it reads as one, is a
/// grok or regex spec of its own.
pub fn log_parsers(data: &[u8]) {
    use capstan_logs::parse::Parser;
    // the fixed parsers are made once: compiling a grok pattern per input would leave the
    // fuzzer a few hundred runs a minute
    static FIXED: std::sync::OnceLock<Vec<Parser>> = std::sync::OnceLock::new();
    let fixed = FIXED.get_or_init(|| {
        ["json", "logfmt", "grok:%{COMMONAPACHELOG}"]
            .into_iter()
            .filter_map(|spec| Parser::from_spec(spec).ok())
            .collect()
    });
    let text = text(data);
    let (spec, line) = text.split_once('\n').unwrap_or(("", text));
    for parser in fixed {
        let _ = parser.parse(line);
    }
    if let Ok(parser) = Parser::from_spec(spec) {
        let _ = parser.parse(line);
    }
}

/// Lines through each multiline joiner.
pub fn multiline(data: &[u8]) {
    use capstan_logs::multiline::Multiline;
    // made once, as the log parsers are
    static JOINERS: std::sync::OnceLock<Vec<Multiline>> = std::sync::OnceLock::new();
    let joiners = JOINERS.get_or_init(|| {
        ["java", "python", "go", r"start:^\d", r"continue:^\s"]
            .into_iter()
            .filter_map(|spec| Multiline::from_spec(spec).ok())
            .map(|m| m.with_limits(4096, 50))
            .collect()
    });
    let text = text(data);
    for m in joiners {
        let mut groups = std::collections::BTreeMap::new();
        for (i, l) in text.lines().enumerate() {
            let line = capstan_logs::jsonfile::Line {
                stream: if i % 3 == 0 { "stderr" } else { "stdout" }.to_owned(),
                time_ns: i as i64,
                text: l.to_owned(),
                offset: i as u64,
                truncated: false,
            };
            let _ = m.feed(&mut groups, line);
        }
        let _ = Multiline::due(&mut groups, i64::MAX, true);
    }
}

/// Records of the engine's json-file log, joined with a small line cap.
pub fn jsonfile(data: &[u8]) {
    let mut joiner = capstan_logs::jsonfile::Joiner {
        max_line: 1024,
        ..Default::default()
    };
    for (i, record) in data.split(|b| *b == b'\n').enumerate() {
        let _ = joiner.feed(record, i as u64);
    }
    let _ = joiner.flush();
}

/// An OSV advisory document.
pub fn osv(data: &[u8]) {
    let _ = capstan_scan::osv::parse("fuzz", data);
}

/// A registry's push notification (distribution's envelope or Docker Hub's webhook).
pub fn registry_hook(data: &[u8]) {
    let _ = capstan_images::pushed_repositories(data);
}

/// An image reference (from a Compose file, a config, an API parameter).
pub fn reference(data: &[u8]) {
    let _ = capstan_registry::Reference::parse(text(data));
}

/// A registry's `WWW-Authenticate` challenge.
pub fn challenge(data: &[u8]) {
    let _ = capstan_registry::parse_challenge(text(data));
}

/// A manifest or index a registry answers; the first line of the input is its
/// `Content-Type`.
pub fn manifest(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let _ = capstan_registry::parse_manifest("sha256:fuzz", text(header), body);
}

/// One page of a registry's tag list.
pub fn tag_page(data: &[u8]) {
    let _ = capstan_registry::parse_tag_page(data);
}

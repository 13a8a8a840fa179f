//! The Prometheus text exposition format (0.0.4), written by every crate that has figures of
//! its own: capstan's `/metrics` is each crate's part, written into one [`Exposition`].

use std::fmt::Write;

/// A text exposition being written: each family's `# HELP` and `# TYPE`, then its samples.
/// The same writers also fill a list of samples, for the history ([`Exposition::capture`]).
#[derive(Default)]
pub struct Exposition(String, Option<Vec<Sample>>);

/// One sample, as the history keeps it: labels sorted by name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Exposition {
    /// Collects samples instead of writing text.
    pub fn capture() -> Self {
        Self(String::new(), Some(Vec::new()))
    }

    /// Whether samples are collected rather than written.
    pub fn capturing(&self) -> bool {
        self.1.is_some()
    }

    /// The samples collected by a [`Exposition::capture`].
    pub fn into_samples(self) -> Vec<Sample> {
        self.1.unwrap_or_default()
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        if self.1.is_some() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if let Some(samples) = &mut self.1 {
            let mut labels: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            labels.sort();
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
            return;
        }
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.0.push_str("\\\\"),
                        '"' => self.0.push_str("\\\""),
                        '\n' => self.0.push_str("\\n"),
                        c => self.0.push(c),
                    }
                }
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one sample and no labels.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

impl Exposition {
    /// The text, to serve.
    pub fn into_text(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "An x.");
        e.sample("x_total", &[("sink", "a\"b\\c\nd"), ("k", "v")], 3.0);
        assert_eq!(
            e.into_text(),
            "# HELP x_total An x.\n# TYPE x_total counter\nx_total{sink=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\n"
        );
    }
}

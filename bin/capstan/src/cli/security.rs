//! `capstan security`: the host security checks (CIS Docker Benchmark ids), run now.

use std::collections::BTreeMap;

use capstan_model::{CheckStatus, SecurityReport, Severity};
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Only findings at or above this severity (low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY")]
    severity: Option<Severity>,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
    /// List every check and how it went, not the findings.
    #[arg(long)]
    checks: bool,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: SecurityArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let query: Vec<(&str, String)> = args
        .severity
        .map(|s| ("severity", s.as_str().to_owned()))
        .into_iter()
        .collect();
    let report: SecurityReport = client.get("/api/v1/security", &query).await?;
    if args.out.output == Output::Json {
        print_json(&report)?;
    } else if args.checks {
        print_checks(&report);
    } else {
        print_findings(&report);
    }
    super::images::verdict(report.worst(), args.fail_on)
}

fn status(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::NotApplicable => "n/a",
    }
}

fn print_checks(report: &SecurityReport) {
    let mut table = Table::new(&["CHECK", "STATUS", "SEVERITY", "FINDINGS", "TITLE"]);
    for c in &report.checks {
        let title = match &c.note {
            Some(note) => format!("{} ({note})", c.title),
            None => c.title.clone(),
        };
        table.row(vec![
            c.id.clone(),
            status(c.status).to_owned(),
            c.severity.to_string(),
            c.findings.to_string(),
            title,
        ]);
    }
    table.print();
}

fn print_findings(report: &SecurityReport) {
    let mut table = Table::new(&["SEVERITY", "CHECK", "OBJECT", "FINDING"]);
    for f in &report.findings {
        table.row(vec![
            f.severity.to_string(),
            f.check.clone(),
            format!("{} {}", f.object.kind.as_str(), f.object.name),
            f.detail.clone(),
        ]);
    }
    if !report.findings.is_empty() {
        table.print();
        println!();
        // one way to fix each check that found something, worst first
        let mut fixes: Vec<(&str, &str, &str)> = Vec::new();
        for f in &report.findings {
            if !fixes.iter().any(|(id, _, _)| *id == f.check) {
                fixes.push((&f.check, &f.title, &f.fix));
            }
        }
        for (id, title, fix) in fixes {
            println!("{id} {title}\n    fix: {fix}");
        }
        println!();
    }
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &report.checks {
        *by_status.entry(status(c.status)).or_default() += 1;
    }
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    for f in &report.findings {
        *by_severity.entry(f.severity).or_default() += 1;
    }
    let severities: Vec<String> = by_severity
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    println!(
        "{} checks on {}: {} pass, {} fail, {} not applicable; {} findings{}",
        report.checks.len(),
        report.engine,
        by_status.get("pass").unwrap_or(&0),
        by_status.get("FAIL").unwrap_or(&0),
        by_status.get("n/a").unwrap_or(&0),
        report.findings.len(),
        if severities.is_empty() {
            String::new()
        } else {
            format!(" ({})", severities.join(", "))
        }
    );
}

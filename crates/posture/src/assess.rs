//! `posture assess`: a one-shot assessment of a root directory with the built-in catalog, no
//! server and no database — for CI pipelines and golden images, as `oscap xccdf eval` is.
//! Exit status: 0 when every applicable item passes, 1 when one fails, 2 on an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use catalog::{evaluate, Catalog, CheckDef, Outcome};
use clap::ValueEnum;
use connectors::host::HostConnector;
use connectors::{Connector, Target};
use model::{CheckStatus, Lang, Step};
use serde_json::{json, Value};

/// `posture assess` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The root directory of the system to assess (a mounted image, a container's root, `/`).
    #[arg(long)]
    root: PathBuf,
    /// Only these check items (comma-separated CheckIds); default: every host item.
    #[arg(long, value_delimiter = ',')]
    checks: Vec<i64>,
    /// Output: a table for people, JSON, JUnit XML or SARIF 2.1.0 for CI systems.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// A directory of extra check items (*.toml), added to the built-in catalog.
    #[arg(long)]
    catalog_dir: Option<PathBuf>,
    /// Language of names and messages.
    #[arg(long, value_enum, default_value_t = Language::En)]
    lang: Language,
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Junit,
    Sarif,
}

/// Languages of the catalog's texts.
#[derive(Clone, Copy, ValueEnum)]
enum Language {
    En,
    Zh,
}

/// One item's evaluation.
struct Finding<'a> {
    check: &'a CheckDef,
    /// None: the item does not apply to this system.
    status: Option<CheckStatus>,
    /// The settings that fail the rule.
    failed: Vec<String>,
    /// The current values of the settings the item shows.
    shown: BTreeMap<String, String>,
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    match assess(&args) {
        Ok((out, failing)) => {
            print!("{out}");
            if failing {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("posture assess: {e}");
            ExitCode::from(2)
        }
    }
}

/// The report, and whether an item fails.
fn assess(args: &Args) -> Result<(String, bool), String> {
    let lang = match args.lang {
        Language::En => Lang::En,
        Language::Zh => Lang::Zh,
    };
    let catalog = Catalog::load(args.catalog_dir.as_deref()).map_err(|e| format!("the catalog: {}", e.0))?;
    if !args.root.is_dir() {
        return Err(format!("--root {}: not a directory", args.root.display()));
    }
    let checks: Vec<&CheckDef> = if args.checks.is_empty() {
        catalog.for_asset("host").collect()
    } else {
        args.checks
            .iter()
            .map(|id| match catalog.get(*id) {
                Some(c) if c.asset == "host" => Ok(c),
                Some(c) => Err(format!("check item {id} assesses {} resources, not a host root", c.asset)),
                None => Err(format!("check item {id} does not exist")),
            })
            .collect::<Result<_, _>>()?
    };
    let root = std::fs::canonicalize(&args.root).map_err(|e| format!("--root {}: {e}", args.root.display()))?;
    let target = Target { instance_id: "local".into(), locator: root.display().to_string(), ..Default::default() };
    let doc =
        HostConnector::default().fetch(&target).map_err(|e| format!("reading {}: {}", root.display(), e.message))?;
    let findings: Vec<Finding> = checks
        .into_iter()
        .map(|check| {
            let outcome = evaluate(check, &doc);
            let failed = match &outcome {
                Outcome::NotPass(keys) => keys.clone(),
                _ => Vec::new(),
            };
            Finding { check, status: outcome.status(), failed, shown: check.shown_values(&doc) }
        })
        .collect();
    let failing = findings.iter().any(|f| f.status == Some(CheckStatus::NotPass));
    let out = match args.format {
        Format::Table => table(&findings, lang),
        Format::Json => json_report(&findings, lang),
        Format::Junit => junit(&findings, lang, &root.display().to_string()),
        Format::Sarif => sarif(&findings, lang),
    };
    Ok((out, failing))
}

/// The status as the API spells it, or `NOT_APPLICABLE`.
fn status_str(f: &Finding) -> &'static str {
    f.status.map_or("NOT_APPLICABLE", CheckStatus::as_str)
}

/// What was found, in one line: the failing settings and every shown value.
fn evidence_line(f: &Finding) -> String {
    let shown: Vec<String> = f.shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
    match (f.failed.is_empty(), shown.is_empty()) {
        (true, _) => shown.join(", "),
        (false, true) => format!("failing: {}", f.failed.join(", ")),
        (false, false) => format!("failing: {}; {}", f.failed.join(", "), shown.join(", ")),
    }
}

fn table(findings: &[Finding], lang: Lang) -> String {
    let mut out = format!("{:<7} {:<7} {:<15} {}\n", "CHECK", "RISK", "STATUS", "ITEM / EVIDENCE");
    for f in findings {
        out.push_str(&format!(
            "{:<7} {:<7} {:<15} {}\n",
            f.check.id,
            f.check.risk.lower(),
            status_str(f),
            f.check.name.get(lang)
        ));
        let evidence = evidence_line(f);
        if f.status.is_some() && !evidence.is_empty() {
            out.push_str(&format!("{:<31} {evidence}\n", ""));
        }
    }
    let count = |s: Option<CheckStatus>| findings.iter().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "\n{} passed, {} failed, {} not applicable\n",
        count(Some(CheckStatus::Pass)),
        count(Some(CheckStatus::NotPass)),
        count(None)
    ));
    out
}

/// A list of `{"CheckId", "Status", "Evidence", ...}`, one per applicable item.
fn json_report(findings: &[Finding], lang: Lang) -> String {
    let items: Vec<Value> = findings
        .iter()
        .filter(|f| f.status.is_some())
        .map(|f| {
            json!({
                "CheckId": f.check.id,
                "CheckKey": f.check.key,
                "CheckShowName": f.check.name.get(lang),
                "RiskLevel": f.check.risk.upper(),
                "Status": status_str(f),
                "Evidence": {"FailedSettings": f.failed, "Config": f.shown},
                "Solution": f.check.solution.get(lang),
            })
        })
        .collect();
    format!("{}\n", serde_json::to_string_pretty(&items).unwrap_or_default())
}

/// JUnit XML: one test case per item, failing items as failures, items that do not apply
/// as skipped.
fn junit(findings: &[Finding], lang: Lang, root: &str) -> String {
    let count = |s: Option<CheckStatus>| findings.iter().filter(|f| f.status == s).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"posture\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n  <testsuite name=\"posture assess {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        findings.len(),
        count(Some(CheckStatus::NotPass)),
        count(None),
        xml(root),
        findings.len(),
        count(Some(CheckStatus::NotPass)),
        count(None),
    ));
    for f in findings {
        out.push_str(&format!(
            "    <testcase classname=\"posture.{}\" name=\"{} {}\">",
            xml(&f.check.asset),
            f.check.id,
            xml(f.check.name.get(lang))
        ));
        match f.status {
            None => out.push_str("<skipped message=\"not applicable\"/>"),
            Some(CheckStatus::NotPass) => out.push_str(&format!(
                "<failure message=\"{}\" type=\"{}\">{}</failure>",
                xml(&evidence_line(f)),
                f.check.risk.upper(),
                xml(f.check.solution.get(lang))
            )),
            Some(_) => {}
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// SARIF 2.1.0: a rule per item assessed, a result per failing item (error, warning or note
/// by risk), located at the file the item's repair changes when it names one.
fn sarif(findings: &[Finding], lang: Lang) -> String {
    let rules: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "id": f.check.id.to_string(),
                "name": f.check.key,
                "shortDescription": {"text": f.check.name.get(lang)},
                "fullDescription": {"text": f.check.description.get(lang)},
                "help": {"text": f.check.solution.get(lang)},
                "properties": {"risk": f.check.risk.lower(), "standard": f.check.policy.standard.get(lang)},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.status == Some(CheckStatus::NotPass))
        .map(|(index, f)| {
            let level = match f.check.risk {
                catalog::Risk::High => "error",
                catalog::Risk::Medium => "warning",
                catalog::Risk::Low => "note",
            };
            json!({
                "ruleId": f.check.id.to_string(),
                "ruleIndex": index,
                "level": level,
                "message": {"text": format!("{}: {}", f.check.name.get(lang), evidence_line(f))},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": changed_file(f.check)}}}],
            })
        })
        .collect();
    let report = json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {
                "name": "posture",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    format!("{}\n", serde_json::to_string_pretty(&report).unwrap_or_default())
}

/// The file an item's repair changes (relative to the root), or the root itself.
fn changed_file(check: &CheckDef) -> String {
    let file = check.repair.iter().flat_map(|r| &r.steps).find_map(|s| match s {
        Step::SetDirective { file, .. } | Step::SetMode { file, .. } if !file.is_empty() => Some(file.as_str()),
        _ => None,
    });
    file.map_or_else(|| ".".to_string(), |f| f.trim_start_matches('/').to_string())
}

/// `s` escaped for XML text and attributes.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

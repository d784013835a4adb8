//! The report: plain text for people (one block per finding, in the order of the
//! checks), JSON for machines (`{"findings":[...],"summary":{...}}`).

use crate::{Finding, Severity};

/// The text report: every finding at `min` or above, then a summary line.
pub fn text(findings: &[Finding], min: Severity) -> String {
    let mut out = String::new();
    for f in findings.iter().filter(|f| f.severity >= min) {
        out.push_str(&format!(
            "{}: {}: {}\n",
            f.severity.word(),
            f.check,
            f.subject
        ));
        if !f.expected.is_empty() {
            out.push_str(&format!("  expected: {}\n", f.expected));
        }
        if !f.found.is_empty() {
            out.push_str(&format!("  found: {}\n", f.found));
        }
        if !f.fix.is_empty() {
            out.push_str(&format!("  fix: {}\n", f.fix));
        }
    }
    let (e, w, i) = counts(findings);
    out.push_str(&format!(
        "qmail-audit: {e} errors, {w} warnings, {i} notes\n"
    ));
    out
}

fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::Error), n(Severity::Warning), n(Severity::Info))
}

/// The JSON report.
pub fn json(findings: &[Finding]) -> String {
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "check": f.check,
                "severity": f.severity.word(),
                "subject": f.subject,
                "expected": f.expected,
                "found": f.found,
                "fix": f.fix,
            })
        })
        .collect();
    let (e, w, i) = counts(findings);
    let v = serde_json::json!({
        "findings": list,
        "summary": {"errors": e, "warnings": w, "info": i, "exit": crate::exit_status(findings)},
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_counts() {
        let f = vec![
            Finding::new("queue", Severity::Warning, "a\"b\n", "x", "y", "z"),
            Finding::info("dns", "skipped", "no resolver"),
        ];
        let v: serde_json::Value = serde_json::from_str(&json(&f)).unwrap();
        assert_eq!(v["findings"][0]["subject"], "a\"b\n");
        assert_eq!(v["summary"]["warnings"], 1);
        assert_eq!(v["summary"]["exit"], 1);
        let t = text(&f, Severity::Info);
        assert!(t.contains("warning: queue: a\"b"), "{t}");
        assert!(t.ends_with("0 errors, 1 warnings, 1 notes\n"), "{t}");
    }
}

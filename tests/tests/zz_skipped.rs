//! The skip report of a `cargo test` run: cargo runs the e2e test binaries in name order,
//! so this one comes last. It prints every test that skipped in this run (the lines
//! [`e2e::skip`] appended to `target/skipped-tests.txt`, which the e2e library's unit
//! tests emptied at the start) straight to stderr, where a passing test's output shows.
//! Under `CI=true` a skip already failed its test.

use std::io::Write;

#[test]
fn report_skipped_tests() {
    let list = e2e::skip_list();
    let text = std::fs::read_to_string(&list).unwrap_or_default();
    let n = text.lines().count();
    if n > 0 {
        let report = format!(
            "\n{n} end-to-end test(s) SKIPPED in this run (they could not run here):\n{text}"
        );
        let _ = std::io::stderr().write_all(report.as_bytes());
    }
}

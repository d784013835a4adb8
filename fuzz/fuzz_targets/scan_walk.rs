//! qmail-scan's policy walk (MIME parts, zip/gzip/tar members, type by content) with the
//! shipped rules: no panic on any message, and the expanded bytes never pass the budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scan::rules::Rules;
use scan::walk::{self, Context, Limits};

fuzz_target!(|input: &[u8]| {
    static RULES: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        Rules::parse(include_str!("../../control/scanrules")).expect("shipped rules parse")
    });
    let (_, stats) = walk::check(rules, input, &Context::default());
    assert!(stats.expanded <= Limits::for_message(input.len()).max_expanded + 1);
    assert!(stats.members <= Limits::for_message(input.len()).max_members + 1);
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = Rules::parse(text);
    }
});

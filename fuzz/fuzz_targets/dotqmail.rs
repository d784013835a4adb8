//! qmail-local's `.qmail` handling: no panic on any file content (the whole input) or
//! dash and extension (the input again, split at its first NUL into dash and ext);
//! every parsed line keeps its text, and every lookup candidate names a file inside home.
#![no_main]

use delivery::dotqmail::{self, Line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(lines) = dotqmail::parse(input) {
        let text = String::from_utf8_lossy(input);
        for l in &lines {
            match l {
                Line::Mbox(p) | Line::Maildir(p) => assert!(p.starts_with(['.', '/'])),
                Line::Program(s) | Line::Forward(s) => assert!(text.contains(s.as_str())),
                Line::ForwardOnly => {}
            }
        }
    }
    let text = String::from_utf8_lossy(input);
    let (dash, ext) = text.split_once('\0').unwrap_or(("-", &text));
    for (name, default) in dotqmail::candidates(dash, ext) {
        assert!(name.starts_with(".qmail"));
        assert!(!name[".qmail".len() + dash.len()..].contains('.'));
        if let Some(d) = default {
            assert!(d.len() <= ext.len());
        }
    }
    let _ = delivery::local::quote_addr(&text);
});

//! The DATA state machine: no panic; the result does not depend on how the input is
//! split into reads; the stored message never holds a CR (bare CRs are refused and
//! CR LF becomes LF); the end offset lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::data::{Dot, Step};

fuzz_target!(|input: &[u8]| {
    if input.is_empty() {
        return;
    }
    // The first byte picks the split points.
    let (seed, data) = (input[0], &input[1..]);
    let mut whole = Vec::new();
    let want = Dot::new().push(data, &mut whole);
    if let Step::End(n) = want {
        assert!(n <= data.len());
    }
    assert!(!whole.contains(&b'\r'));
    let step = usize::from(seed % 7) + 1;
    let mut dot = Dot::new();
    let mut out = Vec::new();
    let mut got = Step::More;
    let mut off = 0;
    while off < data.len() {
        let end = (off + step).min(data.len());
        match dot.push(&data[off..end], &mut out) {
            Step::More => {}
            Step::End(n) => {
                got = Step::End(off + n);
                break;
            }
            e => {
                got = e;
                break;
            }
        }
        off = end;
    }
    assert_eq!(got, want);
    assert_eq!(out, whole);
});

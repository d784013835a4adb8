//! rblsmtpd's refusing SMTP session: whatever the client sends, every reply is one of the
//! four it may give, each a whole CRLF-terminated line, and a client can never make it
//! print anything of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|input: &[u8]| {
    let mut out = Vec::new();
    let mut r = std::io::BufReader::with_capacity(5, input);
    ucspi::rbl::refuse(b"451 listed", Duration::from_secs(5), &mut r, &mut out);
    let text = std::str::from_utf8(&out).expect("replies are ASCII");
    assert!(text.ends_with("\r\n"));
    for line in text.split_terminator("\r\n") {
        assert!(
            ["220 rblsmtpd.local", "250 rblsmtpd.local", "221 rblsmtpd.local", "451 listed"]
                .contains(&line),
            "{line:?}"
        );
    }
});

//! MAIL/RCPT arguments, MAIL parameters and SASL responses: no panic on any input, and
//! an accepted address is bounded and free of control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::{addr, auth};

fuzz_target!(|input: &[u8]| {
    if let Ok(s) = std::str::from_utf8(input) {
        for kw in ["FROM", "TO"] {
            if let Ok((p, rest)) = addr::split_command(s, kw) {
                assert!(p.addr.len() <= addr::MAX_ADDR);
                assert!(!p.addr.chars().any(char::is_control));
                let _ = p.relay_probe();
                let _ = p.domain();
                let _ = addr::mail_params(rest);
            }
        }
    }
    if let Ok(d) = auth::decode(input) {
        let _ = auth::plain(&d, "<1.2@h>");
        let _ = auth::cram(&d, "<1.2@h>");
        let _ = auth::login(&d, &d, "<1.2@h>");
    }
});

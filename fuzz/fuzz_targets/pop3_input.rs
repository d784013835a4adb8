//! What qmail-popup and checkpassword parse before anyone is logged in: command lines
//! with a length limit, AUTH PLAIN responses, and the fd 3 credential record. No panic on
//! any input; a line never exceeds its limit; a decoded PLAIN login has a user name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pop3::line::{Line, read_line};

fuzz_target!(|input: &[u8]| {
    for max in [1usize, 8, 512] {
        let mut r = std::io::BufReader::with_capacity(7, input);
        let mut consumed_lines = 0;
        loop {
            match read_line(&mut r, max) {
                Ok(Line::Text(t)) => {
                    assert!(t.len() <= max);
                    assert!(!t.contains(&b'\n'));
                }
                Ok(Line::TooLong) => {}
                Ok(Line::Eof) | Err(_) => break,
            }
            consumed_lines += 1;
            assert!(consumed_lines <= input.len() + 1);
        }
    }
    if let Ok((user, _pass)) = pop3::popup::decode_plain(input) {
        assert!(!user.is_empty());
    }
    if let Some(c) = auth::Credentials::parse(input) {
        assert!(c.user.len() + c.pass.len() + 2 <= input.len());
    }
});

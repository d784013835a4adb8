//! qmail-remote's view of a remote server and of a recipient's domain: SMTP replies
//! (any bytes, any line split) are read without panic, their code is 0 or 200..=599 and
//! their text bounded; EHLO keywords parse; the domain (the input as text) is parsed as
//! an address literal and as an smtproutes value without panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remote::reply::{Extensions, MAX_LINE, read_reply};
use remote::routes::{literal_ip, parse_route};

fuzz_target!(|input: &[u8]| {
    let mut rest = input;
    if let Ok(reply) = read_reply(|| {
        if rest.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        let l = line.strip_suffix(b"\n").unwrap_or(line);
        Ok((l[..l.len().min(MAX_LINE)].to_vec(), line.len()))
    }) {
        assert!(reply.code == 0 || (200..=599).contains(&reply.code));
        let _ = Extensions::from_ehlo(&reply);
    }
    let text = String::from_utf8_lossy(input);
    let _ = literal_ip(&text);
    let _ = parse_route(&text);
});

//! tcprules text and tcpserver's rule lookup: no panic on any rules text, every compiled
//! record decodes back to the deny flag and variables its line gave, and the lookup keys
//! of any address text are bounded in number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucspi::rules;

fuzz_target!(|input: &[u8]| {
    if let Ok(records) = rules::compile(input) {
        for (key, data) in &records {
            let d = rules::decode(key.clone(), data);
            let pluses = data.split(|&b| b == 0).filter(|e| e.first() == Some(&b'+')).count();
            assert_eq!(d.env.len(), pluses);
            assert_eq!(d.deny, data.starts_with(b"D\0"));
        }
    }
    if let Ok(text) = std::str::from_utf8(input) {
        let mut parts = text.splitn(3, '\n');
        let ip = parts.next().unwrap_or("");
        let host = parts.next();
        let info = parts.next();
        let keys = rules::candidates(ip, host, info);
        assert!(keys.len() <= 6 + ip.len() + host.map_or(0, str::len));
    }
});

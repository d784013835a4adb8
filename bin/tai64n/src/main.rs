//! tai64n - put a precise time stamp on each line
//!
//! SYNOPSIS
//!     tai64n
//!
//! DESCRIPTION
//!     Copies stdin to stdout, prefixing each line with `@` + 24 hex digits of the
//!     TAI64N time its first byte was read, and a space. Output is flushed whenever
//!     input would block.
//!
//! EXIT CODES
//!     0 at end of input; 111 read or write error.

use std::io::{Read, Write};

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("tai64n");
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    let mut at_start = true;
    let die = |e: std::io::Error| -> ! {
        qsys::die::fatal("tai64n", &format!("unable to copy: {e}"), 111)
    };
    loop {
        if let Err(e) = out.flush() {
            die(e);
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => die(e),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if at_start {
                let stamp = format!("{} ", tai64::Tai64n::now().to_hex());
                if let Err(e) = out.write_all(stamp.as_bytes()) {
                    die(e);
                }
                at_start = false;
            }
            let k = rest.iter().position(|&c| c == b'\n').map(|p| p + 1);
            let k = k.unwrap_or(rest.len());
            if let Err(e) = out.write_all(&rest[..k]) {
                die(e);
            }
            if rest[k - 1] == b'\n' {
                at_start = true;
            }
            rest = &rest[k..];
        }
    }
    if let Err(e) = out.flush() {
        die(e);
    }
}

//! tai64nlocal - convert TAI64N stamps to local time
//!
//! SYNOPSIS
//!     tai64nlocal
//!
//! DESCRIPTION
//!     Copies stdin to stdout; a line starting with `@` and 24 hex digits gets the stamp
//!     replaced by `YYYY-MM-DD HH:MM:SS.NNNNNNNNN` in the local time zone. Other lines
//!     (including short stamps, on which the original crashes) pass unchanged.
//!
//! EXIT CODES
//!     0 at end of input; 111 read or write error.

use std::io::{BufRead, Write};

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("tai64nlocal");
    let mut input = std::io::BufReader::new(std::io::stdin());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => qsys::die::fatal("tai64nlocal", &format!("unable to read input: {e}"), 111),
        }
        let nl = line.last() == Some(&b'\n');
        let body = if nl {
            &line[..line.len() - 1]
        } else {
            &line[..]
        };
        let mut o = tai64::localize_line(body);
        if nl {
            o.push(b'\n');
        }
        let r = out.write_all(&o).and_then(|()| {
            if input.buffer().is_empty() {
                out.flush()
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            qsys::die::fatal("tai64nlocal", &format!("unable to write output: {e}"), 111);
        }
    }
    if let Err(e) = out.flush() {
        qsys::die::fatal("tai64nlocal", &format!("unable to write output: {e}"), 111);
    }
}

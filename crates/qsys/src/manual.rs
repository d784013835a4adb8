//! Each program's manual is the module doc its `main.rs` opens with (NAME, SYNOPSIS,
//! DESCRIPTION, ... EXIT CODES). [`help!`](crate::help) makes `PROG --help` print it;
//! qmail-install turns the same text into man pages and `HOME/doc` files with
//! [`text`] and [`roff`].

/// The manual in a `main.rs` source: its leading `//!` lines without the marker.
pub fn text(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("//!") else {
            break;
        };
        out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        out.push('\n');
    }
    out
}

/// True when the program was started as `PROG --help` (and nothing else): the one
/// argument no program of ours takes for anything else.
pub fn asked() -> bool {
    let mut args = std::env::args_os().skip(1);
    args.next().is_some_and(|a| a == "--help") && args.next().is_none()
}

/// Print the manual of `source` (a `main.rs`) on stdout and exit 0.
pub fn print_and_exit(source: &str) -> ! {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text(source).as_bytes());
    let _ = out.flush();
    std::process::exit(0)
}

/// `PROG --help`: print the manual at the top of the calling crate's `src/main.rs` and
/// exit 0. Put it first in `main`.
#[macro_export]
macro_rules! help {
    () => {
        if $crate::manual::asked() {
            $crate::manual::print_and_exit(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/main.rs"
            )));
        }
    };
}

/// The manual `text` of program `name` as a man page in section 8: the title line, the
/// all-capital lines as section headings, everything else kept as written (no filling,
/// so the synopsis and tables keep their layout), roff's special characters escaped.
pub fn roff(name: &str, text: &str) -> String {
    let mut out = format!(
        ".TH {} 8 \"\" \"qmail-rs\" \"System Manager's Manual\"\n",
        escape(&name.to_uppercase())
    );
    let mut body = false;
    for line in text.lines() {
        let heading = !line.is_empty()
            && !line.starts_with(' ')
            && line.chars().any(|c| c.is_ascii_alphabetic())
            && line
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '-');
        if heading {
            if body {
                out.push_str(".fi\n");
            }
            out.push_str(&format!(".SH {}\n.nf\n", escape(line)));
            body = true;
            continue;
        }
        if !body {
            // the title line (`prog - what it does`) before the first heading
            if line.trim().is_empty() {
                continue;
            }
            out.push_str(&format!(".SH NAME\n{}\n", escape(line)));
            continue;
        }
        out.push_str(&escape(line));
        out.push('\n');
    }
    if body {
        out.push_str(".fi\n");
    }
    out
}

/// A line as roff text: backslashes doubled, and a leading `.` or `'` (a request)
/// made literal.
fn escape(line: &str) -> String {
    let l = line.replace('\\', "\\e");
    if l.starts_with('.') || l.starts_with('\'') {
        format!("\\&{l}")
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "//! prog - does one thing\n//!\n//! SYNOPSIS\n//!     prog [-v] FILE\n//!\n//! DESCRIPTION\n//!     Reads FILE. A line .starting with a dot\n//! .TH is text\n//!     back\\slash\n\nuse std::io;\n//! not the manual\n";

    #[test]
    fn the_manual_is_the_leading_doc_lines() {
        let t = text(SRC);
        assert!(t.starts_with("prog - does one thing\n\nSYNOPSIS\n    prog [-v] FILE\n"));
        assert!(!t.contains("not the manual"));
        assert!(!t.contains("use std"));
    }

    #[test]
    fn roff_has_headings_and_escapes_requests_and_backslashes() {
        let r = roff("prog", &text(SRC));
        assert!(r.starts_with(".TH PROG 8 "), "{r}");
        assert!(r.contains(".SH NAME\nprog - does one thing\n"), "{r}");
        assert!(r.contains(".SH SYNOPSIS\n.nf\n    prog [-v] FILE\n"), "{r}");
        assert!(r.contains("\n\\&.TH is text\n"), "{r}");
        assert!(r.contains("back\\eslash"), "{r}");
        assert!(r.trim_end().ends_with(".fi"), "{r}");
    }
}

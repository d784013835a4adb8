//! POSIX getopt for DJB-style programs (`tcpserver -vRHl0 -c 40 0 25 prog`): single-letter
//! flags that may be grouped, option arguments attached (`-c40`) or separate (`-c 40`),
//! `--` ends the options, and so does the first argument that does not start with `-`.
//! Arguments are bytes (`OsString`), never assumed UTF-8.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// One parsed option: its letter and, for letters that take one, its argument.
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    pub letter: u8,
    pub arg: Option<OsString>,
}

/// Parse `args` (without argv[0]) against `spec` (`"vc:x:"`: a letter followed by `:`
/// takes an argument). Returns the options in order and the remaining operands, or the
/// offending letter (unknown, or missing its argument).
pub fn getopt(args: &[OsString], spec: &str) -> Result<(Vec<Opt>, Vec<OsString>), u8> {
    let spec = spec.as_bytes();
    let takes_arg = |c: u8| -> Option<bool> {
        let i = spec.iter().position(|&s| s == c && c != b':')?;
        Some(spec.get(i + 1) == Some(&b':'))
    };
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--" {
            i += 1;
            break;
        }
        if a.len() < 2 || a[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            match takes_arg(c) {
                None => return Err(c),
                Some(false) => {
                    opts.push(Opt {
                        letter: c,
                        arg: None,
                    });
                    j += 1;
                }
                Some(true) => {
                    let arg = if j + 1 < a.len() {
                        std::ffi::OsStr::from_bytes(&a[j + 1..]).to_os_string()
                    } else {
                        i += 1;
                        args.get(i).cloned().ok_or(c)?
                    };
                    opts.push(Opt {
                        letter: c,
                        arg: Some(arg),
                    });
                    break;
                }
            }
        }
        i += 1;
    }
    Ok((opts, args[i.min(args.len())..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn grouped_attached_and_separate() {
        let (o, rest) = getopt(
            &v(&["-vRHl0", "-c", "40", "-x/r.cdb", "0", "25", "p", "-a"]),
            "vRHl:c:x:",
        )
        .unwrap();
        let letters: Vec<u8> = o.iter().map(|o| o.letter).collect();
        assert_eq!(letters, b"vRHlcx");
        assert_eq!(o[3].arg.as_deref(), Some(std::ffi::OsStr::new("0")));
        assert_eq!(o[4].arg.as_deref(), Some(std::ffi::OsStr::new("40")));
        assert_eq!(o[5].arg.as_deref(), Some(std::ffi::OsStr::new("/r.cdb")));
        assert_eq!(rest, v(&["0", "25", "p", "-a"]));
    }

    #[test]
    fn errors_and_double_dash() {
        assert_eq!(getopt(&v(&["-z"]), "v"), Err(b'z'));
        assert_eq!(getopt(&v(&["-c"]), "c:"), Err(b'c'));
        let (o, rest) = getopt(&v(&["-v", "--", "-x"]), "v").unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(rest, v(&["-x"]));
        let (o, rest) = getopt(&v(&["-", "a"]), "v").unwrap();
        assert!(o.is_empty());
        assert_eq!(rest, v(&["-", "a"]));
    }
}

//! The filter command lines of a chain. On the command line, qmail-qfilter's syntax:
//! `qmail-qfilter filter1 arg ... -- filter2 arg ...`. In `control/filters`: one filter
//! per line, its words separated by white space (no shell, no quoting), empty lines and
//! lines starting with `#` ignored; no filter at all is a chain that only queues.

use std::ffi::OsString;

/// One filter: the program (a path, or a name looked up in the filters' `PATH`) and its
/// arguments.
pub type Filter = Vec<OsString>;

/// Filters from arguments separated by `--`. An empty filter (`--` first, last or
/// twice in a row) is an error naming its position.
pub fn from_args(args: &[OsString]) -> Result<Vec<Filter>, String> {
    let mut filters = vec![Vec::new()];
    for a in args {
        if a == "--" {
            filters.push(Vec::new());
        } else if let Some(last) = filters.last_mut() {
            last.push(a.clone());
        }
    }
    if let Some(i) = filters.iter().position(Vec::is_empty) {
        return Err(format!("filter {} of the arguments is empty", i + 1));
    }
    Ok(filters)
}

/// Filters from the text of `control/filters`.
pub fn from_control(text: &str) -> Vec<Filter> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(OsString::from).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_split_on_double_dash() {
        let f = from_args(&os(&["a", "-x", "--", "/bin/b", "1", "2"])).unwrap();
        assert_eq!(f, vec![os(&["a", "-x"]), os(&["/bin/b", "1", "2"])]);
        assert_eq!(from_args(&os(&["a"])).unwrap(), vec![os(&["a"])]);
        assert!(from_args(&os(&["a", "--"])).is_err());
        assert!(from_args(&os(&["--", "a"])).is_err());
        assert!(from_args(&os(&["a", "--", "--", "b"])).is_err());
        assert!(from_args(&[]).is_err());
    }

    #[test]
    fn control_lines_are_words_without_a_shell() {
        let text = "# the chain\n\n  qmail-scan  \n/usr/bin/f  -a 'b c' $X\n\t# off\n";
        assert_eq!(
            from_control(text),
            vec![
                os(&["qmail-scan"]),
                os(&["/usr/bin/f", "-a", "'b", "c'", "$X"])
            ]
        );
        assert!(from_control("").is_empty());
        assert!(from_control("# nothing\n\n").is_empty());
    }
}

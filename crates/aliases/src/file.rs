//! The aliases file format of sendmail and Postfix (aliases(5)), as fastforward's
//! `newaliases` reads it: one alias per logical line, `name: target, target, ...`;
//! a line that starts with a space or tab continues the previous one; blank lines and
//! lines starting with `#` are ignored. A target is `|command` or `"|command, with
//! commas"`, `/file`, `:include:/path`, `\name`, `user@domain` or a bare local `name`.
//! Names are case-insensitive (kept in lower case). Lengths are bounded: a logical line
//! of at most [`MAX_LINE`] bytes, at most [`MAX_TARGETS`] targets per alias.

use crate::Target;

pub const MAX_LINE: usize = 64 * 1024;
pub const MAX_TARGETS: usize = 10_000;

/// A line the parser cannot take, with its (1-based) number.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

/// The aliases in `text`, in file order (a name may appear once).
pub fn parse(text: &str) -> Result<Vec<(String, Vec<Target>)>, ParseError> {
    let mut aliases: Vec<(String, Vec<Target>)> = Vec::new();
    for (line, logical) in logical_lines(text)? {
        let err = |what: String| ParseError { line, what };
        let Some((name, rest)) = logical.split_once(':') else {
            return Err(err("no colon after the alias name".into()));
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!("bad alias name {name:?}")));
        }
        if aliases.iter().any(|(n, _)| *n == name) {
            return Err(err(format!("{name} is defined twice")));
        }
        let targets = targets(rest).map_err(err)?;
        if targets.is_empty() {
            return Err(err(format!("{name} has no target")));
        }
        aliases.push((name, targets));
    }
    Ok(aliases)
}

/// The targets of one alias's value (also one line of an `:include:` list).
pub fn targets(value: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for item in split_items(value)? {
        if out.len() >= MAX_TARGETS {
            return Err(format!("more than {MAX_TARGETS} targets"));
        }
        out.push(target(&item)?);
    }
    Ok(out)
}

fn target(item: &str) -> Result<Target, String> {
    if let Some(cmd) = item.strip_prefix('|') {
        let cmd = cmd.trim();
        if cmd.is_empty() {
            return Err("empty program".into());
        }
        return Ok(Target::Program(cmd.to_string()));
    }
    if let Some(path) = item.strip_prefix(":include:") {
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(format!(":include: needs an absolute path, not {path:?}"));
        }
        return Ok(Target::Include(path.to_string()));
    }
    if item.starts_with('/') {
        return Ok(Target::File(item.to_string()));
    }
    if item.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("bad address {item:?}"));
    }
    if let Some(name) = item.strip_prefix('\\') {
        if name.is_empty() || name.contains('@') {
            return Err(format!("bad local name {item:?}"));
        }
        return Ok(Target::Literal(name.to_ascii_lowercase()));
    }
    match item.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(Target::Address(item.to_string()))
        }
        Some(_) => Err(format!("bad address {item:?}")),
        None => Ok(Target::Name(item.to_ascii_lowercase())),
    }
}

/// Comma-separated items, with `"..."` quoting (so a program may hold commas).
fn split_items(value: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                push_item(&mut items, &cur);
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err("unbalanced quote".into());
    }
    push_item(&mut items, &cur);
    Ok(items)
}

fn push_item(items: &mut Vec<String>, item: &str) {
    let t = item.trim();
    if !t.is_empty() {
        items.push(t.to_string());
    }
}

/// Joined continuation lines, each with the number of the line it started on.
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, ParseError> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        if raw.starts_with(' ') || raw.starts_with('\t') {
            let Some((_, last)) = out.last_mut() else {
                return Err(ParseError {
                    line: n,
                    what: "continuation line without an alias before it".into(),
                });
            };
            last.push(' ');
            last.push_str(raw.trim());
        } else {
            out.push((n, raw.to_string()));
        }
        if out.last().is_some_and(|(_, l)| l.len() > MAX_LINE) {
            return Err(ParseError {
                line: n,
                what: format!("alias longer than {MAX_LINE} bytes"),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_forms() {
        let text = "# sendmail's aliases\n\
            Postmaster: root\n\
            root:\tadmin@example.org, \\root,\n  ops\n\
            archive: /var/mail/archive\n\
            tick: \"|/usr/bin/ticket --queue=mail, --quiet\"\n\
            team: :include:/etc/mail/team.list, boss@example.org\n\
            \n";
        let a = parse(text).unwrap();
        assert_eq!(
            a[0],
            ("postmaster".into(), vec![Target::Name("root".into())])
        );
        assert_eq!(
            a[1].1,
            vec![
                Target::Address("admin@example.org".into()),
                Target::Literal("root".into()),
                Target::Name("ops".into())
            ]
        );
        assert_eq!(a[2].1, vec![Target::File("/var/mail/archive".into())]);
        assert_eq!(
            a[3].1,
            vec![Target::Program(
                "/usr/bin/ticket --queue=mail, --quiet".into()
            )]
        );
        assert_eq!(
            a[4].1,
            vec![
                Target::Include("/etc/mail/team.list".into()),
                Target::Address("boss@example.org".into())
            ]
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let e = |t: &str| parse(t).unwrap_err();
        assert_eq!(e("a: b\nbad line\n").line, 2);
        assert!(e("a: b\nA: c\n").what.contains("twice"));
        assert!(e("a:\n").what.contains("no target"));
        assert!(e("  x\n").what.contains("continuation"));
        assert!(e("a: \"|x\n").what.contains("quote"));
        assert!(e("a: :include:relative\n").what.contains("absolute"));
        assert!(e("a: @x\n").what.contains("bad address"));
        assert!(e("a: b@\n").what.contains("bad address"));
        assert!(e(&format!("a: {}\n", "b,".repeat(40_000))).line == 1);
    }
}

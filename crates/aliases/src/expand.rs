//! The deliveries an alias comes to: names are followed through the table (depth and
//! size bounded, each name once, so `a: b` and `b: a` end), a name that is no alias is
//! the local user at the domain the message was addressed to, `\name` is that user
//! without a lookup.

use crate::Target;
use crate::table::Table;

/// How deep names may refer to names.
pub const MAX_DEPTH: usize = 20;
/// How many deliveries one alias may come to.
pub const MAX_DELIVERIES: usize = 10_000;

/// One delivery of an expanded alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Forward(String),
    Program(String),
    File(String),
}

/// The deliveries for alias `name` at `domain`; `Ok(None)` when `name` is no alias.
pub fn expand(table: &Table, name: &str, domain: &str) -> Result<Option<Vec<Delivery>>, String> {
    let top = table.get(name).map_err(|e| e.to_string())?;
    if top.is_empty() {
        return Ok(None);
    }
    let mut seen = vec![name.to_string()];
    let mut out = Vec::new();
    walk(table, top, domain, 0, &mut seen, &mut out)?;
    Ok(Some(out))
}

fn walk(
    table: &Table,
    targets: Vec<Target>,
    domain: &str,
    depth: usize,
    seen: &mut Vec<String>,
    out: &mut Vec<Delivery>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("aliases nested deeper than {MAX_DEPTH}"));
    }
    for t in targets {
        if out.len() >= MAX_DELIVERIES {
            return Err(format!("more than {MAX_DELIVERIES} deliveries"));
        }
        let d = match t {
            Target::Address(a) => Delivery::Forward(a),
            Target::Literal(n) => Delivery::Forward(format!("{n}@{domain}")),
            Target::Program(c) => Delivery::Program(c),
            Target::File(p) => Delivery::File(p),
            Target::Include(_) => continue, // read in at compile time
            Target::Name(n) => {
                if seen.contains(&n) {
                    // a name met again on its own path is the user of that name
                    Delivery::Forward(format!("{n}@{domain}"))
                } else {
                    let next = table.get(&n).map_err(|e| e.to_string())?;
                    if next.is_empty() {
                        Delivery::Forward(format!("{n}@{domain}"))
                    } else {
                        seen.push(n);
                        walk(table, next, domain, depth + 1, seen, out)?;
                        continue;
                    }
                }
            }
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file;

    fn table(text: &str) -> (tempfile::TempDir, Table) {
        let d = tempfile::tempdir().unwrap();
        let cdb = d.path().join("a.cdb");
        crate::table::write(&cdb, &file::parse(text).unwrap()).unwrap();
        let t = Table::open(&cdb).unwrap();
        (d, t)
    }

    #[test]
    fn names_are_followed_loops_end_and_duplicates_go() {
        let (_d, t) = table(
            "postmaster: root\nroot: ops, \\root, admin@example.org\nops: ann, bob@x.test, root\n\
             a: b\nb: a\n",
        );
        assert_eq!(
            expand(&t, "postmaster", "mx.test").unwrap().unwrap(),
            vec![
                Delivery::Forward("ann@mx.test".into()),
                Delivery::Forward("bob@x.test".into()),
                Delivery::Forward("root@mx.test".into()),
                Delivery::Forward("admin@example.org".into()),
            ]
        );
        assert_eq!(
            expand(&t, "a", "mx.test").unwrap().unwrap(),
            vec![Delivery::Forward("a@mx.test".into())]
        );
        assert_eq!(expand(&t, "nobody", "mx.test").unwrap(), None);
    }

    #[test]
    fn depth_is_bounded() {
        let text: String = (0..30).map(|i| format!("n{i}: n{}\n", i + 1)).collect();
        let (_d, t) = table(&text);
        assert!(expand(&t, "n0", "mx.test").unwrap_err().contains("deeper"));
    }
}

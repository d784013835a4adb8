//! qmail's fastforward for administrators coming from sendmail or Postfix: the aliases
//! file they know (aliases(5)) compiled by `newaliases` into a cdb, and `fastforward`,
//! the delivery program `~alias/.qmail-default` runs for every local address no user
//! and no `.qmail-NAME` claimed.
//!
//! - [`file`]: the text format: `name: target, target`, continuation lines that start
//!   with white space, `#` comments; targets are addresses, bare local names (other
//!   aliases, or local users), `\name` (never expanded), `|program`, `/file` and
//!   `:include:/path` (a list of addresses, one or more per line).
//! - [`table`]: compiling a file into the cdb and reading it back: one record per target,
//!   `:include:` lists read at compile time (run `newaliases` after changing one).
//! - [`expand`]: the deliveries an address comes to, following names through the table.
//!
//! Restrictions (documented in INSTALL.md): `|program` and `/file` targets are accepted
//! only from the aliases file itself, and only when that file is owned by root and
//! writable by nobody else (never from an `:include:` list, which its owner could
//! change); they run, and files are appended to, as the user `alias`, in mbox format.

pub mod deliver;
pub mod expand;
pub mod file;
pub mod table;

/// One target of an alias, as written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `user@domain`: forward there.
    Address(String),
    /// A bare local name: another alias, else the local user (`name@` the domain the
    /// message was addressed to).
    Name(String),
    /// `\name`: the local user `name`, never looked up as an alias.
    Literal(String),
    /// `|command`: run with the message on its input.
    Program(String),
    /// `/path`: append the message (mbox format).
    File(String),
    /// `:include:/path`: the addresses listed in that file.
    Include(String),
}

impl Target {
    /// The target as one cdb record: a type byte and the text.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, text) = match self {
            Target::Address(a) => (b'&', a),
            Target::Name(n) => (b'=', n),
            Target::Literal(n) => (b'\\', n),
            Target::Program(c) => (b'|', c),
            Target::File(p) => (b'/', p),
            Target::Include(p) => (b':', p),
        };
        let mut v = Vec::with_capacity(text.len() + 1);
        v.push(tag);
        v.extend_from_slice(text.as_bytes());
        v
    }

    /// A record written by [`Target::encode`]; `None` for anything else.
    pub fn decode(record: &[u8]) -> Option<Target> {
        let (&tag, rest) = record.split_first()?;
        let text = String::from_utf8(rest.to_vec()).ok()?;
        Some(match tag {
            b'&' => Target::Address(text),
            b'=' => Target::Name(text),
            b'\\' => Target::Literal(text),
            b'|' => Target::Program(text),
            b'/' => Target::File(text),
            b':' => Target::Include(text),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for t in [
            Target::Address("a@b.test".into()),
            Target::Name("root".into()),
            Target::Literal("joe".into()),
            Target::Program("/usr/bin/foo -x".into()),
            Target::File("/var/log/mail.archive".into()),
        ] {
            assert_eq!(Target::decode(&t.encode()), Some(t));
        }
        assert_eq!(Target::decode(b""), None);
        assert_eq!(Target::decode(b"?x"), None);
    }
}

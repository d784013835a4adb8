//! The policy check of one message: header and envelope rules, then every MIME part and
//! every archive member (zip, gzip, tar, nested) against the name rules and the built-in
//! checks. The first hit wins (rules in file order, then built-ins). Text parts are typed
//! by their bytes as sent, and files uuencoded inside them are checked like attachments.
//!
//! Archives are read member by member through a bounded reader: the declared sizes are
//! never trusted, and the walk stops as soon as the depth, member count or expanded-byte
//! budget is exceeded (that is itself a hit, [`Builtin::Limits`]). Nothing here panics or
//! allocates more than the budget on hostile input.

use std::io::{Cursor, Read};

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::magic::{self, Kind};
use crate::rules::{Action, Builtin, Match, Rules, Subject};

/// The bomb limits of one message (wave2.md 1.5, after amavis' defaults).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nesting of messages and archives inside each other.
    pub max_depth: usize,
    /// Archive members over the whole message.
    pub max_members: usize,
    /// Bytes produced by decompression over the whole message.
    pub max_expanded: u64,
}

impl Limits {
    /// Depth 8, 1000 members, expanded bytes at most 100 times the message size, between
    /// 1 MiB (so small legitimate archives pass) and 50 MiB.
    pub fn for_message(size: usize) -> Limits {
        let ratio = (size as u64).saturating_mul(100);
        Limits {
            max_depth: 8,
            max_members: 1000,
            max_expanded: ratio.clamp(1 << 20, 50 << 20),
        }
    }
}

/// The envelope and connection facts the pseudo-header rules look at.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub sender: String,
    pub recipients: Vec<String>,
    /// `TCPREMOTEIP`, empty for local injection.
    pub remote_ip: String,
    /// The client's HELO name, empty when unknown.
    pub helo: String,
}

/// A rule or built-in check that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule's first column, or `@check` for a built-in.
    pub rule: String,
    /// Line in the rules file (0 for a built-in without an `@` line).
    pub line: usize,
    pub remark: String,
    pub action: Action,
    /// Where: the part or member path (`a.zip/b.tgz/c.exe`) or the header, for the log.
    pub place: String,
}

/// What the walk saw, for the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub parts: usize,
    pub members: usize,
    pub expanded: u64,
}

/// Check `message` against `rules`; `None` means no rule matched. A message of one
/// plain text part ([`single_text_body`]) is checked without mail-parser's MIME parse,
/// with the same result ([`check_parsed`] is the whole way, kept for any other message).
pub fn check(rules: &Rules, message: &[u8], ctx: &Context) -> (Option<Hit>, Stats) {
    let Some((ctype, body)) = single_text_body(message) else {
        return check_parsed(rules, message, ctx);
    };
    let mut w = Walker {
        rules,
        limits: Limits::for_message(message.len()),
        stats: Stats::default(),
    };
    // The decoded header values (RFC 2047) of the fields header rules look at: each
    // field is parsed on its own, so only those fields are given to mail-parser. Date
    // and Resent-Date are left out: mail-parser makes a date of them (or nothing),
    // never a text that could add a value.
    let named: Vec<&str> = rules
        .rules
        .iter()
        .filter_map(|r| match &r.what {
            Match::Regex(Subject::Header(name), _) => Some(name.as_str()),
            _ => None,
        })
        .filter(|n| !n.eq_ignore_ascii_case("date") && !n.eq_ignore_ascii_case("resent-date"))
        .collect();
    let wanted = header_lines_of(message, &named);
    let headers = (!wanted.is_empty())
        .then(|| MessageParser::default().parse_headers(&wanted))
        .flatten();
    let hit = w
        .envelope_and_headers(message, headers.as_ref(), ctx)
        .err()
        .or_else(|| w.single_text_part(&ctype, body).err());
    (hit, w.stats)
}

/// The body of a message that is one text part as mail-parser would see it, and its
/// content type (lower case, `type/subtype`, empty when the field is missing): the
/// message's own header block, read line by line, has
/// - only well-formed fields (a name of printable ASCII without space or colon, then `:`)
///   and their continuation lines, ended by an empty line (no body-less message, no
///   mbox `From ` line, no header block ended by a line without a colon);
/// - no `Content-Disposition` field (an attachment, whatever its type);
/// - at most one `Content-Type`, which is missing or, unfolded, exactly `text/plain` or
///   `text/html` (any case, white space around) optionally followed by `;` and
///   parameters none of which contains `name` (any case: `name=`, `name*=`, `filename`),
///   nor any `(` comment anywhere in the value;
/// - at most one `Content-Transfer-Encoding`, missing or `7bit`, `8bit` or `binary`
///   (base64 and quoted-printable bodies are decoded on the whole way).
///
/// Anything else (multipart and message types, `application/octet-stream` with a file
/// name, a folded or upper-case `CONTENT-TYPE` naming another type, more than one such
/// field) takes the whole way. The body is everything after the empty line: the bytes
/// the whole way types, scans for uuencoded files and checks as the message's only part.
pub fn single_text_body(message: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 0;
    let mut fields: Vec<(&[u8], Vec<u8>)> = Vec::new();
    loop {
        let rest = message.get(at..)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let raw = &rest[..end];
        at += end + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            fields.last_mut()?.1.extend_from_slice(line);
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        let name = name.strip_suffix(b" ").unwrap_or(name);
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
            return None;
        }
        fields.push((name, line[colon + 1..].to_vec()));
    }
    if fields.is_empty() {
        return None;
    }
    let named = |n: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(f, _)| f.eq_ignore_ascii_case(n.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .collect()
    };
    if !named("content-disposition").is_empty() {
        return None;
    }
    // Some(None): no such field; None: more than one
    let one = |n: &str| -> Option<Option<String>> {
        let mut values = named(n);
        (values.len() <= 1).then(|| values.pop())
    };
    let ctype = match one("content-type")? {
        None => String::new(),
        Some(v) => {
            let (kind, params) = v.split_once(';').unwrap_or((&v, ""));
            let kind = kind.trim_matches([' ', '\t']);
            if !matches!(kind, "text/plain" | "text/html")
                || params.contains("name")
                || v.contains('(')
            {
                return None;
            }
            kind.to_string()
        }
    };
    match one("content-transfer-encoding")? {
        None => {}
        Some(v) if matches!(v.trim_matches([' ', '\t']), "7bit" | "8bit" | "binary") => {}
        Some(_) => return None,
    }
    Some((ctype, &message[at..]))
}

/// The header fields of `message` named in `names` (any case), each with its
/// continuation lines, as sent, then an empty line: a header block of their own.
fn header_lines_of(message: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    if names.is_empty() {
        return out;
    }
    let mut taking = false;
    for line in message.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            break;
        }
        if bare[0] != b' ' && bare[0] != b'\t' {
            let name = bare.split(|&b| b == b':').next().unwrap_or(b"");
            let name = name.strip_suffix(b" ").unwrap_or(name);
            taking = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        }
        if taking {
            out.extend_from_slice(line);
        }
    }
    if !out.is_empty() {
        out.extend_from_slice(b"\n");
    }
    out
}

/// Check `message` against `rules` through mail-parser's parse and the MIME walk.
pub fn check_parsed(rules: &Rules, message: &[u8], ctx: &Context) -> (Option<Hit>, Stats) {
    let mut w = Walker {
        rules,
        limits: Limits::for_message(message.len()),
        stats: Stats::default(),
    };
    let parsed = MessageParser::default().parse(message);
    let hit = w
        .envelope_and_headers(message, parsed.as_ref(), ctx)
        .err()
        .or_else(|| match &parsed {
            Some(m) => w.message(m, "", 0).err(),
            None => w.leaf("", &[], message, 0).err(),
        });
    (hit, w.stats)
}

struct Walker<'r> {
    rules: &'r Rules,
    limits: Limits,
    stats: Stats,
}

/// A hit stops the walk: `Err` carries it up through `?`.
type Step = Result<(), Hit>;

impl Walker<'_> {
    fn builtin(&self, b: Builtin, place: &str) -> Hit {
        let s = self.rules.builtin(b);
        Hit {
            rule: format!("@{}", b.name()),
            line: 0,
            remark: s.remark,
            action: s.action,
            place: place.to_string(),
        }
    }

    fn regex_rules(&self, subject: &Subject, values: &[String], place: &str) -> Step {
        for r in &self.rules.rules {
            if let Match::Regex(s, re) = &r.what
                && s == subject
                && values.iter().any(|v| re.is_match(v.as_bytes()))
            {
                return Err(Hit {
                    rule: r.text.clone(),
                    line: r.line,
                    remark: r.remark.clone(),
                    action: r.action,
                    place: place.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Header rules see each occurrence as sent (unfolded) and, for text fields, also as
    /// decoded from RFC 2047 (`=?utf-8?b?...?=` must not hide a Subject).
    fn envelope_and_headers(
        &self,
        message: &[u8],
        parsed: Option<&mail_parser::Message<'_>>,
        ctx: &Context,
    ) -> Step {
        self.regex_rules(
            &Subject::MailFrom,
            std::slice::from_ref(&ctx.sender),
            "envelope sender",
        )?;
        self.regex_rules(&Subject::Rcpt, &ctx.recipients, "envelope recipient")?;
        self.regex_rules(
            &Subject::RemoteIp,
            std::slice::from_ref(&ctx.remote_ip),
            "TCPREMOTEIP",
        )?;
        self.regex_rules(&Subject::Helo, std::slice::from_ref(&ctx.helo), "HELO")?;
        let fields = header_fields(message);
        for r in &self.rules.rules {
            if let Match::Regex(Subject::Header(name), _) = &r.what {
                let mut values: Vec<String> = fields
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect();
                let decoded = parsed
                    .map(|m| m.headers())
                    .unwrap_or_default()
                    .iter()
                    .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
                    .filter_map(|h| match &h.value {
                        mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
                        mail_parser::HeaderValue::TextList(l) => Some(l.join(", ")),
                        _ => None,
                    });
                for d in decoded {
                    if !values.contains(&d) {
                        values.push(d);
                    }
                }
                let subject = Subject::Header(name.clone());
                self.regex_rules(&subject, &values, &format!("header {name}"))?;
            }
        }
        Ok(())
    }

    /// What [`Walker::message`] does for the one text part of [`single_text_body`].
    fn single_text_part(&mut self, ctype: &str, body: &[u8]) -> Step {
        self.stats.parts += 1;
        let place = "part0";
        self.regex_rules(&Subject::ContentType, &[ctype.to_string()], place)?;
        self.leaf(place, &[], body, 0)?;
        for (name, data) in uuencoded(body) {
            let member = join(place, &name);
            self.leaf(&member, &[name.as_str()], &data, 0)?;
        }
        Ok(())
    }

    fn message(&mut self, m: &mail_parser::Message<'_>, path: &str, depth: usize) -> Step {
        if depth > self.limits.max_depth {
            return Err(self.builtin(Builtin::Limits, path));
        }
        for (i, part) in m.parts.iter().enumerate() {
            self.stats.parts += 1;
            let ctype = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_default()
                .to_ascii_lowercase();
            let names: Vec<&str> = [
                part.content_disposition()
                    .and_then(|d| d.attribute("filename")),
                part.content_type().and_then(|t| t.attribute("name")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let place = match names.first() {
                Some(n) => join(path, n),
                None => join(path, &format!("part{i}")),
            };
            self.regex_rules(&Subject::ContentType, std::slice::from_ref(&ctype), &place)?;
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(inner) => self.message(inner, &place, depth + 1)?,
                PartType::Text(_) | PartType::Html(_) => {
                    // mail-parser made text of it; the bytes as sent are what gets typed.
                    let bytes = raw_body(m, part).unwrap_or_else(|| part.contents().to_vec());
                    self.leaf(&place, &names, &bytes, depth)?;
                    for (name, data) in uuencoded(&bytes) {
                        let member = join(&place, &name);
                        self.leaf(&member, &[name.as_str()], &data, depth)?;
                    }
                }
                PartType::Binary(data) | PartType::InlineBinary(data) => {
                    let is_message = ctype == "message/rfc822" || ctype == "message/global";
                    match is_message
                        .then(|| MessageParser::default().parse(data))
                        .flatten()
                    {
                        // mail-parser stops parsing nested messages at its own depth; we
                        // go on, under our own limit.
                        Some(inner) => {
                            self.names(&names, data.len() as u64, &place)?;
                            self.message(&inner, &place, depth + 1)?
                        }
                        None => self.leaf(&place, &names, data, depth)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Name rules, in file order, then the double-extension and undecodable checks.
    fn names(&self, names: &[&str], size: u64, place: &str) -> Step {
        for raw in names {
            if undecodable(raw) {
                return Err(self.builtin(Builtin::UndecodableName, place));
            }
            let name = normalised(raw);
            let base = name.rsplit(['/', '\\']).next().unwrap_or(&name);
            for r in &self.rules.rules {
                let hit = match &r.what {
                    Match::Extension(ext, sz) => {
                        base.ends_with(ext.as_str()) && sz.is_none_or(|s| s == size)
                    }
                    Match::Name(n, sz) => base == n && sz.is_none_or(|s| s == size),
                    Match::Regex(..) => false,
                };
                if hit {
                    return Err(Hit {
                        rule: r.text.clone(),
                        line: r.line,
                        remark: r.remark.clone(),
                        action: r.action,
                        place: place.to_string(),
                    });
                }
            }
            if double_extension(base) {
                return Err(self.builtin(Builtin::DoubleExtension, place));
            }
        }
        Ok(())
    }

    /// A decoded attachment or archive member: its names, its type, and if it is an
    /// archive, its members.
    fn leaf(&mut self, place: &str, names: &[&str], data: &[u8], depth: usize) -> Step {
        self.names(names, data.len() as u64, place)?;
        match magic::kind(data) {
            Kind::Executable(_) => Err(self.builtin(Builtin::Executable, place)),
            Kind::Zip => self.archive(place, data, depth, Walker::zip),
            Kind::Gzip => self.archive(place, data, depth, Walker::gzip),
            Kind::Tar => self.archive(place, data, depth, Walker::tar),
            // A zip behind a prefix still opens in Windows and 7-Zip.
            Kind::Other if magic::has_zip_directory(data) => {
                self.archive(place, data, depth, Walker::zip)
            }
            Kind::Other => Ok(()),
        }
    }

    fn archive(
        &mut self,
        place: &str,
        data: &[u8],
        depth: usize,
        open: fn(&mut Self, &str, &[u8], usize) -> Step,
    ) -> Step {
        if depth + 1 > self.limits.max_depth {
            return Err(self.builtin(Builtin::Limits, place));
        }
        open(self, place, data, depth + 1)
    }

    fn count_member(&mut self, place: &str) -> Step {
        self.stats.members += 1;
        if self.stats.members > self.limits.max_members {
            return Err(self.builtin(Builtin::Limits, place));
        }
        Ok(())
    }

    /// Read at most what is left of the expanded-byte budget; more is a limits hit.
    fn read_bounded(&mut self, r: &mut dyn Read, place: &str) -> Result<Vec<u8>, Hit> {
        let left = self.limits.max_expanded.saturating_sub(self.stats.expanded);
        let mut out = Vec::new();
        let read = r.take(left.saturating_add(1)).read_to_end(&mut out);
        self.stats.expanded = self.stats.expanded.saturating_add(out.len() as u64);
        match read {
            _ if out.len() as u64 > left => Err(self.builtin(Builtin::Limits, place)),
            Ok(_) => Ok(out),
            Err(_) => Err(self.builtin(Builtin::BadArchive, place)),
        }
    }

    fn zip(&mut self, place: &str, data: &[u8], depth: usize) -> Step {
        let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(data)) else {
            return Err(self.builtin(Builtin::BadArchive, place));
        };
        for i in 0..archive.len() {
            self.count_member(place)?;
            let (name, encrypted, is_dir) = match archive.by_index_raw(i) {
                Ok(f) => (
                    f.name().ok().map(|n| n.into_owned()),
                    f.encrypted(),
                    f.is_dir(),
                ),
                Err(_) => return Err(self.builtin(Builtin::BadArchive, place)),
            };
            let Some(name) = name else {
                return Err(self.builtin(Builtin::UndecodableName, place));
            };
            let member = join(place, &name);
            if encrypted {
                return Err(self.builtin(Builtin::Encrypted, &member));
            }
            if is_dir {
                continue;
            }
            let content = match archive.by_index(i) {
                Ok(mut f) => self.read_bounded(&mut f, &member)?,
                Err(_) => return Err(self.builtin(Builtin::BadArchive, &member)),
            };
            self.leaf(&member, &[name.as_str()], &content, depth)?;
        }
        Ok(())
    }

    fn gzip(&mut self, place: &str, data: &[u8], depth: usize) -> Step {
        self.count_member(place)?;
        let mut gz = flate2::read::MultiGzDecoder::new(data);
        let content = self.read_bounded(&mut gz, place)?;
        let inner_name = match gz.header().and_then(|h| h.filename()) {
            Some(raw) => match std::str::from_utf8(raw) {
                Ok(n) => n.to_string(),
                Err(_) => return Err(self.builtin(Builtin::UndecodableName, place)),
            },
            None => ungzipped_name(place),
        };
        let member = join(place, &inner_name);
        self.leaf(&member, &[inner_name.as_str()], &content, depth)
    }

    fn tar(&mut self, place: &str, data: &[u8], depth: usize) -> Step {
        let mut archive = tar::Archive::new(Cursor::new(data));
        let Ok(entries) = archive.entries() else {
            return Err(self.builtin(Builtin::BadArchive, place));
        };
        for entry in entries {
            self.count_member(place)?;
            let Ok(mut entry) = entry else {
                return Err(self.builtin(Builtin::BadArchive, place));
            };
            let Ok(name) = String::from_utf8(entry.path_bytes().into_owned()) else {
                return Err(self.builtin(Builtin::UndecodableName, place));
            };
            let member = join(place, &name);
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let content = self.read_bounded(&mut entry, &member)?;
            self.leaf(&member, &[name.as_str()], &content, depth)?;
        }
        Ok(())
    }
}

/// Files uuencoded inside a text (`begin MODE NAME` ... `end`), as mail clients still
/// decode them: (name, decoded bytes). The decoded size is below the text's size.
fn uuencoded(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for raw in text.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match current.as_mut() {
            None => {
                let Some(rest) = line.strip_prefix(b"begin ") else {
                    continue;
                };
                let mut f = rest.splitn(2, |&b| b == b' ');
                let mode = f.next().unwrap_or_default();
                let name = f.next().unwrap_or_default();
                if (3..=4).contains(&mode.len())
                    && mode.iter().all(|b| (b'0'..=b'7').contains(b))
                    && !name.is_empty()
                {
                    current = Some((String::from_utf8_lossy(name).into_owned(), Vec::new()));
                }
            }
            Some((_, data)) => {
                if line == b"end" {
                    files.extend(current.take());
                    continue;
                }
                let Some((&first, rest)) = line.split_first() else {
                    continue;
                };
                let len = usize::from(first.wrapping_sub(b' ') & 63);
                let mut out = Vec::with_capacity(len + 3);
                for group in rest.chunks(4) {
                    let mut v = [0u8; 4];
                    for (i, c) in group.iter().enumerate() {
                        v[i] = c.wrapping_sub(b' ') & 63;
                    }
                    out.push(v[0] << 2 | v[1] >> 4);
                    out.push(v[1] << 4 | v[2] >> 2);
                    out.push(v[2] << 6 | v[3]);
                }
                out.truncate(len);
                data.extend_from_slice(&out);
            }
        }
    }
    // A missing `end` still leaves a file the reader's client would decode.
    files.extend(current);
    files
}

/// A part's body with only its transfer encoding undone (no charset conversion).
fn raw_body(m: &mail_parser::Message<'_>, part: &mail_parser::MessagePart<'_>) -> Option<Vec<u8>> {
    let start = usize::try_from(part.offset_body).ok()?;
    let end = usize::try_from(part.offset_end).ok()?;
    let raw = m.raw_message.get(start..end)?;
    match part.encoding {
        mail_parser::Encoding::Base64 => mail_parser::decoders::base64::base64_decode(raw),
        mail_parser::Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)
        }
        mail_parser::Encoding::None => Some(raw.to_vec()),
    }
}

fn join(path: &str, name: &str) -> String {
    let name = qsys::logsafe::text(name.as_bytes());
    if path.is_empty() {
        name
    } else {
        format!("{path}/{name}")
    }
}

/// `x.tgz` holds `x.tar`, `x.gz` holds `x`; the last path component only.
fn ungzipped_name(place: &str) -> String {
    let base = place.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    if let Some(stem) = base.strip_suffix(".tgz") {
        format!("{stem}.tar")
    } else if let Some(stem) = base.strip_suffix(".gz") {
        stem.to_string()
    } else {
        base
    }
}

/// Lower case, without the trailing dots and spaces Windows ignores (`evil.exe. ` runs
/// as `evil.exe`).
fn normalised(name: &str) -> String {
    name.trim_end_matches(['.', ' ', '\t', '\0']).to_lowercase()
}

/// A name mail-parser could not decode: replacement characters, control characters,
/// or an RFC 2047 encoded word left as it was.
fn undecodable(name: &str) -> bool {
    name.contains('\u{FFFD}')
        || name.chars().any(|c| c.is_control())
        || (name.contains("=?") && name.contains("?="))
}

/// `invoice.pdf.exe`: a dangerous last extension after another extension.
fn double_extension(base: &str) -> bool {
    const DANGEROUS: [&str; 14] = [
        "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "js", "jse", "wsf", "hta", "lnk", "cpl",
        "msi",
    ];
    let mut parts = base.rsplit('.');
    let (Some(last), Some(before), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !before.is_empty() && DANGEROUS.contains(&last)
}

/// The top-level header fields as (name, unfolded value without the leading blanks).
pub fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for raw in message.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = fields.last_mut() {
                v.push_str(&text);
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) => fields.push((
                name.trim_end().to_string(),
                value.trim_start_matches([' ', '\t']).to_string(),
            )),
            None => break, // not a header line: the body starts here
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::magic::tests::tiny_pe;
    use std::io::Write;

    fn rules() -> Rules {
        Rules::parse(include_str!("../../../control/scanrules")).unwrap()
    }

    fn ctx() -> Context {
        Context {
            sender: "a@example.org".into(),
            recipients: vec!["b@example.net".into()],
            remote_ip: "192.0.2.1".into(),
            helo: "client.example.org".into(),
        }
    }

    /// A multipart/mixed message with base64 attachments (name, content type, bytes).
    pub fn mail(attachments: &[(&str, &str, &[u8])]) -> Vec<u8> {
        use base64::Engine;
        let mut m = String::from(
            "From: a@example.org\nTo: b@example.net\nSubject: files\nDate: Sun, 6 Dec 2026 05:00:00 +0000\n\
             MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUND\"\n\n\
             preamble\n--BOUND\nContent-Type: text/plain\n\nsee attached\n",
        );
        for (name, ctype, data) in attachments {
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            m.push_str(&format!(
                "--BOUND\nContent-Type: {ctype}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n\
                 Content-Disposition: attachment; filename=\"{name}\"\n\n"
            ));
            for chunk in b64.as_bytes().chunks(76) {
                m.push_str(std::str::from_utf8(chunk).unwrap());
                m.push('\n');
            }
        }
        m.push_str("--BOUND--\n");
        m.into_bytes()
    }

    pub fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip_of(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn hit_of(message: &[u8]) -> Option<Hit> {
        check(&rules(), message, &ctx()).0
    }

    #[test]
    fn exe_attachment_is_a_hit_by_name() {
        let h = hit_of(&mail(&[(
            "setup.exe",
            "application/octet-stream",
            b"hello",
        )]))
        .unwrap();
        assert_eq!(h.rule, ".exe");
        assert_eq!(h.action, Action::Quarantine);
        assert_eq!(h.remark, "attachment type .exe not allowed");
        assert_eq!(h.place, "setup.exe");
    }

    #[test]
    fn scr_in_zip_in_tar_gz_is_a_hit() {
        let z = zip_of(&[("readme.txt", b"hi"), ("photo.jpg.scr", b"not really")]);
        let t = tar_of(&[("docs/inner.zip", &z)]);
        let tgz = gzip_of(&t);
        let (h, stats) = check(
            &rules(),
            &mail(&[("archive.tgz", "application/gzip", &tgz)]),
            &ctx(),
        );
        let h = h.unwrap();
        assert_eq!(h.rule, ".scr");
        assert_eq!(
            h.place,
            "archive.tgz/archive.tar/docs/inner.zip/photo.jpg.scr"
        );
        assert!(stats.members >= 3);
    }

    #[test]
    fn renamed_pe_is_a_hit_by_content() {
        for name in ["notes.txt", "invoice.pdf", "photo.jpg"] {
            let h = hit_of(&mail(&[(name, "application/pdf", &tiny_pe())])).unwrap();
            assert_eq!(h.rule, "@executable", "{name}");
            assert_eq!(h.place, name);
        }
        // Declared as text: still typed by its bytes.
        let h = hit_of(&mail(&[("notes.txt", "text/plain", &tiny_pe())])).unwrap();
        assert_eq!(h.rule, "@executable");
        // ... inside a forwarded message.
        let inner = mail(&[("notes.txt", "text/plain", &tiny_pe())]);
        let mut fwd = b"Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"OUT\"\n\n--OUT\nContent-Type: text/plain\n\nsee below\n--OUT\nContent-Type: message/rfc822\n\n".to_vec();
        fwd.extend_from_slice(&inner);
        fwd.extend_from_slice(b"\n--OUT--\n");
        let h = hit_of(&fwd).unwrap();
        assert_eq!(h.rule, "@executable");
        // ... and inside an archive.
        let z = zip_of(&[("report.doc", &tiny_pe())]);
        let h = hit_of(&mail(&[("r.zip", "application/zip", &z)])).unwrap();
        assert_eq!(
            (h.rule.as_str(), h.place.as_str()),
            ("@executable", "r.zip/report.doc")
        );
    }

    #[test]
    fn uuencoded_files_in_a_text_are_checked() {
        // `uuencode` of "hello" named run.exe, and of a PE named notes.txt.
        let m = b"Subject: x\n\nHi,\nbegin 644 run.exe\n%:&5L;&\\`\n`\nend\nbye\n";
        let h = hit_of(m).unwrap();
        assert_eq!(
            (h.rule.as_str(), h.place.as_str()),
            (".exe", "part0/run.exe")
        );
        assert_eq!(
            uuencoded(b"begin 644 a.txt\n%:&5L;&\\`\n`\nend\n"),
            vec![("a.txt".to_string(), b"hello".to_vec())]
        );
        let pe = tiny_pe();
        let mut text = b"Subject: x\n\nbegin 0644 notes.txt\n".to_vec();
        for chunk in pe.chunks(45) {
            text.push(b' ' + chunk.len() as u8);
            for g in chunk.chunks(3) {
                let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
                for v in [
                    b[0] >> 2,
                    (b[0] << 4 | b[1] >> 4) & 63,
                    (b[1] << 2 | b[2] >> 6) & 63,
                    b[2] & 63,
                ] {
                    text.push(if v == 0 { b'`' } else { b' ' + v });
                }
            }
            text.push(b'\n');
        }
        text.extend_from_slice(b"`\nend\n");
        assert_eq!(hit_of(&text).unwrap().rule, "@executable");
        assert!(uuencoded(b"begin here\nbegin 9999 x\n").is_empty());
    }

    #[test]
    fn double_extensions_are_caught() {
        let h = hit_of(&mail(&[("file.pdf.exe", "application/pdf", b"x")])).unwrap();
        assert_eq!(h.rule, ".exe");
        // With the extension rules removed, the built-in still catches it; trailing dots
        // and spaces do not hide an extension.
        let only_builtins = Rules::default();
        for name in ["file.pdf.exe", "FILE.PDF.EXE", "file.pdf.exe. "] {
            let m = mail(&[(name, "application/pdf", b"x")]);
            let h = check(&only_builtins, &m, &ctx()).0.unwrap();
            assert_eq!(h.rule, "@double-extension", "{name}");
        }
        let h = hit_of(&mail(&[("evil.exe. ", "text/plain", b"x")])).unwrap();
        assert_eq!(h.rule, ".exe");
        assert!(
            check(
                &only_builtins,
                &mail(&[("a.b.pdf", "application/pdf", b"x")]),
                &ctx()
            )
            .0
            .is_none()
        );
    }

    #[test]
    fn zip_bomb_is_stopped_quickly() {
        let zeros = vec![0u8; 100 << 20];
        let bomb = zip_of(&[("zeros.bin", &zeros)]);
        drop(zeros);
        assert!(bomb.len() < 200 << 10, "bomb is {} bytes", bomb.len());
        let m = mail(&[("bomb.zip", "application/zip", &bomb)]);
        let start = std::time::Instant::now();
        let (h, stats) = check(&rules(), &m, &ctx());
        let h = h.unwrap();
        assert_eq!(h.rule, "@limits");
        assert!(stats.expanded <= Limits::for_message(m.len()).max_expanded + 1);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn too_many_members_and_too_deep() {
        let names: Vec<String> = (0..1001).map(|i| format!("f{i}.txt")).collect();
        let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let z = zip_of(&members);
        assert_eq!(
            hit_of(&mail(&[("many.zip", "application/zip", &z)]))
                .unwrap()
                .rule,
            "@limits"
        );
        let mut nested = b"plain text".to_vec();
        for _ in 0..10 {
            nested = gzip_of(&nested);
        }
        assert_eq!(
            hit_of(&mail(&[("deep.gz", "application/gzip", &nested)]))
                .unwrap()
                .rule,
            "@limits"
        );
        let mut nested = b"plain text".to_vec();
        for _ in 0..3 {
            nested = gzip_of(&nested);
        }
        assert_eq!(
            hit_of(&mail(&[("ok.gz", "application/gzip", &nested)])),
            None
        );
    }

    #[test]
    fn a_zip_behind_a_prefix_is_still_opened() {
        let z = zip_of(&[("run.scr", b"x")]);
        let hidden = [&b"just some text first\n"[..], &z].concat();
        assert_eq!(magic::kind(&hidden), Kind::Other);
        let h = hit_of(&mail(&[("notes.dat", "application/octet-stream", &hidden)])).unwrap();
        assert_eq!(
            (h.rule.as_str(), h.place.as_str()),
            (".scr", "notes.dat/run.scr")
        );
    }

    #[test]
    fn encrypted_and_broken_archives_are_hits() {
        // Set the "encrypted" flag (bit 0) in the local and the central header.
        let mut z = zip_of(&[("a.txt", b"hidden")]);
        z[6] |= 1;
        let central = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        z[central + 8] |= 1;
        assert_eq!(
            hit_of(&mail(&[("e.zip", "application/zip", &z)]))
                .unwrap()
                .rule,
            "@encrypted"
        );
        let mut broken = zip_of(&[("a.txt", b"hello hello hello")]);
        broken.truncate(broken.len() / 2);
        assert_eq!(
            hit_of(&mail(&[("b.zip", "application/zip", &broken)]))
                .unwrap()
                .rule,
            "@bad-archive"
        );
    }

    #[test]
    fn undecodable_names_are_hits() {
        let m = b"Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n--B\n\
                  Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"a\x01b.txt\"\n\n\
                  data\n--B--\n";
        assert_eq!(hit_of(m).unwrap().rule, "@undecodable-name");
        let t = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.as_gnu_mut().unwrap().name[..5].copy_from_slice(b"a\xff.tx");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        assert_eq!(
            hit_of(&mail(&[("t.tar", "application/x-tar", &t)]))
                .unwrap()
                .rule,
            "@undecodable-name"
        );
    }

    #[test]
    fn header_rules_and_message_partial() {
        let long = format!("Date: {}\nSubject: x\n\nbody\n", "1".repeat(200));
        let h = hit_of(long.as_bytes()).unwrap();
        assert_eq!((h.rule.as_str(), h.line > 0), (".{100,}", true));
        assert_eq!(h.remark, "MIME Header Buffer Overflow");
        // Folded headers are unfolded before matching.
        let folded = format!(
            "Subject: x\nDate: Sun, 6 Dec\n {}\n\nbody\n",
            "2".repeat(120)
        );
        assert_eq!(hit_of(folded.as_bytes()).unwrap().rule, ".{100,}");
        let partial = b"Subject: x\nMIME-Version: 1.0\nContent-Type: message/partial; id=\"abc\"; number=1; total=2\n\nfragment\n";
        assert_eq!(hit_of(partial).unwrap().rule, "message/partial");
        assert_eq!(
            hit_of(b"Date: Sun, 6 Dec 2026 05:00:00 +0000\nSubject: hi\n\nbody\n"),
            None
        );
    }

    #[test]
    fn pseudo_header_rules() {
        let r = Rules::parse(
            "Pickles.*Breakfast\tVirus-Subject:\tno pickles\trefuse\n\
             .*@spam\\.example\tVirus-MAILFROM:\tbad sender\n\
             postmaster@.*\tVirus-To:\tno\n10\\.0\\.0\\..*\tVirus-TCPREMOTEIP:\tnet\n\
             evil\\.example\tVirus-HELO:\thelo\n",
        )
        .unwrap();
        let m = b"Subject: Pickles for Breakfast\n\nx\n";
        let h = check(&r, m, &ctx()).0.unwrap();
        assert_eq!((h.line, h.action), (1, Action::Refuse));
        // RFC 2047 encoding does not hide it ("Pickles for Breakfast" in base64).
        let m = b"Subject: =?utf-8?b?UGlja2xlcyBmb3IgQnJlYWtmYXN0?=\n\nx\n";
        assert_eq!(check(&r, m, &ctx()).0.map(|h| h.line), Some(1));
        assert!(
            check(&r, b"Subject: Pickles - where did you go?\n\nx\n", &ctx())
                .0
                .is_none()
        );
        let mut c = ctx();
        c.sender = "x@spam.example".into();
        assert_eq!(check(&r, b"\n", &c).0.unwrap().line, 2);
        let mut c = ctx();
        c.recipients.push("postmaster@example.net".into());
        assert_eq!(check(&r, b"\n", &c).0.unwrap().line, 3);
        let mut c = ctx();
        c.remote_ip = "10.0.0.7".into();
        assert_eq!(check(&r, b"\n", &c).0.unwrap().line, 4);
        let mut c = ctx();
        c.helo = "evil.example".into();
        assert_eq!(check(&r, b"\n", &c).0.unwrap().line, 5);
    }

    #[test]
    fn message_rfc822_deeper_than_mail_parser_goes_is_still_walked() {
        let mut m = mail(&[("x.exe", "application/octet-stream", b"x")]);
        for _ in 0..5 {
            let mut outer = b"Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"OUT\"\n\n--OUT\nContent-Type: message/rfc822\n\n".to_vec();
            outer.extend_from_slice(&m);
            outer.extend_from_slice(b"\n--OUT--\n");
            m = outer;
        }
        // Each level's inner boundary differs from the outer one only by nesting: the
        // parser must still find the .exe at depth 5.
        let h = hit_of(&m);
        assert_eq!(h.map(|h| h.rule), Some(".exe".to_string()));
        // Deeper than the limit: a hit of its own, whatever is inside.
        let mut m = b"Subject: x\n\nplain\n".to_vec();
        for _ in 0..12 {
            let mut outer =
                b"Subject: fwd\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n".to_vec();
            outer.extend_from_slice(&m);
            m = outer;
        }
        assert_eq!(hit_of(&m).map(|h| h.rule), Some("@limits".to_string()));
    }

    #[test]
    fn clean_multipart_with_pdf_and_zip_passes() {
        let z = zip_of(&[("notes.txt", b"meeting notes"), ("data.csv", b"1,2,3")]);
        let m = mail(&[
            (
                "report.pdf",
                "application/pdf",
                b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n",
            ),
            ("data.zip", "application/zip", &z),
        ]);
        let (h, stats) = check(&rules(), &m, &ctx());
        assert_eq!(h, None);
        assert_eq!(stats.members, 2);
    }

    /// A deterministic stand-in for the fuzz target on stable: many mutations of
    /// messages holding nested archives, none may panic or pass the budgets.
    #[test]
    fn mutated_archives_and_messages_do_not_panic() {
        let z = zip_of(&[("a.txt", b"hello hello hello"), ("b.scr", b"x")]);
        let tgz = gzip_of(&tar_of(&[("in.zip", &z), ("c.txt", b"text")]));
        let raw_zip_mail = [
            &b"Subject: x\nContent-Type: application/zip; name=a.zip\n\n"[..],
            &z,
        ]
        .concat();
        let seeds = [
            mail(&[("t.tgz", "application/gzip", &tgz)]),
            mail(&[("z.zip", "application/zip", &z)]),
            raw_zip_mail,
        ];
        let r = rules();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + next() % 8) {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            if next() % 4 == 0 {
                let cut = (next() as usize) % m.len();
                m.truncate(cut);
            }
            let (_, stats) = check(&r, &m, &ctx());
            assert!(stats.expanded <= Limits::for_message(m.len()).max_expanded + 1);
        }
    }

    #[test]
    fn garbage_does_not_panic() {
        let r = rules();
        let samples: [&[u8]; 6] = [
            b"",
            b"\n\n\n",
            b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
            b"PK\x03\x04\xff\xff\xff\xff",
            b"\x1f\x8b\x08\x00garbage",
            b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
        ];
        for s in samples {
            let _ = check(&r, s, &ctx());
        }
    }

    /// Both ways give the same hit and counts.
    fn same_both_ways(message: &[u8]) -> (Option<Hit>, Stats) {
        let r = rules();
        let fast = check(&r, message, &ctx());
        let whole = check_parsed(&r, message, &ctx());
        assert_eq!(fast, whole, "{}", String::from_utf8_lossy(message));
        fast
    }

    #[test]
    fn a_single_text_part_is_checked_without_the_mime_parse_and_the_same() {
        let head = "From: a@example.org\nSubject: hi\nDate: Sun, 6 Dec 2026 05:00:00 +0000\n";
        let uu = "begin 644 run.exe\n#36%A\n`\nend\n";
        let long_date = format!("Date: {}\n", "x".repeat(120));
        let bodies = [
            format!("{head}\nplain text\n"),
            format!("{head}Content-Type: text/plain; charset=utf-8\n\nplain\n"),
            format!("{head}CONTENT-TYPE:  TEXT/HTML\n\n<p>x</p>\n"),
            format!("{head}Content-Type: text/plain;\n charset=us-ascii\r\n\r\ncrlf\r\n"),
            format!("{head}Content-Transfer-Encoding: 8bit\n\n"),
            format!("{head}\n{uu}"),
            format!("From: a@example.org\n{long_date}\nbody\n"),
            format!("{head}Subject: =?utf-8?b?aGVsbG8=?=\n\nencoded subject\n"),
            format!("{head}Content-Type: message/partial; id=x\n\npart\n"),
        ];
        let mut bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.clone().into_bytes()).collect();
        bodies[4].extend_from_slice(&tiny_pe());
        for b in &bodies {
            same_both_ways(b);
        }
        // the short way was taken for the first eight, and finds what the long way does
        assert!(bodies[..8].iter().all(|b| single_text_body(b).is_some()));
        assert_eq!(same_both_ways(&bodies[4]).0.unwrap().rule, "@executable");
        assert!(same_both_ways(&bodies[5]).0.is_some());
        assert!(same_both_ways(&bodies[6]).0.is_some());
        let (_, body) = single_text_body(&bodies[3]).unwrap();
        assert_eq!(body, b"crlf\r\n");
    }

    #[test]
    fn header_rules_see_decoded_values_on_the_short_way_too() {
        let r =
            Rules::parse("^Buy now$\tVirus-Subject:\tspam\n^1\\.0 x$\tVirus-Mime-Version:\tmime\n")
                .unwrap();
        let cases: [&[u8]; 5] = [
            b"From: a@example.org\nSubject: =?utf-8?b?QnV5IG5vdw==?=\n\nbody\n",
            b"From: a@example.org\nsubject: =?utf-8?q?Buy?=\n =?utf-8?q?_now?=\n\nbody\n",
            b"From: a@example.org\nSubject: Buy now  \nDate: x\n\nbody\n",
            b"MIME-Version: 1.0 x\r\nFrom: a@example.org\r\n\r\nbody\r\n",
            b"From: a@example.org\nSubject: buy later\n\nbody\n",
        ];
        for (i, m) in cases.iter().enumerate() {
            assert!(single_text_body(m).is_some());
            let fast = check(&r, m, &ctx());
            assert_eq!(fast, check_parsed(&r, m, &ctx()), "{i}");
            assert_eq!(fast.0.is_some(), i < 4, "{i}");
        }
    }

    #[test]
    fn attachments_and_encodings_take_the_whole_way() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_pe());
        let head = "From: a@example.org\nSubject: hi\n";
        let whole = [
            // a single part that is all attachment, with a name
            format!(
                "{head}Content-Type: application/octet-stream; name=\"a.exe\"\n\
                 Content-Transfer-Encoding: base64\n\n{b64}\n"
            ),
            // the same folded over lines, upper case, the name on the second line
            format!(
                "{head}CONTENT-TYPE: APPLICATION/OCTET-STREAM;\n\tNAME=\"a.exe\"\n\
                 CONTENT-TRANSFER-ENCODING: BASE64\n\n{b64}\n"
            ),
            // a text type with a file name, a disposition alone, base64 text
            format!("{head}Content-Type: text/plain;\n name=\"a.txt.exe\"\n\nx\n"),
            format!("{head}Content-Disposition: attachment; filename=a.exe\n\nx\n"),
            format!("{head}Content-Transfer-Encoding: base64\n\n{b64}\n"),
            format!("{head}Content-Type: text/plain (comment)\n\nx\n"),
            format!("{head}Content-Type: text/plain\nContent-Type: text/html\n\nx\n"),
            format!("{head}Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n"),
            // no empty line, a line without a colon, an mbox From line, no header at all
            format!("{head}no colon here\n\nx\n"),
            format!("From a@example.org Sun Dec  6 05:00:00 2026\n{head}\nx\n"),
            head.to_string(),
            "\nbody only\n".to_string(),
        ];
        for m in &whole {
            assert!(single_text_body(m.as_bytes()).is_none(), "{m}");
            same_both_ways(m.as_bytes());
        }
        // the named attachments are still found
        for m in &whole[..4] {
            assert!(check(&rules(), m.as_bytes(), &ctx()).0.is_some(), "{m}");
        }
        // Content-Type missing altogether: the short way, the body still typed
        let mut m = format!("{head}\n").into_bytes();
        m.extend_from_slice(&tiny_pe());
        assert_eq!(single_text_body(&m).unwrap().0, "");
        assert!(same_both_ways(&m).0.is_some());
    }
}

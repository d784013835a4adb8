//! Signing one outgoing message: qmail-dkimsign, which qmail-remote runs (issue 15; RFC
//! 6376 sections 3.4 and 5, RFC 8463 for Ed25519).
//!
//! [`sign_message`] reads the message as qmail-remote will send it (the queue's LF
//! lines become CRLF on the wire, an existing CRLF stays: exactly `remote::message`'s
//! rule, so the signed bytes are the sent bytes), takes the domain of the first address
//! of the From: field, finds that domain's keys ([`crate::keys`]) and signs once per key,
//! relaxed/relaxed, with mail-auth's streaming signer (constant memory, one pass).
//!
//! Signing never stops a delivery: a message without From:, a domain without keys, a
//! key that cannot be read or parsed, all give a message without that signature, and
//! the reason (for the latter cases) comes back as an alert for the delivery's log line.
//!
//! Headers signed: RFC 6376 section 5.4.1's list, those present in the message, plus
//! one more instance of each of [`OVERSIGNED`] ("oversigning": a verifier then counts a
//! second From:, Subject:, Reply-To: ... added in transit as a change, and absent ones
//! cannot be added).
//!
//! RSA signatures are computed with blinding (`sign_with_rng`), which the rsa crate's
//! plain `sign` omits (RUSTSEC-2023-0071 is about timing of RSA private-key operations).

use std::io::Read;
use std::path::Path;

use mail_auth::common::crypto::{HashOutput, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{DkimSigner, Done};

use crate::keys::{self, KeyFile, PrivateKey};

/// Header fields signed when present (RFC 6376 section 5.4.1, plus the List-* fields
/// of RFC 2369/2919/8058 and Sender).
pub const SIGNED: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "Sender",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Header fields signed once more than they occur (so none can be added in transit).
pub const OVERSIGNED: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Sender",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The header section is looked for in this many bytes at most; a longer one (or a
/// message without a blank line that long) is sent unsigned.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// What signing produced for one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signed {
    /// `DKIM-Signature:` fields, LF line ends (as the queue's message), to be sent
    /// before the message; empty when nothing was signed.
    pub header: Vec<u8>,
    /// `d=DOMAIN s=SELECTOR a=ALG` of each signature made.
    pub signatures: Vec<String>,
    /// Why a key that exists did not sign (for the delivery's log line).
    pub alerts: Vec<String>,
}

/// Sign `message` (read from its start to its end) with the keys of its From: domain
/// found under `home`.
pub fn sign_message(home: &Path, message: &mut impl Read) -> Signed {
    let mut out = Signed::default();
    let (head, header_len) = match read_head(message) {
        Ok(h) => h,
        Err(e) => {
            out.alerts.push(format!(
                "unable to read the message: {}",
                qsys::errstr::io(&e)
            ));
            return out;
        }
    };
    let Some(header) = header_len.map(|n| &head[..n]) else {
        return out;
    };
    let Some(domain) = from_domain(header) else {
        return out;
    };
    let (dir, files) = match keys::key_files(home, &domain) {
        Ok(Some(f)) => f,
        Ok(None) => return out,
        Err(e) => {
            out.alerts.push(e);
            return out;
        }
    };
    if files.is_empty() {
        out.alerts.push(format!("no key in {}/{dir}", keys::DIR));
        return out;
    }
    let loaded = load_keys(&files, &mut out.alerts);
    if loaded.is_empty() {
        return out;
    }
    let names = header_list(header);
    match sign_stream(&loaded, &names, &head, message) {
        Ok(sigs) => {
            for ((k, _), sig) in loaded.iter().zip(sigs) {
                match sig {
                    Ok(text) => {
                        out.header.extend_from_slice(&text);
                        out.signatures.push(format!(
                            "d={} s={} a={}",
                            k.domain,
                            k.selector,
                            algorithm_tag(k.algorithm)
                        ));
                    }
                    Err(e) => out.alerts.push(format!(
                        "unable to sign with {}/{}/{}.{}: {e}",
                        keys::DIR,
                        k.domain,
                        k.selector,
                        k.algorithm.ext()
                    )),
                }
            }
        }
        Err(e) => out.alerts.push(format!(
            "unable to read the message: {}",
            qsys::errstr::io(&e)
        )),
    }
    out
}

fn algorithm_tag(a: keys::Algorithm) -> &'static str {
    match a {
        keys::Algorithm::Rsa => "rsa-sha256",
        keys::Algorithm::Ed25519 => "ed25519-sha256",
    }
}

fn load_keys<'a>(files: &'a [KeyFile], alerts: &mut Vec<String>) -> Vec<(&'a KeyFile, Key)> {
    let mut v = Vec::new();
    for k in files {
        if v.len() == keys::MAX_KEYS {
            alerts.push(format!(
                "more than {} keys in {}/{}; {}.{} not used",
                keys::MAX_KEYS,
                keys::DIR,
                k.domain,
                k.selector,
                k.algorithm.ext()
            ));
            continue;
        }
        match keys::load(k) {
            Ok(key) => v.push((k, Key(key))),
            Err(e) => alerts.push(e),
        }
    }
    v
}

/// The start of the message, read up to the end of its header section or
/// [`MAX_HEADER_BYTES`], whichever comes first, and the header section's length
/// (the whole message when it has no blank line; `None` when it is longer than that).
fn read_head(r: &mut impl Read) -> std::io::Result<(Vec<u8>, Option<usize>)> {
    let mut head = Vec::with_capacity(16384);
    let mut buf = vec![0u8; 65536];
    while head.len() < MAX_HEADER_BYTES {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = header_end(&head) {
            return Ok((head, Some(end)));
        }
    }
    let len = (head.len() < MAX_HEADER_BYTES).then_some(head.len());
    Ok((head, len))
}

/// The length of the header section (without the blank line) when `data` holds all of
/// it: a line that is empty (`\n` or `\r\n`) ends it.
pub fn header_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\n") || data.starts_with(b"\r\n") {
        return Some(0);
    }
    let mut i = 0;
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let rest = &data[nl + 1..];
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    None
}

/// The domain of the first address of the first From: field, as a key directory name.
pub fn from_domain(header: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(header)?;
    let addr = parsed.from()?.first()?.address()?;
    let (_, domain) = addr.rsplit_once('@')?;
    keys::domain_name(domain)
}

/// The `h=` list handed to mail-auth: each [`SIGNED`] name present in `header`, then
/// each [`OVERSIGNED`] name once more (mail-auth signs every instance of a name it
/// finds and lists the names it does not find as signed-absent).
pub fn header_list(header: &[u8]) -> Vec<String> {
    let present: Vec<&[u8]> = header
        .split(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        .filter_map(|l| {
            l.iter()
                .position(|&b| b == b':')
                .map(|c| l[..c].trim_ascii())
        })
        .collect();
    let mut v: Vec<String> = SIGNED
        .iter()
        .filter(|n| present.iter().any(|p| p.eq_ignore_ascii_case(n.as_bytes())))
        .map(|n| n.to_string())
        .collect();
    v.extend(OVERSIGNED.iter().map(|n| n.to_string()));
    v
}

/// Feed the whole message (`head`, then the rest of `r`) in its wire form to one
/// streaming signer per key; the `DKIM-Signature:` field of each (LF line ends) or why
/// that key failed.
fn sign_stream(
    loaded: &[(&KeyFile, Key)],
    names: &[String],
    head: &[u8],
    r: &mut impl Read,
) -> std::io::Result<Vec<Result<Vec<u8>, String>>> {
    let signers: Vec<DkimSigner<&Key, Done>> = loaded
        .iter()
        .map(|(k, key)| {
            DkimSigner::from_key(key)
                .domain(k.domain.clone())
                .selector(k.selector.clone())
                .headers(names.iter().cloned())
        })
        .collect();
    let mut streams: Vec<_> = signers.iter().map(|s| s.sign_streaming()).collect();
    let mut wire = WireForm::default();
    let mut crlf = Vec::with_capacity(140_000);
    let mut feed = |chunk: &[u8], streams: &mut Vec<_>| {
        crlf.clear();
        wire.feed(chunk, &mut crlf);
        for s in streams.iter_mut() {
            mail_auth::dkim::DkimSigningStream::write(s, &crlf);
        }
    };
    feed(head, &mut streams);
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        feed(&buf[..n], &mut streams);
    }
    Ok(streams
        .into_iter()
        .map(|s| {
            s.finish()
                .map(|sig| lf_lines(sig.to_header().as_bytes()))
                .map_err(|e| e.to_string())
        })
        .collect())
}

/// CRLF line ends to LF (the queue's form; qmail-remote turns them back on the wire).
fn lf_lines(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len());
    for (i, &b) in s.iter().enumerate() {
        if b == b'\r' && s.get(i + 1) == Some(&b'\n') {
            continue;
        }
        v.push(b);
    }
    v
}

/// The message as qmail-remote puts it on the wire, before dot-stuffing: a LF not
/// preceded by CR becomes CRLF (`remote::message::Stuffer`'s rule).
#[derive(Default)]
struct WireForm {
    prev_cr: bool,
}

impl WireForm {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }
}

/// A loaded key as mail-auth's signer sees it.
struct Key(PrivateKey);

/// DigestInfo prefix of SHA-256 for PKCS#1 v1.5 signatures (RFC 8017 section 9.2).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl SigningKey for Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let hash: HashOutput = self.hash(input);
        match &self.0 {
            PrivateKey::Rsa(k) => {
                let padding = rsa::Pkcs1v15Sign {
                    hash_len: Some(32),
                    prefix: SHA256_DIGEST_INFO.to_vec().into_boxed_slice(),
                };
                k.sign_with_rng(&mut rsa::rand_core::OsRng, padding, hash.as_ref())
                    .map_err(|e| {
                        mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(
                            e.to_string(),
                        ))
                    })
            }
            PrivateKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                Ok(k.sign(hash.as_ref()).to_bytes().to_vec())
            }
        }
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        match self.0 {
            PrivateKey::Rsa(_) => mail_auth::common::crypto::Algorithm::RsaSha256,
            PrivateKey::Ed25519(_) => mail_auth::common::crypto::Algorithm::Ed25519Sha256,
        }
    }
}

impl SigningKey for &Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        (**self).sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        (**self).algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, Owner};

    const ME: Owner = Owner {
        uid: None,
        gid: None,
    };

    /// A home with keys of `algs` (selector = the algorithm's extension) for `domain`.
    fn home(domain: &str, algs: &[Algorithm]) -> tempfile::TempDir {
        let h = tempfile::tempdir().unwrap();
        std::fs::create_dir(h.path().join("control")).unwrap();
        for &a in algs {
            let pem = crate::keygen::generate(a, 1024).unwrap().to_pem().unwrap();
            keys::install(h.path(), domain, a.ext(), a, &pem, ME, false).unwrap();
        }
        h
    }

    fn tag<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        let unfolded: &str = header;
        unfolded
            .split(';')
            .filter_map(|t| t.trim().split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v)
    }

    fn unfold(b: &[u8]) -> String {
        String::from_utf8(b.to_vec())
            .unwrap()
            .replace("\n\t", "")
            .replace("\n ", "")
    }

    const MSG: &[u8] = b"From: Joe <joe@Example.TEST>\nTo: x@remote.test\nSubject: hi\n\nbody\n";

    #[test]
    fn both_keys_sign_with_d_s_and_oversigned_headers() {
        let h = home("example.test", &[Algorithm::Rsa, Algorithm::Ed25519]);
        let s = sign_message(h.path(), &mut &MSG[..]);
        assert!(s.alerts.is_empty(), "{:?}", s.alerts);
        assert_eq!(
            s.signatures,
            [
                "d=example.test s=rsa a=rsa-sha256",
                "d=example.test s=ed25519 a=ed25519-sha256"
            ]
        );
        let text = String::from_utf8(s.header.clone()).unwrap();
        assert!(!text.contains('\r'), "LF line ends: {text:?}");
        assert!(text.ends_with('\n'));
        let fields: Vec<String> = text
            .split("DKIM-Signature: ")
            .filter(|f| !f.is_empty())
            .map(|f| unfold(f.as_bytes()))
            .collect();
        assert_eq!(fields.len(), 2);
        for f in &fields {
            assert_eq!(tag(f, "d"), Some("example.test"));
            assert_eq!(tag(f, "c"), Some("relaxed/relaxed"));
            let h: Vec<String> = tag(f, "h")
                .unwrap()
                .split(':')
                .map(|n| n.to_ascii_lowercase())
                .collect();
            assert_eq!(h.iter().filter(|n| *n == "from").count(), 2, "{h:?}");
            assert_eq!(h.iter().filter(|n| *n == "subject").count(), 2, "{h:?}");
            assert!(
                h.contains(&"reply-to".to_string()),
                "absent but signed: {h:?}"
            );
            assert!(!h.contains(&"list-id".to_string()), "{h:?}");
        }
        assert!(tag(&fields[0], "a") == Some("rsa-sha256"));
        assert!(tag(&fields[1], "a") == Some("ed25519-sha256"));
    }

    #[test]
    fn wire_form_is_what_is_signed() {
        // LF and CRLF versions of one message are the same bytes on the wire: same bh=
        let h = home("example.test", &[Algorithm::Ed25519]);
        let crlf: Vec<u8> = MSG
            .split(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .join(&b"\r\n"[..]);
        let a = unfold(&sign_message(h.path(), &mut &MSG[..]).header);
        let b = unfold(&sign_message(h.path(), &mut &crlf[..]).header);
        assert_eq!(tag(&a, "bh"), tag(&b, "bh"));
        let c =
            unfold(&sign_message(h.path(), &mut &b"From: joe@example.test\n\nbody!\n"[..]).header);
        assert_ne!(tag(&a, "bh"), tag(&c, "bh"));
        // relaxed empty body: the hash of nothing (RFC 6376 section 3.4.4)
        let e = unfold(&sign_message(h.path(), &mut &b"From: joe@example.test\n\n\n\n"[..]).header);
        assert_eq!(
            tag(&e, "bh"),
            Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        );
        // a message that is all header, no blank line, is signed too
        let n = sign_message(h.path(), &mut &b"From: joe@example.test\nSubject: x\n"[..]);
        assert_eq!(n.signatures.len(), 1, "{n:?}");
    }

    #[test]
    fn subdomains_use_the_parent_keys_and_others_are_not_signed() {
        let h = home("example.test", &[Algorithm::Ed25519]);
        let sub = sign_message(h.path(), &mut &b"From: a@mail.example.test\n\nx\n"[..]);
        assert_eq!(
            sub.signatures,
            ["d=example.test s=ed25519 a=ed25519-sha256"]
        );
        for m in [
            &b"From: a@other.test\n\nx\n"[..],
            b"Subject: no from\n\nx\n",
            b"From: a@../../etc\n\nx\n",
            b"From: undisclosed-recipients:;\n\nx\n",
            b"",
            b"\n\nFrom: a@example.test\n",
        ] {
            let s = sign_message(h.path(), &mut &m[..]);
            assert_eq!(s, Signed::default(), "{}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn broken_keys_alert_and_leave_the_message_unsigned() {
        let h = home("example.test", &[Algorithm::Ed25519]);
        let dir = h.path().join("control/dkim/example.test");
        std::fs::write(dir.join("bad.rsa"), "not a key").unwrap();
        let s = sign_message(h.path(), &mut &MSG[..]);
        assert_eq!(s.signatures.len(), 1);
        assert_eq!(
            s.alerts,
            ["unusable key control/dkim/example.test/bad.rsa: not an RSA private key in PEM"]
        );
        std::fs::remove_file(dir.join("ed25519.ed25519")).unwrap();
        std::fs::remove_file(dir.join("bad.rsa")).unwrap();
        let s = sign_message(h.path(), &mut &MSG[..]);
        assert!(s.header.is_empty());
        assert_eq!(s.alerts, ["no key in control/dkim/example.test"]);
        std::fs::write(dir.join("k.rsa"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        std::fs::create_dir(dir.join("d.ed25519")).unwrap();
        let s = sign_message(h.path(), &mut &MSG[..]);
        assert!(s.header.is_empty());
        assert_eq!(s.alerts.len(), 2, "{:?}", s.alerts);
    }

    #[test]
    fn too_many_keys_are_capped() {
        let h = home("example.test", &[]);
        for i in 0..keys::MAX_KEYS + 1 {
            let pem = crate::keygen::generate(Algorithm::Ed25519, 0)
                .unwrap()
                .to_pem()
                .unwrap();
            keys::install(
                h.path(),
                "example.test",
                &format!("s{i}"),
                Algorithm::Ed25519,
                &pem,
                ME,
                false,
            )
            .unwrap();
        }
        let s = sign_message(h.path(), &mut &MSG[..]);
        assert_eq!(s.signatures.len(), keys::MAX_KEYS);
        assert_eq!(s.alerts.len(), 1, "{:?}", s.alerts);
    }

    #[test]
    fn header_section_boundaries() {
        assert_eq!(header_end(b"\nbody"), Some(0));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(5));
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), Some(6));
        assert_eq!(header_end(b"A: b\nB: c\n"), None);
        assert_eq!(header_end(b""), None);
        let names = header_list(b"from: a\nX-Other: b\nlist-id: <l>\n folded: no\n");
        assert!(names.starts_with(&["From".to_string(), "List-Id".to_string()]));
        assert_eq!(names.len(), 2 + OVERSIGNED.len());
    }
}

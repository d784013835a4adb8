//! The SMTP session: commands, replies, policy, DATA into qmail-queue.
//!
//! Replies keep qmail's wording (and its `(#x.y.z)` suffix) where qmail has one, and
//! carry the RFC 2034 enhanced status code in front, since ENHANCEDSTATUSCODES is
//! advertised: `553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts
//! (#5.7.1)`.

use crate::addr::{self, AddrError, Path};
use crate::auth::{self, SaslError, Verdict};
use crate::config::{Config, Mode};
use crate::data::{Bare, Dot, Step};
use crate::io::{Conn, Line};
use crate::policy;
use crate::received::Received;
use std::io::{self, Write};
use std::sync::Arc;

/// Longest command line (RFC 5321 says 512; AUTH responses need more).
pub const MAX_LINE: usize = 4096;
/// qmail's hop limit (Received + Delivered-To header lines).
pub const MAX_HOPS: u32 = 100;
/// Syntax errors and unknown commands tolerated before the connection is closed.
pub const MAX_ERRORS: u32 = 20;
/// Header bytes kept for the From: check of authenticated senders.
const MAX_HEADER_CAPTURE: usize = 256 * 1024;

/// How the session ended (the process exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QUIT: exit 0.
    Quit,
    /// EOF, timeout, error, refused: exit 1 (as qmail).
    Dropped,
}

struct Mail {
    sender: String,
    badmailfrom: bool,
}

/// Where the TLS configuration comes from.
pub enum TlsSource {
    /// No TLS (no STARTTLS offered).
    None,
    /// A configuration already built.
    Ready(Arc<rustls::ServerConfig>),
    /// The control directory: `servercert.pem` there means STARTTLS is offered; the
    /// configuration is built only when a client asks for it (cheap sessions without
    /// TLS, and a renewed certificate applies to the next STARTTLS).
    Dir(std::path::PathBuf),
}

pub struct Session {
    cfg: Config,
    conn: Conn,
    tls: TlsSource,
    helo: Option<String>,
    esmtp: bool,
    mail: Option<Mail>,
    rcpts: Vec<String>,
    user: Option<String>,
    /// The recipients of the open transaction counted against `control/ratelimit`,
    /// given back when it is reset or its DATA/BDAT does not queue the message.
    rate_held: Option<limits::Refund>,
    errors: u32,
    /// The error limit was reached: close after this command's replies.
    closing: bool,
}

/// What happened while reading DATA.
#[derive(Default)]
struct DataOutcome {
    started: bool,
    bytes: u64,
    too_big: bool,
    hops: u32,
    bare: Option<Bare>,
    eof: bool,
    io_error: Option<io::ErrorKind>,
    qq_write_failed: bool,
    from_refused: bool,
    /// BDAT: a CR not followed by LF in the message.
    bare_cr_chunk: bool,
    /// BDAT: an unreadable BDAT command in the middle of a transaction.
    bad_bdat: bool,
    /// BDAT: the command that interrupted the chunks (aborting the transaction).
    interrupted: Option<Vec<u8>>,
}

fn log(msg: &str) {
    qsys::die::warn("qmail-smtpd", &format!("pid {}", std::process::id()), msg);
}

impl Session {
    pub fn new(cfg: Config, conn: Conn, tls: TlsSource) -> Session {
        Session {
            cfg,
            conn,
            tls,
            helo: None,
            esmtp: false,
            mail: None,
            rcpts: Vec::new(),
            user: None,
            rate_held: None,
            errors: 0,
            closing: false,
        }
    }

    fn send(&mut self, line: &str) {
        self.conn.send(line);
    }

    fn relay_allowed(&self) -> bool {
        self.cfg.relayclient.is_some() || self.user.is_some()
    }

    fn auth_offered(&self) -> bool {
        self.cfg.mode != Mode::Mx && !self.cfg.checkpassword.is_empty()
    }

    fn plaintext_auth_ok(&self) -> bool {
        self.conn.is_tls() || self.cfg.auth_plaintext
    }

    fn tls_missing(&self) -> bool {
        self.cfg.tls_required && !self.conn.is_tls()
    }

    /// Start TLS right away (port 465).
    pub fn implicit_tls(&mut self) -> io::Result<()> {
        let cfg = match &self.tls {
            TlsSource::Ready(c) => c.clone(),
            TlsSource::Dir(d) => tls::server_config(d)?
                .ok_or_else(|| io::Error::other("no certificate in control/servercert.pem"))?,
            TlsSource::None => return Err(io::Error::other("no TLS configured")),
        };
        self.conn.start_tls(cfg)
    }

    /// STARTTLS can be offered: a certificate is installed.
    fn tls_offered(&self) -> bool {
        match &self.tls {
            TlsSource::None => false,
            TlsSource::Ready(_) => true,
            TlsSource::Dir(d) => d.join(tls::CERT_FILE).exists(),
        }
    }

    /// The TLS configuration, read from the control directory when first needed.
    fn tls_config(&mut self) -> Option<Arc<rustls::ServerConfig>> {
        match &self.tls {
            TlsSource::None => None,
            TlsSource::Ready(c) => Some(c.clone()),
            TlsSource::Dir(d) => match tls::server_config(d) {
                Ok(Some(c)) => {
                    self.tls = TlsSource::Ready(c.clone());
                    Some(c)
                }
                Ok(None) => None,
                Err(e) => {
                    log(&format!("TLS not available: {e}"));
                    None
                }
            },
        }
    }

    /// Run the session to its end.
    pub fn run(&mut self) -> End {
        let g = format!("220 {} ESMTP", self.cfg.greeting);
        self.send(&g);
        let end = loop {
            let line = match self.conn.read_line(MAX_LINE) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    self.send("500 5.5.2 line too long (#5.5.2)");
                    if self.error() || self.closing {
                        break End::Dropped;
                    }
                    continue;
                }
                Ok(Line::Eof) => break End::Dropped,
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        self.send("451 4.4.2 timeout (#4.4.2)");
                    }
                    break End::Dropped;
                }
            };
            match self.command(&line) {
                Ok(None) if self.closing => break End::Dropped,
                Ok(None) => {}
                Ok(Some(end)) => break end,
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        self.send("451 4.4.2 timeout (#4.4.2)");
                    }
                    break End::Dropped;
                }
            }
        };
        // a transaction the client left open keeps its recipients counted
        if let Some(held) = self.rate_held.take() {
            held.keep();
        }
        self.conn.close();
        end
    }

    /// Count an error; true when the client has had enough chances.
    fn error(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            if !self.closing {
                self.send("421 4.7.0 too many errors, closing connection (#4.7.0)");
            }
            self.closing = true;
            return true;
        }
        false
    }

    fn command(&mut self, line: &[u8]) -> io::Result<Option<End>> {
        let Ok(line) = std::str::from_utf8(line) else {
            self.send("500 5.5.2 invalid characters in command (#5.5.2)");
            return Ok(self.error().then_some(End::Dropped));
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim_start_matches(' ')),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "HELO" => self.helo(arg, false),
            "EHLO" => self.helo(arg, true),
            "MAIL" => self.mail(arg)?,
            "RCPT" => self.rcpt(arg)?,
            "DATA" => return self.data(),
            "BDAT" => return self.bdat(arg),
            "RSET" => {
                self.reset();
                self.send("250 2.0.0 flushed");
            }
            "NOOP" => self.send("250 2.0.0 ok"),
            "VRFY" => self.send("252 2.1.5 send some mail, i'll try my best"),
            "HELP" => self.send("214 2.0.0 qmail home page: https://cr.yp.to/qmail.html"),
            "QUIT" => {
                let g = format!("221 2.0.0 {}", self.cfg.greeting);
                self.send(&g);
                return Ok(Some(End::Quit));
            }
            "STARTTLS" => return self.starttls(arg),
            "AUTH" => return self.auth(arg),
            _ => {
                self.send("502 5.5.1 unimplemented (#5.5.1)");
                if self.error() {
                    return Ok(Some(End::Dropped));
                }
            }
        }
        Ok(None)
    }

    fn reset(&mut self) {
        self.mail = None;
        self.rcpts.clear();
        self.rate_held = None;
    }

    fn helo(&mut self, arg: &str, esmtp: bool) {
        if arg.is_empty() {
            self.send(if esmtp {
                "501 5.5.4 syntax: EHLO hostname (#5.5.4)"
            } else {
                "501 5.5.4 syntax: HELO hostname (#5.5.4)"
            });
            return;
        }
        self.reset();
        self.helo = Some(arg.to_string());
        self.esmtp = esmtp;
        if !esmtp {
            let g = format!("250 {}", self.cfg.greeting);
            self.send(&g);
            return;
        }
        let mut lines = vec![self.cfg.greeting.clone(), "PIPELINING".into()];
        lines.push("8BITMIME".into());
        lines.push(if self.cfg.databytes > 0 {
            format!("SIZE {}", self.cfg.databytes)
        } else {
            "SIZE".into()
        });
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("CHUNKING".into());
        lines.push("SMTPUTF8".into());
        if !self.conn.is_tls() && self.tls_offered() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() && self.user.is_none() && !self.tls_missing() {
            let mut mechs = Vec::new();
            if self.plaintext_auth_ok() {
                mechs.push("PLAIN");
                mechs.push("LOGIN");
            }
            if self.cfg.cram {
                mechs.push("CRAM-MD5");
            }
            if !mechs.is_empty() {
                lines.push(format!("AUTH {}", mechs.join(" ")));
            }
        }
        let n = lines.len();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            self.conn.send(&format!("250{sep}{l}"));
        }
    }

    fn mail(&mut self, arg: &str) -> io::Result<()> {
        if self.mail.is_some() {
            self.send("503 5.5.1 nested MAIL command (#5.5.1)");
            return Ok(());
        }
        if self.tls_missing() {
            self.send("530 5.7.0 Must issue a STARTTLS command first (#5.7.0)");
            return Ok(());
        }
        // Submission: AUTH, unless tcprules trust the client (RELAYCLIENT, e.g. webmail).
        if self.cfg.mode != Mode::Mx && self.user.is_none() && self.cfg.relayclient.is_none() {
            self.send("530 5.7.0 authentication required (#5.7.0)");
            return Ok(());
        }
        let (path, rest) = match addr::split_command(arg, "FROM") {
            Ok(x) => x,
            Err(e) => return self.addr_error(e),
        };
        let params = match addr::mail_params(rest) {
            Ok(p) => p,
            Err(_) => {
                self.send("555 5.5.4 syntax error in parameters (#5.5.4)");
                self.error();
                return Ok(());
            }
        };
        if let Some(size) = params.size
            && self.cfg.databytes > 0
            && size > self.cfg.databytes
        {
            self.send("552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)");
            return Ok(());
        }
        if path.source_route && !path.addr.is_empty() && !path.addr.contains('@') {
            return self.addr_error(AddrError::Syntax);
        }
        if let Some(user) = self.user.clone() {
            if !policy::sender_allowed(&self.cfg, &user, &path.addr) {
                log(&format!(
                    "user {user} refused envelope sender <{}>",
                    path.addr
                ));
                self.send(
                    "553 5.7.1 sorry, that envelope sender is not one of your addresses (#5.7.1)",
                );
                return Ok(());
            }
            if self.cfg.ratelimit > 0 {
                let key = ::auth::canonical_login(&user);
                match self
                    .cfg
                    .counters()
                    .count(limits::Kind::Rate, &key, qsys::now())
                {
                    Ok(n) if n >= self.cfg.ratelimit => {
                        log(&format!(
                            "user {} over ratelimit ({n} recipients this hour)",
                            qsys::logsafe::text(user.as_bytes())
                        ));
                        self.send(
                            "451 4.7.1 sorry, you have sent to too many recipients this hour (#4.7.1)",
                        );
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log(&format!("unable to read the rate counter: {e}"));
                        self.send("451 4.3.0 unable to check the message rate (#4.3.0)");
                        return Ok(());
                    }
                }
            }
        }
        let badmailfrom = policy::listed(&self.cfg.badmailfrom, &path.addr);
        self.mail = Some(Mail {
            sender: path.addr,
            badmailfrom,
        });
        self.rcpts.clear();
        self.send("250 2.1.0 ok");
        Ok(())
    }

    fn addr_error(&mut self, e: AddrError) -> io::Result<()> {
        match e {
            AddrError::Syntax => self.send("555 5.5.4 syntax error (#5.5.4)"),
            AddrError::Unacceptable => {
                self.send("553 5.1.3 sorry, I can't accept addresses like that (#5.1.3)")
            }
        }
        self.error();
        Ok(())
    }

    fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        let Some(mail) = &self.mail else {
            self.send("503 5.5.1 MAIL first (#5.5.1)");
            return Ok(());
        };
        let badmailfrom = mail.badmailfrom;
        let (mut path, rest) = match addr::split_command(arg, "TO") {
            Ok(x) => x,
            Err(e) => return self.addr_error(e),
        };
        if !rest.is_empty() {
            self.send("555 5.5.4 syntax error in parameters (#5.5.4)");
            self.error();
            return Ok(());
        }
        if path.addr.is_empty() {
            return self.addr_error(AddrError::Syntax);
        }
        if badmailfrom {
            self.send("553 5.7.1 sorry, your envelope sender is in my badmailfrom list (#5.7.1)");
            return Ok(());
        }
        if self.rcpts.len() >= self.cfg.maxrcpt {
            self.send("452 4.5.3 sorry, too many recipients (#4.5.3)");
            return Ok(());
        }
        if let Some(a) = policy::rewrite_literal(&path.addr, &self.cfg) {
            path.addr = a;
        }
        if policy::listed(&self.cfg.badrcptto, &path.addr) {
            self.send("553 5.7.1 sorry, your envelope recipient is in my badrcptto list (#5.7.1)");
            return Ok(());
        }
        if let Some(reply) = self.reserve_recipient() {
            self.send(reply);
            return Ok(());
        }
        if self.relay_allowed() {
            let mut a = path.addr;
            if let Some(rc) = &self.cfg.relayclient {
                a.push_str(rc);
            }
            self.rcpts.push(a);
            self.send("250 2.1.5 ok");
            return Ok(());
        }
        if let Some(reply) = self.rcpt_refusal(&path)? {
            log(&format!(
                "refused RCPT <{}> from {}: {}",
                path.addr.escape_debug(),
                self.cfg.remote_ip,
                &reply[4..]
            ));
            self.send(reply);
            return Ok(());
        }
        self.rcpts.push(path.addr);
        self.send("250 2.1.5 ok");
        Ok(())
    }

    /// An authenticated user's recipient counts against `control/ratelimit` here, when
    /// accepted: checked and counted in one step under the counter's lock, so concurrent
    /// sessions share the limit exactly, and given back when the transaction does not
    /// queue the message (RSET, a refused or failed DATA). The refusal, if any.
    fn reserve_recipient(&mut self) -> Option<&'static str> {
        let user = self.user.as_deref()?;
        if self.cfg.ratelimit == 0 {
            return None;
        }
        let key = ::auth::canonical_login(user);
        let counters = self.cfg.counters();
        match counters.reserve(limits::Kind::Rate, &key, qsys::now(), 1, self.cfg.ratelimit) {
            Ok(true) => {
                self.rate_held
                    .get_or_insert_with(|| limits::Refund::new(counters, limits::Kind::Rate, &key))
                    .add(1);
                None
            }
            Ok(false) => {
                log(&format!(
                    "user {} over ratelimit ({} recipients this hour)",
                    qsys::logsafe::text(user.as_bytes()),
                    self.cfg.ratelimit
                ));
                Some("451 4.7.1 sorry, you have sent to too many recipients this hour (#4.7.1)")
            }
            Err(e) => {
                log(&format!("unable to update the rate counter: {e}"));
                Some("451 4.3.0 unable to check the message rate (#4.3.0)")
            }
        }
    }

    /// The policy for clients that may not relay.
    fn rcpt_refusal(&self, path: &Path) -> io::Result<Option<&'static str>> {
        if path.relay_probe() {
            return Ok(Some("553 5.7.1 we don't relay (#5.7.1)"));
        }
        let ok = match path.domain() {
            Some(d) => policy::rcpthosts_ok(&self.cfg, d)?,
            // qmail: an address without @ is local (qualified with envnoathost).
            None => true,
        };
        if !ok {
            return Ok(Some(
                "553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            ));
        }
        if let Some(ok) = crate::rcptcheck::virtual_accepts(&self.cfg.home, &path.addr)? {
            return Ok((!ok).then_some("550 5.1.1 sorry, no mailbox here by that name (#5.1.1)"));
        }
        if let Some(rc) = &self.cfg.recipients {
            let addr = if path.addr.contains('@') {
                path.addr.clone()
            } else {
                format!("{}@{}", path.addr, self.cfg.localiphost)
            };
            if let Some(local) = crate::rcptcheck::local_part(&rc.locals, &rc.virtualdomains, &addr)
                && !crate::rcptcheck::accepts(&rc.cdb, &local)?
            {
                return Ok(Some(
                    "550 5.1.1 sorry, no mailbox here by that name (#5.1.1)",
                ));
            }
        }
        Ok(None)
    }

    fn starttls(&mut self, arg: &str) -> io::Result<Option<End>> {
        if !arg.is_empty() {
            self.send("501 5.5.4 Syntax error (no parameters allowed) (#5.5.4)");
            return Ok(None);
        }
        if self.conn.is_tls() {
            self.send("503 5.5.1 TLS already active (#5.5.1)");
            return Ok(None);
        }
        let Some(cfg) = self.tls_config() else {
            self.send("454 4.7.0 TLS not available (#4.7.0)");
            return Ok(None);
        };
        // Anything pipelined after STARTTLS was sent in plaintext before the handshake:
        // throw it away, never interpret it inside TLS.
        let n = self.conn.discard_buffered();
        if n > 0 {
            log(&format!("discarded {n} bytes pipelined after STARTTLS"));
        }
        self.send("220 2.0.0 ready for tls");
        if let Err(e) = self.conn.start_tls(cfg) {
            log(&format!("TLS handshake failed: {e}"));
            return Ok(Some(End::Dropped));
        }
        // RFC 3207 4.2: forget everything learnt before TLS.
        self.reset();
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        Ok(None)
    }

    fn auth(&mut self, arg: &str) -> io::Result<Option<End>> {
        if !self.auth_offered() {
            self.send("503 5.3.3 auth not available (#5.3.3)");
            return Ok(None);
        }
        if self.user.is_some() {
            self.send("503 5.5.0 you're already authenticated (#5.5.0)");
            return Ok(None);
        }
        if self.mail.is_some() {
            self.send("503 5.5.0 no auth during mail transaction (#5.5.0)");
            return Ok(None);
        }
        if self.tls_missing() {
            self.send("530 5.7.0 Must issue a STARTTLS command first (#5.7.0)");
            return Ok(None);
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().as_bytes().to_vec())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let plaintext = mech == "PLAIN" || mech == "LOGIN";
        let cram = mech == "CRAM-MD5" && self.cfg.cram;
        if !plaintext && !cram {
            self.send("504 5.5.4 auth type unimplemented (#5.5.1)");
            return Ok(None);
        }
        if plaintext && !self.plaintext_auth_ok() {
            self.send(
                "538 5.7.11 encryption required for requested authentication mechanism (#5.7.11)",
            );
            return Ok(None);
        }
        if self.cfg.authfaillimit > 0 {
            let ip = limits::ip_key(&self.cfg.remote_ip);
            match self
                .cfg
                .counters()
                .count(limits::Kind::AuthFailIp, &ip, qsys::now())
            {
                Ok(n) if n >= self.cfg.authfaillimit => {
                    log(&format!(
                        "AUTH refused: {n} failures in the last hour ip={}",
                        qsys::logsafe::text(self.cfg.remote_ip.as_bytes())
                    ));
                    self.send(
                        "421 4.7.0 too many authentication failures, try again later (#4.7.0)",
                    );
                    return Ok(Some(End::Dropped));
                }
                Ok(_) => {}
                Err(e) => {
                    log(&format!("unable to read the AUTH failure counter: {e}"));
                    self.send("454 4.7.0 temporary authentication failure (#4.3.0)");
                    return Ok(None);
                }
            }
        }
        let stamp = auth::timestamp(&self.cfg.local_host_for_stamp());
        let cred = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => match self.challenge("334 ")? {
                        Some(l) => l,
                        None => return Ok(Some(End::Dropped)),
                    },
                };
                auth::decode_with(resp, |d| auth::plain(d, &stamp))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => i,
                    None => match self.challenge("334 VXNlcm5hbWU6")? {
                        Some(l) => l,
                        None => return Ok(Some(End::Dropped)),
                    },
                };
                match auth::decode(&user) {
                    Ok(u) => match self.challenge("334 UGFzc3dvcmQ6")? {
                        Some(p) => auth::decode_with(p, |p| auth::login(&u, p, &stamp)),
                        None => return Ok(Some(End::Dropped)),
                    },
                    Err(e) => Err(e),
                }
            }
            _ => {
                use base64::prelude::*;
                let c = format!("334 {}", BASE64_STANDARD.encode(stamp.as_bytes()));
                match self.challenge(&c)? {
                    Some(r) => auth::decode_with(r, |d| auth::cram(d, &stamp)),
                    None => return Ok(Some(End::Dropped)),
                }
            }
        };
        let cred = match cred {
            Ok(c) => c,
            Err(SaslError::Cancelled) => {
                self.send("501 5.0.0 auth exchange canceled (#5.0.0)");
                return Ok(None);
            }
            Err(SaslError::Malformed) => {
                self.send("501 5.5.4 malformed auth input (#5.5.4)");
                return Ok(if self.error() {
                    Some(End::Dropped)
                } else {
                    None
                });
            }
        };
        let user = String::from_utf8_lossy(&cred.user).into_owned();
        let account = ::auth::canonical_login(&user);
        let safe_user = qsys::logsafe::text(&cred.user);
        let ip = qsys::logsafe::text(self.cfg.remote_ip.as_bytes());
        let Some(hold) = self.reserve_auth_failure(&account, &safe_user) else {
            return Ok(Some(End::Dropped));
        };
        let Ok(hold) = hold else {
            return Ok(None);
        };
        let verdict = auth::check(&self.cfg.checkpassword, &cred);
        drop(cred);
        match verdict {
            Verdict::Ok => {
                self.settle_auth(hold, Some(&account));
                log(&format!("AUTH {mech} user {safe_user} from {ip}"));
                self.user = Some(user);
                self.send("235 2.7.0 ok, go ahead (#2.0.0)");
            }
            Verdict::Temporary => {
                self.settle_auth(hold, None);
                self.send("454 4.7.0 temporary authentication failure (#4.3.0)");
            }
            Verdict::Rejected => {
                // the failure was counted by the reservation: keep it
                drop(hold);
                log(&format!("auth failed ip={ip} mech={mech} user={safe_user}"));
                self.conn.flush()?;
                std::thread::sleep(std::time::Duration::from_secs(self.cfg.authfaildelay));
                self.send("535 5.7.8 authentication failed (#5.7.8)");
                if self.error() {
                    return Ok(Some(End::Dropped));
                }
            }
        }
        Ok(None)
    }

    /// Count this attempt as a failure of the client's address and of `account` before
    /// checkpassword runs, under the counters' locks, so parallel sessions cannot run
    /// more checks than the limits allow; given back by [`Session::settle_auth`] when
    /// it was not a failure. An address that logged in to `account` within the window
    /// is counted but not refused by the account's limit (so guessing cannot lock the
    /// owner out from where they log in). When refused: `None` to drop the connection,
    /// `Some(Err(()))` to carry on; the reply is sent.
    fn reserve_auth_failure(
        &mut self,
        account: &str,
        safe_user: &str,
    ) -> Option<Result<limits::Hold, ()>> {
        let counters = self.cfg.counters();
        let now = qsys::now();
        let ip_key = limits::ip_key(&self.cfg.remote_ip);
        let ip = qsys::logsafe::text(self.cfg.remote_ip.as_bytes());
        let mut account_limit = self.cfg.authfailaccountlimit;
        if account_limit > 0
            && counters
                .count(limits::Kind::AuthOk, &limits::ok_key(account, &ip_key), now)
                .is_ok_and(|n| n > 0)
        {
            account_limit = u64::MAX;
        }
        let set = [
            (
                limits::Kind::AuthFailIp,
                ip_key.as_str(),
                self.cfg.authfaillimit,
            ),
            (limits::Kind::AuthFailAccount, account, account_limit),
        ];
        match counters.reserve_all(&set, now) {
            Ok(Ok(hold)) => Some(Ok(hold)),
            Ok(Err(limits::Kind::AuthFailIp)) => {
                log(&format!(
                    "AUTH refused: too many failures for the address in the last hour ip={ip} user={safe_user}"
                ));
                self.send("421 4.7.0 too many authentication failures, try again later (#4.7.0)");
                None
            }
            Ok(Err(_)) => {
                log(&format!(
                    "AUTH refused: too many failures for the account in the last hour ip={ip} user={safe_user}"
                ));
                self.send(
                    "454 4.7.0 too many authentication failures for this account, try again later (#4.7.0)",
                );
                Some(Err(()))
            }
            Err(e) => {
                log(&format!("unable to update the AUTH failure counter: {e}"));
                self.send("454 4.7.0 temporary authentication failure (#4.3.0)");
                Some(Err(()))
            }
        }
    }

    /// Give back the failure reserved for a login that was not one (it worked, or could
    /// not be checked); after a success (`account`), remember the address for the
    /// account's limit.
    fn settle_auth(&self, hold: limits::Hold, account: Option<&str>) {
        if let Err(e) = hold.release() {
            log(&format!("unable to update the AUTH failure counter: {e}"));
        }
        if let Some(account) = account
            && self.cfg.authfailaccountlimit > 0
        {
            let key = limits::ok_key(account, &limits::ip_key(&self.cfg.remote_ip));
            if let Err(e) = self
                .cfg
                .counters()
                .record(limits::Kind::AuthOk, &key, qsys::now(), 1)
            {
                log(&format!("unable to record the login: {e}"));
            }
        }
    }

    /// Send a 334 challenge and read the answer line (`None` at EOF).
    fn challenge(&mut self, line: &str) -> io::Result<Option<Vec<u8>>> {
        self.send(line);
        match self.conn.read_line(MAX_LINE)? {
            Line::Text(l) => Ok(Some(l)),
            Line::TooLong => Ok(Some(b"!".to_vec())),
            Line::Eof => Ok(None),
        }
    }

    fn received(&self) -> String {
        let tls = self.conn.tls_description();
        let info = self.user.as_deref().or(self.cfg.remote_info.as_deref());
        Received {
            remote_host: &self.cfg.remote_host,
            helo: self.helo.as_deref(),
            info,
            remote_ip: &self.cfg.remote_ip,
            local_host: &self.cfg.local_host,
            esmtp: self.esmtp,
            tls: tls.as_deref(),
            auth: self.user.is_some(),
            date: qsys::now(),
        }
        .line()
    }

    fn data(&mut self) -> io::Result<Option<End>> {
        if let Some(r) = self.transaction_missing() {
            self.send(r);
            return Ok(None);
        }
        self.transaction(None)
    }

    /// `503` when MAIL or RCPT is missing.
    fn transaction_missing(&self) -> Option<&'static str> {
        if self.mail.is_none() {
            Some("503 5.5.1 MAIL first (#5.5.1)")
        } else if self.rcpts.is_empty() {
            Some("503 5.5.1 RCPT first (#5.5.1)")
        } else {
            None
        }
    }

    /// `BDAT size [LAST]` (RFC 3030 CHUNKING). The chunk is read whatever happens, so
    /// that the session stays in step; a size that cannot be read ends the session.
    fn bdat(&mut self, arg: &str) -> io::Result<Option<End>> {
        let Some(chunk) = parse_bdat(arg) else {
            self.send("501 5.5.4 syntax: BDAT size [LAST], closing connection (#5.5.4)");
            return Ok(Some(End::Dropped));
        };
        if let Some(r) = self.transaction_missing() {
            if !skip_bytes(&mut self.conn, chunk.0)? {
                return Ok(Some(End::Dropped));
            }
            self.send(r);
            return Ok(None);
        }
        self.transaction(Some(chunk))
    }

    /// Hand the message to qmail-queue: after DATA (`first_chunk` None) or from BDAT
    /// chunks. Replies with the outcome.
    fn transaction(&mut self, first_chunk: Option<(u64, bool)>) -> io::Result<Option<End>> {
        let Some(mail) = &self.mail else {
            return Ok(None);
        };
        let sender = mail.sender.clone();
        let rcpts = std::mem::take(&mut self.rcpts);
        self.mail = None;
        // given back on every way out but a queued message
        let rate_held = self.rate_held.take();
        let received = self.received();
        let mut out = DataOutcome::default();
        let databytes = self.cfg.databytes;
        let cfg = &self.cfg;
        let user = self.user.clone();
        let check = |a: &str| {
            user.as_deref()
                .is_none_or(|u| policy::sender_allowed(cfg, u, a))
        };
        let from_check: Option<&dyn Fn(&str) -> bool> = self.user.is_some().then_some(&check);
        let conn = &mut self.conn;
        let result = queue::client::inject(
            &cfg.queue_program,
            sender.as_bytes(),
            &rcpts,
            |w: &mut dyn Write| {
                out.started = true;
                match first_chunk {
                    None => {
                        conn.send("354 go ahead");
                        read_data(conn, w, &received, databytes, from_check, &mut out)
                    }
                    Some(chunk) => {
                        read_chunks(conn, w, &received, databytes, from_check, chunk, &mut out)
                    }
                }
            },
        );
        if !out.started {
            log("unable to run qmail-queue");
            if let Some((size, _)) = first_chunk
                && !skip_bytes(&mut self.conn, size)?
            {
                return Ok(Some(End::Dropped));
            }
            self.send("451 4.3.0 qqt failure (#4.3.0)");
            return Ok(None);
        }
        if let Some(k) = out.io_error {
            return Err(io::Error::from(k));
        }
        if out.eof {
            log("client went away during DATA; nothing queued");
            return Ok(Some(End::Dropped));
        }
        if out.bad_bdat {
            self.send("501 5.5.4 syntax: BDAT size [LAST], closing connection (#5.5.4)");
            return Ok(Some(End::Dropped));
        }
        if let Some(line) = out.interrupted.take() {
            // Another command in the middle of a BDAT transaction aborts it.
            log("BDAT transaction aborted by another command; nothing queued");
            return self.command(&line);
        }
        if let Some(b) = out.bare {
            let what = match b {
                Bare::Lf => "bare LF",
                Bare::Cr => "bare CR",
            };
            log(&format!(
                "{what} in DATA from {}; nothing queued, connection closed",
                self.cfg.remote_ip
            ));
            self.send("451 4.5.0 See https://cr.yp.to/docs/smtplf.html. (#4.5.0)");
            return Ok(Some(End::Dropped));
        }
        if out.bare_cr_chunk {
            self.send("554 5.6.0 sorry, a bare CR in the message (#5.6.0)");
            return Ok(None);
        }
        if out.too_big {
            self.send("552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)");
            return Ok(None);
        }
        if out.hops >= MAX_HOPS {
            self.send("554 5.4.6 too many hops, this message is looping (#5.4.6)");
            return Ok(None);
        }
        if out.from_refused {
            self.send("553 5.7.1 sorry, that From: address is not one of your addresses (#5.7.1)");
            return Ok(None);
        }
        match result {
            Ok(qp) => {
                // the recipients were counted against the rate limit at RCPT
                if let Some(held) = rate_held {
                    held.keep();
                }
                let user = self.user.clone();
                log(&format!(
                    "message accepted qp {qp} from {} <{sender}> to {} recipients{}",
                    self.cfg.remote_ip,
                    rcpts.len(),
                    user.map(|u| format!(" auth {u}")).unwrap_or_default()
                ));
                let r = format!("250 2.0.0 ok {} qp {qp}", qsys::now());
                self.send(&r);
            }
            Err(f) if out.qq_write_failed || !f.permanent => {
                let r = format!("451 4.3.0 {}", f.text);
                self.send(&r);
            }
            Err(f) => {
                let r = format!("554 5.3.0 {}", f.text);
                self.send(&r);
            }
        }
        Ok(None)
    }
}

/// `size [LAST]` of a BDAT command.
fn parse_bdat(arg: &str) -> Option<(u64, bool)> {
    let mut it = arg.split(' ').filter(|w| !w.is_empty());
    let size = it.next()?;
    if size.is_empty() || size.len() > 18 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some((size.parse().ok()?, last))
}

/// Read and throw away `n` bytes of chunk data; false at EOF.
fn skip_bytes(conn: &mut Conn, mut n: u64) -> io::Result<bool> {
    while n > 0 {
        if conn.buffered().is_empty() && conn.fill()? == 0 {
            return Ok(false);
        }
        let k = (conn.buffered().len() as u64).min(n);
        conn.consume(k as usize);
        n -= k;
    }
    Ok(true)
}

impl Config {
    fn local_host_for_stamp(&self) -> String {
        if self.local_host == "unknown" {
            self.greeting
                .split(' ')
                .next()
                .unwrap_or("localhost")
                .to_string()
        } else {
            self.local_host.clone()
        }
    }
}

/// Header tracking over the LF-converted message: hop count and, when asked, a copy
/// of the header for the From: check.
struct HeaderScan {
    in_header: bool,
    line_start: bool,
    prefix: Vec<u8>,
    capture: Option<Vec<u8>>,
    overflow: bool,
}

impl HeaderScan {
    fn feed(&mut self, bytes: &[u8], hops: &mut u32) {
        if !self.in_header {
            return;
        }
        for &b in bytes {
            if let Some(c) = &mut self.capture {
                if c.len() < MAX_HEADER_CAPTURE {
                    c.push(b);
                } else {
                    self.overflow = true;
                }
            }
            if b == b'\n' {
                if self.line_start {
                    self.in_header = false;
                    return;
                }
                let p = &self.prefix;
                if p.starts_with(b"received") || p.starts_with(b"delivered") {
                    *hops += 1;
                }
                self.prefix.clear();
                self.line_start = true;
            } else {
                if self.prefix.len() < 9 {
                    self.prefix.push(b.to_ascii_lowercase());
                }
                self.line_start = false;
            }
        }
    }
}

fn read_data(
    conn: &mut Conn,
    w: &mut dyn Write,
    received: &str,
    databytes: u64,
    from_check: Option<&dyn Fn(&str) -> bool>,
    out: &mut DataOutcome,
) -> io::Result<()> {
    let refuse = || io::Error::other("message refused");
    let mut writing = w.write_all(received.as_bytes()).is_ok();
    if !writing {
        out.qq_write_failed = true;
    }
    let mut dot = Dot::new();
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut scan = HeaderScan {
        in_header: true,
        line_start: true,
        prefix: Vec::new(),
        capture: from_check.map(|_| Vec::new()),
        overflow: false,
    };
    let mut done = false;
    while !done {
        if conn.buffered().is_empty() {
            match conn.fill() {
                Ok(0) => {
                    out.eof = true;
                    return Err(refuse());
                }
                Ok(_) => {}
                Err(e) => {
                    out.io_error = Some(e.kind());
                    return Err(refuse());
                }
            }
        }
        chunk.clear();
        let step = dot.push(conn.buffered(), &mut chunk);
        match step {
            Step::More => {
                let n = conn.buffered().len();
                conn.consume(n);
            }
            Step::End(n) => {
                conn.consume(n);
                done = true;
            }
            Step::Error(b) => {
                out.bare = Some(b);
                return Err(refuse());
            }
        }
        scan.feed(&chunk, &mut out.hops);
        out.bytes += chunk.len() as u64;
        if databytes > 0 && out.bytes > databytes {
            out.too_big = true;
            writing = false;
        }
        if writing && w.write_all(&chunk).is_err() {
            out.qq_write_failed = true;
            writing = false;
        }
    }
    if let (Some(h), Some(check)) = (&scan.capture, from_check) {
        out.from_refused = scan.overflow || !from_ok(h, check);
    }
    if out.too_big || out.hops >= MAX_HOPS || out.from_refused || out.qq_write_failed {
        return Err(refuse());
    }
    Ok(())
}

/// The BDAT chunks of one message, starting with `first` (size, LAST), into qmail-queue.
///
/// Chunk data is taken as it is (no dot-stuffing, no end marker), CR LF becoming LF.
/// A bare LF is a line end (what clients that send bare LF need BDAT for); a bare CR is
/// refused (`554`), so that no downstream server can read a CR as a line end. Between
/// chunks the next command is read here: BDAT continues, NOOP is answered, anything
/// else aborts the transaction (nothing queued) and is then run as a command.
fn read_chunks(
    conn: &mut Conn,
    w: &mut dyn Write,
    received: &str,
    databytes: u64,
    from_check: Option<&dyn Fn(&str) -> bool>,
    first: (u64, bool),
    out: &mut DataOutcome,
) -> io::Result<()> {
    let refuse = || io::Error::other("message refused");
    let mut writing = w.write_all(received.as_bytes()).is_ok();
    if !writing {
        out.qq_write_failed = true;
    }
    let mut scan = HeaderScan {
        in_header: true,
        line_start: true,
        prefix: Vec::new(),
        capture: from_check.map(|_| Vec::new()),
        overflow: false,
    };
    let mut cr_pending = false;
    let mut chunk = Vec::with_capacity(64 * 1024);
    let (mut size, mut last) = first;
    loop {
        let total = size;
        while size > 0 {
            if conn.buffered().is_empty() {
                match conn.fill() {
                    Ok(0) => {
                        out.eof = true;
                        return Err(refuse());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        out.io_error = Some(e.kind());
                        return Err(refuse());
                    }
                }
            }
            let k = (conn.buffered().len() as u64).min(size) as usize;
            chunk.clear();
            for &b in &conn.buffered()[..k] {
                if cr_pending {
                    cr_pending = false;
                    if b != b'\n' {
                        out.bare_cr_chunk = true;
                    }
                }
                match b {
                    b'\r' => cr_pending = true,
                    _ => chunk.push(b),
                }
            }
            conn.consume(k);
            size -= k as u64;
            scan.feed(&chunk, &mut out.hops);
            out.bytes += chunk.len() as u64;
            if databytes > 0 && out.bytes > databytes {
                out.too_big = true;
                writing = false;
            }
            if out.bare_cr_chunk {
                writing = false;
            }
            if writing && w.write_all(&chunk).is_err() {
                out.qq_write_failed = true;
                writing = false;
            }
        }
        if last {
            break;
        }
        conn.send(&format!("250 2.0.0 {total} octets received"));
        // The next command: BDAT goes on, NOOP is answered, anything else aborts.
        loop {
            let line = match conn.read_line(MAX_LINE) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    conn.send("500 5.5.2 line too long (#5.5.2)");
                    continue;
                }
                Ok(Line::Eof) => {
                    out.eof = true;
                    return Err(refuse());
                }
                Err(e) => {
                    out.io_error = Some(e.kind());
                    return Err(refuse());
                }
            };
            let text = String::from_utf8_lossy(&line);
            let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
            if verb.eq_ignore_ascii_case("BDAT") {
                match parse_bdat(arg.trim_start_matches(' ')) {
                    Some((s, l)) => {
                        (size, last) = (s, l);
                        break;
                    }
                    None => {
                        out.bad_bdat = true;
                        return Err(refuse());
                    }
                }
            } else if verb.eq_ignore_ascii_case("NOOP") {
                conn.send("250 2.0.0 ok");
            } else {
                out.interrupted = Some(line);
                return Err(refuse());
            }
        }
    }
    if cr_pending {
        out.bare_cr_chunk = true;
    }
    if let (Some(h), Some(check)) = (&scan.capture, from_check) {
        out.from_refused = scan.overflow || !from_ok(h, check);
    }
    if out.too_big
        || out.hops >= MAX_HOPS
        || out.from_refused
        || out.qq_write_failed
        || out.bare_cr_chunk
    {
        return Err(refuse());
    }
    Ok(())
}

/// Every address in the From: field(s) of `header` passes `check` (no From: passes).
fn from_ok(header: &[u8], check: &dyn Fn(&str) -> bool) -> bool {
    let Some(msg) = mail_parser::MessageParser::new().parse_headers(header) else {
        return true;
    };
    let mut ok = true;
    for h in msg.headers() {
        if !matches!(h.name, mail_parser::HeaderName::From) {
            continue;
        }
        match h.value.as_address() {
            Some(list) => {
                for a in list.iter() {
                    match a.address() {
                        Some(addr) => ok &= check(addr),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_header_check() {
        let only_joe = |a: &str| a.eq_ignore_ascii_case("joe@example.test");
        assert!(from_ok(
            b"From: Joe <joe@example.test>\nSubject: x\n\n",
            &only_joe
        ));
        assert!(from_ok(b"Subject: no from\n\n", &only_joe));
        assert!(!from_ok(b"From: Boss <boss@example.test>\n\n", &only_joe));
        assert!(!from_ok(
            b"From: joe@example.test, boss@example.test\n\n",
            &only_joe
        ));
        assert!(!from_ok(
            b"From: joe@example.test\nFrom: boss@example.test\n\n",
            &only_joe
        ));
    }

    #[test]
    fn hop_counting() {
        let mut s = HeaderScan {
            in_header: true,
            line_start: true,
            prefix: Vec::new(),
            capture: None,
            overflow: false,
        };
        let mut hops = 0;
        s.feed(
            b"Received: a\nDelivered-To: b\nX: y\n\nReceived: body\n",
            &mut hops,
        );
        assert_eq!(hops, 2);
    }
}

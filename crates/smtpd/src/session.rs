//! The SMTP session: commands, policy, DATA/BDAT into qmail-queue ([`crate::message`]).
//!
//! Replies come from [`crate::replies`]. Anything the client sent that reaches a log
//! line goes through `qsys::logsafe::text` (one field, no forged lines).

use crate::addr::{self, AddrError, Path};
use crate::auth::{self, SaslError, Verdict};
use crate::config::{Config, Mode};
use crate::data::Bare;
use crate::io::{Conn, Line};
use crate::message::{self, Limits, Outcome, parse_bdat, skip_bytes};
use crate::originator::Refusal;
use crate::policy;
use crate::received::Received;
use crate::replies as reply;
use std::io;
use std::sync::Arc;

/// Longest command line (RFC 5321 says 512; AUTH responses need more).
pub const MAX_LINE: usize = 4096;
/// qmail's hop limit (Received + Delivered-To header lines).
pub const MAX_HOPS: u32 = 100;
/// Syntax errors and unknown commands tolerated before the connection is closed.
pub const MAX_ERRORS: u32 = 20;

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

fn log(msg: &str) {
    qsys::die::warn("qmail-smtpd", &format!("pid {}", std::process::id()), msg);
}

/// Client text as one field of a log line (issue 11 item 4: no forged lines or fields).
fn safe(client_text: &str) -> String {
    qsys::logsafe::text(client_text.as_bytes())
}

/// `message accepted qp Q from IP <sender> to N recipients [auth USER] [helo HELO]`.
fn accepted_log(
    qp: u32,
    ip: &str,
    sender: &str,
    rcpts: usize,
    user: Option<&str>,
    helo: Option<&str>,
) -> String {
    let mut line = format!(
        "message accepted qp {qp} from {ip} <{}> to {rcpts} recipients",
        safe(sender)
    );
    if let Some(u) = user {
        line.push_str(&format!(" auth {}", safe(u)));
    }
    if let Some(h) = helo {
        line.push_str(&format!(" helo {}", safe(h)));
    }
    line
}

/// ` sni NAME` for a log line about a TLS session, empty when the client sent none.
fn sni_field(sni: Option<&str>) -> String {
    sni.map(|n| format!(" sni {}", safe(n))).unwrap_or_default()
}

/// `refused CMD[ <addr>] from IP[ user U]: REPLY[ (detail)]`: the one log line of every
/// refusal of MAIL, RCPT, DATA or BDAT. Client text (addresses, user) is escaped; the
/// reply is ours (a filter's text included), cut to one line of printable characters.
fn refusal_log(
    cmd: &str,
    addr: Option<&str>,
    ip: &str,
    user: Option<&str>,
    reply: &str,
    detail: Option<&str>,
) -> String {
    let mut line = format!("refused {cmd}");
    if let Some(a) = addr {
        line.push_str(&format!(" <{}>", safe(a)));
    }
    line.push_str(&format!(" from {}", safe(ip)));
    if let Some(u) = user {
        line.push_str(&format!(" user {}", safe(u)));
    }
    let first = reply.split(['\r', '\n']).next().unwrap_or("");
    let text: String = first
        .chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    line.push_str(&format!(": {text}"));
    if let Some(d) = detail {
        line.push_str(&format!(" ({d})"));
    }
    line
}

/// What was wrong with a forged or missing originator, for the refusal's log line.
fn originator_detail(r: &Refusal) -> String {
    match r {
        Refusal::NoFrom => "no From:".to_string(),
        Refusal::HeaderTooBig => "header too big to check".to_string(),
        Refusal::Unreadable(f) => format!("unreadable {}", f.name()),
        Refusal::NotYours(f, a) => format!("{} <{}>", f.name(), safe(a)),
        Refusal::DisplayName(f, n) => format!("{} name {}", f.name(), safe(n)),
    }
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

    /// Refuse `cmd` with `reply`, logging it ([`refusal_log`]).
    fn refuse(&mut self, cmd: &str, addr: Option<&str>, reply: &str, detail: Option<&str>) {
        log(&refusal_log(
            cmd,
            addr,
            &self.cfg.remote_ip,
            self.user.as_deref(),
            reply,
            detail,
        ));
        self.send(reply);
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

    /// ` sni NAME` (escaped) when the client sent a TLS server name, else empty.
    pub fn tls_sni_field(&self) -> String {
        sni_field(self.conn.tls_sni().as_deref())
    }

    /// STARTTLS can be offered: a certificate is installed and this user can read it
    /// (and the separate key). One that cannot be read is logged once, naming the file,
    /// the user and the fix, and not offered: advertising it would only end in 454.
    fn tls_offered(&mut self) -> bool {
        match &self.tls {
            TlsSource::None => false,
            TlsSource::Ready(_) => true,
            TlsSource::Dir(d) => match tls::readable(d) {
                Ok(installed) => installed,
                Err(e) => {
                    log(&format!("TLS not offered: {e}"));
                    self.tls = TlsSource::None;
                    false
                }
            },
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
        let g = reply::banner(&self.cfg.greeting);
        self.send(&g);
        let end = loop {
            let line = match self.conn.read_line(MAX_LINE) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    self.send(reply::LINE_TOO_LONG);
                    if self.error() || self.closing {
                        break End::Dropped;
                    }
                    continue;
                }
                Ok(Line::Eof) => break End::Dropped,
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        self.send(reply::TIMEOUT);
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
                        self.send(reply::TIMEOUT);
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
                self.send(reply::TOO_MANY_ERRORS);
            }
            self.closing = true;
            return true;
        }
        false
    }

    fn command(&mut self, line: &[u8]) -> io::Result<Option<End>> {
        let Ok(line) = std::str::from_utf8(line) else {
            self.send(reply::INVALID_CHARACTERS);
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
                self.send(reply::FLUSHED);
            }
            "NOOP" => self.send(reply::OK),
            "VRFY" => self.send(reply::VRFY),
            "HELP" => self.send(reply::HELP),
            "QUIT" => {
                let g = reply::quit(&self.cfg.greeting);
                self.send(&g);
                return Ok(Some(End::Quit));
            }
            "STARTTLS" => return self.starttls(arg),
            "AUTH" => return self.auth(arg),
            _ => {
                self.send(reply::UNIMPLEMENTED);
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
                reply::EHLO_SYNTAX
            } else {
                reply::HELO_SYNTAX
            });
            return;
        }
        self.reset();
        self.helo = Some(arg.to_string());
        self.esmtp = esmtp;
        if !esmtp {
            let g = reply::helo(&self.cfg.greeting);
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
            self.send(reply::NESTED_MAIL);
            return Ok(());
        }
        if self.tls_missing() {
            self.refuse("MAIL", None, reply::STARTTLS_FIRST, Some("tlsrequired"));
            return Ok(());
        }
        // Submission: AUTH, unless tcprules trust the client (RELAYCLIENT, e.g. webmail).
        if self.cfg.mode != Mode::Mx && self.user.is_none() && self.cfg.relayclient.is_none() {
            self.refuse("MAIL", None, reply::AUTH_REQUIRED, None);
            return Ok(());
        }
        let (path, rest) = match addr::split_command(arg, "FROM") {
            Ok(x) => x,
            Err(e) => return self.addr_error(e),
        };
        let params = match addr::mail_params(rest) {
            Ok(p) => p,
            Err(_) => {
                self.send(reply::PARAMETER_SYNTAX);
                self.error();
                return Ok(());
            }
        };
        if let Some((reply, detail)) = self.client_rate(limits::ClientEvent::Message) {
            let reply = reply.unwrap_or_else(|| reply::RATE_UNCHECKABLE.to_string());
            self.refuse("MAIL", Some(&path.addr), &reply, Some(&detail));
            return Ok(());
        }
        if let Some(size) = params.size
            && self.cfg.databytes > 0
            && size > self.cfg.databytes
        {
            let detail = format!("SIZE={size} over databytes {}", self.cfg.databytes);
            self.refuse("MAIL", Some(&path.addr), reply::TOO_BIG, Some(&detail));
            return Ok(());
        }
        if path.source_route && !path.addr.is_empty() && !path.addr.contains('@') {
            return self.addr_error(AddrError::Syntax);
        }
        if let Some(user) = self.user.clone() {
            if !policy::sender_allowed(&self.cfg, &user, &path.addr) {
                self.refuse(
                    "MAIL",
                    Some(&path.addr),
                    reply::SENDER_NOT_YOURS,
                    Some("sendermap"),
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
                        let detail = format!("ratelimit: {n} recipients this hour");
                        self.refuse(
                            "MAIL",
                            Some(&path.addr),
                            reply::RATE_EXCEEDED,
                            Some(&detail),
                        );
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let detail = format!("unable to read the rate counter: {e}");
                        self.refuse(
                            "MAIL",
                            Some(&path.addr),
                            reply::RATE_UNCHECKABLE,
                            Some(&detail),
                        );
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
        self.send(reply::MAIL_OK);
        Ok(())
    }

    fn addr_error(&mut self, e: AddrError) -> io::Result<()> {
        match e {
            AddrError::Syntax => self.send(reply::ADDRESS_SYNTAX),
            AddrError::Unacceptable => self.send(reply::ADDRESS_UNACCEPTABLE),
        }
        self.error();
        Ok(())
    }

    fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        let Some(mail) = &self.mail else {
            self.send(reply::MAIL_FIRST);
            return Ok(());
        };
        let badmailfrom = mail.badmailfrom;
        let (mut path, rest) = match addr::split_command(arg, "TO") {
            Ok(x) => x,
            Err(e) => return self.addr_error(e),
        };
        if !rest.is_empty() {
            self.send(reply::PARAMETER_SYNTAX);
            self.error();
            return Ok(());
        }
        if path.addr.is_empty() {
            return self.addr_error(AddrError::Syntax);
        }
        if let Some((reply, detail)) = self.client_rate(limits::ClientEvent::Recipient) {
            let reply = reply.unwrap_or_else(|| reply::RATE_UNCHECKABLE.to_string());
            self.refuse("RCPT", Some(&path.addr), &reply, Some(&detail));
            return Ok(());
        }
        if badmailfrom {
            let detail = format!("sender <{}> in badmailfrom", safe(&mail.sender));
            self.refuse("RCPT", Some(&path.addr), reply::BADMAILFROM, Some(&detail));
            return Ok(());
        }
        if self.rcpts.len() >= self.cfg.maxrcpt {
            self.refuse(
                "RCPT",
                Some(&path.addr),
                reply::TOO_MANY_RECIPIENTS,
                Some("maxrcpt"),
            );
            return Ok(());
        }
        if let Some(a) = policy::rewrite_literal(&path.addr, &self.cfg) {
            path.addr = a;
        }
        if policy::listed(&self.cfg.badrcptto, &path.addr) {
            self.refuse("RCPT", Some(&path.addr), reply::BADRCPTTO, None);
            return Ok(());
        }
        if let Some((reply, detail)) = self.reserve_recipient() {
            self.refuse("RCPT", Some(&path.addr), reply, Some(&detail));
            return Ok(());
        }
        if self.relay_allowed() {
            let mut a = path.addr;
            if let Some(rc) = &self.cfg.relayclient {
                a.push_str(rc);
            }
            self.rcpts.push(a);
            self.send(reply::RCPT_OK);
            return Ok(());
        }
        if let Some(reply) = self.rcpt_refusal(&path)? {
            self.refuse("RCPT", Some(&path.addr), reply, None);
            return Ok(());
        }
        self.rcpts.push(path.addr);
        self.send(reply::RCPT_OK);
        Ok(())
    }

    /// An authenticated user's recipient counts against `control/ratelimit` here, when
    /// accepted: checked and counted in one step under the counter's lock, so concurrent
    /// sessions share the limit exactly, and given back when the transaction does not
    /// queue the message (RSET, a refused or failed DATA). The refusal and why, if any.
    fn reserve_recipient(&mut self) -> Option<(&'static str, String)> {
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
            Ok(false) => Some((
                reply::RATE_EXCEEDED,
                format!("ratelimit: {} recipients this hour", self.cfg.ratelimit),
            )),
            Err(e) => Some((
                reply::RATE_UNCHECKABLE,
                format!("unable to update the rate counter: {e}"),
            )),
        }
    }

    /// Count one `event` of this client against its per-client rate (Postfix anvil's
    /// `smtpd_client_*_rate_limit`; [`limits::Counters::client_event`] checks and counts
    /// across concurrent sessions). `None` when it fits; else Postfix's reply (`None`
    /// in its place when the counter could not be used: the caller answers a temporary
    /// failure) and the detail for the log line.
    fn client_rate(&self, event: limits::ClientEvent) -> Option<(Option<String>, String)> {
        let rates = &self.cfg.client_rates;
        let (limit, name, text): (u64, &str, fn(&str) -> String) = match event {
            limits::ClientEvent::Message => {
                (rates.message, "clientmessagerate", reply::too_much_mail)
            }
            limits::ClientEvent::Recipient => (
                rates.recipient,
                "clientrcptrate",
                reply::too_many_recipients_from,
            ),
            limits::ClientEvent::Auth => {
                (rates.auth, "clientauthrate", reply::too_many_auth_commands)
            }
        };
        if limit == 0 {
            return None;
        }
        match self
            .cfg
            .counters()
            .client_event(event, &self.cfg.remote_ip, limit, qsys::now())
        {
            Ok(true) => None,
            Ok(false) => Some((
                Some(text(&self.cfg.client_address())),
                format!("{name}: {limit} per {} s", self.cfg.client_window),
            )),
            Err(e) => Some((
                None,
                format!("unable to update the client rate counter: {e}"),
            )),
        }
    }

    /// The policy for clients that may not relay.
    fn rcpt_refusal(&self, path: &Path) -> io::Result<Option<&'static str>> {
        if path.relay_probe() {
            return Ok(Some(reply::NO_RELAY));
        }
        let ok = match path.domain() {
            Some(d) => policy::rcpthosts_ok(&self.cfg, d)?,
            // qmail: an address without @ is local (qualified with envnoathost).
            None => true,
        };
        if !ok {
            return Ok(Some(reply::NOT_IN_RCPTHOSTS));
        }
        if let Some(ok) = crate::rcptcheck::virtual_accepts(&self.cfg.home, &path.addr)? {
            return Ok((!ok).then_some(reply::NO_MAILBOX));
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
                return Ok(Some(reply::NO_MAILBOX));
            }
        }
        Ok(None)
    }

    fn starttls(&mut self, arg: &str) -> io::Result<Option<End>> {
        if !arg.is_empty() {
            self.send(reply::STARTTLS_SYNTAX);
            return Ok(None);
        }
        if self.conn.is_tls() {
            self.send(reply::TLS_ACTIVE);
            return Ok(None);
        }
        let Some(cfg) = self.tls_config() else {
            self.send(reply::TLS_UNAVAILABLE);
            return Ok(None);
        };
        // Anything pipelined after STARTTLS was sent in plaintext before the handshake:
        // throw it away, never interpret it inside TLS.
        let n = self.conn.discard_buffered();
        if n > 0 {
            log(&format!("discarded {n} bytes pipelined after STARTTLS"));
        }
        self.send(reply::TLS_READY);
        if let Err(e) = self.conn.start_tls(cfg) {
            log(&format!(
                "TLS handshake failed{}: {e}",
                self.tls_sni_field()
            ));
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
            self.send(reply::AUTH_UNAVAILABLE);
            return Ok(None);
        }
        if self.user.is_some() {
            self.send(reply::AUTH_ALREADY);
            return Ok(None);
        }
        if self.mail.is_some() {
            self.send(reply::AUTH_IN_TRANSACTION);
            return Ok(None);
        }
        if self.tls_missing() {
            self.send(reply::STARTTLS_FIRST);
            return Ok(None);
        }
        if let Some((reply, detail)) = self.client_rate(limits::ClientEvent::Auth) {
            let ip = qsys::logsafe::text(self.cfg.remote_ip.as_bytes());
            match reply {
                Some(r) => {
                    log(&format!(
                        "AUTH refused: too many AUTH commands ip={ip} ({detail})"
                    ));
                    self.send(&r);
                }
                None => {
                    log(&format!("AUTH refused ip={ip}: {detail}"));
                    self.send(reply::AUTH_TEMPORARY);
                }
            }
            return Ok(self.error().then_some(End::Dropped));
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().as_bytes().to_vec())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let plaintext = mech == "PLAIN" || mech == "LOGIN";
        let cram = mech == "CRAM-MD5" && self.cfg.cram;
        if !plaintext && !cram {
            self.send(reply::AUTH_UNIMPLEMENTED);
            return Ok(None);
        }
        if plaintext && !self.plaintext_auth_ok() {
            self.send(reply::AUTH_ENCRYPTION_REQUIRED);
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
                    self.send(reply::AUTH_TOO_MANY_FAILURES);
                    return Ok(Some(End::Dropped));
                }
                Ok(_) => {}
                Err(e) => {
                    log(&format!("unable to read the AUTH failure counter: {e}"));
                    self.send(reply::AUTH_TEMPORARY);
                    return Ok(None);
                }
            }
        }
        let stamp = auth::timestamp(&self.cfg.local_host_for_stamp());
        let cred = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => match self.challenge(reply::AUTH_CHALLENGE_EMPTY)? {
                        Some(l) => l,
                        None => return Ok(Some(End::Dropped)),
                    },
                };
                auth::decode_with(resp, |d| auth::plain(d, &stamp))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => i,
                    None => match self.challenge(reply::AUTH_USERNAME_PROMPT)? {
                        Some(l) => l,
                        None => return Ok(Some(End::Dropped)),
                    },
                };
                match auth::decode(&user) {
                    Ok(u) => match self.challenge(reply::AUTH_PASSWORD_PROMPT)? {
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
                self.send(reply::AUTH_CANCELED);
                return Ok(None);
            }
            Err(SaslError::Malformed) => {
                self.send(reply::AUTH_MALFORMED);
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
                self.send(reply::AUTH_OK);
            }
            Verdict::Temporary => {
                self.settle_auth(hold, None);
                self.send(reply::AUTH_TEMPORARY);
            }
            Verdict::Rejected => {
                // the failure was counted by the reservation: keep it
                drop(hold);
                log(&format!("auth failed ip={ip} mech={mech} user={safe_user}"));
                self.conn.flush()?;
                std::thread::sleep(std::time::Duration::from_secs(self.cfg.authfaildelay));
                self.send(reply::AUTH_FAILED);
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
        let ip = qsys::logsafe::text(self.cfg.remote_ip.as_bytes());
        let login_limits = limits::LoginLimits {
            per_address: self.cfg.authfaillimit,
            per_account: self.cfg.authfailaccountlimit,
        };
        match self.cfg.counters().reserve_login(
            &self.cfg.remote_ip,
            account,
            login_limits,
            qsys::now(),
        ) {
            Ok(Ok(hold)) => Some(Ok(hold)),
            Ok(Err(limits::Kind::AuthFailIp)) => {
                log(&format!(
                    "AUTH refused: too many failures for the address in the last hour ip={ip} user={safe_user}"
                ));
                self.send(reply::AUTH_TOO_MANY_FAILURES);
                None
            }
            Ok(Err(_)) => {
                log(&format!(
                    "AUTH refused: too many failures for the account in the last hour ip={ip} user={safe_user}"
                ));
                self.send(reply::AUTH_ACCOUNT_LOCKED);
                Some(Err(()))
            }
            Err(e) => {
                log(&format!("unable to update the AUTH failure counter: {e}"));
                self.send(reply::AUTH_TEMPORARY);
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
            && let Err(e) =
                self.cfg
                    .counters()
                    .record_login(&self.cfg.remote_ip, account, qsys::now())
        {
            log(&format!("unable to record the login: {e}"));
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
            Some(reply::MAIL_FIRST)
        } else if self.rcpts.is_empty() {
            Some(reply::RCPT_FIRST)
        } else {
            None
        }
    }

    /// `BDAT size [LAST]` (RFC 3030 CHUNKING). The chunk is read whatever happens, so
    /// that the session stays in step; a size that cannot be read ends the session.
    fn bdat(&mut self, arg: &str) -> io::Result<Option<End>> {
        let Some(chunk) = parse_bdat(arg) else {
            self.send(reply::BDAT_SYNTAX);
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
        let cfg = &self.cfg;
        let user = self.user.as_deref();
        let check = |a: &str| user.is_some_and(|u| policy::sender_allowed(cfg, u, a));
        let limits = Limits {
            received: &received,
            databytes: cfg.databytes,
            originator: user.is_some().then_some(&check as &dyn Fn(&str) -> bool),
        };
        // 354 before the queue is reached: the client sends its message while the
        // connection to qmail-queued (or qmail-queue's start) is made, instead of after
        // (about 0.1 ms of each message's time at one session); a queue that cannot be
        // reached still answers 451, at the end of the data
        if first_chunk.is_none() {
            self.conn.send(reply::GO_AHEAD);
            // out now, not at the next read (a failure shows there)
            let _ = self.conn.flush();
        }
        let conn = &mut self.conn;
        let helo = self.helo.as_deref();
        let (outcome, result) = message::into_queue(
            &cfg.home,
            &cfg.queue_program,
            user,
            helo,
            &sender,
            &rcpts,
            |w| match first_chunk {
                None => message::read_data(conn, w, &limits),
                Some(chunk) => message::read_chunks(conn, w, &limits, chunk),
            },
        );
        let cmd = if first_chunk.is_some() {
            "BDAT"
        } else {
            "DATA"
        };
        let Some(outcome) = outcome else {
            let in_step = match first_chunk {
                Some((size, _)) => skip_bytes(&mut self.conn, size)?,
                // told to go ahead: the message is read and thrown away
                None => matches!(
                    message::read_data(&mut self.conn, &mut io::sink(), &limits),
                    Outcome::Complete
                        | Outcome::QueueWriteFailed
                        | Outcome::TooBig
                        | Outcome::Looping
                        | Outcome::Originator(_)
                ),
            };
            if !in_step {
                log("unable to run qmail-queue");
                return Ok(Some(End::Dropped));
            }
            self.refuse(
                cmd,
                None,
                reply::QQT_FAILURE,
                Some("unable to run qmail-queue"),
            );
            return Ok(None);
        };
        match outcome {
            Outcome::Complete | Outcome::QueueWriteFailed => {}
            Outcome::ReadFailed(e) => return Err(e),
            Outcome::ClientGone => {
                log("client went away during DATA; nothing queued");
                return Ok(Some(End::Dropped));
            }
            Outcome::BadBdat => {
                self.send(reply::BDAT_SYNTAX);
                return Ok(Some(End::Dropped));
            }
            Outcome::Interrupted(line) => {
                // Another command in the middle of a BDAT transaction aborts it.
                log("BDAT transaction aborted by another command; nothing queued");
                return self.command(&line);
            }
            Outcome::BareLineEnd(b) => {
                let what = match b {
                    Bare::Lf => "bare LF",
                    Bare::Cr => "bare CR",
                };
                let detail = format!("{what} in DATA; nothing queued, connection closed");
                self.refuse(cmd, None, reply::BARE_LINE_END, Some(&detail));
                return Ok(Some(End::Dropped));
            }
            Outcome::BareCrInChunk => {
                self.refuse(cmd, None, reply::BARE_CR_IN_CHUNK, None);
                return Ok(None);
            }
            Outcome::TooBig => {
                let detail = format!("over databytes {}", self.cfg.databytes);
                self.refuse(cmd, None, reply::TOO_BIG, Some(&detail));
                return Ok(None);
            }
            Outcome::Looping => {
                self.refuse(cmd, None, reply::LOOPING, None);
                return Ok(None);
            }
            Outcome::Originator(r) => {
                let detail = originator_detail(&r);
                self.refuse(cmd, None, &reply::originator_refused(&r), Some(&detail));
                return Ok(None);
            }
        }
        let write_failed = matches!(outcome, Outcome::QueueWriteFailed);
        match result {
            Ok(qp) => {
                // the recipients were counted against the rate limit at RCPT
                if let Some(held) = rate_held {
                    held.keep();
                }
                let user = self.user.clone();
                log(&accepted_log(
                    qp,
                    &self.cfg.remote_ip,
                    &sender,
                    rcpts.len(),
                    user.as_deref(),
                    self.helo.as_deref(),
                ));
                let r = reply::accepted(qsys::now(), qp);
                self.send(&r);
            }
            Err(f) => {
                let permanent = f.permanent && !write_failed;
                let (r, detail) = if f.custom {
                    (reply::filter_refused(permanent, &f.text), "filter")
                } else {
                    (reply::queue_failed(permanent, &f.text), "qmail-queue")
                };
                self.refuse(cmd, None, &r, Some(detail));
            }
        }
        Ok(None)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_in_log_lines_stays_one_field_of_one_line() {
        let forged = "a\r\nqmail-smtpd: pid 1: AUTH PLAIN user root from 10.9.9.9";
        let one_line = |l: &str| !l.contains(['\r', '\n', '\0']);
        let l = sni_field(Some(forged));
        assert!(one_line(&l), "{l}");
        assert!(l.starts_with(" sni a\\015\\012qmail-smtpd:\\040pid"));
        assert_eq!(sni_field(None), "");
        let long = "x".repeat(5000);
        let l = accepted_log(7, "10.0.0.1", forged, 1, Some("joe\0"), Some(&long));
        assert!(one_line(&l), "{l}");
        assert_eq!(l.split(' ').count(), 14, "{l}");
        assert!(l.ends_with(&format!("helo {}...", "x".repeat(qsys::logsafe::MAX))));
        let d = originator_detail(&Refusal::NotYours(
            crate::originator::Field::From,
            "b c".into(),
        ));
        let l = refusal_log(
            "DATA",
            None,
            "10.0.0.1",
            Some(forged),
            "553 5.7.1 no",
            Some(&d),
        );
        assert!(one_line(&l) && l.ends_with("From: <b\\040c>)"), "{l}");
        assert_eq!(l.split(' ').count(), 11, "{l}");
    }

    #[test]
    fn refusal_lines_are_uniform() {
        let l = refusal_log(
            "RCPT",
            Some("joe\r\nx@example.test"),
            "192.0.2.1",
            None,
            reply::NO_MAILBOX,
            None,
        );
        assert_eq!(
            l,
            "refused RCPT <joe\\015\\012x@example.test> from 192.0.2.1: 550 5.1.1 sorry, no \
             mailbox here by that name (#5.1.1)"
        );
        let l = refusal_log(
            "DATA",
            None,
            "192.0.2.1",
            Some("ann"),
            "554 5.7.1 bad\r\n\x1b[2Jthing",
            Some("filter"),
        );
        assert_eq!(
            l,
            "refused DATA from 192.0.2.1 user ann: 554 5.7.1 bad (filter)"
        );
    }
}

//! qmail-popup: the POP3 authorization state, split between two processes.
//!
//! ```text
//! tcpserver (root) -> qmail-popup  P (root): keeps root only to run checkpassword
//!                       |  fork
//!                       +- C (qmaild:nofiles): speaks POP3 (and TLS) with the client
//!                              -- one record per login attempt -->  P
//!                              <-- one verdict byte per attempt --  P
//!                     P: checkpassword with the record on fd 3
//!                        -> (setuid user) qmail-pop3d
//! ```
//!
//! C never runs as root and never sees a hash; P never parses client input (it reads
//! length-prefixed records of at most 512 bytes from C). P runs checkpassword through
//! [`auth::client`] (the one copy qmail-smtpd uses too) and puts its own APOP timestamp
//! into every record: a compromised C cannot choose the timestamp, so it cannot replay
//! an APOP digest sniffed from another session. Without TLS, checkpassword and
//! qmail-pop3d get the client's descriptors directly; with TLS (STLS or `--pop3s`) they
//! get one end of a socketpair and C relays between it and the TLS session.
//!
//! Verdicts (from [`auth::client::Exit`]): `F` bad login (checkpassword exit 1 or 2),
//! `T` temporary (111), `C` crashed, `D` the session ran and ended (anything else). Without TLS, C cannot tell
//! a qmail-pop3d that failed with exit 1 from a refused password; it then answers
//! `-ERR authorization failed` after qmail-pop3d's own message, as qmail did.
//!
//! Policy (control files, overridable per client by tcprules environment):
//! - `pop3plaintext` / `$POP3PLAINTEXT`: `1` allows USER/PASS and AUTH PLAIN without
//!   TLS, `0` refuses them (use STLS or port 995). Default: refused when TLS is
//!   configured (control/servercert.pem), allowed when it is not. APOP is always allowed.
//! - `pop3authdelay` (seconds, default 2): pause before each failure answer.
//! - Numbers and flags go through control's typed reader: a malformed value is logged
//!   (file, line, what is allowed) and its default used (`pop3plaintext`: 0, the safe
//!   value), one out of range the nearest allowed (control/README).
//! - `pop3authmax` (default 3): failures before the connection is closed.
//! - `timeoutpop3d` (seconds, default 1200): every wait for the client.
//! - `authfaillimit` (default 10, 0 = none): failed logins per hour from one IPv4
//!   address or IPv6 /64, counted together with qmail-smtpd's failed AUTHs (the `limits`
//!   counters in `HOME/smtpd/`, which must be writable by qmaild); beyond it every login
//!   from that address is refused for the rest of the hour.
//! - `authfailaccountlimit` (default 20, 0 = none): failed logins per hour for one
//!   account from anywhere (SMTP and POP3 together); beyond it logins to that account
//!   are refused as a temporary failure, before checkpassword runs.
//! - Each login counts as a failure of the address and of the account before it is
//!   checked (under the counters' locks, so parallel sessions never check more than the
//!   limit) and is given back when it works or cannot be checked. Without TLS, C learns
//!   of a success only when the POP3 session ends, so a plain session holds one failure
//!   of its address and account until then. An address that logged in to an account
//!   within the hour is not refused by that account's limit (it still counts).
//! - A counter that cannot be read or written refuses the login (fail closed).
//! - No `TCPREMOTEIP` (or an empty one) is the address `unknown`.
//!
//! Each failure is logged as one line, `qmail-popup: pid N: auth failed ip=IP
//! mech=USER|APOP|PLAIN user=NAME`, NAME escaped with `qsys::logsafe::text` and last;
//! each login that worked as `qmail-popup: pid N: login ok ip=IP user=NAME`, written by
//! P when checkpassword's session ends (it execs qmail-pop3d, so exit 0 comes after the
//! session; a pop3d that ends with another code than 1 or 2 counts as a login too).

use crate::line::{Line, read_line, split_command};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Longest command line in the authorization state.
pub const MAX_LINE: usize = 2048;

/// Settings of one connection.
pub struct Policy {
    pub hostname: String,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Implicit TLS from the first byte (port 995).
    pub pop3s: bool,
    /// Plaintext USER/PASS/AUTH PLAIN allowed without TLS.
    pub plaintext: bool,
    pub delay: Duration,
    pub max_failures: u32,
    pub timeout: Duration,
    /// Failed logins per hour from one address (SMTP AUTH and POP3 together) before
    /// logins from it are refused; 0 = no limit.
    pub fail_limit: u64,
    /// Failed logins per hour for one account before logins to it are refused; 0 = none.
    pub account_fail_limit: u64,
    /// Where qmail-smtpd's counters live (`HOME/smtpd`).
    pub state_dir: std::path::PathBuf,
}

impl Policy {
    /// Read the controls of installation `home` (and the TLS configuration).
    pub fn load(home: &std::path::Path, hostname: &str, pop3s: bool) -> io::Result<Policy> {
        let ctl = control::Controls::new(home);
        let tls = tls::server_config(ctl.dir())?;
        let plaintext = match std::env::var("POP3PLAINTEXT") {
            Ok(v) => v != "0",
            Err(_) => number(&ctl.number_or("pop3plaintext", tls.is_none() as u64)?) != 0,
        };
        Ok(Policy {
            hostname: hostname.to_string(),
            tls,
            pop3s,
            plaintext,
            delay: Duration::from_secs(number(&ctl.number("pop3authdelay")?)),
            max_failures: number(&ctl.number("pop3authmax")?) as u32,
            timeout: Duration::from_secs(number(&ctl.number("timeoutpop3d")?)),
            fail_limit: number(&ctl.number("authfaillimit")?),
            account_fail_limit: number(&ctl.number("authfailaccountlimit")?),
            state_dir: home.join("smtpd"),
        })
    }
}

/// The value in force of a checked control, its problem logged (`qmail-popup: warning:
/// control/NAME line 1: ...`): a malformed value gets the default (`pop3plaintext`: 0,
/// no plain-text passwords), one out of range the nearest allowed.
fn number(c: &control::known::Checked) -> u64 {
    c.warn("qmail-popup");
    c.value
}

/// The client connection, plain or TLS, over fd 0/1.
pub enum Transport {
    Plain(tls::FdIo),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, tls::FdIo>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(f) => f.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(f) => f.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(f) => f.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The descriptors C uses to talk to P.
pub struct Link {
    /// Records to P.
    pub creds: OwnedFd,
    /// Verdict bytes from P.
    pub verdict: OwnedFd,
    /// C's end of the socketpair checkpassword talks through when TLS is on.
    pub relay: UnixStream,
}

/// A verdict byte from P.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Bad,
    Temp,
    Crashed,
    Done,
}

impl Verdict {
    pub fn byte(self) -> u8 {
        match self {
            Verdict::Bad => b'F',
            Verdict::Temp => b'T',
            Verdict::Crashed => b'C',
            Verdict::Done => b'D',
        }
    }
    pub fn from_byte(b: u8) -> Verdict {
        match b {
            b'F' => Verdict::Bad,
            b'T' => Verdict::Temp,
            b'C' => Verdict::Crashed,
            _ => Verdict::Done,
        }
    }
    /// The verdict for checkpassword's exit.
    pub fn from_exit(e: auth::client::Exit) -> Verdict {
        use auth::client::Exit;
        match e {
            Exit::Refused | Exit::Misuse => Verdict::Bad,
            Exit::Temporary | Exit::TimedOut => Verdict::Temp,
            Exit::Accepted | Exit::Other(_) => Verdict::Done,
            Exit::Crashed => Verdict::Crashed,
        }
    }
}

/// Write one record, framed as two length bytes (big-endian), one transport byte (`T`
/// when the client talks TLS, so checkpassword must use the relay socket, else `P`)
/// and the record.
pub fn send_record(fd: &OwnedFd, tls: bool, record: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(record.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut v = Vec::with_capacity(record.len() + 3);
    v.extend_from_slice(&len.to_be_bytes());
    v.push(if tls { b'T' } else { b'P' });
    v.extend_from_slice(record);
    let mut f = std::fs::File::from(fd.try_clone()?);
    let r = f.write_all(&v);
    auth::crypt::wipe(&mut v);
    r
}

/// Read one framed record (P's side): (TLS transport, record); `Ok(None)` at EOF;
/// records longer than [`auth::MAX_RECORD`] are an error.
pub fn recv_record(r: &mut impl Read) -> io::Result<Option<(bool, Vec<u8>)>> {
    let mut len = [0u8; 3];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u16::from_be_bytes([len[0], len[1]]) as usize;
    if n > auth::MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record too long",
        ));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(Some((len[2] == b'T', v)))
}

fn poll_in(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    loop {
        let mut p: Vec<PollFd> = fds
            .iter()
            .map(|f| PollFd::new(*f, PollFlags::POLLIN))
            .collect();
        match nix::poll::poll(&mut p, ms) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
            Ok(_) => {
                return Ok(p
                    .iter()
                    .map(|x| x.revents().is_some_and(|r| !r.is_empty()))
                    .collect());
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn log(msg: &str) {
    qsys::die::warn("qmail-popup", &format!("pid {}", std::process::id()), msg);
}

/// What an authentication attempt led to.
enum Attempt {
    /// Keep talking (after a failure answer).
    Again,
    /// The connection is over; exit with this code.
    Exit(i32),
}

/// C: the POP3 dialogue until a login succeeds (or the client leaves).
pub struct Child {
    policy: Policy,
    link: Link,
    timestamp: String,
    failures: u32,
    remote: String,
    /// The failure counted for the login being checked, given back if it works.
    held: Option<limits::Hold>,
}

impl Child {
    pub fn new(policy: Policy, link: Link, timestamp: String) -> Child {
        let remote = std::env::var("TCPREMOTEIP")
            .ok()
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Child {
            policy,
            link,
            timestamp,
            failures: 0,
            remote,
            held: None,
        }
    }

    fn plain_io(&self) -> tls::FdIo {
        tls::FdIo::new(Some(self.policy.timeout))
    }

    fn start_tls(&self) -> io::Result<Transport> {
        let cfg = self
            .policy
            .tls
            .clone()
            .ok_or_else(|| io::Error::other("no TLS configuration"))?;
        let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, self.plain_io());
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Transport::Tls(Box::new(s)))
    }

    /// Run the dialogue; returns the exit code.
    pub fn run(mut self) -> i32 {
        let transport = if self.policy.pop3s {
            match self.start_tls() {
                Ok(t) => t,
                Err(e) => {
                    qsys::die::warn(
                        "qmail-popup",
                        "warning",
                        &format!("TLS handshake failed: {e}"),
                    );
                    return 1;
                }
            }
        } else {
            Transport::Plain(self.plain_io())
        };
        let mut r = BufReader::with_capacity(4096, transport);
        let greeting = format!("+OK {}\r\n", self.timestamp);
        if write_reply(&mut r, greeting.as_bytes()).is_err() {
            return 1;
        }
        let mut user: Option<Vec<u8>> = None;
        let mut line: Vec<u8> = Vec::new();
        loop {
            // the previous line may have held a password
            auth::crypt::wipe(&mut line);
            line = match read_line(&mut r, MAX_LINE) {
                Ok(Line::Text(l)) => l,
                Ok(Line::TooLong) => {
                    if write_reply(&mut r, b"-ERR line too long\r\n").is_err() {
                        return 1;
                    }
                    continue;
                }
                Ok(Line::Eof) => return 0,
                Err(_) => return 1,
            };
            let in_tls = matches!(r.get_ref(), Transport::Tls(_));
            let plain_ok = in_tls || self.policy.plaintext;
            let (verb, arg) = split_command(&line);
            let reply: Vec<u8> = match verb.as_str() {
                "QUIT" => {
                    let _ = write_reply(&mut r, b"+OK \r\n");
                    if let Transport::Tls(s) = r.get_mut() {
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                    return 0;
                }
                "NOOP" => b"+OK \r\n".to_vec(),
                "CAPA" => {
                    let mut c = String::from("+OK capability list follows\r\nTOP\r\nUIDL\r\n");
                    if plain_ok {
                        c.push_str("USER\r\nSASL PLAIN\r\n");
                    }
                    if !in_tls && self.policy.tls.is_some() {
                        c.push_str("STLS\r\n");
                    }
                    c.push_str(".\r\n");
                    c.into_bytes()
                }
                "STLS" => {
                    if in_tls || self.policy.tls.is_none() {
                        b"-ERR STLS not available\r\n".to_vec()
                    } else {
                        // anything pipelined after STLS is dropped (RFC 2595, CVE-2011-0411)
                        if write_reply(&mut r, b"+OK begin TLS negotiation\r\n").is_err() {
                            return 1;
                        }
                        match self.start_tls() {
                            Ok(t) => {
                                r = BufReader::with_capacity(4096, t);
                                user = None;
                                continue;
                            }
                            Err(e) => {
                                qsys::die::warn(
                                    "qmail-popup",
                                    "warning",
                                    &format!("TLS handshake failed: {e}"),
                                );
                                return 1;
                            }
                        }
                    }
                }
                "USER" => {
                    if !plain_ok {
                        b"-ERR plaintext logins are not allowed here; use STLS\r\n".to_vec()
                    } else if arg.is_empty() {
                        b"-ERR syntax error\r\n".to_vec()
                    } else {
                        user = Some(arg.to_vec());
                        b"+OK \r\n".to_vec()
                    }
                }
                "PASS" => match user.take() {
                    None => b"-ERR USER first\r\n".to_vec(),
                    Some(_) if !plain_ok => {
                        b"-ERR plaintext logins are not allowed here; use STLS\r\n".to_vec()
                    }
                    Some(u) => {
                        let mut pass = arg.to_vec();
                        let a = self.attempt(&mut r, "USER", &u, &pass);
                        auth::crypt::wipe(&mut pass);
                        match a {
                            Attempt::Again => continue,
                            Attempt::Exit(c) => return c,
                        }
                    }
                },
                "APOP" => {
                    let mut it = arg.splitn(2, |&b| b == b' ');
                    let (name, digest) =
                        (it.next().unwrap_or_default(), it.next().unwrap_or_default());
                    if name.is_empty() || digest.is_empty() {
                        b"-ERR syntax error\r\n".to_vec()
                    } else {
                        let (name, digest) = (name.to_vec(), digest.to_vec());
                        match self.attempt(&mut r, "APOP", &name, &digest) {
                            Attempt::Again => continue,
                            Attempt::Exit(c) => return c,
                        }
                    }
                }
                "AUTH" => {
                    let (mech, initial) = split_command(arg);
                    if mech.is_empty() {
                        if plain_ok {
                            b"+OK \r\nPLAIN\r\n.\r\n".to_vec()
                        } else {
                            b"+OK \r\n.\r\n".to_vec()
                        }
                    } else if mech != "PLAIN" {
                        b"-ERR unrecognized authentication type\r\n".to_vec()
                    } else if !plain_ok {
                        b"-ERR plaintext logins are not allowed here; use STLS\r\n".to_vec()
                    } else {
                        let mut response = if initial.is_empty() {
                            if write_reply(&mut r, b"+ \r\n").is_err() {
                                return 1;
                            }
                            match read_line(&mut r, MAX_LINE) {
                                Ok(Line::Text(l)) => l,
                                Ok(Line::TooLong) => b"!".to_vec(),
                                _ => return 1,
                            }
                        } else {
                            initial.to_vec()
                        };
                        let reply = match decode_plain(&response) {
                            Err(text) => text.as_bytes().to_vec(),
                            Ok((u, mut p)) => {
                                let a = self.attempt(&mut r, "PLAIN", &u, &p);
                                auth::crypt::wipe(&mut p);
                                auth::crypt::wipe(&mut response);
                                match a {
                                    Attempt::Again => continue,
                                    Attempt::Exit(c) => return c,
                                }
                            }
                        };
                        auth::crypt::wipe(&mut response);
                        reply
                    }
                }
                _ => b"-ERR authorization first\r\n".to_vec(),
            };
            if write_reply(&mut r, &reply).is_err() {
                return 1;
            }
        }
    }

    fn counters(&self) -> limits::Counters {
        limits::Counters::new(&self.policy.state_dir)
    }

    /// Count this login as a failure of the address and of the account before it is
    /// checked, under the counters' locks (so parallel sessions cannot check more than
    /// the limits allow), keeping the reservation in `self.held` until the verdict.
    /// An address that logged in to the account within the window is counted but not
    /// refused by the account's limit. The refusal (reply, and whether to close) when a
    /// limit is used up or a counter cannot be used.
    fn reserve_failure(&mut self, user: &[u8]) -> Option<(&'static [u8], bool)> {
        let account = auth::canonical_login(&String::from_utf8_lossy(user));
        let login_limits = limits::LoginLimits {
            per_address: self.policy.fail_limit,
            per_account: self.policy.account_fail_limit,
        };
        let full =
            match self
                .counters()
                .reserve_login(&self.remote, &account, login_limits, qsys::now())
            {
                Ok(Ok(hold)) => {
                    self.held = Some(hold);
                    return None;
                }
                Ok(Err(kind)) => kind,
                Err(e) => {
                    log(&format!("unable to update the failure counter: {e}"));
                    return Some((b"-ERR temporary authorization failure\r\n", true));
                }
            };
        let address = full == limits::Kind::AuthFailIp;
        log(&format!(
            "login refused: too many failures for the {} in the last hour ip={} user={}",
            if address { "address" } else { "account" },
            qsys::logsafe::text(self.remote.as_bytes()),
            qsys::logsafe::text(user),
        ));
        Some(if address {
            (
                b"-ERR too many authentication failures from your address, try later\r\n",
                true,
            )
        } else {
            (
                b"-ERR [IN-USE] too many authentication failures for this account, try later\r\n",
                false,
            )
        })
    }

    /// The login being checked was not a failure (it worked: `ok`, or it could not be
    /// checked): give back its reservation; after a success, remember the address for
    /// the account's limit.
    fn settle(&mut self, user: &[u8], ok: bool) {
        let Some(hold) = self.held.take() else {
            return;
        };
        if let Err(e) = hold.release() {
            log(&format!("unable to update the failure counter: {e}"));
        }
        if ok && self.policy.account_fail_limit > 0 {
            let account = auth::canonical_login(&String::from_utf8_lossy(user));
            if let Err(e) = self
                .counters()
                .record_login(&self.remote, &account, qsys::now())
            {
                log(&format!("unable to record the login: {e}"));
            }
        }
    }

    /// One login attempt: hand the record to P and act on the verdict.
    fn attempt(
        &mut self,
        r: &mut BufReader<Transport>,
        mech: &str,
        user: &[u8],
        pass: &[u8],
    ) -> Attempt {
        if let Some((text, close)) = self.reserve_failure(user) {
            let _ = write_reply(r, text);
            self.failures += 1;
            if close || self.failures >= self.policy.max_failures {
                return Attempt::Exit(1);
            }
            return Attempt::Again;
        }
        let creds = auth::Credentials {
            user: user.to_vec(),
            pass: pass.to_vec(),
            timestamp: self.timestamp.clone().into_bytes(),
        };
        let mut record = creds.encode();
        drop(creds);
        let verdict = if record.len() > auth::MAX_RECORD || user.contains(&0) || pass.contains(&0) {
            Ok(Verdict::Bad)
        } else {
            let tls = matches!(r.get_ref(), Transport::Tls(_));
            send_record(&self.link.creds, tls, &record).and_then(|_| self.await_verdict(r, user))
        };
        auth::crypt::wipe(&mut record);
        let verdict = match verdict {
            Ok(v) => v,
            Err(_) => return Attempt::Exit(1),
        };
        match verdict {
            Verdict::Done => self.settle(user, true),
            Verdict::Temp => self.settle(user, false),
            // a failure or a crash stays counted
            Verdict::Bad | Verdict::Crashed => drop(self.held.take()),
        }
        match verdict {
            Verdict::Done => Attempt::Exit(0),
            Verdict::Crashed => {
                let _ = write_reply(r, b"-ERR aack, child crashed\r\n");
                Attempt::Exit(1)
            }
            Verdict::Bad | Verdict::Temp => {
                self.failures += 1;
                log(&format!(
                    "auth {} ip={} mech={mech} user={}",
                    if verdict == Verdict::Bad {
                        "failed"
                    } else {
                        "temporary failure"
                    },
                    qsys::logsafe::text(self.remote.as_bytes()),
                    qsys::logsafe::text(user),
                ));
                std::thread::sleep(self.policy.delay);
                let text: &[u8] = if verdict == Verdict::Temp {
                    b"-ERR temporary authorization failure\r\n"
                } else {
                    b"-ERR authorization failed\r\n"
                };
                if write_reply(r, text).is_err() {
                    return Attempt::Exit(1);
                }
                if self.failures >= self.policy.max_failures {
                    Attempt::Exit(1)
                } else {
                    Attempt::Again
                }
            }
        }
    }

    /// Wait for P's verdict. With TLS, data from the relay socket first means the
    /// login worked: relay the session, then report `Done`.
    fn await_verdict(&mut self, r: &mut BufReader<Transport>, user: &[u8]) -> io::Result<Verdict> {
        let tls = matches!(r.get_ref(), Transport::Tls(_));
        loop {
            let ready = if tls {
                poll_in(
                    &[self.link.verdict.as_fd(), self.link.relay.as_fd()],
                    Duration::from_secs(86400),
                )?
            } else {
                poll_in(&[self.link.verdict.as_fd()], Duration::from_secs(86400))?
            };
            if tls && ready.get(1) == Some(&true) {
                // qmail-pop3d is talking: the login worked
                self.settle(user, true);
                self.relay(r)?;
                return Ok(Verdict::Done);
            }
            if ready[0] {
                let mut b = [0u8; 1];
                let n = nix::unistd::read(&self.link.verdict, &mut b)?;
                return Ok(if n == 0 {
                    Verdict::Done
                } else {
                    Verdict::from_byte(b[0])
                });
            }
        }
    }

    /// Copy between the TLS session and the relay socket until qmail-pop3d is done.
    fn relay(&mut self, r: &mut BufReader<Transport>) -> io::Result<()> {
        let leftover = r.buffer().to_vec();
        let Transport::Tls(s) = r.get_mut() else {
            return Ok(());
        };
        let relay = &mut self.link.relay;
        if !leftover.is_empty() {
            relay.write_all(&leftover)?;
        }
        let mut buf = vec![0u8; 65536];
        let mut client_open = true;
        // SAFETY: fd 0 stays open for the life of the process.
        let net = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        loop {
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock)?;
            }
            let fds: Vec<std::os::fd::BorrowedFd<'_>> = if client_open {
                vec![relay.as_fd(), self.link.verdict.as_fd(), net]
            } else {
                vec![relay.as_fd(), self.link.verdict.as_fd()]
            };
            let ready = poll_in(&fds, self.policy.timeout)?;
            if ready[1] && !ready[0] {
                // checkpassword's child is gone and everything it wrote has been
                // relayed: end the TLS session
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                return Ok(());
            }
            if ready[0] {
                let n = relay.read(&mut buf)?;
                if n == 0 {
                    s.conn.send_close_notify();
                    while s.conn.wants_write() {
                        s.conn.write_tls(&mut s.sock)?;
                    }
                    return Ok(());
                }
                let mut off = 0;
                while off < n {
                    off += s.conn.writer().write(&buf[off..n])?;
                    while s.conn.wants_write() {
                        s.conn.write_tls(&mut s.sock)?;
                    }
                }
            }
            if client_open && ready.get(2) == Some(&true) {
                if s.conn.read_tls(&mut s.sock)? == 0 {
                    client_open = false;
                    let _ = relay.shutdown(std::net::Shutdown::Write);
                    continue;
                }
                s.conn.process_new_packets().map_err(io::Error::other)?;
                loop {
                    match s.conn.reader().read(&mut buf) {
                        Ok(0) => {
                            client_open = false;
                            let _ = relay.shutdown(std::net::Shutdown::Write);
                            break;
                        }
                        Ok(n) => relay.write_all(&buf[..n])?,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

fn write_reply(r: &mut BufReader<Transport>, text: &[u8]) -> io::Result<()> {
    let t = r.get_mut();
    t.write_all(text)?;
    t.flush()
}

/// Decode an AUTH PLAIN response (RFC 4616): `authzid\0authcid\0passwd`, authzid empty
/// or equal to authcid. The error is the reply line.
pub fn decode_plain(b64: &[u8]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    use base64::Engine;
    if b64 == b"*" {
        return Err("-ERR authentication aborted\r\n");
    }
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "-ERR malformed authentication input\r\n")?;
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    let r = if parts.len() != 3 || parts[1].is_empty() {
        Err("-ERR malformed authentication input\r\n")
    } else if !parts[0].is_empty() && parts[0] != parts[1] {
        Err("-ERR authorization identity not allowed\r\n")
    } else {
        Ok((parts[1].to_vec(), parts[2].to_vec()))
    };
    auth::crypt::wipe(&mut raw);
    r
}

/// `login ok ip=IP user=U`: a login that worked (checkpassword accepted it and the
/// mailbox session ran; P learns it when that session ends). User last, escaped.
fn login_log(ip: &str, user: &[u8]) -> String {
    let ip = if ip.is_empty() { "unknown" } else { ip };
    format!(
        "login ok ip={} user={}",
        qsys::logsafe::text(ip.as_bytes()),
        qsys::logsafe::text(user)
    )
}

/// P: read records from C, run checkpassword for each, answer with verdicts; returns
/// when C is gone (or a session has ended). `subprogram` is checkpassword and its
/// arguments; `relay` is P's end of the socketpair (for TLS sessions); `timestamp` is
/// the APOP timestamp P generated and C greeted with.
///
/// P trusts C no more than the client: it runs checkpassword at most `max_attempts`
/// times, whatever C asks, and with its own `timestamp` in place of C's.
pub fn parent(
    creds: OwnedFd,
    verdict: OwnedFd,
    relay: OwnedFd,
    subprogram: &[std::ffi::OsString],
    max_attempts: u32,
    timestamp: &[u8],
) {
    let mut creds = std::fs::File::from(creds);
    let mut verdict = std::fs::File::from(verdict);
    for _ in 0..max_attempts {
        let (tls, mut record) = match recv_record(&mut creds) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let parsed = auth::Credentials::parse(&record);
        auth::crypt::wipe(&mut record);
        let v = match parsed {
            None => Verdict::Bad,
            Some(mut c) => {
                c.timestamp = timestamp.to_vec();
                let stdio = if tls {
                    auth::client::Stdio01::Socket(&relay)
                } else {
                    auth::client::Stdio01::Inherit
                };
                match auth::client::run(subprogram, &c, stdio, None) {
                    Ok(e) => {
                        let v = Verdict::from_exit(e);
                        if v == Verdict::Done {
                            log(&login_log(
                                &std::env::var("TCPREMOTEIP").unwrap_or_default(),
                                &c.user,
                            ));
                        }
                        v
                    }
                    Err(e) => {
                        log(&format!(
                            "unable to run {}: {e}",
                            subprogram
                                .first()
                                .map(|p| p.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        ));
                        Verdict::Temp
                    }
                }
            }
        };
        let _ = verdict.write_all(&[v.byte()]);
        if v == Verdict::Done || v == Verdict::Crashed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_lines_name_ip_and_user_last() {
        assert_eq!(
            login_log("192.0.2.7", b"joe"),
            "login ok ip=192.0.2.7 user=joe"
        );
        assert_eq!(
            login_log("", b"a b\nc"),
            "login ok ip=unknown user=a\\040b\\012c"
        );
    }

    #[test]
    fn malformed_controls_get_safe_values() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        for (n, v) in [
            ("pop3plaintext", "yes\n"),
            ("pop3authmax", "many\n"),
            ("pop3authdelay", "-1\n"),
            ("timeoutpop3d", "0\n"),
        ] {
            std::fs::write(d.path().join("control").join(n), v).unwrap();
        }
        let p = Policy::load(d.path(), "h", false).unwrap();
        // Without a certificate the default would be 1; a malformed value means 0.
        assert!(!p.plaintext);
        assert_eq!(p.max_failures, 3);
        assert_eq!(p.delay, Duration::from_secs(2));
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.fail_limit, limits::DEFAULT_IP_FAILURES);
    }

    #[test]
    fn plain_decoding() {
        use base64::Engine;
        let e = |s: &[u8]| {
            base64::engine::general_purpose::STANDARD
                .encode(s)
                .into_bytes()
        };
        assert_eq!(
            decode_plain(&e(b"\0tim\0tanstaaftanstaaf")).unwrap(),
            (b"tim".to_vec(), b"tanstaaftanstaaf".to_vec())
        );
        assert!(decode_plain(&e(b"tim\0tim\0pw")).is_ok());
        assert!(decode_plain(&e(b"admin\0tim\0pw")).is_err());
        assert!(decode_plain(&e(b"\0\0pw")).is_err());
        assert!(decode_plain(b"!!").is_err());
        assert!(decode_plain(b"*").is_err());
    }

    /// P hands checkpassword its own timestamp, whatever C put in the record.
    #[test]
    fn parent_uses_its_own_apop_timestamp() {
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("seen");
        let cp = d.path().join("cp");
        std::fs::write(
            &cp,
            format!(
                "#!/bin/sh\nhead -c 512 <&3 | tr '\\0' '|' > {}\nexit 1\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (cred_r, cred_w) = nix::unistd::pipe().unwrap();
        let (verd_r, verd_w) = nix::unistd::pipe().unwrap();
        let (_relay_c, relay_p) = UnixStream::pair().unwrap();
        send_record(&cred_w, false, b"joe\0digest\0<sniffed.1@other>\0").unwrap();
        drop(cred_w);
        parent(
            cred_r,
            verd_w,
            relay_p.into(),
            &[cp.into_os_string()],
            3,
            b"<42.1000@mine>",
        );
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "joe|digest|<42.1000@mine>|"
        );
        let mut v = Vec::new();
        std::fs::File::from(verd_r).read_to_end(&mut v).unwrap();
        assert_eq!(v, b"F");
    }

    #[test]
    fn record_framing() {
        let (a, b) = UnixStream::pair().unwrap();
        let a: OwnedFd = a.into();
        send_record(&a, true, b"u\0p\0t\0").unwrap();
        drop(a);
        let mut b = b;
        assert_eq!(
            recv_record(&mut b).unwrap().unwrap(),
            (true, b"u\0p\0t\0".to_vec())
        );
        assert!(recv_record(&mut b).unwrap().is_none());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[0x10, 0x00, b'P']).unwrap();
        assert!(recv_record(&mut b).is_err());
    }
}

//! The SMTP client dialogue of one delivery attempt (RFC 5321 sections 3.3, 4.1, 4.2;
//! RFC 2920 PIPELINING; RFC 6152 8BITMIME; RFC 3207 STARTTLS; qmail.md 6.5 for the
//! reports and their exact texts).
//!
//! greeting (220) -> EHLO (HELO after a 5xx) -> STARTTLS and EHLO again when offered
//! -> MAIL FROM (with `BODY=8BITMIME` when offered and the message has 8-bit bytes)
//! -> RCPT TO for each recipient (MAIL and all RCPTs in one write with PIPELINING, the
//! replies read in order) -> DATA -> the message -> QUIT, whose reply is not awaited.
//! Any read or write error (timeout, reset, EOF) is "connection died", with "Possible
//! duplicate!" once the final dot has been sent. Every read and write has the
//! `timeoutremote` deadline (socket timeouts, which also apply beneath TLS).

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::message::{Message, Scan, SendError};
use crate::reply::{Class, Extensions, MAX_LINE, Reply, read_reply};
use crate::report::{Report, dropped, host_text, quote_addr, remote_said};

/// The byte stream under the SMTP session: plain TCP, then perhaps TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// A buffered SMTP connection.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        Conn {
            stream: Stream::Plain(s),
            buf: vec![0u8; 8192],
            pos: 0,
            end: 0,
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        if self.pos == self.end {
            let n = loop {
                match self.stream.read(&mut self.buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.pos = 0;
            self.end = n;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// One line without its LF, at most MAX_LINE bytes kept, and its length on the wire.
    fn line(&mut self) -> io::Result<(Vec<u8>, usize)> {
        let mut l = Vec::new();
        let mut wire = 0usize;
        loop {
            let b = self.byte()?;
            wire += 1;
            if b == b'\n' {
                return Ok((l, wire));
            }
            if l.len() < MAX_LINE {
                l.push(b);
            }
            if wire > crate::reply::MAX_REPLY_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "SMTP line too long",
                ));
            }
        }
    }

    fn reply(&mut self) -> io::Result<Reply> {
        read_reply(|| self.line())
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    fn starttls(
        &mut self,
        cfg: Arc<ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        // RFC 3207 5: anything the server sent after its 220 is discarded.
        self.pos = 0;
        self.end = 0;
        let Stream::Plain(sock) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("TLS already active"));
        };
        let conn = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Send QUIT and do not wait for the answer.
    fn quit(&mut self) {
        let _ = self.send(b"QUIT\r\n");
        if let Stream::Tls(t) = &mut self.stream {
            t.conn.send_close_notify();
            let _ = t.flush();
        }
    }
}

/// What one delivery needs besides the connection.
pub struct Params<'a> {
    pub helohost: &'a str,
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub timeout: Duration,
    /// STARTTLS configuration; `None` disables STARTTLS.
    pub tls: Option<Arc<ClientConfig>>,
    /// The host name the address came from (SNI), if any.
    pub server_name: Option<&'a str>,
    /// Header fields sent before the message (the DKIM signatures), LF line ends.
    pub header: &'a [u8],
}

enum Fail {
    /// Connection lost; `critical` once the final dot went out.
    Died(bool),
    /// Say QUIT, then report `letter` `text`.
    Quit(u8, String),
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Fail {
        Fail::Died(false)
    }
}

/// Run the SMTP dialogue on a connected socket and fill `report`.
pub fn deliver(
    sock: TcpStream,
    ip: IpAddr,
    p: &Params<'_>,
    msg: &mut Message,
    scan: Scan,
    report: &mut Report,
) {
    let t = Some(p.timeout.max(Duration::from_secs(1)));
    let _ = sock.set_read_timeout(t);
    let _ = sock.set_write_timeout(t);
    let _ = sock.set_nodelay(true);
    let ipt = ip.to_string();
    let mut conn = Conn::new(sock);
    match dialogue(&mut conn, &ipt, ip, p, msg, scan, report) {
        Ok(()) => {}
        Err(Fail::Died(critical)) => report.finish(b'Z', dropped(&ipt, critical)),
        Err(Fail::Quit(letter, text)) => {
            conn.quit();
            report.finish(letter, text);
        }
    }
}

fn letter_for(r: &Reply) -> u8 {
    if r.class() == Class::Perm { b'D' } else { b'Z' }
}

fn ehlo(conn: &mut Conn, ipt: &str, helohost: &str) -> Result<Extensions, Fail> {
    conn.send(format!("EHLO {helohost}\r\n").as_bytes())?;
    let r = conn.reply()?;
    if r.code == 250 {
        return Ok(Extensions::from_ehlo(&r));
    }
    if r.class() == Class::Perm {
        conn.send(format!("HELO {helohost}\r\n").as_bytes())?;
        let r = conn.reply()?;
        if r.code == 250 {
            return Ok(Extensions::default());
        }
        return Err(Fail::Quit(
            b'Z',
            host_text("Connected to ", ipt, " but my name was rejected", &r.text),
        ));
    }
    Err(Fail::Quit(
        b'Z',
        host_text("Connected to ", ipt, " but my name was rejected", &r.text),
    ))
}

fn dialogue(
    conn: &mut Conn,
    ipt: &str,
    ip: IpAddr,
    p: &Params<'_>,
    msg: &mut Message,
    scan: Scan,
    report: &mut Report,
) -> Result<(), Fail> {
    let r = conn.reply()?;
    if r.code != 220 {
        return Err(Fail::Quit(
            b'Z',
            host_text("Connected to ", ipt, " but greeting failed", &r.text),
        ));
    }
    let mut ext = ehlo(conn, ipt, p.helohost)?;

    if ext.starttls
        && let Some(cfg) = p.tls.clone()
    {
        conn.send(b"STARTTLS\r\n")?;
        let r = conn.reply()?;
        if r.code == 220 {
            let name = crate::tls::server_name(p.server_name, ip);
            if conn.starttls(cfg, name).is_err() {
                return Err(Fail::Quit(
                    b'Z',
                    format!("Connected to {ipt} but TLS negotiation failed. (#4.4.2)\n"),
                ));
            }
            ext = ehlo(conn, ipt, p.helohost)?;
        }
        // Any other answer: carry on without TLS (opportunistic).
    }

    let body = if ext.eightbitmime && scan.eight_bit {
        " BODY=8BITMIME"
    } else {
        ""
    };
    let mail = format!("MAIL FROM:<{}>{body}\r\n", quote_addr(p.sender));
    let rcpts: Vec<String> = p
        .recipients
        .iter()
        .map(|r| format!("RCPT TO:<{}>\r\n", quote_addr(r)))
        .collect();

    if ext.pipelining {
        let mut batch = mail.into_bytes();
        for r in &rcpts {
            batch.extend_from_slice(r.as_bytes());
        }
        conn.send(&batch)?;
        mail_reply(conn, ipt)?;
    } else {
        conn.send(mail.as_bytes())?;
        mail_reply(conn, ipt)?;
    }

    let mut accepted = false;
    for r in &rcpts {
        if !ext.pipelining {
            conn.send(r.as_bytes())?;
        }
        let rep = conn.reply()?;
        match rep.class() {
            Class::Ok => {
                accepted = true;
                report.rcpt(b'r', String::new());
            }
            c => {
                let letter = if c == Class::Perm { b'h' } else { b's' };
                report.rcpt(
                    letter,
                    format!("{ipt} does not like recipient.\n{}", remote_said(&rep.text)),
                );
            }
        }
    }
    if !accepted {
        return Err(Fail::Quit(b'D', host_text("Giving up on ", ipt, "", "")));
    }

    conn.send(b"DATA\r\n")?;
    let r = conn.reply()?;
    if r.class() != Class::Ok || r.code / 100 != 3 {
        return Err(Fail::Quit(
            letter_for(&r),
            host_text("", ipt, " failed on DATA command", &r.text),
        ));
    }

    match msg.send_after(p.header, &mut conn.stream) {
        Ok(()) => {}
        Err(SendError::Write(_)) => return Err(Fail::Died(false)),
        Err(SendError::Read(_)) => {
            return Err(Fail::Quit(
                b'Z',
                crate::report::text::READ_MESSAGE.to_string(),
            ));
        }
        Err(SendError::PartialLine) => {
            return Err(Fail::Quit(
                b'D',
                crate::report::text::PARTIAL_LINE.to_string(),
            ));
        }
    }
    // The final dot is out: from here a lost connection may mean a duplicate.
    let r = conn.reply().map_err(|_| Fail::Died(true))?;
    match r.class() {
        Class::Ok => {
            conn.quit();
            report.finish(b'K', host_text("", ipt, " accepted message", &r.text));
            Ok(())
        }
        _ => Err(Fail::Quit(
            letter_for(&r),
            host_text("", ipt, " failed after I sent the message", &r.text),
        )),
    }
}

fn mail_reply(conn: &mut Conn, ipt: &str) -> Result<(), Fail> {
    let r = conn.reply()?;
    match r.class() {
        Class::Ok => Ok(()),
        _ => Err(Fail::Quit(
            letter_for(&r),
            host_text("Connected to ", ipt, " but sender was rejected", &r.text),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A scripted server: for each client line read, the matching canned answer.
    /// `script` is a list of (expected command prefix, reply bytes); the greeting is first
    /// with an empty prefix. Returns what the client sent.
    fn run(
        script: Vec<(&'static str, &'static [u8])>,
        message: &[u8],
        recips: &[&str],
    ) -> (Report, String) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = io::BufReader::new(s);
            let mut seen = String::new();
            let mut in_data = false;
            for (i, (prefix, reply)) in script.iter().enumerate() {
                if i > 0 {
                    loop {
                        let mut raw = Vec::new();
                        if r.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                            return seen;
                        }
                        let line = String::from_utf8_lossy(&raw).into_owned();
                        seen.push_str(&line);
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                break;
                            }
                            continue;
                        }
                        assert!(line.starts_with(prefix), "expected {prefix}, got {line}");
                        break;
                    }
                }
                if *prefix == "DATA" && reply.starts_with(b"354") {
                    in_data = true;
                }
                if !reply.is_empty() {
                    w.write_all(reply).unwrap();
                }
                if *reply == b"CLOSE" {
                    return seen;
                }
            }
            seen
        });
        let sock = TcpStream::connect(addr).unwrap();
        let recipients: Vec<String> = recips.iter().map(|s| s.to_string()).collect();
        let p = Params {
            helohost: "me.test",
            sender: "from@me.test",
            recipients: &recipients,
            timeout: Duration::from_secs(10),
            tls: None,
            server_name: None,
            header: b"",
        };
        let mut msg = Message::Mem(message.to_vec());
        let scan = crate::message::scan_bytes(message);
        let mut rep = Report::new();
        deliver(
            sock,
            "127.0.0.1".parse().unwrap(),
            &p,
            &mut msg,
            scan,
            &mut rep,
        );
        (rep, server.join().unwrap())
    }

    const EHLO_PIPE: &[u8] = b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

    #[test]
    fn plain_delivery_two_recipients() {
        let (rep, seen) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO me.test", b"250 sink\r\n"),
                ("MAIL FROM:<from@me.test>\r\n", b"250 ok\r\n"),
                ("RCPT TO:<a@x.test>", b"250 ok\r\n"),
                ("RCPT TO:<b@x.test>", b"550 no such user\r\n"),
                ("DATA", b"354 go\r\n"),
                ("", b"250 ok 12 qp 3\r\n"),
                ("QUIT", b""),
            ],
            b"Subject: t\n\n.hi\n",
            &["a@x.test", "b@x.test"],
        );
        assert_eq!(rep.recipients[0], (b'r', String::new()));
        assert_eq!(
            rep.recipients[1],
            (
                b'h',
                "127.0.0.1 does not like recipient.\nRemote host said: 550 no such user\n".into()
            )
        );
        assert_eq!(
            rep.message,
            Some((
                b'K',
                "127.0.0.1 accepted message.\nRemote host said: 250 ok 12 qp 3\n".into()
            ))
        );
        assert!(seen.contains("Subject: t\r\n\r\n..hi\r\n.\r\n"), "{seen}");
        assert!(seen.ends_with("QUIT\r\n"), "{seen}");
    }

    #[test]
    fn pipelining_and_8bitmime() {
        let (rep, seen) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", EHLO_PIPE),
                (
                    "MAIL FROM:<from@me.test> BODY=8BITMIME",
                    b"250 ok\r\n250 ok\r\n451 later\r\n",
                ),
                ("RCPT", b""),
                ("RCPT", b""),
                ("DATA", b"354 go\r\n"),
                ("", b"250 queued\r\n"),
            ],
            b"\xe9\n",
            &["a@x.test", "b@x.test"],
        );
        assert_eq!(
            rep.recipients.iter().map(|r| r.0).collect::<Vec<_>>(),
            b"rs"
        );
        assert_eq!(rep.message.as_ref().unwrap().0, b'K', "{rep:?}");
        assert!(seen.contains("RCPT TO:<b@x.test>\r\nDATA\r\n"), "{seen}");
    }

    #[test]
    fn ehlo_rejected_falls_back_to_helo() {
        let (rep, _) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", b"502 what\r\n"),
                ("HELO me.test", b"250 ok\r\n"),
                ("MAIL", b"553 sender no\r\n"),
                ("QUIT", b""),
            ],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((b'D', "Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 553 sender no\n".into()))
        );
    }

    #[test]
    fn greeting_failure_and_garbage() {
        let (rep, _) = run(
            vec![("", b"554 go away\r\n"), ("QUIT", b"")],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((
                b'Z',
                "Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\n"
                    .into()
            ))
        );
        let (rep, _) = run(
            vec![("", b"\x00\xff garbage\r\n"), ("QUIT", b"")],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(rep.message.as_ref().unwrap().0, b'Z');
    }

    #[test]
    fn all_recipients_refused_gives_up() {
        let (rep, _) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", b"250 x\r\n"),
                ("MAIL", b"250 ok\r\n"),
                ("RCPT", b"450 try later\r\n"),
                ("QUIT", b""),
            ],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(rep.recipients[0].0, b's');
        assert_eq!(
            rep.message,
            Some((b'D', "Giving up on 127.0.0.1.\n".into()))
        );
        assert_eq!(crate::report::rspawn_summary(&rep.to_bytes()).0, b'Z');
    }

    #[test]
    fn data_failures() {
        let (rep, _) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", b"250 x\r\n"),
                ("MAIL", b"250 ok\r\n"),
                ("RCPT", b"250 ok\r\n"),
                ("DATA", b"554 no data\r\n"),
                ("QUIT", b""),
            ],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((
                b'D',
                "127.0.0.1 failed on DATA command.\nRemote host said: 554 no data\n".into()
            ))
        );
        let (rep, _) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", b"250 x\r\n"),
                ("MAIL", b"250 ok\r\n"),
                ("RCPT", b"250 ok\r\n"),
                ("DATA", b"354 go\r\n"),
                ("", b"452 full\r\n"),
                ("QUIT", b""),
            ],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((
                b'Z',
                "127.0.0.1 failed after I sent the message.\nRemote host said: 452 full\n".into()
            ))
        );
    }

    #[test]
    fn connection_dies() {
        let (rep, _) = run(
            vec![("", b"220 hi\r\n"), ("EHLO", b"250-x\r\n")],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((
                b'Z',
                "Connected to 127.0.0.1 but connection died. (#4.4.2)\n".into()
            ))
        );
        let (rep, _) = run(
            vec![
                ("", b"220 hi\r\n"),
                ("EHLO", b"250 x\r\n"),
                ("MAIL", b"250 ok\r\n"),
                ("RCPT", b"250 ok\r\n"),
                ("DATA", b"354 go\r\n"),
                ("", b"CLOSE"),
            ],
            b"x\n",
            &["a@x.test"],
        );
        assert_eq!(
            rep.message,
            Some((
                b'Z',
                "Connected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n".into()
            ))
        );
    }
}

//! qmail-spamc - spam score filter (SpamAssassin's spamd) for the qmail-qfilter chain
//!
//! SYNOPSIS
//!     qmail-spamc
//!
//! DESCRIPTION
//!     A filter of the chain in DESIGN section 10 (a line `qmail-spamc` in
//!     HOME/control/filters): reads the message on descriptor 0 and its envelope on
//!     descriptor 3, asks spamd at HOME/control/spamd (a unix socket path, or IP:port)
//!     for its score (SYMBOLS), and writes the message to descriptor 1 with
//!     SpamAssassin's fields on top:
//!
//!         X-Spam-Flag: YES                  (only when spamd calls it spam)
//!         X-Spam-Level: *****               (one star per whole point)
//!         X-Spam-Status: Yes, score=5.8 required=5.0 tests=BAYES_99,BAYES_999
//!
//!     A score at or above control/spamreject (0 or missing: never) is refused
//!     permanently: `554 5.7.1 message refused as spam: score S, limit N (#5.7.1)`,
//!     and nothing is queued.
//!
//!     Every X-Spam-* field and every X-Qmail-Spam-Reporter field of the incoming
//!     header is removed, scored or not: a sender cannot forge our verdict, nor the
//!     reporter stamp. That stamp, `X-Qmail-Spam-Reporter: local`, `relay=IP` or
//!     `auth=USER`, is added to a message with a recipient whose local part is
//!     learn-spam or learn-ham when the client is trusted: injected on this host (no
//!     TCPREMOTEIP), a relay client (RELAYCLIENT set) or authenticated (SMTPAUTHUSER);
//!     qmail-spamlearn believes only it.
//!
//!     Not scored, passed on with nothing added (the log says why): control/spamd
//!     missing or empty (`skip off`); mail from a trusted client, unless
//!     control/spamchecktrusted is 1 (`skip trusted`); a message over
//!     control/spamsizelimit bytes (512000; `skip toolarge`). spamd down, refusing,
//!     answering nonsense or slower than control/spamtimeout seconds (30) for the whole
//!     exchange: the message passes unscored (`unscored spamd=...`): spam scoring is
//!     advisory.
//!
//!     One log line per message on descriptor 2:
//!         qmail-spamc: VERDICT [score=S required=R tests=A,B] client=KIND ip=IP
//!             from=SENDER rcpts=N bytes=N removed=N [reporter=WHO] [spamd=ERROR] ms=N
//!     VERDICT is ham, spam, refuse, unscored or `skip REASON`; client text is escaped.
//!
//! USER
//!     qmailf (group nofiles), as qmail-qfilter runs every filter. The spamd socket must
//!     be reachable by it (the qmail-spamd service makes it so).
//!
//! EXIT CODES
//!     0 pass (message written to descriptor 1); 82 with `D<text>` (refused as spam)
//!     or `Z<text>` (temporary) on descriptor 6; 31 or 71 when descriptor 6 is not open;
//!     111 internal error. Temporary failures: the message or envelope cannot be read,
//!     an unreadable control file, a write error.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Instant;

use qfilter::answer::{reply, take_fd};
use spamc::header;
use spamc::policy::{self, Client, Config, Plan};

const PROG: &str = "qmail-spamc";

fn defer(log: &str) -> ! {
    qsys::die::warn(PROG, "warning", log);
    reply('Z', "spam filter temporary failure (#4.3.0)")
}

/// The most header read before deciding to copy the rest of a message through.
const HEAD_MAX: u64 = 1024 * 1024;

/// The message, or with `stream` only its start up to the end of its header (true in
/// the second value: the rest is still to be copied from `input`). A header longer
/// than [`HEAD_MAX`] gets the whole message read: the fields we remove must be looked
/// for in the whole header, as qmail-spamlearn will read it.
fn read_message(input: &mut File, stream: bool) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    if stream {
        Read::by_ref(input).take(HEAD_MAX).read_to_end(&mut buf)?;
        if (buf.len() as u64) < HEAD_MAX {
            return Ok((buf, false));
        }
        if let Some(end) = header::header_end(&buf) {
            // give back what was read beyond the header
            use std::io::{Seek, SeekFrom};
            input.seek(SeekFrom::Current(end as i64 - buf.len() as i64))?;
            buf.truncate(end);
            return Ok((buf, true));
        }
    }
    input.read_to_end(&mut buf)?;
    Ok((buf, false))
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    let start = Instant::now();
    let home = qsys::home().unwrap_or_else(|e| defer(&format!("unable to find home: {e}")));
    let cfg = Config::load(&control::Controls::new(&home)).unwrap_or_else(|e| defer(&e));
    let mut input = take_fd(0).unwrap_or_else(|e| {
        defer(&format!(
            "unable to read message: {}",
            qsys::die::errstr(&e)
        ))
    });
    let envelope = take_fd(3)
        .map_err(|_| qfilter::envelope::EnvelopeError::Read)
        .and_then(|f| qfilter::envelope::read(&mut std::io::BufReader::new(f)))
        .unwrap_or_else(|e| defer(&format!("unable to read the envelope on fd 3: {e:?}")));
    let client = Client::from_env(|k| std::env::var(k).ok());
    // qmail-qfilter gives a file: a message that will not be scored is read only up to
    // the end of its header, the rest copied through
    let size = input
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let stream = size.is_some_and(|n| policy::plan(&cfg, &client, n) != Plan::Score);
    let (message, rest) = read_message(&mut input, stream).unwrap_or_else(|e| {
        defer(&format!(
            "unable to read message: {}",
            qsys::die::errstr(&e)
        ))
    });
    let size = size.unwrap_or(message.len() as u64);

    // the message as it goes on: our fields removed, whatever happens next
    let (mut cleaned, removed) = header::without(&message, header::ours);
    cleaned.extend_from_slice(&message[header::header_len(&message)..]);
    drop(message);
    let learning = envelope
        .recipients
        .iter()
        .any(|r| policy::learning_address(r).is_some());
    let reporter = client.reporter().filter(|_| learning);

    let mut added = String::new();
    if let Some(who) = &reporter {
        added.push_str(&format!("{}: {who}\n", header::REPORTER));
    }
    let t = qsys::logsafe::text;
    let mut refuse = None;
    let verdict = match policy::plan(&cfg, &client, size) {
        Plan::Skip(why) => format!("skip {why}"),
        Plan::Score => {
            let address = cfg.spamd.as_deref().unwrap_or_default();
            match spamc::protocol::check(address, &cleaned, cfg.timeout) {
                Ok(score) => {
                    refuse = policy::refusal(&cfg, &score);
                    added.push_str(&header::spam_fields(&score));
                    let word = match (&refuse, score.spam) {
                        (Some(_), _) => "refuse",
                        (None, true) => "spam",
                        (None, false) => "ham",
                    };
                    format!(
                        "{word} score={:.1} required={:.1} tests={}",
                        score.score,
                        score.required,
                        score.tests.join(",")
                    )
                }
                Err(e) => format!("unscored spamd={}", t(e.0.as_bytes())),
            }
        }
    };
    let mut written = true;
    if refuse.is_none() {
        let mut out = std::io::stdout().lock();
        written = out
            .write_all(added.as_bytes())
            .and_then(|_| out.write_all(&cleaned))
            .and_then(|_| match rest {
                true => std::io::copy(&mut input, &mut out).map(|_| ()),
                false => Ok(()),
            })
            .and_then(|_| out.flush())
            .is_ok();
    }
    let ip = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let mut line = format!(
        "{PROG}: {verdict} client={} ip={} from={} rcpts={} bytes={} removed={removed}",
        client.word(),
        t(ip.as_bytes()),
        t(&envelope.sender),
        envelope.recipients.len(),
        size,
    );
    if let Some(who) = &reporter {
        line.push_str(&format!(" reporter={}", t(who.as_bytes())));
    }
    line.push_str(&format!(" ms={}\n", start.elapsed().as_millis()));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(text) = refuse {
        reply('D', &text);
    }
    if !written {
        defer("unable to write the message");
    }
}

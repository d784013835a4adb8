//! qmail-scan's whole run over one message, as a filter of the chain (DESIGN section 10;
//! the program's manual is bin/qmail-scan/src/main.rs): the configuration from
//! HOME/control, the message on descriptor 0 and its envelope on 3, the verdict
//! ([`crate::filter::decide`]), the quarantine and its notice, the output on 1, the log
//! line on 2, and the exit (0, 99, or a reason through [`qfilter::answer::reply`]).
//!
//! Two callers: the qmail-scan program, and qmail-qfilter, which runs this in a forked
//! child that has become the filter user under the filter limits instead of exec'ing the
//! program (qfilter::run, `Start::Call`): the same code, one program start fewer per
//! message. [`run`] never returns.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::filter::{self, Config, Verdict};
use crate::rules::Rules;
use crate::walk::{Context, Hit};
use qfilter::answer::{reply, take_fd};

const PROG: &str = "qmail-scan";

/// Refuse temporarily with `text` (to the client) after logging `log`.
pub fn defer(text: &str, log: &str) -> ! {
    qsys::die::warn(PROG, "warning", log);
    reply('Z', text)
}

fn read_fd(fd: i32) -> std::io::Result<Vec<u8>> {
    let mut f = take_fd(fd)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn load_config(home: &Path) -> Config {
    let controls = control::Controls::new(home);
    let rules = match std::fs::read(controls.path("scanrules")) {
        // from_utf8 first: its ASCII fast path is ~20 times faster than the lossy scan
        Ok(text) => match Rules::parse(&match std::str::from_utf8(&text) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(&text),
        }) {
            Ok(r) => r,
            Err(e) => defer(
                "policy filter misconfigured, try again later (#4.3.0)",
                &format!("control/scanrules {e}"),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Rules::default(),
        Err(e) => defer(
            "policy filter misconfigured, try again later (#4.3.0)",
            &format!(
                "unable to read control/scanrules: {}",
                qsys::die::errstr(&e)
            ),
        ),
    };
    let unreadable = |name: &str, e: std::io::Error| -> ! {
        defer(
            "policy filter misconfigured, try again later (#4.3.0)",
            &format!("unable to read control/{name}: {}", qsys::die::errstr(&e)),
        )
    };
    let clamd = match controls.line("clamd") {
        Ok(v) => v.filter(|a| !a.trim().is_empty()),
        Err(e) => unreadable("clamd", e),
    };
    let fail_open = controls
        .int("clamdfailopen", 0)
        .unwrap_or_else(|e| unreadable("clamdfailopen", e))
        == 1;
    let timeout = controls
        .int("clamdtimeout", 30)
        .unwrap_or_else(|e| unreadable("clamdtimeout", e))
        .clamp(1, 3600);
    let host = controls
        .line("me")
        .unwrap_or_else(|e| unreadable("me", e))
        .unwrap_or_else(qsys::hostname);
    Config {
        rules,
        clamd,
        fail_open,
        clamd_timeout: Duration::from_secs(timeout),
        host,
    }
}

/// The header block of `message`, up to and including the empty line.
fn header_block(message: &[u8]) -> &[u8] {
    let end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    &message[..end]
}

/// Store in HOME/quarantine, notify the administrator; `Err` is a log text.
fn quarantine(
    home: &Path,
    cfg: &Config,
    message: &[u8],
    ctx: &Context,
    hit: &Hit,
) -> Result<String, String> {
    let reason = quarantine::Reason {
        rule: hit.rule.clone(),
        remark: hit.remark.clone(),
        sender: ctx.sender.clone(),
        recipients: ctx.recipients.clone(),
        client_ip: if ctx.remote_ip.is_empty() {
            "local".into()
        } else {
            ctx.remote_ip.clone()
        },
        helo: ctx.helo.clone(),
    };
    let stored = quarantine::store(&home.join("quarantine"), message, &reason)
        .map_err(|e| format!("unable to quarantine: {e}"))?;
    let controls = control::Controls::new(home);
    let mut admin = controls
        .line("scanadmin")
        .ok()
        .flatten()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "postmaster".into());
    if !admin.contains('@') {
        admin = format!("{admin}@{}", cfg.host);
    }
    let notice = quarantine::notice(&cfg.host, &admin, &reason, header_block(message), &stored);
    let queued = queue::client::inject(
        &home.join("bin/qmail-queue"),
        b"",
        &[admin.as_bytes()],
        |w| w.write_all(&notice),
    );
    if let Err(e) = queued {
        qsys::die::warn(
            PROG,
            "warning",
            &format!("unable to queue the quarantine notice: {e}"),
        );
    }
    Ok(stored.display().to_string())
}

/// Scan the message on descriptor 0 for installation `home`, then exit (module doc).
pub fn run(home: &Path) -> ! {
    qsys::die::install_panic_hook(PROG);
    let start = Instant::now();
    let cfg = load_config(home);
    let message = read_fd(0).unwrap_or_else(|e| {
        defer(
            "policy filter read error (#4.3.0)",
            &format!("unable to read message: {}", qsys::die::errstr(&e)),
        )
    });
    let envelope = read_fd(3).unwrap_or_else(|e| {
        defer(
            "policy filter read error (#4.3.0)",
            &format!("unable to read envelope on fd 3: {}", qsys::die::errstr(&e)),
        )
    });
    let Some((sender, recipients)) = filter::parse_envelope(&envelope) else {
        defer(
            "policy filter envelope format error (#4.3.0)",
            "envelope on fd 3 is not F..\\0T..\\0\\0",
        );
    };
    let remote_ip = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let helo = if remote_ip.is_empty() {
        String::new()
    } else {
        filter::helo_from_received(&message).unwrap_or_default()
    };
    let ctx = Context {
        sender,
        recipients,
        remote_ip,
        helo,
    };
    let d = filter::decide(&cfg, &message, &ctx);

    let mut stored = None;
    let mut verdict = d.verdict.clone();
    if let Verdict::Quarantine(hit) = &d.verdict {
        match quarantine(home, &cfg, &message, &ctx, hit) {
            Ok(path) => stored = Some(path),
            Err(e) => {
                qsys::die::warn(PROG, "warning", &e);
                verdict = Verdict::TempFail(
                    "policy filter cannot quarantine, try again later (#4.3.0)".into(),
                );
            }
        }
    }
    if let Verdict::Pass(header) = &verdict {
        let mut out = std::io::stdout().lock();
        let written = out
            .write_all(header.as_bytes())
            .and_then(|_| out.write_all(&message))
            .and_then(|_| out.flush())
            .is_ok();
        if !written {
            verdict = Verdict::TempFail("policy filter write error (#4.3.0)".into());
        }
    }

    let word = match &verdict {
        Verdict::Pass(_) => "clean",
        Verdict::Quarantine(_) => "quarantine",
        Verdict::Refuse(_) => "refuse",
        Verdict::TempFail(_) => "defer",
    };
    let t = qsys::logsafe::text;
    let mut line = word.to_string();
    if let Some(h) = &d.hit {
        line.push_str(&format!(
            " rule={} line={} remark={} place={}",
            t(h.rule.as_bytes()),
            h.line,
            t(h.remark.as_bytes()),
            t(h.place.as_bytes())
        ));
    }
    if let Some(v) = &d.virus {
        line.push_str(&format!(" virus={}", t(v.as_bytes())));
    }
    if let Some(e) = &d.clamd_error {
        line.push_str(&format!(" clamd={}", t(e.as_bytes())));
    }
    if let Some(s) = &stored {
        line.push_str(&format!(" stored={}", t(s.as_bytes())));
    }
    line.push_str(&format!(
        " from={} rcpts={} ip={} helo={} bytes={} parts={} members={} expanded={} ms={}",
        t(ctx.sender.as_bytes()),
        ctx.recipients.len(),
        t(ctx.remote_ip.as_bytes()),
        t(ctx.helo.as_bytes()),
        message.len(),
        d.stats.parts,
        d.stats.members,
        d.stats.expanded,
        start.elapsed().as_millis()
    ));
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{PROG}: {line}\n").as_bytes());

    match verdict {
        Verdict::Pass(_) => std::process::exit(0),
        Verdict::Quarantine(_) => std::process::exit(99),
        Verdict::Refuse(text) => reply('D', &text),
        Verdict::TempFail(text) => reply('Z', &text),
    }
}

//! qmail-smtpd: the SMTP server of DESIGN section 2, run by tcpserver per connection as
//! qmaild, speaking SMTP on fd 0/1 and handing each message to qmail-queue (or
//! `$QMAILQUEUE`); `250` only after qmail-queue exited 0.
//!
//! One program, three services (argv contract, fixed):
//! - `qmail-smtpd`: port 25, the MX. No AUTH; relaying only for `RELAYCLIENT`.
//! - `qmail-smtpd --submission CHECKPASSWORD [args...]`: port 587. AUTH (through the
//!   checkpassword interface) required before MAIL; the authenticated user may use only
//!   their own sender addresses (`control/sendermap`), in the envelope and in every
//!   originator header field ([`originator`]), at most `control/ratelimit`
//!   recipients per hour (counted at RCPT; the counters are the `limits` crate's).
//! - `qmail-smtpd --smtps CHECKPASSWORD [args...]`: port 465, implicit TLS (RFC 8314),
//!   otherwise as submission.
//!
//! Modules: [`io`] (the connection, buffering, STARTTLS switch), [`data`] (the DATA
//! state machine: no smuggling), [`message`] (DATA and BDAT into qmail-queue, one
//! outcome), [`addr`] (MAIL/RCPT arguments), [`policy`] (rcpthosts, badmailfrom,
//! badrcptto, sender map), [`originator`] (sender binding in the header), [`rcptcheck`]
//! (unknown local recipients), [`auth`] (SASL and checkpassword), [`received`], [`replies`] (every reply text), [`config`] (control
//! files and environment), [`session`] (the state machine).

pub mod addr;
pub mod auth;
pub mod config;
pub mod data;
pub mod io;
pub mod message;
pub mod originator;
pub mod policy;
pub mod rcptcheck;
pub mod received;
pub mod replies;
pub mod session;

pub use config::{Config, Mode};
pub use session::{End, Session, TlsSource};

use std::time::Duration;

/// Parse the argument vector (without argv[0]): `[]`, `--submission CP [args]`,
/// `--smtps CP [args]`.
pub fn parse_args(args: &[String]) -> Result<(Mode, Vec<String>), String> {
    match args.split_first() {
        None => Ok((Mode::Mx, Vec::new())),
        Some((flag, rest)) if flag == "--submission" || flag == "--smtps" => {
            if rest.is_empty() {
                return Err(format!("{flag} needs a checkpassword program"));
            }
            let mode = if flag == "--smtps" {
                Mode::Smtps
            } else {
                Mode::Submission
            };
            Ok((mode, rest.to_vec()))
        }
        Some((other, _)) => Err(format!(
            "unknown argument {other}; usage: qmail-smtpd [--submission|--smtps checkpassword [args...]]"
        )),
    }
}

/// Serve one connection on fd 0/1 for the installation at `home`; returns the exit code.
pub fn serve(home: &std::path::Path, mode: Mode, checkpassword: Vec<String>) -> i32 {
    let cfg = match Config::load(home, mode, checkpassword) {
        Ok(c) => c,
        Err(e) => {
            qsys::die::warn(
                "qmail-smtpd",
                "alert",
                &format!("unable to read controls: {e}"),
            );
            let _ = std::io::Write::write_all(
                &mut std::io::stdout(),
                format!("{}\r\n", replies::UNABLE_TO_READ_CONTROLS).as_bytes(),
            );
            return 1;
        }
    };
    let timeout = Duration::from_secs(cfg.timeout);
    let conn = io::Conn::new(Box::new(tls::FdIo::new(Some(timeout))));
    let smtps = cfg.mode == Mode::Smtps;
    let tls = TlsSource::Dir(cfg.controls.dir().to_path_buf());
    let mut s = Session::new(cfg, conn, tls);
    if smtps && let Err(e) = s.implicit_tls() {
        qsys::die::warn(
            "qmail-smtpd",
            "warning",
            &format!("TLS on connect failed{}: {e}", s.tls_sni_field()),
        );
        return 1;
    }
    match s.run() {
        End::Quit => 0,
        End::Dropped => 1,
    }
}

//! The two programs' top levels: what `bin/qmail-inject` and `bin/sendmail` run. They read
//! argv, the environment, the control files of the installation found by `qsys::home()`,
//! and stdin; they map errors to qmail's exit codes (0 ok, 100 permanent, 111 temporary)
//! with `prog: fatal: text` on stderr. sendmail runs qmail-inject's part in its own
//! process (issue 13): it applies its environment changes to itself and calls the same
//! code with the translated arguments, so nothing but the exec differs; only `-bp` and
//! `-bs` still exec (qmail-qread, qmail-smtpd).

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;

use qsys::die::{PERM, TEMP, fatal};

use crate::header::{self, Header, ReadError};
use crate::inject::{self, Command, Options};
use crate::sendmail::{self, Action, EnvOp};

const QI: &str = "qmail-inject";
const SM: &str = "sendmail";

fn env_lookup(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

/// Copy the rest of the body, adding a final newline when the input lacks one (qmail
/// does the same). A read error is fatal at once (exit 111): the unfinished envelope
/// makes qmail-queue fail, so nothing half-read is ever queued.
fn copy_body<R: BufRead>(r: &mut R, w: &mut dyn Write) -> io::Result<()> {
    let mut last = b'\n';
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => fatal(QI, "read error", TEMP),
        };
        if buf.is_empty() {
            break;
        }
        w.write_all(buf)?;
        last = buf[buf.len() - 1];
        let n = buf.len();
        r.consume(n);
    }
    if last != b'\n' {
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn write_message<R: BufRead>(
    w: &mut dyn Write,
    head: &[u8],
    h: &Header,
    r: &mut R,
) -> io::Result<()> {
    w.write_all(head)?;
    w.write_all(&h.body_start)?;
    if h.more {
        copy_body(r, w)?;
    }
    w.flush()
}

/// qmail-inject's main. `synopsis` is printed for `--help`.
pub fn qmail_inject(synopsis: &str) -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    inject_with(synopsis, &args)
}

/// qmail-inject's work for `args` (its command line without argv[0]), reading the process
/// environment, the installation's controls and stdin; messages and exit codes are
/// qmail-inject's. sendmail calls it in-process instead of exec'ing qmail-inject.
fn inject_with(synopsis: &str, args: &[OsString]) -> ! {
    let opts: Options = match inject::parse_args(args) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{synopsis}");
            std::process::exit(0)
        }
        Err(e) => {
            qsys::die::warn(QI, "fatal", &e.0);
            qsys::die::warn(QI, "usage", inject::USAGE);
            std::process::exit(PERM)
        }
    };
    let home = qsys::home().unwrap_or_else(|e| {
        fatal(
            QI,
            &format!("unable to find the qmail home directory: {e}"),
            TEMP,
        )
    });
    let settings = inject::Settings::load(&home, &env_lookup)
        .unwrap_or_else(|e| fatal(QI, &format!("unable to read controls: {e}"), TEMP));
    let mut input = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
    let h = match header::read(&mut input) {
        Ok(h) => h,
        Err(ReadError::TooLong) => fatal(
            QI,
            &format!("message header is longer than {} bytes", header::MAX_HEADER),
            PERM,
        ),
        Err(ReadError::Io(_)) => fatal(QI, "read error", TEMP),
    };
    let p =
        inject::rewrite(&settings, &opts, &h).unwrap_or_else(|e| fatal(QI, &e.to_string(), PERM));
    if !opts.queue {
        let mut out = io::BufWriter::new(io::stdout().lock());
        if write_message(&mut out, &p.header, &h, &mut input).is_err() {
            fatal(QI, "unable to write output", TEMP);
        }
        std::process::exit(0);
    }
    if p.recipients.is_empty() {
        fatal(QI, "no recipients", PERM);
    }
    let program = queue::client::entry_program(&home);
    match queue::client::inject(&program, &p.sender, &p.recipients, |w| {
        write_message(w, &p.header, &h, &mut input)
    }) {
        Ok(_) => std::process::exit(0),
        Err(f) => fatal(QI, &f.text, if f.permanent { PERM } else { TEMP }),
    }
}

fn apply(cmd: &mut std::process::Command, env: &[EnvOp]) {
    for op in env {
        match op {
            EnvOp::Set(k, v) => {
                cmd.env(k, v);
            }
            EnvOp::Unset(k) => {
                cmd.env_remove(k);
            }
        }
    }
}

/// Whether `path` is the file this process runs (same device and inode).
fn is_this_program(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn exec(prog: &str, args: &[OsString], env: &[EnvOp]) -> ! {
    let home = qsys::home().unwrap_or_else(|e| {
        fatal(
            SM,
            &format!("unable to find the qmail home directory: {e}"),
            TEMP,
        )
    });
    let mut cmd = std::process::Command::new(home.join("bin").join(prog));
    cmd.args(args);
    apply(&mut cmd, env);
    let e = cmd.exec();
    fatal(SM, &format!("unable to run {prog}: {e}"), TEMP)
}

/// sendmail's main. `synopsis` is printed for `--help`.
pub fn sendmail(synopsis: &str) -> ! {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match sendmail::translate(&argv, std::env::var_os("PROTO").is_some()) {
        Action::Help => {
            print!("{synopsis}");
            std::process::exit(0)
        }
        Action::Usage(why) => {
            qsys::die::warn(SM, "fatal", &why);
            qsys::die::warn(SM, "usage", sendmail::USAGE);
            std::process::exit(PERM)
        }
        Action::NewAliases => {
            // a sendmail installed (or linked) as HOME/bin/newaliases would run itself
            // forever: only fastforward's newaliases is run
            if is_this_program(&qsys::home().unwrap_or_default().join("bin/newaliases")) {
                fatal(
                    SM,
                    "HOME/bin/newaliases is sendmail itself; install fastforward's newaliases \
                     (qmail-install does)",
                    PERM,
                )
            }
            exec("newaliases", &[], &[])
        }
        Action::RunQueue => {
            let home = qsys::home().unwrap_or_else(|e| {
                fatal(
                    SM,
                    &format!("unable to find the qmail home directory: {e}"),
                    TEMP,
                )
            });
            queue::trigger::pull(&queue::Layout::new(&home).dir);
            std::process::exit(0)
        }
        Action::MailQ => exec("qmail-qread", &[], &[]),
        Action::Smtpd { env } => exec("qmail-smtpd", &[], &env),
        Action::Inject { args, env } => {
            // qmail-inject's work in this process (issue 13: one exec less per message).
            // The environment changes go into this process's environment, so the
            // controls, $QMAILQUEUE and the queue program (or a filter) see what an
            // exec'ed qmail-inject saw; messages keep qmail-inject's name, as before.
            set_own_env(&env);
            qsys::die::install_panic_hook(QI);
            inject_with(synopsis, &args)
        }
    }
}

/// Apply `env` to this process's environment.
fn set_own_env(env: &[EnvOp]) {
    for op in env {
        // SAFETY: sendmail is single-threaded: nothing reads the environment concurrently.
        unsafe {
            match op {
                EnvOp::Set(k, v) => std::env::set_var(k, v),
                EnvOp::Unset(k) => std::env::remove_var(k),
            }
        }
    }
}

//! qmail-install - install or upgrade the mail system
//!
//! SYNOPSIS
//!     qmail-install [--root DIR] [--me HOST] [--link-services DIR [--service NAME]...]
//!
//! DESCRIPTION
//!     Lays out DIR (default /var/qmail) with qmail's hierarchy, owners and modes:
//!     bin/ (programs copied from the directory holding qmail-install itself),
//!     control/, queue/ (pid intd todo bounce lock, and mess info local remote split
//!     into 23 subdirectories), users/, alias/, supervise/, doc/, boot/.
//!
//!     As root it also creates the groups qmail and nofiles and the users alias,
//!     qmaild, qmaill, qmailp, qmailq, qmailr and qmails when they are missing, and
//!     makes qmail-queue setuid qmailq. As another user no ownership is changed and
//!     every program later runs as that user.
//!
//!     As root it refuses (exit 111) a DIR below a directory that is not root's or that
//!     others can write without the sticky bit (a checkout in /home/USER, say): another
//!     user could rename the installation away, so the set-id qmail-queue would refuse
//!     to run from it. Install into a root-owned tree such as /var/qmail.
//!
//!     First control files (me, locals, rcpthosts, defaultdomain, plusdomain; HOST
//!     defaults to this machine's host name) and ~alias/.qmail-postmaster,
//!     .qmail-mailer-daemon, .qmail-root and ~alias/Maildir/ are written only when
//!     missing; so are control/spamassassin.cf and ~alias/.qmail-learn-spam and
//!     .qmail-learn-ham (`|HOME/bin/qmail-spamlearn deliver spam`, or ham). Rerunning upgrades the programs and never touches control files, the
//!     queue's contents or mailboxes.
//!
//!     Safe to run several at once: an account another installer created meanwhile
//!     counts as created (useradd/groupadd failures are retried while it is missing).
//!     Rerun as root, it changes owners and modes only through descriptors opened
//!     without following links: a queue directory, lock file or FIFO that a qmail user
//!     replaced by a symbolic link or another file type (or a file with a second hard
//!     link) stops it with `refusing to touch PATH: ...`; entries alias made in
//!     ~alias are left alone.
//!
//!     IMAP: when Debian's Dovecot is installed (/usr/sbin/dovecot and
//!     /usr/lib/dovecot/checkpassword-reply), also writes DIR/dovecot/dovecot.conf
//!     (IMAP with STARTTLS and IMAPS on control/servercert.pem, TLS 1.2 and up,
//!     passwords only inside TLS, maildir:~/Maildir, logins through DIR/bin/
//!     checkpassword, log to stderr), DIR/dovecot/{run,state} and the service
//!     qmail-imapd (dovecot -F under supervise, with a log service); it says on one
//!     line whether it did, or that Dovecot is missing.
//!
//!     --link-services DIR links the installed services into DIR (the directory
//!     svscan watches, normally /service): DIR/NAME -> ROOT/supervise/NAME for
//!     qmail-send, qmail-smtpd, qmail-submission, qmail-smtps, qmail-pop3d,
//!     qmail-pop3ds, qmail-queued, qmail-qfilterd (and qmail-imapd when installed),
//!     or only those named with --service (repeatable). Existing entries are left alone.
//!     qmail-spamd (SpamAssassin's spamd for qmail-spamc) is linked only when named:
//!     `--link-services /service --service qmail-spamd` turns it on.
//!
//!     After installing, it names the programs of other packages (Debian's
//!     daemontools and ucspi-tcp: svc, svstat, tcprules, ...) that a bare name in the
//!     caller's PATH would run instead of ours, and how to put DIR/bin first.
//!
//!     As root it gives control/servercert.pem and control/serverkey.pem, when they
//!     exist, to qmaild with mode 0400. --link-services leaves qmail-smtps and
//!     qmail-pop3ds out while there is no control/servercert.pem (and refuses them
//!     by name), saying so.
//!
//! EXIT CODES
//!     0 installed; 100 usage; 111 any failure (the message says what).

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "qmail-install",
    about = "Install or upgrade the mail system into DIR"
)]
struct Args {
    /// Installation root
    #[arg(long, default_value = "/var/qmail")]
    root: PathBuf,
    /// This host's fully qualified name, for the first control/me
    #[arg(long)]
    me: Option<String>,
    /// Link the services into this service directory (e.g. /service)
    #[arg(long, value_name = "DIR")]
    link_services: Option<PathBuf>,
    /// With --link-services: link only this service (repeatable)
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-install");
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            std::process::exit(0)
        }
        Err(e) => {
            eprint!("{e}");
            std::process::exit(100)
        }
    };
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-install", &m, qsys::die::TEMP) };
    let source = match std::env::current_exe() {
        Ok(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        Err(e) => fatal(format!("unable to find my own directory: {e}")),
    };
    if qsys::is_root()
        && let Err(e) = install::hier::refuse_untrusted_ancestor(&args.root)
    {
        fatal(e.to_string());
    }
    if let Err(e) = std::fs::create_dir_all(&args.root) {
        fatal(format!("unable to create {}: {e}", args.root.display()));
    }
    let root = std::fs::canonicalize(&args.root).unwrap_or(args.root);
    let me = args.me.unwrap_or_else(qsys::hostname);
    let opts = install::Options { root, source, me };
    match install::install(&opts) {
        Ok(progs) => {
            println!(
                "qmail-install: installed {} programs into {}",
                progs.len(),
                opts.root.display()
            );
            note_shadowed_tools(&opts.root.join("bin"));
        }
        Err(e) => fatal(e.to_string()),
    };
    println!(
        "{}",
        install::hier::imap_message(&opts.root, &install::hier::imap_setup(&opts.root))
    );
    if let Some(dir) = &args.link_services {
        let names: Vec<&str> = args.services.iter().map(String::as_str).collect();
        match install::hier::link_services(&opts.root, dir, &names) {
            Ok(linked) => {
                println!(
                    "qmail-install: linked {} services into {}",
                    linked.done.len(),
                    dir.display()
                );
                for n in &linked.need_certificate {
                    eprintln!(
                        "qmail-install: not linking {n}: it needs a certificate in \
                         {}/control/servercert.pem, readable by qmaild (INSTALL.md, \"TLS, \
                         SMTP AUTH and POP3\"); then rerun with --service {n}",
                        opts.root.display()
                    );
                }
            }
            Err(e) => fatal(e.to_string()),
        }
    }
}

/// Say which of our tools a bare name in this PATH would not run (Debian's daemontools
/// or ucspi-tcp first), and how to reach ours.
fn note_shadowed_tools(bin: &std::path::Path) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let others = install::path::shadowing(bin, &path);
    if others.is_empty() {
        return;
    }
    let list: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "qmail-install: note: in your PATH these run other packages' programs, not ours: {}; \
         use {b}/NAME, or put {b} first: export PATH={b}:$PATH",
        list.join(" "),
        b = bin.display()
    );
}

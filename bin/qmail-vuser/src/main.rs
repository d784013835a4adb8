//! qmail-vuser - manage virtual domains and users
//!
//! SYNOPSIS
//!     qmail-vuser adddomain DOMAIN [--owner USER] [--dir DIR]
//!     qmail-vuser deldomain DOMAIN
//!     qmail-vuser add ADDRESS [--quota SIZE] [--apop]     (password on stdin*)
//!     qmail-vuser passwd ADDRESS [--apop]                 (password on stdin*)
//!     qmail-vuser del ADDRESS
//!     qmail-vuser quota ADDRESS SIZE
//!     qmail-vuser enable ADDRESS | disable ADDRESS
//!     qmail-vuser list [DOMAIN]
//!     qmail-vuser rebuild
//!
//!     * the first line; on a terminal it is asked twice without echo.
//!
//! DESCRIPTION
//!     Edits this installation's virtual-user store (HOME/users/vdomains and
//!     HOME/users/vpasswd, compiled to vusers.cdb and vpasswd.cdb under a lock; see the
//!     vusers crate for the formats). Every change also rewrites HOME/users/
//!     dovecot-passwd (root:shadow 0640), the enabled users with their hashes as a
//!     Dovecot passwd-file (`address:{CRYPT}hash:uid:gid::home::`), so that Dovecot 2.4,
//!     which has no checkpassword driver, can serve them (INSTALL.md, "IMAP").
//!
//!     adddomain creates DIR (default HOME/vdomains/DOMAIN) owned by USER (default: the
//!     invoking user, or `vmail` as root) with `.qmail-default` = `|HOME/bin/qmail-vdeliver`
//!     and `.qmail-postmaster` = `&postmaster@ME` (control/me; RFC 5321's postmaster),
//!     adds `+DOMAIN-:USER:uid:gid:DIR:-::` to users/assign and recompiles users/cdb,
//!     adds `DOMAIN:DOMAIN` to control/virtualdomains and DOMAIN to control/rcpthosts
//!     (when that file exists), then sends HUP to qmail-send through its supervise
//!     (HOME/supervise/qmail-send) so it rereads virtualdomains, or says to run
//!     `qmailctl reload` when none runs. deldomain undoes that (mail stays on disk).
//!
//!     add creates DIR/LOCAL/Maildir and the user with a yescrypt hash of the first
//!     line of stdin, checked against the password policy (control/vpassminlen,
//!     control/vpassclasses; also for the administrator). --apop also keeps the clear
//!     text for APOP logins. SIZE is bytes, or with K, M or G; 0 means no quota.
//!     Nothing below a domain directory is followed through a link (its owner controls
//!     it): a link where DIR/LOCAL or its Maildir belongs is refused, `.qmail-default`
//!     is replaced through a temporary file and a rename, and an existing
//!     `.qmail-postmaster` is left alone. DIR itself is walked from / and a symbolic
//!     link on the way is followed only in a directory that root alone can write: with
//!     DIR = /home/OWNER/mail/DOMAIN, a link at /home/OWNER/mail is refused (name the
//!     real directory instead).
//!     del removes the user (the mailbox stays). rebuild recompiles the cdbs from the
//!     text files after hand edits.
//!
//! CONTROL FILES
//!     locals, virtualdomains, rcpthosts, vpassminlen (10), vpassclasses (3).
//!
//! USER
//!     root (or the owner of a single-user install). Installed mode 0700.
//!
//! EXIT CODES
//!     0 done; 100 refused (bad name, policy, exists, missing); 111 system trouble.

use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;

const PROG: &str = "qmail-vuser";

#[derive(Parser)]
#[command(name = "qmail-vuser", about = "manage virtual domains and users")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add a virtual domain.
    Adddomain {
        domain: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove a virtual domain and its users (mail stays on disk).
    Deldomain { domain: String },
    /// Add a user; the password is the first line of stdin.
    Add {
        address: String,
        #[arg(long, default_value = "0")]
        quota: String,
        #[arg(long)]
        apop: bool,
    },
    /// Change a password (first line of stdin).
    Passwd {
        address: String,
        #[arg(long)]
        apop: bool,
    },
    /// Remove a user (the mailbox stays on disk).
    Del { address: String },
    /// Set a user's quota (bytes, or with K/M/G; 0 = none).
    Quota { address: String, size: String },
    /// Allow logins and deliveries again.
    Enable { address: String },
    /// Refuse logins and deliveries.
    Disable { address: String },
    /// List domains, or the users of one domain.
    List { domain: Option<String> },
    /// Recompile the cdbs from users/vdomains and users/vpasswd.
    Rebuild,
}

fn fail(e: vusers::admin::AdminError) -> ! {
    qsys::die::fatal(PROG, &e.text, if e.temporary { 111 } else { 100 })
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) => n.saturating_mul(mult),
        Err(_) => qsys::die::fatal(PROG, &format!("bad size: {s}"), 100),
    }
}

/// The new password (first line of stdin), checked and hashed.
/// Read one line from stdin; on a terminal, prompt on stderr and turn echo off.
fn read_secret(prompt: &str) -> String {
    let tty = unsafe { libc::isatty(0) } == 1;
    // SAFETY: termios is plain data; tcgetattr fills it for descriptor 0.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = tty && unsafe { libc::tcgetattr(0, &mut saved) } == 0;
    if tty {
        eprint!("{prompt}");
    }
    if echo_off {
        let mut t = saved;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: t is a valid termios copied from the terminal's own.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
        eprintln!();
    }
    if r.is_err() {
        qsys::die::fatal(PROG, "unable to read the password", 111);
    }
    let n = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(n);
    line
}

/// The new password (first line of stdin; asked twice on a terminal), checked against
/// the policy and hashed.
fn new_password(home: &std::path::Path, address: &str, apop: bool) -> (String, Option<Vec<u8>>) {
    let mut pw = read_secret("new password: ");
    if unsafe { libc::isatty(0) } == 1 {
        let mut again = read_secret("again: ");
        let same = auth::crypt::ct_eq(pw.as_bytes(), again.as_bytes());
        // SAFETY: zero bytes keep the string valid UTF-8.
        auth::crypt::wipe(unsafe { again.as_bytes_mut() });
        if !same {
            qsys::die::fatal(PROG, "the passwords differ", 100);
        }
    }
    if let Err(e) = vusers::admin::check_password_policy(home, address, &pw) {
        fail(e);
    }
    let Some(hash) = auth::crypt::hash(pw.as_bytes(), "$y$") else {
        qsys::die::fatal(PROG, "unable to hash the password", 111);
    };
    let apop = apop.then(|| pw.as_bytes().to_vec());
    // SAFETY: zero bytes keep the string valid UTF-8.
    auth::crypt::wipe(unsafe { pw.as_bytes_mut() });
    (hash, apop)
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 100 } else { 0 });
        }
    };
    let home = qsys::home().unwrap_or_else(|e| qsys::die::fatal(PROG, &e.to_string(), 111));
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let r = match args.cmd {
        Cmd::Adddomain { domain, owner, dir } => {
            vusers::admin::add_domain(&home, &domain, owner.as_deref(), dir).map(|d| {
                println!(
                    "{}: added, mail in {} owned by {}; {}",
                    d.domain,
                    d.dir.display(),
                    d.user,
                    reload(&home)
                )
            })
        }
        Cmd::Deldomain { domain } => vusers::admin::del_domain(&home, &domain).map(|d| {
            println!(
                "{}: removed; mail stays in {}; {}",
                d.domain,
                d.dir.display(),
                reload(&home)
            )
        }),
        Cmd::Add {
            address,
            quota,
            apop,
        } => {
            let quota = parse_size(&quota);
            let (hash, apop) = new_password(&home, &address.to_ascii_lowercase(), apop);
            vusers::admin::add_user(&home, &address, hash, quota, apop)
                .map(|u| println!("{}: added, mailbox {}/Maildir", u.address, u.home.display()))
        }
        Cmd::Passwd { address, apop } => {
            let (hash, apop) = new_password(&home, &address.to_ascii_lowercase(), apop);
            vusers::admin::modify_user(&home, &address, |u| {
                u.hash = hash;
                u.apop = apop;
            })
            .map(|u| println!("{}: password changed", u.address))
        }
        Cmd::Del { address } => vusers::admin::del_user(&home, &address).map(|u| {
            println!(
                "{}: removed; mailbox stays in {}",
                u.address,
                u.home.display()
            )
        }),
        Cmd::Quota { address, size } => {
            let q = parse_size(&size);
            vusers::admin::modify_user(&home, &address, |u| u.quota = q)
                .map(|u| println!("{}: quota {}", u.address, u.quota))
        }
        Cmd::Enable { address } => {
            vusers::admin::modify_user(&home, &address, |u| u.enabled = true)
                .map(|u| println!("{}: enabled", u.address))
        }
        Cmd::Disable { address } => {
            vusers::admin::modify_user(&home, &address, |u| u.enabled = false)
                .map(|u| println!("{}: disabled", u.address))
        }
        Cmd::List { domain } => list(&home, domain.as_deref()),
        Cmd::Rebuild => vusers::store::Store::open(&home)
            .and_then(|s| s.compile())
            .map_err(Into::into),
    };
    if let Err(e) = r {
        fail(e);
    }
}

/// Ask qmail-send to reread control/virtualdomains: HUP through its supervise
/// (HOME/supervise/qmail-send, as `qmailctl reload` does), or say what to do.
fn reload(home: &std::path::Path) -> String {
    let dir = home.join("supervise/qmail-send");
    match svcdir::ctl::svc_send(&dir.to_string_lossy(), "h") {
        Ok(()) => "qmail-send told to reread control/virtualdomains".into(),
        Err(_) => {
            "qmail-send is not supervised here: run `qmailctl reload` (or send it HUP)".into()
        }
    }
}

fn list(home: &std::path::Path, domain: Option<&str>) -> Result<(), vusers::admin::AdminError> {
    let s = vusers::store::Store::open(home)?;
    match domain {
        None => {
            for d in &s.domains {
                let n = s
                    .users
                    .iter()
                    .filter(|u| u.address.ends_with(&format!("@{}", d.domain)))
                    .count();
                println!("{} {} {} users {}", d.domain, d.user, n, d.dir.display());
            }
        }
        Some(dom) => {
            let suffix = format!("@{}", dom.to_ascii_lowercase());
            for u in s.users.iter().filter(|u| u.address.ends_with(&suffix)) {
                let used = vusers::maildir_usage(&u.home.join("Maildir"))
                    .map(|(b, _)| b)
                    .unwrap_or(0);
                println!(
                    "{} {} quota {} used {}{}",
                    u.address,
                    u.home.display(),
                    u.quota,
                    used,
                    if u.enabled { "" } else { " disabled" }
                );
            }
        }
    }
    Ok(())
}

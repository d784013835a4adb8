//! qmail-dkim - make DKIM keys and check the DNS records of signing domains
//!
//! SYNOPSIS
//!     qmail-dkim keygen DOMAIN SELECTOR [--ed25519] [--bits N] [--force]
//!     qmail-dkim show DOMAIN
//!     qmail-dkim --help
//!
//! DESCRIPTION
//!     qmail-remote signs every message it sends (RFC 6376, relaxed/relaxed) when the
//!     domain of the message's From: address, or a parent domain of it, has keys in
//!     HOME/control/dkim:
//!
//!         control/dkim/DOMAIN/SELECTOR.rsa        RSA key, PEM (PKCS#8 or PKCS#1)
//!         control/dkim/DOMAIN/SELECTOR.ed25519    Ed25519 key, PEM (PKCS#8)
//!
//!     Every key there signs: an RSA and an Ed25519 key give two signatures (RFC 8463);
//!     during a key rollover the old and the new selector both sign until the old file
//!     is renamed (any other name, e.g. SELECTOR.rsa.old, is ignored). Keys are owned by
//!     qmailr, mode 0400. A key that cannot be read or used never holds up mail: the
//!     message goes unsigned and qmail-send's delivery line says `DKIM alert: ...`.
//!
//!     keygen makes a key (RSA of N bits, default 2048, from 1024 to 4096; Ed25519
//!     with --ed25519), writes it as control/dkim/DOMAIN/SELECTOR.rsa or .ed25519
//!     (owner qmailr and mode 0400 when run as root), and prints in zone-file form the
//!     TXT record to publish at SELECTOR._domainkey.DOMAIN (split into strings of 255
//!     bytes), then suggested SPF and DMARC records. Signing starts at once; publish
//!     the record before relying on it. An existing key is not replaced without
//!     --force, and one selector cannot hold both algorithms (use two selectors).
//!
//!     show prints, for each key of DOMAIN, the record that should be published and
//!     what DNS answers, then DOMAIN's SPF and _dmarc.DOMAIN's DMARC records (with a
//!     suggestion where none is published). DNS servers: control/nameservers, else
//!     /etc/resolv.conf.
//!
//! FILES
//!     control/dkim/       the keys (above)
//!     control/me          the host named in the suggested SPF record
//!     control/nameservers DNS servers for show
//!
//! USER
//!     root (keygen must give the key to qmailr), or the owner of a single-user
//!     install. show needs to read the keys.
//!
//! EXIT CODES
//!     0 done (show: everything published as it should be); 1 show: a record is
//!     missing or differs; 100 usage, bad name, or the key exists; 111 temporary
//!     failure (a file, DNS, the system).

use clap::{Parser, Subcommand};

const PROG: &str = "qmail-dkim";

#[derive(Parser)]
#[command(name = PROG, disable_help_flag = true, disable_help_subcommand = true)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Keygen {
        domain: String,
        selector: String,
        #[arg(long)]
        ed25519: bool,
        #[arg(long, default_value_t = 0)]
        bits: usize,
        #[arg(long)]
        force: bool,
    },
    Show {
        domain: String,
    },
}

/// The manual: this file's leading `//!` lines.
fn manual() -> String {
    include_str!("main.rs")
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    if std::env::args().skip(1).any(|a| a == "-h") {
        print!("{}", manual());
        std::process::exit(0);
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            eprintln!(
                "{PROG}: usage: qmail-dkim keygen DOMAIN SELECTOR [--ed25519] [--bits N] [--force] | show DOMAIN | --help"
            );
            std::process::exit(100);
        }
    };
    let home = qsys::home().unwrap_or_else(|e| qsys::die::fatal(PROG, &e.to_string(), 111));
    let result = match args.cmd {
        Cmd::Keygen {
            domain,
            selector,
            ed25519,
            bits,
            force,
        } => {
            let k = dkim::admin::Keygen {
                domain,
                selector,
                algorithm: if ed25519 {
                    dkim::Algorithm::Ed25519
                } else {
                    dkim::Algorithm::Rsa
                },
                bits,
                force,
            };
            dkim::admin::keygen(&home, &k, owner()).map(|text| {
                print!("{text}");
                0
            })
        }
        Cmd::Show { domain } => {
            let servers = dns::servers_for_ucspi(None, Some(&home));
            let resolver = dns::Dns::new(&servers).unwrap_or_else(|e| {
                qsys::die::fatal(PROG, &format!("unable to start DNS: {e}"), 111)
            });
            let mut lookup = |name: &str| match resolver.txt(name) {
                Ok(v) => Ok(v),
                Err(dns::DnsError::Hard) => Ok(Vec::new()),
                Err(dns::DnsError::Soft) => Err("temporary failure".to_string()),
            };
            dkim::admin::show(&home, &domain, &mut lookup).map(|(text, verdict)| {
                print!("{text}");
                match verdict {
                    dkim::admin::Verdict::Ok => 0,
                    dkim::admin::Verdict::Differs => 1,
                    dkim::admin::Verdict::Unknown => 111,
                }
            })
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(dkim::admin::AdminError::Refused(m)) => qsys::die::fatal(PROG, &m, 100),
        Err(dkim::admin::AdminError::Temporary(m)) => qsys::die::fatal(PROG, &m, 111),
    }
}

/// The owner of new keys: qmailr (the user qmail-remote runs as) when root; else the
/// caller (a single-user install, where every program runs as that user).
fn owner() -> dkim::keys::Owner {
    if !nix::unistd::geteuid().is_root() {
        return dkim::keys::Owner {
            uid: None,
            gid: None,
        };
    }
    match qsys::ids::account("qmailr") {
        Some((uid, gid)) => dkim::keys::Owner {
            uid: Some(uid),
            gid: Some(gid),
        },
        None => qsys::die::fatal(
            PROG,
            "user qmailr does not exist (run qmail-install first): nobody could sign with the key",
            111,
        ),
    }
}

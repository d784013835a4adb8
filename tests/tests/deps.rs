//! What the programs started per connection or per message may link, and how they are
//! linked (issue 13, "Process start" and "What each per-message program links").
//!
//! Such a program pays for its binary on every start: its pages are faulted in, its
//! relocations applied, its statics set up. So each links only what it uses:
//!
//! - nothing per message pulls an async runtime or a resolver (tokio, mio, hickory-*),
//!   except the two that resolve: qmail-remote (MX and A lookups) and rblsmtpd (DNSBL);
//! - rustls (and ring, webpki) only where TLS is spoken: qmail-smtpd (STARTTLS),
//!   qmail-popup (STLS), qmail-remote (STARTTLS), and qmail-pop3d, which links it only
//!   through the pop3 crate that also holds qmail-popup (fat LTO drops the unused code;
//!   splitting popup's TLS into a feature of that crate would take it out of the tree);
//! - no argument parser (clap): their argv is fixed by the program that runs them;
//! - nothing heavy that is forbidden everywhere: logging frameworks, mail-auth (except
//!   in qmail-authcheck, the SPF/DKIM/DMARC filter, which resolves too), the system
//!   certificate store loader, other crypto back ends.
//!
//! The per-message programs that never consult NSS are linked with a static glibc
//! (`link = "static"` in their Cargo.toml, applied by .cargo/static-link.sh): that halves
//! their start (bench/README.md, "Process start"). A static glibc program must not call
//! getpwnam and friends: for a name not in /etc/passwd glibc dlopen()s the next module of
//! nsswitch.conf and the static program crashes. The programs that look users up
//! (checkpassword, qmail-lspawn, tcpserver -u NAME) stay dynamic. qmail-qfilter finds
//! qmailf through qsys::ids, which reads /etc/passwd itself in a static program, and
//! qmail-queue names its caller from the owners of the queue's directories: both are
//! static. Which functions a static program really links is visible only after fat LTO
//! (a debug build keeps every function nix references), so that is checked on the
//! release build by hand: bench/README.md, "Process start", gives the command.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates no per-message program may link, whatever it does.
const FORBIDDEN: &[&str] = &[
    "clap",
    "clap_builder",
    "mail-auth",
    "rustls-native-certs",
    "aws-lc-rs",
    "openssl",
    "native-tls",
    "env_logger",
    "tracing-subscriber",
    "log4rs",
];

/// Crates that come with name resolution (an async runtime and the resolver).
const DNS: &[&str] = &[
    "tokio",
    "mio",
    "hickory-resolver",
    "hickory-proto",
    "hickory-net",
    "moka",
];

/// Crates that come with TLS.
const TLS: &[&str] = &["rustls", "ring", "rustls-webpki", "webpki-roots"];

/// A per-message program, what it may link beyond the base, and whether its glibc is static.
struct Program {
    name: &'static str,
    tls: bool,
    dns: bool,
    statically: bool,
}

const fn p(name: &'static str, tls: bool, dns: bool, statically: bool) -> Program {
    Program {
        name,
        tls,
        dns,
        statically,
    }
}

/// Every program started per connection or per message. A program another branch has not
/// brought in yet (qmail-qfilter, qmail-scan) is skipped while its directory is missing.
const PROGRAMS: &[Program] = &[
    p("qmail-smtpd", true, false, true),
    p("qmail-queue", false, false, true), // names its caller from directory owners, no NSS
    p("qmail-local", false, false, true),
    p("qmail-inject", false, false, true),
    p("sendmail", false, false, true),
    p("qmail-popup", true, false, true),
    p("qmail-pop3d", false, false, true), // pop3 without its "popup" feature
    p("checkpassword", false, false, false), // getpwnam, getspnam, initgroups, libcrypt
    p("qmail-remote", true, true, true),
    p("rblsmtpd", false, true, true),
    p("qmail-qfilter", false, false, true), // qmailf through qsys::ids (files when static)
    p("qmail-qfilterd", false, false, true), // forks the chain per message: a static image forks cheaper
    p("qmail-scan", false, false, true),
    p("qmail-spamc", false, false, true), // spamd by socket path or IP:port, no lookups
    p("qmail-authcheck", false, true, true), // SPF, DKIM, DMARC: mail-auth and its resolver
    // run by qmail-remote per delivery only where control/dkim exists; mail-auth will not
    // build without a resolver, which signing never calls
    p("qmail-dkimsign", false, true, true),
];

/// The per-message programs that may link mail-auth (issue 15): the inbound sender check,
/// run only when control/filters names it, and the DKIM signer, run only when
/// control/dkim exists.
const MAIL_AUTH: &[&str] = &["qmail-authcheck", "qmail-dkimsign"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn present(name: &str) -> bool {
    workspace()
        .join("bin")
        .join(name)
        .join("Cargo.toml")
        .is_file()
}

/// The names of every crate `name` links for its own use (proc-macros appear too; they do
/// not end up in the binary but are harmless in the list).
fn tree(name: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(workspace().join("Cargo.toml"))
        .args(["-p", name])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The crates of `tree` that `prog` may not link, with the reason.
fn violations(prog: &Program, tree: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for c in tree {
        let allowed = c == "mail-auth" && MAIL_AUTH.contains(&prog.name);
        let why = if FORBIDDEN.contains(&c.as_str()) && !allowed {
            "forbidden in every per-message program"
        } else if !prog.dns && (DNS.contains(&c.as_str()) || c.starts_with("hickory-")) {
            "an async runtime or resolver in a program that does not resolve"
        } else if !prog.tls && TLS.contains(&c.as_str()) {
            "TLS in a program that does not speak TLS"
        } else {
            continue;
        };
        bad.push(format!("{} links {c}: {why}", prog.name));
    }
    bad
}

#[test]
fn rules_catch_a_forbidden_crate() {
    let queue = &PROGRAMS[1];
    let tree = ["qsys", "tokio", "rustls", "clap", "hickory-net"].map(String::from);
    assert_eq!(violations(queue, &tree).len(), 4);
    let remote = &PROGRAMS[8];
    assert_eq!(
        violations(remote, &tree),
        ["qmail-remote links clap: forbidden in every per-message program"]
    );
}

#[test]
fn per_message_programs_link_no_forbidden_crate() {
    let mut bad = Vec::new();
    for prog in PROGRAMS.iter().filter(|p| present(p.name)) {
        bad.extend(violations(prog, &tree(prog.name)));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The manifest line .cargo/static-link.sh looks for.
fn opts_in(name: &str) -> bool {
    let manifest = workspace().join("bin").join(name).join("Cargo.toml");
    std::fs::read_to_string(manifest)
        .map(|t| t.lines().any(|l| l.trim() == r#"link = "static""#))
        .unwrap_or(false)
}

/// Whether an ELF file asks for a program interpreter (ld.so), i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
    };
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    let mut found = false;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let t = elf.get(at..at + 4)?;
        found |= u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP;
    }
    Some(found)
}

#[test]
fn static_programs_are_static() {
    let dir = e2e::build_dir();
    let mut bad = Vec::new();
    for prog in PROGRAMS.iter().filter(|p| present(p.name)) {
        if prog.statically != opts_in(prog.name) {
            bad.push(format!(
                "{}: Cargo.toml says static = {}, this test says {}",
                prog.name,
                opts_in(prog.name),
                prog.statically
            ));
        }
        let bin = dir.join(prog.name);
        let Ok(elf) = std::fs::read(&bin) else {
            bad.push(format!("{}: not built", bin.display()));
            continue;
        };
        match has_interpreter(&elf) {
            Some(dynamic) if dynamic == prog.statically => bad.push(format!(
                "{}: linked {}, expected {}",
                prog.name,
                if dynamic { "dynamically" } else { "statically" },
                if prog.statically {
                    "statically"
                } else {
                    "dynamically"
                }
            )),
            Some(_) => {}
            None => bad.push(format!("{}: not a 64-bit ELF file", bin.display())),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

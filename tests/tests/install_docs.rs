//! INSTALL.md and README.md run as printed (issue 12): every command of their indented
//! code blocks is extracted and run in order with `sh -c`, with the paths that would touch
//! the host pointed into a temporary installation (`/var/qmail`, `/service`,
//! `/etc/aliases`, `/etc/ssl/qmail`, the svscan log and pid file), its services on free
//! loopback ports and its DNS at a local dnsmasq. Lines that change the host and cannot
//! be redirected are on [`INSTALL_SKIPS`] / [`README_SKIPS`], each with the reason and,
//! where there is one, an equivalent check run instead. A command that fails, a command
//! in neither list, or a listed line the document no longer has fails the test, so the
//! documents and this test stay in step. The quick start's commands are run by
//! `qmailctl.rs::quickstart_runs_the_whole_system`.

use e2e::{build_dir, need_root, pids_of, wait_until};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Lines of INSTALL.md not run as printed: (the command's first line, why).
const INSTALL_SKIPS: &[(&str, &str)] = &[
    (
        "cargo build --release --workspace --bins",
        "a release build takes too long here: the debug build's programs stand in \
         (target/release/ is replaced by the debug build dir)",
    ),
    (
        "echo 'export PATH=/var/qmail/bin:$PATH' > /etc/profile.d/qmail.sh",
        "writes /etc/profile.d; equivalent: every command runs with TEMP/bin first in PATH",
    ),
    (
        "cp /var/qmail/boot/svscan.service /etc/systemd/system/ && systemctl enable --now svscan",
        "changes the host's systemd; equivalent: `systemd-analyze verify` on a copy",
    ),
    (
        "cp /var/qmail/boot/svscan.init /etc/init.d/svscan",
        "writes /etc/init.d; equivalent: the installed script, paths substituted, run \
         with start, status and stop",
    ),
    (
        "update-rc.d svscan defaults && /etc/init.d/svscan start    # Debian, Devuan",
        "changes the host's runlevels; the script itself is run by the previous line's check",
    ),
    (
        "# elsewhere: chkconfig --add svscan, or rc-update add svscan default",
        "a comment naming other init systems' commands, which change the host's runlevels",
    ),
    (
        "echo 'SV:123456:respawn:/var/qmail/bin/svscanboot /service </dev/null >/dev/console 2>&1' >> /etc/inittab",
        "writes /etc/inittab; equivalent: the entry's fields are checked and its command \
         is the rc.local line's, which runs for real",
    ),
    ("kill -HUP 1", "signals the host's init"),
    ("apt-get install equivs", "installs a package on the host"),
    (
        "equivs-build mta.ctl && apt-get install ./qmail-rust-mta_1.0_all.deb   # removes exim4/postfix",
        "installs a package on the host; equivalent: mta.ctl, written by the line before, \
         is checked for the fields equivs needs",
    ),
    (
        "certbot certonly --standalone -d mx.example.org \\",
        "asks Let's Encrypt over the network; equivalent: the deploy hook run as certbot \
         runs it (RENEWED_LINEAGE)",
    ),
    (
        "acme.sh --install-cert -d mx.example.org --fullchain-file /etc/ssl/qmail/fullchain.pem \\",
        "needs acme.sh and an issued certificate; equivalent: its --reloadcmd run as printed",
    ),
    (
        "qmail-stats --since 24h --html /var/www/html/mail-stats.html",
        "writes into the host's web root; equivalent: tests/stats.rs renders --html into a \
         temporary file and opens it in Chromium",
    ),
];

/// Indented blocks of INSTALL.md that are not commands: (the block's first line, what it is).
const INSTALL_DATA: &[(&str, &str)] = &[
    (
        "7 * * * *  root  /var/qmail/bin/qmail-stats --since 24h --html /var/www/html/mail-stats.html",
        "lines of /etc/cron.d for qmail-stats, not commands",
    ),
    (
        "#!/bin/sh",
        "the qmail-audit-mail script, a file to write into /usr/local/sbin (qmail-audit \
         itself runs above)",
    ),
    (
        "17 5 * * 1 root /usr/local/sbin/qmail-audit-mail",
        "a line of /etc/cron.d, not a command",
    ),
    (
        "clientconcurrency  20    simultaneous sessions per client (tcpserver -C; 0 = none)",
        "a table of control files",
    ),
    (
        "127.0.0.1:allow,RELAYCLIENT=\"\",MAXCONNIP=\"0\",MAXCONNRATEIP=\"0\"",
        "tcprules text",
    ),
    ("passdb passwd-file {", "Dovecot configuration"),
    (
        "s2026._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p=MIIBIjANBg...(255 bytes)\" \"...rest\"",
        "DNS records",
    ),
];

/// What, left in a command after the substitution, would act on the host: such a line
/// must be on [`INSTALL_SKIPS`] (the test refuses to run it).
const HOST_CHANGES: &[&str] = &[
    "apt-get",
    "equivs-build",
    "dpkg ",
    "systemctl",
    "update-rc.d",
    "chkconfig",
    "rc-update",
    "kill -HUP 1",
    "certbot",
    "acme.sh",
    "cargo ",
    "/etc/",
    "/var/",
    "/run/",
];

/// Lines run with an argument added, since what they act on is implicit: (line, the
/// line as run before the path substitution, why).
const INSTALL_REWRITES: &[(&str, &str, &str)] = &[(
    "/var/qmail/bin/newaliases",
    "/var/qmail/bin/newaliases /etc/aliases",
    "its default file made explicit, so that the substitution points it at a temporary one",
)];

/// Commands whose documented exit code is not 0: (first line, code).
const INSTALL_EXIT: &[(&str, i32)] = &[(
    // the test's DNS has none of the records: "1: missing or different"
    "qmail-dkim show example.com      # exit 0: all published; 1: missing or different",
    1,
)];

/// Lines of README.md outside the quick start not run here: (line, why).
const README_SKIPS: &[(&str, &str)] = &[
    (
        "cargo build --workspace --bins && init/quickstart",
        "the build is this test's prerequisite; the quick start and the commands it \
         prints run in qmailctl.rs::quickstart_runs_the_whole_system",
    ),
    (
        "cargo build --workspace --bins && cargo test --workspace",
        "the build and the test suite this test is part of",
    ),
    (
        "sudo bench/inject.sh       # sendmail injection to Maildir, against Postfix",
        "a benchmark of minutes against Postfix, run by hand (bench/README.md)",
    ),
    (
        "sudo bench/smtp.sh         # SMTP in to Maildir with smtp-source, against Postfix's smtpd",
        "a benchmark of minutes against Postfix, run by hand (bench/README.md)",
    ),
    (
        "sudo bench/pop3.sh         # POP3 RETR+DELE of 10,000 messages, against Dovecot",
        "a benchmark of minutes against Dovecot, run by hand (bench/README.md)",
    ),
    (
        "bench/tcpserver.sh         # connections per second, against ucspi-tcp's tcpserver",
        "a benchmark of minutes against ucspi-tcp, run by hand (bench/README.md)",
    ),
];

/// One command of a document: its first line (the key of the lists above) and its text
/// (continuation lines, here-documents and compound commands joined).
struct DocCommand {
    first: String,
    text: String,
}

/// The indented code blocks of `doc`, outside the section headed `skip_section`, each as
/// its lines without the indent.
fn blocks(doc: &str, skip_section: Option<&str>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut skipping = false;
    for line in doc.lines() {
        if line.starts_with('#') {
            skipping = skip_section.is_some_and(|s| line.trim_start_matches('#').trim() == s);
        }
        match line.strip_prefix("    ") {
            Some(code) if !skipping => cur.push(code.to_string()),
            _ if line.trim().is_empty() && !cur.is_empty() => {}
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `sh -n` accepts `text` as complete.
fn complete(text: &str) -> bool {
    if text.ends_with('\\') {
        return false;
    }
    Command::new("sh")
        .args(["-n", "-c", text])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The commands of a block: lines joined until the shell sees a whole command; a
/// here-document runs to its terminator.
fn commands(block: &[String]) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let first = block[i].clone();
        let mut text = first.clone();
        i += 1;
        if let Some(pos) = first.find("<<") {
            let term = first[pos + 2..]
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string();
            while i < block.len() {
                text.push('\n');
                text.push_str(&block[i]);
                i += 1;
                if block[i - 1] == term {
                    break;
                }
            }
        } else {
            while !complete(&text) && i < block.len() {
                text.push('\n');
                text.push_str(&block[i]);
                i += 1;
            }
        }
        out.push(DocCommand { first, text });
    }
    out
}

/// The temporary places the documents' host paths are pointed at.
struct Places {
    tmp: PathBuf,
    root: PathBuf,
    sv: PathBuf,
    tree: PathBuf,
    cwd: PathBuf,
}

impl Places {
    fn subst(&self, text: &str) -> String {
        let t = |p: &str| self.tmp.join(p).display().to_string();
        let build = build_dir().display().to_string();
        text.replace("target/release/", &format!("{build}/"))
            .replace("/service", &self.sv.display().to_string())
            .replace(
                "/var/qmail/boot/replace-sendmail",
                &format!(
                    "{}/boot/replace-sendmail --root {}",
                    self.root.display(),
                    self.tree.display()
                ),
            )
            .replace("/var/qmail", &self.root.display().to_string())
            .replace("/etc/aliases", &t("aliases"))
            .replace("/etc/ssl/qmail", &t("ssl"))
            .replace("/var/log/svscan.log", &t("svscan.log"))
            .replace("/run/svscan.pid", &t("svscan.pid"))
            .replace("/home/shared", &t("shared"))
    }

    fn env_path(&self) -> String {
        format!(
            "{}/bin:{}",
            self.root.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Run `text` as the documents' reader would: with our programs first in PATH and
    /// a password on stdin (qmail-vuser reads one).
    fn sh(&self, text: &str) -> std::process::Output {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(text)
            .current_dir(&self.cwd)
            .env("PATH", self.env_path())
            .env("QMAILCTL_SERVICE_DIR", &self.sv);
        e2e::output_with_input(&mut cmd, "Docs-Test-Pass-26\n")
    }
}

/// svscan started by the documents' lines, stopped with TERM when the test ends, even
/// when it fails.
struct Svscan(PathBuf);

impl Svscan {
    fn stop(&self) {
        for pid in pids_of(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        wait_until("svscan to stop", 150, || {
            pids_of(&self.0).is_empty().then_some(())
        });
    }
}

impl Drop for Svscan {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until supervise runs for every service linked into `sv`, and its log.
fn wait_supervised(p: &Places) {
    let Ok(entries) = std::fs::read_dir(&p.sv) else {
        return;
    };
    for e in entries.flatten() {
        for dir in [e.path(), e.path().join("log")] {
            if !dir.join("run").exists() {
                continue;
            }
            wait_until(&format!("supervise in {}", dir.display()), 60, || {
                Command::new(p.root.join("bin/svok"))
                    .arg(&dir)
                    .status()
                    .ok()
                    .filter(|s| s.success())
            });
        }
    }
}

/// The linked qmail-smtpd answers 220 on its loopback port.
fn smtp_greets(p: &Places) {
    use std::io::BufRead;
    let port = std::fs::read_to_string(p.root.join("control/smtpdport")).unwrap();
    let addr = format!("127.0.0.1:{}", port.trim());
    let line = wait_until(&format!("a greeting on {addr}"), 60, || {
        let s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).ok()?;
        Some(line)
    });
    assert!(line.starts_with("220 mx.example.org"), "{line}");
}

/// A tree that looks like a Debian root whose MTA owns sendmail (as admin_setup.rs).
fn debian_tree(root: &Path) {
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/diversions"), "").unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("usr/sbin/sendmail"), "#!/bin/sh\nexit 0\n").unwrap();
    std::os::unix::fs::symlink("../sbin/sendmail", root.join("usr/lib/sendmail")).unwrap();
}

#[track_caller]
fn ok(what: &str, o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Before any service starts: every listening port a free loopback one, DNS at `dns_port`.
fn loopback_controls(p: &Places, dns_port: u16) {
    let c = p.root.join("control");
    std::fs::write(c.join("listenaddress"), "127.0.0.1\n").unwrap();
    std::fs::write(c.join("nameservers"), format!("127.0.0.1:{dns_port}\n")).unwrap();
    for name in [
        "smtpdport",
        "submissionport",
        "smtpsport",
        "pop3dport",
        "pop3dsport",
        "imapport",
        "imapsport",
    ] {
        std::fs::write(c.join(name), format!("{}\n", e2e::free_port())).unwrap();
    }
}

/// The equivalent check of a skipped line, if it has one.
fn equivalent(p: &Places, cmd: &DocCommand) {
    let first = cmd.first.as_str();
    if first.starts_with("cp /var/qmail/boot/svscan.service") {
        let unit = std::fs::read_to_string(p.root.join("boot/svscan.service")).unwrap();
        let copy = p.tmp.join("svscan.service");
        std::fs::write(&copy, p.subst(&unit)).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        ok("systemd-analyze verify svscan.service", &o);
    } else if first.starts_with("cp /var/qmail/boot/svscan.init") {
        let script = std::fs::read_to_string(p.root.join("boot/svscan.init")).unwrap();
        let init = p.tmp.join("svscan.init");
        std::fs::write(&init, p.subst(&script)).unwrap();
        let run = |verb: &str| {
            Command::new("sh")
                .arg(&init)
                .arg(verb)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        ok("svscan.init start", &run("start"));
        let svscan = Svscan(p.root.join("bin/svscan"));
        wait_supervised(p);
        ok("svscan.init status", &run("status"));
        ok("svscan.init stop", &run("stop"));
        assert_eq!(run("status").status.code(), Some(3), "status after stop");
        svscan.stop();
    } else if first.starts_with("echo 'SV:") {
        let entry = first.split('\'').nth(1).unwrap();
        let fields: Vec<&str> = entry.splitn(4, ':').collect();
        assert_eq!(
            fields.len(),
            4,
            "inittab id:runlevels:action:process: {entry}"
        );
        assert!(fields[0].len() <= 4, "inittab id of at most 4 characters");
        assert!(fields[1].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(fields[2], "respawn");
        let process = fields[3].split('<').next().unwrap().trim();
        assert_eq!(process, "/var/qmail/bin/svscanboot /service");
    } else if first.starts_with("equivs-build") {
        let ctl = std::fs::read_to_string(p.cwd.join("mta.ctl")).unwrap();
        for field in [
            "Package: qmail-rust-mta",
            "Version: 1.0",
            "Provides: mail-transport-agent",
            "Conflicts: mail-transport-agent",
            "Replaces: mail-transport-agent",
            "Description: ",
        ] {
            assert!(
                ctl.lines().any(|l| l.starts_with(field)),
                "mta.ctl: {field}"
            );
        }
    } else if first.starts_with("certbot") {
        let hook = cmd
            .text
            .split("--deploy-hook")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let lineage = p.tmp.join("live");
        std::fs::create_dir_all(&lineage).unwrap();
        certificate_pair(
            p,
            &lineage.join("fullchain.pem"),
            &lineage.join("privkey.pem"),
        );
        let o = Command::new("sh")
            .arg("-c")
            .arg(p.subst(hook))
            .env("RENEWED_LINEAGE", &lineage)
            .output()
            .unwrap();
        ok("certbot's deploy hook", &o);
        deployed(p);
    } else if first.starts_with("acme.sh") {
        let reload = cmd
            .text
            .split("--reloadcmd \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ssl = p.tmp.join("ssl");
        std::fs::create_dir_all(&ssl).unwrap();
        certificate_pair(p, &ssl.join("fullchain.pem"), &ssl.join("key.pem"));
        ok("acme.sh's reloadcmd", &p.sh(&p.subst(reload)));
        deployed(p);
    }
}

/// A certificate and key (a fresh self-signed pair) where an ACME client leaves them.
fn certificate_pair(p: &Places, chain: &Path, key: &Path) {
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=mx.example.org", "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(chain)
        .current_dir(&p.tmp)
        .output()
        .unwrap();
    ok("openssl req", &o);
}

/// control/servercert.pem as cert-deploy leaves it: key and chain, qmaild's, 0400.
fn deployed(p: &Places) {
    use std::os::unix::fs::MetadataExt;
    let cert = p.root.join("control/servercert.pem");
    let text = std::fs::read_to_string(&cert).unwrap();
    assert!(text.contains("PRIVATE KEY-----") && text.contains("BEGIN CERTIFICATE"));
    let meta = std::fs::metadata(&cert).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o400);
    let qmaild = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    assert_eq!(meta.uid(), qmaild.uid.as_raw());
    assert!(!p.root.join("control/serverkey.pem").exists());
}

/// Check `lines` (the first lines of a document's commands) against a skip list: every
/// entry must still be in the document.
fn entries_present(doc: &str, lines: &BTreeSet<String>, keys: &[&str]) {
    for k in keys {
        assert!(
            lines.contains(*k),
            "{doc} no longer has this line of the test's lists: {k}"
        );
    }
}

#[test]
fn install_md_runs_as_printed() {
    need_root!();
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../INSTALL.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("install-docs")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let tmp = dir.path().to_path_buf();
    let p = Places {
        root: tmp.join("root"),
        sv: tmp.join("sv"),
        tree: tmp.join("debian"),
        cwd: tmp.join("cwd"),
        tmp,
    };
    std::fs::create_dir(&p.cwd).unwrap();
    debian_tree(&p.tree);
    std::fs::write(p.tmp.join("aliases"), "webmaster: postmaster\n").unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(p.tmp.join("shared/Maildir/.Ham").join(sub)).unwrap();
    }
    // example.com and example.org answered by a local server that knows none of their
    // records, so nothing is asked of the Internet
    let (_dns, dns_port) = e2e::dnsmasq(&["--local=/example.com/", "--local=/example.org/"]);
    let _svscan = Svscan(p.root.join("bin/svscan"));
    let mut svscan_running = false;

    let mut firsts = BTreeSet::new();
    for block in blocks(&doc, None) {
        if INSTALL_DATA.iter().any(|(k, _)| *k == block[0]) {
            firsts.insert(block[0].clone());
            continue;
        }
        for cmd in commands(&block) {
            firsts.insert(cmd.first.clone());
            if INSTALL_SKIPS.iter().any(|(k, _)| *k == cmd.first) {
                equivalent(&p, &cmd);
                continue;
            }
            if svscan_running {
                wait_supervised(&p);
            }
            if cmd.text.contains("qmail-spamlearn") {
                // a nightly cron job finds spamd long up; here it has just been linked
                let sock = p.root.join("spamd/spamd.sock");
                wait_until("spamd to listen", 120, || {
                    std::os::unix::net::UnixStream::connect(&sock).ok()
                });
            }
            let moved = p.root.join("control/badmailfrom");
            let migrating = cmd
                .first
                .starts_with("cd /var/qmail && for f in badmailfrom");
            if migrating {
                // "if you had one before": a plain control/badmailfrom to move in
                std::fs::remove_file(&moved).unwrap();
                std::fs::write(&moved, "spam@example.test\n").unwrap();
            }
            let text = match INSTALL_REWRITES.iter().find(|(k, _, _)| *k == cmd.first) {
                Some((_, as_run, _)) => p.subst(as_run),
                None => p.subst(&cmd.text),
            };
            if let Some(host) = HOST_CHANGES.iter().find(|h| text.contains(*h)) {
                panic!(
                    "INSTALL.md: a command that would act on the host ({host}) is not on the skip list: {text}"
                );
            }
            let o = p.sh(&text);
            let want = INSTALL_EXIT
                .iter()
                .find(|(k, _)| *k == cmd.first)
                .map_or(0, |(_, c)| *c);
            assert_eq!(
                o.status.code(),
                Some(want),
                "INSTALL.md: {}\nran: {text}\nstdout: {}\nstderr: {}",
                cmd.text,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            if cmd.first.starts_with("target/release/qmail-install") {
                loopback_controls(&p, dns_port);
            }
            if migrating {
                use std::os::unix::fs::MetadataExt;
                assert_eq!(
                    std::fs::read_link(&moved).ok(),
                    Some(PathBuf::from("../guard/badmailfrom"))
                );
                let guard = p.root.join("guard/badmailfrom");
                assert_eq!(
                    std::fs::read_to_string(&guard).unwrap(),
                    "spam@example.test\n"
                );
                let qmailg = nix::unistd::User::from_name("qmailg").unwrap().unwrap();
                assert_eq!(
                    std::fs::metadata(&guard).unwrap().uid(),
                    qmailg.uid.as_raw()
                );
            }
            if cmd.first.starts_with("/var/qmail/bin/qmailctl cdb") {
                let cdb = p.root.join("control/tcp.smtp.cdb");
                let meta = std::fs::symlink_metadata(&cdb).unwrap();
                assert!(
                    meta.file_type().is_symlink(),
                    "{}: replaced qmail-guard's link control/tcp.smtp.cdb",
                    cmd.text
                );
            }
            if cmd.first.starts_with("setsid /var/qmail/bin/svscanboot") {
                svscan_running = true;
                wait_supervised(&p);
                smtp_greets(&p);
            }
        }
    }
    // a command printed inline, after the rules it checks
    let check = "TCPREMOTEIP=10.0.0.5 /var/qmail/bin/tcprulescheck /var/qmail/control/tcp.smtp.cdb";
    assert!(
        doc.contains(&format!("`{check}`")),
        "INSTALL.md no longer has `{check}`"
    );
    let o = p.sh(&p.subst(check));
    ok(check, &o);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("RELAYCLIENT"), "{check}: {said}");
    let keys: Vec<&str> = INSTALL_SKIPS
        .iter()
        .map(|(k, _)| *k)
        .chain(INSTALL_DATA.iter().map(|(k, _)| *k))
        .chain(INSTALL_EXIT.iter().map(|(k, _)| *k))
        .chain(INSTALL_REWRITES.iter().map(|(k, _, _)| *k))
        .collect();
    entries_present("INSTALL.md", &firsts, &keys);
    assert!(
        svscan_running,
        "INSTALL.md no longer starts svscanboot from rc.local"
    );
    // the outcomes the documents promise
    let r = &p.root;
    assert!(
        p.tmp.join("aliases.cdb").is_file(),
        "newaliases wrote no cdb"
    );
    assert!(r.join("control/tcp.smtp.cdb").exists());
    assert!(
        std::fs::symlink_metadata(r.join("control/tcp.smtp.cdb"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the documented tcprules command replaced qmail-guard's link control/tcp.smtp.cdb"
    );
    assert!(r.join("control/dkim/example.com/s2026.rsa").is_file());
    assert!(r.join("control/dkim/example.com/e2026.ed25519").is_file());
    assert_eq!(
        std::fs::read_link(p.tree.join("usr/sbin/sendmail")).ok(),
        Some(r.join("bin/sendmail")),
        "replace-sendmail left ours in place"
    );
}

#[test]
fn readme_commands_are_listed() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let mut firsts = BTreeSet::new();
    for block in blocks(&doc, Some("Trying the quick start")) {
        for cmd in commands(&block) {
            assert!(
                README_SKIPS.iter().any(|(k, _)| *k == cmd.first),
                "README.md has a command this test neither runs nor lists: {}",
                cmd.text
            );
            firsts.insert(cmd.first);
        }
    }
    let keys: Vec<&str> = README_SKIPS.iter().map(|(k, _)| *k).collect();
    entries_present("README.md", &firsts, &keys);
}

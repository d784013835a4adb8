//! qmailctl - control the mail system's services
//!
//! SYNOPSIS
//!     qmailctl [-s SERVICEDIR] VERB
//!
//! DESCRIPTION
//!     Acts on the services of this installation that are linked into SERVICEDIR
//!     (default: $QMAILCTL_SERVICE_DIR, else /service): qmail-send, qmail-smtpd,
//!     qmail-submission, qmail-smtps, qmail-pop3d, qmail-pop3ds, qmail-queued (the
//!     queue writer for qmail-smtpd), qmail-qfilterd (its filter chain), qmail-imapd (Dovecot, when installed),
//!     qmail-spamd (when linked: it is off by default), qmail-guard, and their log/
//!     services. HOME is the installation holding this program (HOME/bin/qmailctl).
//!
//!     start      svc -u every service and log (needs svscan running)
//!     stop       svc -d every service and log
//!     restart    svc -tu every service: stop, then start again
//!     pause      svc -p every service (stop accepting / delivering)
//!     cont       svc -c every service
//!     doqueue, alrm, flush
//!                qmail-tcpok, then svc -a qmail-send: retry the queue now
//!     reload, hup
//!                svc -h qmail-send: reread locals and virtualdomains
//!     stat       svstat every service and log, then qmail-qstat
//!     queue      qmail-qstat and qmail-qread
//!     cdb        rebuild HOME/control/tcp.smtp.cdb, tcp.submission.cdb and tcp.pop3.cdb
//!                from the rules texts of the same names (without .cdb) with tcprules
//!     help       this list
//!
//! USER
//!     root (or the owner of the service directories, for a private install).
//!
//! EXIT CODES
//!     0 done; 100 usage or unknown verb; 111 a step failed (the message says which).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// the installed services, in the order the installer links them
use install::hier::{OPTIONAL_SERVICES, SERVICES};

const PROG: &str = "qmailctl";

const HELP: &str = "   stop -- stops mail service (smtp connections refused, nothing goes out)
  start -- starts mail service (smtp connection accepted, mail can go out)
  pause -- temporarily stops mail service (connections accepted, nothing leaves)
   cont -- continues paused mail service
   stat -- displays status of mail service
    cdb -- rebuild the tcpserver cdb files for smtp, submission and pop3
restart -- stops and restarts all services
doqueue -- schedules queued messages for immediate delivery
 reload -- sends qmail-send HUP, rereading locals and virtualdomains
  queue -- shows status of queue
   alrm -- same as doqueue
  flush -- same as doqueue
    hup -- same as reload";

fn usage() -> ! {
    eprintln!(
        "{PROG}: usage: {PROG} [-s servicedir] {{start|stop|restart|doqueue|flush|reload|stat|pause|cont|cdb|queue|help}}"
    );
    std::process::exit(100)
}

struct Ctl {
    home: PathBuf,
    svdir: PathBuf,
    failed: bool,
}

impl Ctl {
    /// The linked services (and their logs) present in the service directory.
    fn dirs(&self, with_logs: bool) -> Vec<String> {
        let mut v = Vec::new();
        for s in SERVICES.iter().chain(OPTIONAL_SERVICES) {
            let d = self.svdir.join(s);
            if !d.join("run").exists() {
                continue;
            }
            v.push(d.to_string_lossy().into_owned());
            if with_logs && d.join("log/run").exists() {
                v.push(d.join("log").to_string_lossy().into_owned());
            }
        }
        v
    }

    fn svc(&mut self, letters: &str, dirs: &[String]) {
        if dirs.is_empty() {
            eprintln!(
                "{PROG}: warning: no qmail services in {}",
                self.svdir.display()
            );
            self.failed = true;
        }
        for d in dirs {
            if !svcdir::ctl::running(Path::new(d)) {
                eprintln!("{PROG}: warning: {d}: supervise not running");
                self.failed = true;
                continue;
            }
            if let Err(m) = svcdir::ctl::svc_send(d, letters) {
                eprintln!("{PROG}: warning: {m}");
                self.failed = true;
            }
        }
    }

    fn run(&mut self, prog: &str, args: &[&str]) {
        let p = self.home.join("bin").join(prog);
        match Command::new(&p).args(args).status() {
            Ok(st) if st.success() => {}
            Ok(st) => {
                eprintln!("{PROG}: warning: {} failed: {st}", p.display());
                self.failed = true;
            }
            Err(e) => {
                eprintln!(
                    "{PROG}: warning: unable to run {}: {}",
                    p.display(),
                    runtools::errstr(&e)
                );
                self.failed = true;
            }
        }
    }

    fn cdb(&mut self) {
        let control = self.home.join("control");
        let mut any = false;
        for name in ["tcp.smtp", "tcp.submission", "tcp.pop3"] {
            // qmail-guard's rules (control/NAME.cdb -> ../guard/NAME.cdb, INSTALL.md) are
            // rebuilt where they live and, by root, as qmailg: that directory is qmailg's,
            // and root must neither write through nor read through a link it planted there
            let guarded = std::fs::read_link(control.join(format!("{name}.cdb")))
                .is_ok_and(|t| t == Path::new("../guard").join(format!("{name}.cdb")));
            let dir = if guarded {
                self.home.join("guard")
            } else {
                control.clone()
            };
            let text = dir.join(name);
            let input = if guarded {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&text)
            } else {
                std::fs::File::open(&text)
            };
            let Ok(input) = input else {
                continue;
            };
            any = true;
            let cdb = dir.join(format!("{name}.cdb"));
            let tmp = dir.join(format!("{name}.tmp"));
            let tcprules = self.home.join("bin/tcprules");
            let mut cmd = if guarded && qsys::is_root() {
                let mut c = Command::new(self.home.join("bin/setuidgid"));
                c.arg("qmailg").arg(&tcprules);
                c
            } else {
                Command::new(&tcprules)
            };
            let r = cmd.arg(&cdb).arg(&tmp).stdin(Stdio::from(input)).status();
            match r {
                Ok(st) if st.success() => {
                    use std::os::unix::fs::PermissionsExt;
                    if !guarded {
                        let _ =
                            std::fs::set_permissions(&cdb, std::fs::Permissions::from_mode(0o644));
                    }
                    println!("Reloaded {}.", text.display());
                }
                Ok(st) => {
                    eprintln!(
                        "{PROG}: warning: tcprules for {} failed: {st}",
                        text.display()
                    );
                    self.failed = true;
                }
                Err(e) => {
                    eprintln!(
                        "{PROG}: warning: unable to run tcprules: {}",
                        runtools::errstr(&e)
                    );
                    self.failed = true;
                }
            }
        }
        if !any {
            eprintln!(
                "{PROG}: warning: no rules in {}/tcp.smtp, tcp.submission or tcp.pop3",
                control.display()
            );
            self.failed = true;
        }
    }
}

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook(PROG);
    qsys::die::default_sigpipe();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut svdir = std::env::var_os("QMAILCTL_SERVICE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/service"));
    if args.first().map(String::as_str) == Some("-s") {
        if args.len() < 2 {
            usage();
        }
        svdir = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    if args.len() != 1 {
        usage();
    }
    let home = match qsys::home() {
        Ok(h) => h,
        Err(e) => qsys::die::fatal(PROG, &format!("unable to find home directory: {e}"), 111),
    };
    let mut c = Ctl {
        home,
        svdir,
        failed: false,
    };
    let send = vec![c.svdir.join("qmail-send").to_string_lossy().into_owned()];
    match args[0].as_str() {
        "start" => {
            println!("Starting qmail.");
            let d = c.dirs(true);
            c.svc("u", &d);
        }
        "stop" => {
            println!("Stopping qmail.");
            let d = c.dirs(true);
            c.svc("d", &d);
        }
        "restart" => {
            println!("Restarting qmail.");
            let d = c.dirs(false);
            c.svc("tu", &d);
        }
        "pause" => {
            println!("Pausing qmail.");
            let d = c.dirs(false);
            c.svc("p", &d);
        }
        "cont" => {
            println!("Continuing qmail.");
            let d = c.dirs(false);
            c.svc("c", &d);
        }
        "doqueue" | "alrm" | "flush" => {
            println!("Flushing timeout table and sending ALRM signal to qmail-send.");
            c.run("qmail-tcpok", &[]);
            c.svc("a", &send);
        }
        "reload" | "hup" => {
            println!("Sending HUP signal to qmail-send.");
            c.svc("h", &send);
        }
        "stat" => {
            for d in c.dirs(true) {
                println!("{}", svcdir::ctl::svstat_line(&d));
            }
            c.run("qmail-qstat", &[]);
        }
        "queue" => {
            c.run("qmail-qstat", &[]);
            c.run("qmail-qread", &[]);
        }
        "cdb" => c.cdb(),
        "help" => println!("{HELP}"),
        _ => usage(),
    }
    if c.failed {
        std::process::exit(111);
    }
}

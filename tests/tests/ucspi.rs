//! End-to-end tests of our ucspi-tcp: tcpserver, tcprules, tcprulescheck, tcpclient and
//! rblsmtpd, as real processes on loopback (IPv4 and IPv6), against Debian's ucspi-tcp for
//! the cdb interop and dnsmasq serving a test DNSBL zone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{
    DNSMASQ, Server, build_dir, dnsmasq, is_root, need_root, need_tool, printed_port, wait_until,
};

fn bin(name: &str) -> PathBuf {
    build_dir().join(name)
}

/// Our tcpserver with `args`, listening on `host` port 0 (`-1` tells the port), logging
/// verbosely to `log`.
fn tcpserver(args: &[&str], host: &str, prog: &[&str], log: &Path) -> (Server, u16) {
    tcpserver_env(args, host, prog, log, &[])
}

fn tcpserver_env(
    args: &[&str],
    host: &str,
    prog: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> (Server, u16) {
    let mut child = Command::new(bin("tcpserver"))
        .args(["-v", "-1"])
        .args(args)
        .args([host, "0"])
        .args(prog)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start tcpserver");
    let port = printed_port(&mut child);
    (Server(child), port)
}

/// Connect from `from` (any 127/8 address) to `to` and read everything the server says
/// after sending `input`.
fn talk(from: &str, to: SocketAddr, input: &[u8]) -> String {
    let s = connect_from(from, to);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = (&s).write_all(input);
    let mut out = Vec::new();
    let _ = (&s).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
    let src: SocketAddr = SocketAddr::new(from.parse().unwrap(), 0);
    let fam = if src.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(fam, SockType::Stream, SockFlag::empty(), None).unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(src),
    )
    .unwrap();
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(to),
    )
    .unwrap();
    TcpStream::from(fd)
}

fn rules(dir: &Path, text: &str) -> PathBuf {
    let cdb = dir.join("rules.cdb");
    let mut c = Command::new(bin("tcprules"))
        .arg(&cdb)
        .arg(dir.join("rules.tmp"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "tcprules refused {text:?}");
    cdb
}

fn env_lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn environment_seen_by_the_child_ipv4() {
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "127.0.0.1:allow,RELAYCLIENT=\"\",NAME='x y'\n:allow\n",
    );
    let log = d.path().join("log");
    let cdb_s = cdb.to_str().unwrap();
    let (_srv, port) = tcpserver_env(
        &["-R", "-H", "-l0", "-x", cdb_s],
        "127.0.0.1",
        &["/usr/bin/env"],
        &log,
        &[
            ("TCPREMOTEHOST", "stale.example"),
            ("TCPREMOTEINFO", "stale"),
        ],
    );
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let me = s.local_addr().unwrap();
    let mut out = String::new();
    (&s).read_to_string(&mut out).unwrap();
    let env = env_lines(&out);
    for want in [
        "PROTO=TCP".to_string(),
        "TCPLOCALIP=127.0.0.1".into(),
        format!("TCPLOCALPORT={port}"),
        "TCPLOCALHOST=0".into(),
        "TCPREMOTEIP=127.0.0.1".into(),
        format!("TCPREMOTEPORT={}", me.port()),
        "RELAYCLIENT=".into(),
        "NAME=x y".into(),
    ] {
        assert!(env.contains(&want.as_str()), "{want} missing in {env:?}");
    }
    assert!(
        !env.iter()
            .any(|l| l.starts_with("TCPREMOTEHOST=") || l.starts_with("TCPREMOTEINFO=")),
        "stale values leaked: {env:?}"
    );
    // the ok line in ucspi-tcp's layout
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = std::fs::read_to_string(&log).unwrap();
        if l.contains("end ") {
            assert!(
                l.contains("tcpserver: ok ")
                    && l.contains(&format!("0:127.0.0.1:{port} :127.0.0.1::{}", me.port())),
                "{l}"
            );
            assert!(l.starts_with("tcpserver: status: 0/40\n"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "no end line: {l}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn environment_seen_by_the_child_ipv6_and_dual_stack() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(&["-R", "-H", "-lfoo"], "::1", &["/usr/bin/env"], &log);
    let out = talk("::1", SocketAddr::new("::1".parse().unwrap(), port), b"");
    let env = env_lines(&out);
    for want in [
        "PROTO=TCP6",
        "TCPREMOTEIP=::1",
        "TCP6REMOTEIP=::1",
        "TCPLOCALHOST=foo",
    ] {
        assert!(env.contains(&want), "{want} missing in {env:?}");
    }
    // host 0: one socket for both families; an IPv4 client is shown as plain IPv4
    let log0 = d.path().join("log0");
    let (_srv0, port0) = tcpserver(&["-R", "-H", "-l0"], "0", &["/usr/bin/env"], &log0);
    let out = talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], port0)), b"");
    let env = env_lines(&out);
    assert!(env.contains(&"PROTO=TCP"), "{env:?}");
    assert!(env.contains(&"TCPREMOTEIP=127.0.0.1"), "{env:?}");
    let out = talk("::1", SocketAddr::new("::1".parse().unwrap(), port0), b"");
    assert!(env_lines(&out).contains(&"TCPREMOTEIP=::1"), "{out}");
}

#[test]
fn concurrency_limit_holds_under_200_connections() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let running = d.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let counts = d.path().join("counts");
    // each child records how many children are inside the critical section with it
    let script = format!(
        "touch {r}/$$; ls {r} | wc -l >> {c}; sleep 0.05; rm {r}/$$; echo done",
        r = running.display(),
        c = counts.display()
    );
    let (_srv, port) = tcpserver(
        &["-R", "-H", "-l0", "-c", "10", "-b", "256"],
        "127.0.0.1",
        &["/bin/sh", "-c", &script],
        &log,
    );
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], port)), b"")
            })
        })
        .collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        answers.iter().all(|a| a == "done\n"),
        "some clients were not served"
    );
    let counts = std::fs::read_to_string(&counts).unwrap();
    let max = counts
        .lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert!(max <= 10, "{max} children ran at once with -c 10");
    // the parent's own count, from its status lines
    let deadline = Instant::now() + Duration::from_secs(20);
    let log_text = loop {
        let t = std::fs::read_to_string(&log).unwrap();
        if t.matches("tcpserver: end ").count() >= 200 || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut peak = 0;
    for l in log_text.lines() {
        if let Some(s) = l.strip_prefix("tcpserver: status: ") {
            let (n, m) = s.split_once('/').unwrap();
            let n: usize = n.parse().unwrap();
            assert_eq!(m, "10");
            assert!(n <= 10, "{l}");
            peak = peak.max(n);
        }
    }
    assert_eq!(
        peak, 10,
        "the limit was never reached, the test proves nothing"
    );
    assert_eq!(log_text.matches("tcpserver: ok ").count(), 200);
}

#[test]
fn deny_rules_banner_and_exit_status() {
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "127.0.0.2:deny\n127.0.0.3-4:deny\n:allow,WHO=\"anyone\"\n",
    );
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &[
            "-R",
            "-H",
            "-l0",
            "-B",
            "hello\r\n",
            "-x",
            cdb.to_str().unwrap(),
        ],
        "0.0.0.0",
        &["/bin/sh", "-c", "echo \"$WHO\""],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(talk("127.0.0.1", to, b""), "hello\r\nanyone\n");
    for denied in ["127.0.0.2", "127.0.0.4"] {
        assert_eq!(
            talk(denied, to, b""),
            "hello\r\n",
            "{denied} got the program"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = std::fs::read_to_string(&log).unwrap();
        if l.matches("tcpserver: end ").count() >= 3 {
            assert_eq!(l.matches("tcpserver: deny ").count(), 2, "{l}");
            assert!(l.contains(":127.0.0.2::"), "{l}");
            assert_eq!(
                l.matches(" status 25600\n").count(),
                2,
                "denied children exit 100: {l}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the same rules without a banner (the usual qmail run script, where the parent
    // decides and spawns): allowed clients get the program, denied ones nothing
    let log_nb = d.path().join("log-nobanner");
    let (_srv_nb, port_nb) = tcpserver(
        &["-R", "-H", "-l0", "-x", cdb.to_str().unwrap()],
        "0.0.0.0",
        &["/bin/sh", "-c", "echo \"$WHO\""],
        &log_nb,
    );
    let to_nb = SocketAddr::from(([127, 0, 0, 1], port_nb));
    assert_eq!(talk("127.0.0.1", to_nb, b""), "anyone\n");
    assert_eq!(
        talk("127.0.0.3", to_nb, b""),
        "",
        "a denied client got the program"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = std::fs::read_to_string(&log_nb).unwrap();
        if l.matches("tcpserver: end ").count() >= 2 {
            assert_eq!(l.matches("tcpserver: ok ").count(), 1, "{l}");
            assert_eq!(l.matches("tcpserver: deny ").count(), 1, "{l}");
            assert!(l.contains(" status 25600\n"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // a missing rules file drops the connection (111), unless -X
    let missing = d.path().join("missing.cdb");
    let log2 = d.path().join("log2");
    let (_s2, p2) = tcpserver(
        &["-R", "-H", "-l0", "-x", missing.to_str().unwrap()],
        "127.0.0.1",
        &["/bin/echo", "ran"],
        &log2,
    );
    assert_eq!(
        talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], p2)), b""),
        ""
    );
    let log3 = d.path().join("log3");
    let (_s3, p3) = tcpserver(
        &["-R", "-H", "-l0", "-X", "-x", missing.to_str().unwrap()],
        "127.0.0.1",
        &["/bin/echo", "ran"],
        &log3,
    );
    assert_eq!(
        talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], p3)), b""),
        "ran\n"
    );
    let l2 = std::fs::read_to_string(&log2).unwrap();
    assert!(
        l2.contains("unable to read") && l2.contains("file does not exist"),
        "{l2}"
    );
}

/// The direct way (the parent starts the program itself, crate::spawn): a bare name is
/// searched in PATH; a program that cannot run drops its connection with one warning
/// and gives its `-c` slot back, so the next client is still served.
#[test]
fn the_direct_way_searches_path_and_survives_a_program_that_cannot_run() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-R", "-H", "-l0", "-c", "1"],
        "127.0.0.1",
        &["echo", "found"],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(talk("127.0.0.1", to, b""), "found\n");
    let bad_log = d.path().join("bad");
    let (_bad, bad_port) = tcpserver(
        &["-R", "-H", "-l0", "-c", "1"],
        "127.0.0.1",
        &["/nonexistent/program"],
        &bad_log,
    );
    let bad_to = SocketAddr::from(([127, 0, 0, 1], bad_port));
    for _ in 0..3 {
        // each is closed at once: a leaked slot would leave the next one waiting until
        // talk's read timeout (30 s)
        let t0 = Instant::now();
        assert_eq!(talk("127.0.0.1", bad_to, b""), "");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "a slot was not given back"
        );
    }
    // the child's end closes the connection; tcpserver logs why when it reaps it
    let warning = "tcpserver: warning: dropping connection, unable to run /nonexistent/program: file does not exist\n";
    let l = wait_until("three warnings and the slot given back", 30, || {
        let l = std::fs::read_to_string(&bad_log).unwrap();
        (l.matches(warning).count() == 3 && l.ends_with("tcpserver: status: 0/1\n")).then_some(l)
    });
    assert_eq!(
        l.matches(" status 28416\n").count(),
        3,
        "exit 111, as ucspi-tcp's child: {l}"
    );
}

/// A tcpserver started with SIGTERM ignored does not hand that on: its programs get the
/// default back, on the direct way and on the forked way (a banner takes that one), as
/// ucspi-tcp's child does (`sig_uncatch(sig_term)`); otherwise `svc -t` could not stop a
/// session.
#[test]
fn programs_get_sigterm_back_to_its_default() {
    use std::os::unix::process::CommandExt;
    let d = tempfile::tempdir().unwrap();
    let ways: [(&str, &[&str]); 2] = [("direct", &[]), ("forked", &["-B", "banner\n"])];
    for (way, extra) in ways {
        let log = d.path().join(way);
        let mut cmd = Command::new(bin("tcpserver"));
        cmd.args(["-v", "-1", "-R", "-H", "-l0"]).args(extra);
        cmd.args([
            "127.0.0.1",
            "0",
            "sh",
            "-c",
            "grep '^SigIgn' /proc/self/status",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: only signal(2) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start tcpserver");
        let port = printed_port(&mut child);
        let _srv = Server(child);
        let out = talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], port)), b"");
        let line = out
            .lines()
            .find(|l| l.starts_with("SigIgn:"))
            .unwrap_or_else(|| {
                panic!(
                    "{way}: no SigIgn line in {out:?}: {}",
                    std::fs::read_to_string(&log).unwrap()
                )
            });
        let ignored = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(
            ignored & (1 << (libc::SIGTERM - 1)),
            0,
            "{way}: SIGTERM still ignored"
        );
    }
}

/// Debian's tcprules and ours write the same bytes, and each side's tools decide the same
/// on the other's files.
#[test]
fn rules_cdb_interop_with_debian_ucspi_tcp() {
    need_tool!("/usr/bin/tcprules", "ucspi-tcp");
    need_tool!("/usr/bin/tcprulescheck", "ucspi-tcp");
    let d = tempfile::tempdir().unwrap();
    let text = "# relay for us\n127.0.0.1:allow,RELAYCLIENT=\"\",NAME='x y'\n10.1.2.3-5:deny\n\
                192.168.:allow,RELAYCLIENT=\"\"  \n10.0-2.:allow,NET=\"ten\"\n=host.example.com:deny\n\
                =.example.org:allow,DOMAIN=/org/\njoe@127.0.0.2:allow,WHO=\"joe\"\n=:allow,KNOWN=\"1\"\n\
                :allow,DEFAULT=\"yes\"\n127.0.0.1:deny\n";
    let ours = rules(d.path(), text);
    let theirs = d.path().join("theirs.cdb");
    let mut c = Command::new("/usr/bin/tcprules")
        .arg(&theirs)
        .arg(d.path().join("theirs.tmp"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap()
    );
    let clients: &[&[(&str, &str)]] = &[
        &[("TCPREMOTEIP", "127.0.0.1")],
        &[("TCPREMOTEIP", "10.1.2.4")],
        &[("TCPREMOTEIP", "10.1.2.6")],
        &[("TCPREMOTEIP", "192.168.7.7")],
        &[
            ("TCPREMOTEIP", "8.8.8.8"),
            ("TCPREMOTEHOST", "a.b.example.org"),
        ],
        &[
            ("TCPREMOTEIP", "8.8.8.8"),
            ("TCPREMOTEHOST", "host.example.com"),
        ],
        &[
            ("TCPREMOTEIP", "8.8.8.8"),
            ("TCPREMOTEHOST", "elsewhere.test"),
        ],
        &[("TCPREMOTEIP", "127.0.0.2"), ("TCPREMOTEINFO", "joe")],
        &[("TCPREMOTEIP", "9.9.9.9")],
    ];
    for env in clients {
        let check = |prog: &Path, cdb: &Path| {
            let o = Command::new(prog)
                .arg(cdb)
                .env_clear()
                .envs(env.iter().copied())
                .output()
                .unwrap();
            assert!(o.status.success());
            String::from_utf8(o.stdout).unwrap()
        };
        let debian = check(Path::new("/usr/bin/tcprulescheck"), &ours);
        let ours_on_theirs = check(&bin("tcprulescheck"), &theirs);
        assert_eq!(debian, ours_on_theirs, "{env:?}");
    }
    // and tcpserver applies a cdb written by Debian's tcprules
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-R", "-H", "-l0", "-x", theirs.to_str().unwrap()],
        "127.0.0.1",
        &["/bin/sh", "-c", "echo \"$NAME|${RELAYCLIENT-unset}\""],
        &log,
    );
    assert_eq!(
        talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], port)), b""),
        "x y|\n"
    );
    // tcprules refuses a bad line and leaves the cdb alone
    let before = std::fs::read(&ours).unwrap();
    let mut c = Command::new(bin("tcprules"))
        .arg(&ours)
        .arg(d.path().join("rules.tmp"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"1.2.3.4:allowfoo\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(100));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unable to parse this line: 1.2.3.4:allowfoo")
    );
    assert_eq!(std::fs::read(&ours).unwrap(), before);
}

#[test]
fn tcpclient_runs_a_program_on_fds_6_and_7() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-R", "-H", "-l0"],
        "127.0.0.1",
        &["/bin/sh", "-c", "read x; echo \"got $x\""],
        &log,
    );
    let o = Command::new(bin("tcpclient"))
        .args(["-RHv", "127.0.0.1", &port.to_string(), "/bin/sh", "-c"])
        .arg("echo ping >&7; cat <&6; echo \"$PROTO $TCPREMOTEPORT\"")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("got ping\nTCP {port}\n")
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("connected to 127.0.0.1 port {port}"))
    );
}

/// As root, the children run as -u/-g with exactly one group, and RELAYCLIENT set by a
/// rule reaches qmail-smtpd: the same remote recipient is relayed for 127.0.0.1 only.
#[test]
fn privileges_drop_and_relayclient_reaches_qmail_smtpd() {
    let sys = e2e::System::install("mail.example.test", &[]);
    sys.control("rcpthosts", "mail.example.test\n");
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(d.path(), "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n");
    let mut ids: Vec<&str> = vec!["-R", "-H", "-l0", "-x", cdb.to_str().unwrap()];
    let (id_args, uid, gid) = child_ids();
    ids.extend(id_args.iter().map(String::as_str));
    // who the children are
    let log = d.path().join("idlog");
    let (_id, idport) = tcpserver(&ids, "127.0.0.1", &["/bin/sh", "-c", "id -u; id -G"], &log);
    let out = talk("127.0.0.1", SocketAddr::from(([127, 0, 0, 1], idport)), b"");
    if is_root() {
        assert_eq!(out, format!("{uid}\n{gid}\n"));
    } else {
        assert_eq!(
            out.lines().next(),
            Some(nix::unistd::getuid().to_string().as_str())
        );
    }
    let smtpd = sys.bin("qmail-smtpd");
    let log = d.path().join("smtplog");
    let (_srv, port) = tcpserver(&ids, "0.0.0.0", &[smtpd.to_str().unwrap()], &log);
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let dialogue = b"HELO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<postmaster@mail.example.test>\r\nQUIT\r\n";
    let relayed = talk("127.0.0.1", to, dialogue);
    let refused = talk("127.0.0.2", to, dialogue);
    let codes =
        |t: &str| -> Vec<String> { t.lines().map(|l| l.chars().take(3).collect()).collect() };
    assert_eq!(
        codes(&relayed),
        ["220", "250", "250", "250", "250", "221"],
        "{relayed}"
    );
    let c = codes(&refused);
    assert_eq!(c[3], "553", "{refused}");
    assert_eq!(c[4], "250", "{refused}");
}

/// rblsmtpd run directly with a client on a pipe, DNS from dnsmasq on 127.0.0.1.
fn rblsmtpd(
    ip: &str,
    dns_port: u16,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
) -> (String, String) {
    let mut c = Command::new(bin("rblsmtpd"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TCPREMOTEIP", ip)
        .env("DNSCACHEIP", format!("127.0.0.1:{dns_port}"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let o = c.wait_with_output().unwrap();
    w.join().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const SESSION: &[u8] = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nQUIT\r\n";

#[test]
fn rblsmtpd_against_a_real_dns_zone() {
    need_tool!(DNSMASQ, "dnsmasq-base");
    let six = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test";
    let (_dns, port) = dnsmasq(&[
        "--txt-record=2.0.0.127.bl.test,listed: see http://bl.test/",
        "--address=/2.0.0.127.bl.test/127.0.0.2",
        &format!("--txt-record={six},v6 listed"),
        "--address=/3.0.0.127.ok.test/127.0.0.2",
        "--txt-record=3.0.0.127.bl.test,also listed",
    ]);
    // listed: the TXT text at RCPT and DATA, 250 to the rest, 221 at QUIT
    let (out, err) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-r", "bl.test", "/bin/echo", "smtpd ran"],
        &[],
        SESSION,
    );
    assert_eq!(
        out,
        "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n250 rblsmtpd.local\r\n451 listed: see http://bl.test/\r\n451 listed: see http://bl.test/\r\n221 rblsmtpd.local\r\n"
    );
    assert!(
        err.starts_with("rblsmtpd: 127.0.0.2 pid ")
            && err.contains(": 451 listed: see http://bl.test/"),
        "{err}"
    );
    // -b makes it permanent
    let (out, _) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-b", "-r", "bl.test", "/bin/echo", "ran"],
        &[],
        SESSION,
    );
    assert!(
        out.contains("\r\n553 listed: see http://bl.test/\r\n"),
        "{out}"
    );
    // not listed: smtpd runs, and nothing of rblsmtpd shows
    let (out, err) = rblsmtpd(
        "127.0.0.9",
        port,
        &["-r", "bl.test", "/bin/echo", "smtpd ran"],
        &[],
        SESSION,
    );
    assert_eq!((out.as_str(), err.as_str()), ("smtpd ran\n", ""));
    // an allow list before the block list wins
    let (out, _) = rblsmtpd(
        "127.0.0.3",
        port,
        &["-a", "ok.test", "-r", "bl.test", "/bin/echo", "allowed"],
        &[],
        SESSION,
    );
    assert_eq!(out, "allowed\n");
    // the A-record form with its own text
    let (out, _) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-r", "bl.test:blocked %IP%", "/bin/echo", "ran"],
        &[],
        b"RCPT TO:<x@y>\r\n",
    );
    assert_eq!(out, "220 rblsmtpd.local\r\n451 blocked 127.0.0.2\r\n");
    // IPv6: reversed nibbles
    let (out, _) = rblsmtpd(
        "2001:db8::1",
        port,
        &["-r", "bl.test", "/bin/echo", "ran"],
        &[],
        b"RCPT TO:<x@y>\r\n",
    );
    assert_eq!(out, "220 rblsmtpd.local\r\n451 v6 listed\r\n");
    // $RBLSMTPD: empty skips the lists, '-' is permanent, anything else temporary
    let (out, _) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-r", "bl.test", "/bin/echo", "ran"],
        &[("RBLSMTPD", "")],
        SESSION,
    );
    assert_eq!(out, "ran\n");
    let (out, _) = rblsmtpd(
        "127.0.0.9",
        port,
        &["/bin/echo", "ran"],
        &[("RBLSMTPD", "-go away")],
        b"RCPT TO:<x@y>\r\n",
    );
    assert_eq!(out, "220 rblsmtpd.local\r\n553 go away\r\n");
    // -t 0: the refusal once, no dialogue
    let (out, _) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-t", "0", "-r", "bl.test", "/bin/echo", "ran"],
        &[],
        SESSION,
    );
    assert_eq!(out, "451 listed: see http://bl.test/\r\n");
}

/// A DNS server that never answers: the lookup times out; by default the client is let
/// through, with -c it is refused temporarily. And a silent client is dropped after -t.
#[test]
fn rblsmtpd_timeouts() {
    need_tool!(DNSMASQ, "dnsmasq-base");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let open = std::thread::spawn(move || {
        rblsmtpd(
            "127.0.0.2",
            port,
            &["-r", "bl.test", "/bin/echo", "let through"],
            &[],
            SESSION,
        )
    });
    let (out, _) = rblsmtpd(
        "127.0.0.2",
        port,
        &["-c", "-r", "bl.test", "/bin/echo", "ran"],
        &[],
        b"RCPT TO:<x@y>\r\n",
    );
    assert_eq!(
        out,
        "220 rblsmtpd.local\r\n451 temporary RBL lookup error\r\n"
    );
    assert_eq!(open.join().unwrap().0, "let through\n");
    drop(silent);
    // a client that says nothing is dropped after the -t session timeout
    let (_dns, dport) = dnsmasq(&["--txt-record=2.0.0.127.bl.test,listed"]);
    let mut c = Command::new(bin("rblsmtpd"))
        .args(["-t", "1", "-r", "bl.test", "/bin/echo", "ran"])
        .env("TCPREMOTEIP", "127.0.0.2")
        .env("DNSCACHEIP", format!("127.0.0.1:{dport}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _keep_open = c.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rblsmtpd never timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "220 rblsmtpd.local\r\n");
}

/// rblsmtpd in its place under tcpserver, with the decision coming from a rule.
#[test]
fn rblsmtpd_under_tcpserver_with_rules() {
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "127.0.0.2:allow,RBLSMTPD=\"-blocked by rule\"\n:allow\n",
    );
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-R", "-H", "-l0", "-x", cdb.to_str().unwrap()],
        "127.0.0.1",
        &[
            bin("rblsmtpd").to_str().unwrap(),
            "/bin/echo",
            "220 real smtpd",
        ],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(talk("127.0.0.1", to, b"QUIT\r\n"), "220 real smtpd\n");
    assert_eq!(
        talk("127.0.0.2", to, b"HELO x\r\nRCPT TO:<a@b>\r\nQUIT\r\n"),
        "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n553 blocked by rule\r\n221 rblsmtpd.local\r\n"
    );
}

/// `-u`/`-g` for the tests that check the children's ids: qmaild and nofiles as root,
/// nothing otherwise; and the uid and gid the children then have.
fn child_ids() -> (Vec<String>, String, String) {
    if !is_root() {
        let gid = nix::unistd::getgid().to_string();
        return (Vec::new(), nix::unistd::getuid().to_string(), gid);
    }
    let u = nix::unistd::User::from_name("qmaild").unwrap().unwrap();
    let g = nix::unistd::Group::from_name("nofiles").unwrap().unwrap();
    let (uid, gid) = (u.uid.as_raw().to_string(), g.gid.as_raw().to_string());
    let args = vec!["-u".into(), uid.clone(), "-g".into(), gid.clone()];
    (args, uid, gid)
}

/// The children of process `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `-a`: the next connection's program is started ahead and waits for it. Every
/// connection still gets a process of its own, as `-u`/`-g`, with its own environment
/// (its own port, the rules' variables, no trace of the protocol), whether a waiting
/// program took it or one was started for it (many at once: the spare is not always
/// ready); after them one program waits for the next.
#[test]
fn programs_started_ahead_get_their_own_connection_and_environment() {
    served_ahead(&["-a"]);
}

/// `-A 5`: the program started ahead forks a process for each connection, five per
/// exec: the same as `-a` seen from each connection (its own process, port, variables
/// and uid), and every end counted, those of processes whose zygote had gone too.
#[test]
fn processes_forked_ahead_get_their_own_connection_and_environment() {
    served_ahead(&["-A", "5"]);
}

fn served_ahead(mode: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "127.0.0.1:allow,RBLSMTPD=\"\",NAME='x y'\n127.0.0.2:allow,RBLSMTPD=\"-blocked by rule\"\n:allow\n",
    );
    let (ids, uid, _) = child_ids();
    let mut args: Vec<&str> = mode.to_vec();
    args.extend(["-R", "-H", "-l0", "-x", cdb.to_str().unwrap()]);
    args.extend(ids.iter().map(String::as_str));
    let log = d.path().join("log");
    let rbl = bin("rblsmtpd");
    let (srv, port) = tcpserver(
        &args,
        "127.0.0.1",
        &[
            rbl.to_str().unwrap(),
            "/bin/sh",
            "-c",
            "id -u; echo PID=$$; echo START=$(cut -d ' ' -f 22 /proc/$$/stat); env",
        ],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    // clock ticks since boot (/proc/PID/stat's start time is in them)
    let ticks = || -> u64 {
        let up = std::fs::read_to_string("/proc/uptime").unwrap();
        let secs: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
        (secs * 100.0) as u64
    };
    let one = move |pause: u64| {
        std::thread::sleep(Duration::from_millis(pause));
        let at = ticks();
        let s = connect_from("127.0.0.1", to);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let me = s.local_addr().unwrap().port();
        let mut out = String::new();
        (&s).read_to_string(&mut out).unwrap();
        (me, out, at)
    };
    // one after another, 200 ms apart (the spare is ready each time), then 30 at once
    let mut results: Vec<(u16, String, u64)> = (0..5).map(|_| one(200)).collect();
    // the later ones were served by a process started well before they connected
    let started = |out: &str| -> u64 {
        let v = out.lines().find_map(|l| l.strip_prefix("START=")).unwrap();
        v.parse().unwrap()
    };
    let early = results[1..]
        .iter()
        .filter(|(_, out, at)| started(out) + 10 <= *at)
        .count();
    assert!(early >= 3, "started ahead: {early} of 4; {results:?}");
    let threads: Vec<_> = (0..30)
        .map(|_| std::thread::spawn(move || one(0)))
        .collect();
    results.extend(threads.into_iter().map(|t| t.join().unwrap()));
    let mut pids = std::collections::HashSet::new();
    for (me, out, _) in &results {
        let env = env_lines(out);
        assert_eq!(env.first(), Some(&uid.as_str()), "{out}");
        for want in [
            format!("TCPREMOTEPORT={me}"),
            "TCPREMOTEIP=127.0.0.1".into(),
            format!("TCPLOCALPORT={port}"),
            "NAME=x y".into(),
        ] {
            assert!(env.contains(&want.as_str()), "{want} missing in {out}");
        }
        assert!(!out.contains("TCPSERVER_AHEAD"), "{out}");
        // rblsmtpd became the shell: its pid is the process that served the connection
        let pid = env.iter().find_map(|l| l.strip_prefix("PID=")).unwrap();
        assert!(
            pids.insert(pid.to_string()),
            "two connections, one process: {out}"
        );
    }
    assert_eq!(
        talk("127.0.0.2", to, b"HELO x\r\nRCPT TO:<a@b>\r\nQUIT\r\n"),
        "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n553 blocked by rule\r\n221 rblsmtpd.local\r\n"
    );
    // afterwards: one program waiting, as the children's user, and every connection's
    // end logged (the waiting ones are not counted as running)
    let server = srv.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kids = children_of(server);
        let l = std::fs::read_to_string(&log).unwrap();
        // the last end and the status line after it are two writes: wait for both
        if kids.len() == 1
            && l.matches("tcpserver: end ").count() >= 36
            && l.ends_with("status: 0/40\n")
        {
            let status = std::fs::read_to_string(format!("/proc/{}/status", kids[0])).unwrap();
            let real_uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .unwrap();
            assert_eq!(real_uid, uid, "{status}");
            assert!(!l.contains("warning"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "children {kids:?}, log {l}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `-A`: a process that crashes (here a shell that aborts itself) ends its zygote at
/// once, and so does a spare killed while it waits; the next connections are served by
/// processes of a fresh exec, and the count comes back to zero.
#[test]
fn a_crash_ends_the_zygote() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let rbl = bin("rblsmtpd");
    let (srv, port) = tcpserver(
        &["-v", "-A", "100", "-R", "-H", "-l0"],
        "127.0.0.1",
        &[
            rbl.to_str().unwrap(),
            "/bin/sh",
            "-c",
            "echo $PPID; read x; [ \"$x\" = crash ] && kill -ABRT $$; echo done",
        ],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let server = srv.0.id();
    // the zygote waiting now: tcpserver's one child
    let zygote = || -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let [z] = children_of(server)[..]
                && !children_of(z).is_empty()
            {
                return z;
            }
            assert!(Instant::now() < deadline, "no zygote");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = zygote();
    let session = |line: &str| talk("127.0.0.1", to, format!("{line}\n").as_bytes());
    assert_eq!(session("a"), format!("{first}\ndone\n"));
    assert_eq!(session("b"), format!("{first}\ndone\n"));
    assert_eq!(session("crash"), format!("{first}\n"));
    let gone = |pid: u32| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "{pid} is still there");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    gone(first);
    let second = zygote();
    assert_ne!(first, second);
    assert_eq!(session("c"), format!("{second}\ndone\n"));
    // a spare killed while it waits (it may have read a hand-over) ends its zygote too;
    // the zygote forks that spare when session c takes its connection, which on a busy
    // machine may come after c's client is done: kill its children until it is gone
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{second}")).exists() {
        for child in children_of(second) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(Instant::now() < deadline, "{second} is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = zygote();
    assert_eq!(session("d"), format!("{third}\ndone\n"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = std::fs::read_to_string(&log).unwrap();
        // the last end and the status line after it are two writes: wait for both
        if l.matches("tcpserver: end ").count() == 5 && l.ends_with("status: 0/40\n") {
            assert!(
                l.contains(" status 6\n") || l.contains(" status 134\n"),
                "{l}"
            );
            assert!(!l.contains("warning"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `-a` with a program that does not know it: tcpserver says so once, turns `-a` off
/// and starts the program for each connection as without it.
#[test]
fn a_program_that_does_not_wait_turns_ahead_off() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-a", "-R", "-H", "-l0"],
        "127.0.0.1",
        &["/bin/echo", "hello"],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..5 {
        assert_eq!(talk("127.0.0.1", to, b""), "hello\n");
        std::thread::sleep(Duration::from_millis(50));
    }
    // tcpserver notices the spare's word (or its end) in its own time
    let l = wait_until("the warning", 30, || {
        let l = std::fs::read_to_string(&log).unwrap();
        l.contains("does not know tcpserver -a").then_some(l)
    });
    assert_eq!(l.matches("does not know tcpserver -a").count(), 1, "{l}");
}

/// `-a` with a program that closes its descriptors and goes on without a word: tcpserver
/// turns `-a` off once (it does not spin on the closed socket) and serves connections.
#[test]
fn a_program_that_closes_its_socket_turns_ahead_off() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log");
    let (srv, port) = tcpserver(
        &["-a", "-R", "-H", "-l0"],
        "127.0.0.1",
        &["/bin/sh", "-c", "exec 0<&- 1>&-; sleep 3"],
        &log,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("does not know tcpserver -a")
    {
        assert!(Instant::now() < deadline, "no warning");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(talk("127.0.0.1", to, b""), "");
    // a second of tcpserver's life: its CPU time (clock ticks of 10 ms) stays small
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", srv.0.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = ticks();
    std::thread::sleep(Duration::from_secs(1));
    assert!(ticks() - before < 50, "tcpserver spins");
    // tcpserver notices the spare's word (or its end) in its own time
    let l = wait_until("the warning", 30, || {
        let l = std::fs::read_to_string(&log).unwrap();
        l.contains("does not know tcpserver -a").then_some(l)
    });
    assert_eq!(l.matches("does not know tcpserver -a").count(), 1, "{l}");
}

/// A set-id program ignores TCPSERVER_AHEAD (tcpserver starts nothing set-id ahead):
/// qmail-queue run by another user with the variable set queues as it always does.
#[test]
fn a_set_id_program_ignores_the_ahead_variable() {
    need_root!();
    let sys = e2e::System::install("mail.example.test", &[]);
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "nobody", "--"])
        .arg(sys.bin("qmail-queue"))
        .env("TCPSERVER_AHEAD", "1");
    let status = e2e::run_qmail_queue(
        &mut cmd,
        b"Subject: ahead\n\nhi\n",
        b"Fa@example.test\0Tpostmaster@mail.example.test\0\0",
    );
    assert!(status.success(), "{status:?}");
}

/// An address added to the loopback interface for one test (root only), removed on drop.
/// 127/8 and ::1 cannot serve: resolvers answer their PTR queries with `localhost`
/// themselves (RFC 6761), without asking the test's DNS server.
struct LoopbackAlias(&'static str);

impl LoopbackAlias {
    fn add(ip: &'static str) -> LoopbackAlias {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
            .stderr(Stdio::null())
            .status();
        let st = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .expect("ip (iproute2)");
        assert!(st.success(), "ip addr add {ip}");
        LoopbackAlias(ip)
    }
}

impl Drop for LoopbackAlias {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

/// -h looks TCPREMOTEHOST up (PTR from dnsmasq via $DNSCACHEIP), rules match `=.domain`,
/// and -p drops a name that does not map back to the address. Needs root (addresses on lo).
#[test]
fn remote_host_lookup_and_domain_rules() {
    need_root!(); // to add test addresses to lo
    need_tool!("ip", "iproute2");
    need_tool!(DNSMASQ, "dnsmasq-base");
    let _a = LoopbackAlias::add("192.0.2.55");
    let _b = LoopbackAlias::add("192.0.2.56");
    let (_dns, dport) = dnsmasq(&[
        "--ptr-record=55.2.0.192.in-addr.arpa,client.example.test",
        "--address=/client.example.test/192.0.2.55",
        "--ptr-record=56.2.0.192.in-addr.arpa,liar.example.test",
        "--address=/liar.example.test/10.9.9.9",
    ]);
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "=.example.test:allow,ZONE=\"example\"\n:allow,ZONE=\"none\"\n",
    );
    let dnscache = format!("127.0.0.1:{dport}");
    let prog = ["/bin/sh", "-c", "echo \"${TCPREMOTEHOST-unset} $ZONE\""];
    for (flags, from, want) in [
        ("-h", "192.0.2.55", "client.example.test example\n"),
        ("-h", "192.0.2.56", "liar.example.test example\n"),
        ("-hp", "192.0.2.55", "client.example.test example\n"),
        ("-hp", "192.0.2.56", "unset none\n"),
        ("-H", "192.0.2.55", "unset none\n"),
    ] {
        let log = d.path().join("log");
        let (_srv, port) = tcpserver_env(
            &["-R", flags, "-l0", "-x", cdb.to_str().unwrap()],
            "0.0.0.0",
            &prog,
            &log,
            &[("DNSCACHEIP", &dnscache)],
        );
        let out = talk(from, SocketAddr::new(from.parse().unwrap(), port), b"");
        assert_eq!(out, want, "{flags} from {from}");
    }
}

/// Ident (on by default, as in ucspi-tcp): TCPREMOTEINFO from a fake identd on port 113
/// (root only), the `info@ip` rule form, and the `ok` log line carrying the answer.
#[test]
fn ident_sets_tcpremoteinfo_and_matches_info_rules() {
    need_root!(); // to listen on port 113
    let identd = std::net::TcpListener::bind("127.0.0.9:113").expect("bind 127.0.0.9:113");
    let answered = std::thread::spawn(move || {
        let (s, _) = identd.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let (rport, lport) = line.trim().split_once(" , ").unwrap();
        (&s).write_all(format!("{rport} , {lport} : USERID : UNIX : bob\r\n").as_bytes())
            .unwrap();
        line
    });
    let d = tempfile::tempdir().unwrap();
    let cdb = rules(
        d.path(),
        "bob@127.0.0.9:allow,WHO=\"bob\"\n:allow,WHO=\"someone\"\n",
    );
    let log = d.path().join("log");
    let (_srv, port) = tcpserver(
        &["-H", "-l0", "-t", "10", "-x", cdb.to_str().unwrap()],
        "0.0.0.0",
        &["/bin/sh", "-c", "echo \"$TCPREMOTEINFO $WHO\""],
        &log,
    );
    let s = connect_from("127.0.0.9", SocketAddr::from(([127, 0, 0, 9], port)));
    let me = s.local_addr().unwrap().port();
    let mut out = String::new();
    (&s).read_to_string(&mut out).unwrap();
    assert_eq!(out, "bob bob\n");
    assert_eq!(answered.join().unwrap(), format!("{me} , {port}\r\n"));
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(l.contains(&format!(":127.0.0.9:bob:{me}")), "{l}");
}

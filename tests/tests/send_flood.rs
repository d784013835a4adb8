//! qmail-send under a todo flood (issue 13, "qmail-send keeping up"): N messages are
//! queued with qmail-send stopped, then qmail-send starts and must deliver them all,
//! exactly once each. The run prints how many deliveries had ended when the last todo
//! entry was preprocessed and how long the whole queue took; bench/README.md records
//! these figures. `FLOOD_N` sets N (default 150). A second test injects while
//! qmail-send runs, from `FLOOD_INJECTORS` threads (default 8), and prints accepted
//! and delivered messages per second: delivery must keep up with acceptance.

use e2e::*;
use std::time::{Duration, Instant};

const ME: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

#[test]
fn send_delivers_a_todo_flood_once_each() {
    need_root!();
    let (_, home) = local_user("qtflood");
    let n: usize = std::env::var("FLOOD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let sys = System::install(ME, &[DOMAIN]);
    let root = sys.root.clone();
    let injectors: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let inj = System::attach(&root);
                for i in (t..n).step_by(4) {
                    let msg = format!("Subject: flood {i}\n\nmessage {i}\n");
                    assert_eq!(
                        inj.queue("a@remote.test", &["qtflood@example.test"], msg.as_bytes()),
                        0
                    );
                }
            })
        })
        .collect();
    for i in injectors {
        i.join().unwrap();
    }
    let mut sys = sys;
    let t0 = Instant::now();
    sys.start();
    // FLOOD_STRACE=FILE: qmail-send's system calls, wall time per call, into FILE
    let strace = std::env::var("FLOOD_STRACE").ok().and_then(|out| {
        let pid = sys.send_pid()?.to_string();
        std::process::Command::new("strace")
            .args(["-c", "-w", "-f", "-o", &out, "-p", &pid])
            .spawn()
            .ok()
    });
    let mut todo_drained: Option<(Duration, usize)> = None;
    let mut per_second = Vec::new();
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let log = sys.log_text();
        let new = log.matches("new msg ").count();
        let end = log.matches("end msg ").count();
        if todo_drained.is_none() && new >= n {
            todo_drained = Some((t0.elapsed(), end));
        }
        let s = t0.elapsed().as_secs() as usize;
        if per_second.len() <= s {
            per_second.push((new, end));
        }
        if end >= n {
            break;
        }
        assert!(Instant::now() < deadline, "only {end} of {n} delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = t0.elapsed();
    if let Some(mut st) = strace {
        let pid = nix::unistd::Pid::from_raw(st.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = st.wait();
    }
    let cpu_ms = sys.send_pid().map_or(0.0, cpu_ms);
    eprintln!(
        "qmail-send CPU: {cpu_ms:.0} ms, {:.2} ms per message",
        cpu_ms / n as f64
    );
    let (drained_at, ended_then) = todo_drained.unwrap_or_default();
    eprintln!(
        "flood N={n}: todo drained at {:.2}s with {ended_then} delivered; all delivered at {:.2}s ({:.0} msgs/s)",
        drained_at.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    eprintln!("per second (preprocessed, delivered): {per_second:?}");
    let got = wait_maildir(&home.join("Maildir"), n, 60);
    assert_eq!(got.len(), n, "each message delivered once");
    sys.stop();
}

#[test]
fn send_keeps_up_with_live_injection() {
    need_root!();
    let (_, home) = local_user("qtlive");
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, threads) = (env("FLOOD_N", 150), env("FLOOD_INJECTORS", 8));
    let mut sys = System::install(ME, &[DOMAIN]);
    sys.start();
    let root = sys.root.clone();
    let t0 = Instant::now();
    let injectors: Vec<_> = (0..threads)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let inj = System::attach(&root);
                for i in (t..n).step_by(threads) {
                    let msg = format!("Subject: live {i}\n\nmessage {i}\n");
                    let rcpt = ["qtlive@example.test"];
                    assert_eq!(inj.queue("a@remote.test", &rcpt, msg.as_bytes()), 0);
                }
            })
        })
        .collect();
    for i in injectors {
        i.join().unwrap();
    }
    let accepted_in = t0.elapsed();
    let delivered_then = sys.log_count("end msg ");
    sys.wait_log_count("end msg ", n, 600);
    let total = t0.elapsed();
    eprintln!(
        "live N={n} injectors={threads}: accepted in {:.2}s ({:.0}/s) with {delivered_then} delivered by then; all delivered at {:.2}s ({:.0}/s)",
        accepted_in.as_secs_f64(),
        n as f64 / accepted_in.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    let got = wait_maildir(&home.join("Maildir"), n, 60);
    assert_eq!(got.len(), n, "each message delivered once");
    sys.stop();
}

/// User plus system CPU time of process `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks * 1000.0 / hz
}

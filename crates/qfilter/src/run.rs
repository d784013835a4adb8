//! Running one filter of the chain, and what its end means.
//!
//! The filter gets the message file on fd 0, the output file on fd 1, the envelope on
//! fd 3 (a sealed memory file, [`crate::spool::sealed_file`]: it cannot change what the
//! next filter or qmail-queue reads), a fresh pipe on fd 6 for its reason, the caller's
//! fd 2 (the log), and nothing else. Files are read and written from their start: the
//! chain runs one filter at a time, and the offsets are reset before each.
//! It is started without a fork ([`crate::spawn`]), or, when its code is linked into the
//! caller, in a forked child that calls it ([`crate::spawn::Plan::fork`]), and runs in its own process group,
//! as the filter user ([`Identity`]) with exactly its group, with `RLIMIT_AS` and
//! `RLIMIT_DATA` (memory), `RLIMIT_CPU` (the timeout in seconds), `RLIMIT_FSIZE`
//! (output size) and no core files. At the wall-clock deadline the whole
//! process group is killed: the wait is a poll on a pidfd of the filter with the time
//! left as its timeout (no timer thread). The group is killed after a normal exit too,
//! so nothing a filter left behind writes into the files the next filter reads.
//!
//! [`verdict`] is the chain's rule: exit 0 = next filter, 99 = accept and drop, 82 with
//! a `D`/`Z` line = that reason, anything else = that exit code; a signal (a crash, a
//! memory or CPU limit, the timeout) is a temporary failure, never a pass.

use crate::spawn;
use queue::client::{EXIT_REASON, QqFailure};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Exit code of a filter that accepted the message and dropped it.
pub const EXIT_DROP: i32 = 99;

/// The user and group filters run as. `None`: run as the caller (a single-user
/// install, where everything runs as one user).
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The limits of one filter run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `RLIMIT_AS` and `RLIMIT_DATA`, bytes (at most the hard limits already set).
    pub memory: u64,
    /// `RLIMIT_FSIZE`, bytes: the most the filter may write to a file.
    pub file_size: u64,
    /// Wall clock; also `RLIMIT_CPU`, rounded up to whole seconds.
    pub timeout: Duration,
}

/// How a filter ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this code; what it wrote to fd 6.
    Exit(i32, Vec<u8>),
    /// Killed by this signal (a crash, or a CPU/file size limit).
    Signal(i32),
    /// Killed at the wall-clock deadline.
    TimedOut,
}

/// What the chain does after a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the next filter (or qmail-queue) on this filter's output.
    Next,
    /// Accepted and dropped: exit 0 without queueing.
    Drop,
    /// Stop with this exit code.
    Exit(i32),
    /// Stop with this reason (exit 82 with the text on fd 6, or its 31/71 fallback).
    Reason(QqFailure),
}

/// The chain's rule for a filter's end (module doc).
pub fn verdict(ended: &Ended) -> Verdict {
    let temporary = |text: &str| {
        Verdict::Reason(QqFailure {
            permanent: false,
            text: text.to_string(),
            custom: true,
        })
    };
    match ended {
        Ended::Exit(0, _) => Verdict::Next,
        Ended::Exit(EXIT_DROP, _) => Verdict::Drop,
        Ended::Exit(EXIT_REASON, text) => match queue::client::reason(text) {
            Some(r) => Verdict::Reason(r),
            None => Verdict::Exit(71),
        },
        Ended::Exit(c, _) => Verdict::Exit(*c),
        Ended::Signal(_) => temporary("content filter failed (#4.3.0)"),
        Ended::TimedOut => temporary("content filter timed out (#4.3.0)"),
    }
}

/// Run `filter` with `input` on fd 0, writing to `output`, `envelope` (a sealed file,
/// [`crate::spool::sealed_file`]) on fd 3, the environment `env` (and nothing else).
/// All three are used from their start. With `builtin`, the filter's code is linked in:
/// a forked child calls it instead of exec'ing the program ([`spawn::Plan::fork`]; the
/// caller must be single-threaded); set-up, limits, identity and the wait are the same.
#[allow(clippy::too_many_arguments)]
pub fn run(
    filter: &[OsString],
    builtin: Option<&dyn Fn()>,
    env: &[(OsString, OsString)],
    input: &File,
    output: &File,
    envelope: &File,
    limits: Limits,
    identity: Option<Identity>,
) -> io::Result<Ended> {
    let (program, args) = filter
        .split_first()
        .ok_or_else(|| io::Error::other("empty filter"))?;
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    for mut f in [input, output, envelope] {
        f.rewind()?;
    }
    let (reason_r, reason_w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(cloexec)?;
    // Copies at 10 or above, so that placing one on 0, 1, 3 or 6 in the child cannot
    // overwrite another (a file at 0-2 when the caller closed its stdout, for one).
    let high = |fd: &dyn AsRawFd| -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor that we then own.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `n` is new and ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let copies = [
        high(input)?,
        high(output)?,
        high(envelope)?,
        high(&reason_w)?,
    ];
    drop(reason_w);
    let mut rlimits = [
        (libc::RLIMIT_AS, limits.memory),
        (libc::RLIMIT_DATA, limits.memory),
        (libc::RLIMIT_FSIZE, limits.file_size),
        (libc::RLIMIT_CPU, limits.timeout.as_secs().max(1)),
        (libc::RLIMIT_CORE, 0),
    ];
    for (resource, value) in rlimits.iter_mut() {
        // never above the hard limit we were given (softlimit in a run script)
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct it is given.
        if unsafe { libc::getrlimit(*resource, &mut l) } < 0 {
            return Err(io::Error::last_os_error());
        }
        *value = (*value).min(l.rlim_max);
    }
    let plan = spawn::Plan::new(program, args, env, &copies, rlimits, identity)?;
    let start = Instant::now();
    let pid = match builtin {
        Some(entry) => plan.fork(entry)?,
        None => plan.spawn()?,
    };
    drop(copies);
    let pgid = nix::unistd::Pid::from_raw(pid);
    let kill_group = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    // Wait without reaping: while the filter is a zombie its pid (the group's id) cannot
    // be reused, so the kills below reach only what it left behind.
    let exited = exited_within(pid as u32, limits.timeout.saturating_sub(start.elapsed()));
    kill_group();
    let status = spawn::reap(pid)?;
    if !exited? {
        return Ok(Ended::TimedOut);
    }
    Ok(if libc::WIFEXITED(status) {
        Ended::Exit(
            libc::WEXITSTATUS(status),
            queue::client::read_reason(&reason_r),
        )
    } else if libc::WIFSIGNALED(status) {
        Ended::Signal(libc::WTERMSIG(status))
    } else {
        Ended::Signal(0)
    })
}

/// Wait until process `pid` (our child) has exited, at most `timeout`, leaving it to be
/// reaped: `Ok(false)` when the time ran out. A poll on its pidfd (Linux 5.3).
fn exited_within(pid: u32, timeout: Duration) -> io::Result<bool> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // round up: a poll that returns early would only loop again
        let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, its count.
        match unsafe { libc::poll(fds.as_mut_ptr(), 1, if left.is_zero() { 0 } else { ms }) } {
            n if n > 0 => return Ok(true),
            0 if left.is_zero() => return Ok(false),
            0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool;
    use std::io::{Read, Seek, Write};

    fn sh(script: &str) -> Vec<OsString> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    const LIMITS: Limits = Limits {
        memory: 256 * 1024 * 1024,
        file_size: 1024 * 1024,
        timeout: Duration::from_secs(10),
    };

    fn go(script: &str, limits: Limits) -> (Ended, Vec<u8>) {
        go_with(&sh(script), None, limits)
    }

    fn go_with(
        filter: &[OsString],
        builtin: Option<&dyn Fn()>,
        limits: Limits,
    ) -> (Ended, Vec<u8>) {
        let mut input = spool::memory_file(c"message").unwrap();
        input.write_all(b"Subject: hi\n\nbody\n").unwrap();
        spool::seal(&input).unwrap();
        let mut output = spool::memory_file(c"output").unwrap();
        let env = vec![("QMAILUSER".into(), "a".into())];
        let envelope = spool::sealed_file(b"Fa@b\0Tc@d\0\0").unwrap();
        let ended = run(
            filter, builtin, &env, &input, &output, &envelope, limits, None,
        )
        .unwrap();
        output.rewind().unwrap();
        let mut out = Vec::new();
        output.read_to_end(&mut out).unwrap();
        (ended, out)
    }

    #[test]
    fn a_filter_sees_message_envelope_and_only_the_given_environment() {
        let (ended, out) = go(
            "echo X-Env: $QMAILUSER ${HOME:-nohome}; cat; tr '\\0' , <&3",
            LIMITS,
        );
        assert_eq!(ended, Ended::Exit(0, Vec::new()));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "X-Env: a nohome\nSubject: hi\n\nbody\nFa@b,Tc@d,,"
        );
        assert_eq!(verdict(&ended), Verdict::Next);
    }

    #[test]
    fn a_filter_cannot_change_the_envelope_the_next_one_reads() {
        let (ended, out) = go(
            "printf 'Fevil@x\\0' 1<>/dev/fd/3 2>/dev/null; echo $?; cat >/dev/null",
            LIMITS,
        );
        assert_eq!(ended, Ended::Exit(0, Vec::new()));
        assert_ne!(String::from_utf8_lossy(&out).trim(), "0");
    }

    #[test]
    fn exit_codes_and_reasons() {
        let (ended, _) = go("echo 'Dno thanks (#5.7.1)' >&6; exit 82", LIMITS);
        match verdict(&ended) {
            Verdict::Reason(r) => assert!(r.permanent && r.text == "no thanks (#5.7.1)"),
            v => panic!("{v:?}"),
        }
        assert_eq!(verdict(&go("exit 99", LIMITS).0), Verdict::Drop);
        assert_eq!(verdict(&go("exit 31", LIMITS).0), Verdict::Exit(31));
        assert_eq!(verdict(&go("exit 82", LIMITS).0), Verdict::Exit(71));
        assert_eq!(verdict(&go("exit 1", LIMITS).0), Verdict::Exit(1));
    }

    #[test]
    fn a_crash_is_temporary_never_a_pass() {
        let (ended, _) = go("kill -SEGV $$", LIMITS);
        assert_eq!(ended, Ended::Signal(libc::SIGSEGV));
        assert!(matches!(verdict(&ended), Verdict::Reason(r) if !r.permanent));
    }

    #[test]
    fn the_deadline_kills_the_whole_group() {
        let limits = Limits {
            timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let start = std::time::Instant::now();
        // a background child holding the output open must not keep the chain waiting
        let (ended, _) = go("sleep 30 & sleep 30; echo late", limits);
        assert_eq!(ended, Ended::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(matches!(verdict(&ended), Verdict::Reason(r) if !r.permanent));
    }

    #[test]
    fn output_beyond_the_file_size_limit_kills_the_filter() {
        let (ended, out) = go("head -c 2000000 /dev/zero", LIMITS);
        // killed by SIGXFSZ (the shell may report it as 128 + 25)
        assert!(
            matches!(ended, Ended::Signal(libc::SIGXFSZ) | Ended::Exit(153, _)),
            "{ended:?}"
        );
        assert!(out.len() <= 1024 * 1024);
    }

    #[test]
    fn memory_beyond_the_limit_fails() {
        let limits = Limits {
            memory: 64 * 1024 * 1024,
            ..LIMITS
        };
        // the shell cannot hold a 100 MB string in 64 MB of address space
        let (ended, _) = go(
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ok",
            limits,
        );
        assert_ne!(verdict(&ended), Verdict::Next, "{ended:?}");
    }

    #[test]
    fn the_filter_gets_only_its_descriptors_and_the_root_directory() {
        // 0-3 and 6 open; of 4-20, only the shell's own 10 (dash keeps one there)
        let script = "for fd in 0 1 2 3 6 4 5 7 8 9 11 12 13 14 15 16 17 18 19 20; do \
                      [ -e /proc/$$/fd/$fd ] && printf '%s ' $fd; done; pwd; cat >/dev/null";
        let (ended, out) = go(script, LIMITS);
        assert_eq!(ended, Ended::Exit(0, Vec::new()));
        assert_eq!(String::from_utf8_lossy(&out), "0 1 2 3 6 /\n");
    }

    #[test]
    fn a_program_is_looked_up_in_path_and_a_missing_one_is_an_error() {
        let input = spool::sealed_file(b"Subject: x\n\n").unwrap();
        let output = spool::memory_file(c"output").unwrap();
        let envelope = spool::sealed_file(b"Fa\0\0").unwrap();
        let env = |path: &str| vec![("PATH".into(), OsString::from(path))];
        let filter = vec![OsString::from("true")];
        let ended = run(
            &filter,
            None,
            &env("/nonexistent:/bin:/usr/bin"),
            &input,
            &output,
            &envelope,
            LIMITS,
            None,
        );
        assert_eq!(ended.unwrap(), Ended::Exit(0, Vec::new()));
        let missing = run(
            &filter,
            None,
            &env("/nonexistent"),
            &input,
            &output,
            &envelope,
            LIMITS,
            None,
        );
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        let filter = vec![OsString::from("/nonexistent/filter")];
        assert!(
            run(
                &filter,
                None,
                &env("/bin"),
                &input,
                &output,
                &envelope,
                LIMITS,
                None
            )
            .is_err()
        );
    }

    // The linked-in filters below make system calls only: the test harness has other
    // threads, whose locks a forked child must not wait for.

    /// Write `bytes` to descriptor `fd` of the calling process.
    fn put(fd: i32, bytes: &[u8]) {
        // SAFETY: writing a valid buffer to a descriptor.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    /// A linked-in filter that reports what it was given, then copies fd 0 to fd 1.
    fn report() {
        let mut line = Vec::new();
        for fd in 0..21 {
            // SAFETY: fcntl only queries the descriptor.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
                line.extend_from_slice(format!("{fd} ").as_bytes());
            }
        }
        let mut buf = [0u8; 256];
        // SAFETY: getcwd, getenv and prctl fill or return C strings of this process.
        unsafe {
            libc::getcwd(buf.as_mut_ptr().cast(), buf.len());
            line.extend_from_slice(std::ffi::CStr::from_ptr(buf.as_ptr().cast()).to_bytes());
            for name in [c"QMAILUSER", c"HOME"] {
                let v = libc::getenv(name.as_ptr());
                line.push(b' ');
                line.extend_from_slice(if v.is_null() {
                    b"-"
                } else {
                    std::ffi::CStr::from_ptr(v).to_bytes()
                });
            }
            libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr());
            line.push(b' ');
            line.extend_from_slice(std::ffi::CStr::from_ptr(buf.as_ptr().cast()).to_bytes());
        }
        // SAFETY: prctl only reads a flag of this process.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
        line.extend_from_slice(format!(" dumpable={dumpable}").as_bytes());
        line.push(b'\n');
        put(1, &line);
        loop {
            // SAFETY: reading into a valid buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            put(1, &buf[..n as usize]);
        }
        // SAFETY: leaving the child without the harness's exit handlers.
        unsafe { libc::_exit(0) }
    }

    #[test]
    fn a_linked_in_filter_runs_in_a_child_set_up_as_an_exec_would() {
        let name = vec![OsString::from("/var/qmail/bin/qmail-scan")];
        let (ended, out) = go_with(&name, Some(&report), LIMITS);
        assert_eq!(ended, Ended::Exit(0, Vec::new()));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "0 1 2 3 6 / a - qmail-scan dumpable=0\nSubject: hi\n\nbody\n"
        );
        assert_eq!(verdict(&ended), Verdict::Next);
    }

    #[test]
    fn a_linked_in_filter_ends_as_a_program_would() {
        let name = vec![OsString::from("qmail-scan")];
        let drop_it = || {
            // SAFETY: ending the child.
            unsafe { libc::_exit(EXIT_DROP) }
        };
        assert_eq!(
            verdict(&go_with(&name, Some(&drop_it), LIMITS).0),
            Verdict::Drop
        );
        let refuse = || {
            put(6, b"Dno thanks (#5.7.1)");
            // SAFETY: ending the child.
            unsafe { libc::_exit(EXIT_REASON) }
        };
        match verdict(&go_with(&name, Some(&refuse), LIMITS).0) {
            Verdict::Reason(r) => assert!(r.permanent && r.text == "no thanks (#5.7.1)"),
            v => panic!("{v:?}"),
        }
        let crash = || {
            // SAFETY: a crash, as a bug in the filter would make one.
            unsafe { libc::raise(libc::SIGSEGV) };
        };
        let (ended, _) = go_with(&name, Some(&crash), LIMITS);
        assert_eq!(ended, Ended::Signal(libc::SIGSEGV));
        let spin = || loop {
            // SAFETY: waiting, as a filter stuck on a bomb would.
            unsafe { libc::pause() };
        };
        let limits = Limits {
            timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let (ended, _) = go_with(&name, Some(&spin), limits);
        assert_eq!(ended, Ended::TimedOut);
    }
}

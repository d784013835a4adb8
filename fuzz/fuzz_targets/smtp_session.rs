//! A whole SMTP session (port 25 mode) fed with arbitrary client bytes over an
//! in-memory transport: commands, pipelining, DATA, BDAT. qmail-queue is replaced by
//! /bin/true, so DATA exercises the reader and the failure path without queueing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::{Config, Mode, Session, TlsSource, io::Conn};
use std::io::{Read, Write};
use std::sync::OnceLock;

struct Mem {
    input: Vec<u8>,
    pos: usize,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(self.input.len() - self.pos)
            .min(7 + self.pos % 61);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn home() -> &'static std::path::Path {
    static HOME: OnceLock<std::path::PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        // libFuzzer's C main skips Rust's start-up, which ignores SIGPIPE as every one
        // of our programs has it: without this the first DATA whose /bin/true
        // qmail-queue exited before reading killed the fuzzer itself (exit 141).
        // SAFETY: setting a signal to "ignore" installs no handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let h = std::env::temp_dir().join(format!("qmail-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(h.join("control")).unwrap();
        std::fs::write(h.join("control/me"), "mx.example.test\n").unwrap();
        std::fs::write(h.join("control/rcpthosts"), "example.test\n.example.org\n").unwrap();
        std::fs::write(
            h.join("control/badmailfrom"),
            "bad@example.org\n@spam.test\n",
        )
        .unwrap();
        std::fs::write(h.join("control/databytes"), "100000\n").unwrap();
        std::fs::write(h.join("control/maxrcpt"), "20\n").unwrap();
        h
    })
}

fuzz_target!(|input: &[u8]| {
    let Ok(mut cfg) = Config::load(home(), Mode::Mx, Vec::new()) else {
        return;
    };
    cfg.queue_program = "/bin/true".into();
    let conn = Conn::new(Box::new(Mem {
        input: input.to_vec(),
        pos: 0,
    }));
    let mut s = Session::new(cfg, conn, TlsSource::None);
    let _ = s.run();
});

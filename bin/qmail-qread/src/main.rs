//! qmail-qread - list outgoing messages and recipients
//!
//! SYNOPSIS
//!     qmail-qread   (also `sendmail -bp` and `mailq`)
//!
//! DESCRIPTION
//!     For each preprocessed message in HOME/queue/info prints, as qmail does,
//!     `DATE GMT  #ID  BYTES  <SENDER> [ bouncing]` (date = the info file's mtime), then
//!     one line per recipient: `\tlocal\tADDR` or `\tremote\tADDR`, prefixed `  done`
//!     once delivered.
//!
//! USER
//!     root or qmails.
//!
//! EXIT CODES
//!     0; 111 when the queue cannot be read.

use std::os::unix::fs::MetadataExt;

fn main() {
    qsys::help!();
    qsys::die::install_panic_hook("qmail-qread");
    qsys::die::default_sigpipe();
    let fatal = |m: String| -> ! { qsys::die::fatal("qmail-qread", &m, 111) };
    let home = qsys::home().unwrap_or_else(|_| fatal("unable to find my home directory".into()));
    let layout = queue::Layout::new(&home);
    let mut ids = Vec::new();
    for split in 0..queue::SPLIT {
        let dir = layout.dir.join(format!("info/{split}"));
        let rd = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| fatal(format!("unable to read {}: {e}", dir.display())));
        ids.extend(
            rd.flatten()
                .filter_map(|e| queue::layout::parse_id(&e.file_name())),
        );
    }
    ids.sort_unstable();
    let mut out = String::new();
    for id in ids {
        let Ok(meta) = std::fs::metadata(layout.info(id)) else {
            continue;
        };
        let info = std::fs::read(layout.info(id)).unwrap_or_default();
        let sender = queue::envelope::records(&info)
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.kind == b'F')
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .unwrap_or_default();
        let bytes = std::fs::metadata(layout.mess(id))
            .map(|m| m.len())
            .unwrap_or(0);
        let bouncing = if layout.bounce(id).exists() {
            " bouncing"
        } else {
            ""
        };
        let date = qsys::date::date822(meta.mtime().max(0) as u64);
        let date = date.trim_end_matches(" -0000");
        out.push_str(&format!(
            "{date} GMT  #{id}  {bytes}  <{sender}> {bouncing}\n"
        ));
        for c in queue::layout::Channel::ALL {
            let data = std::fs::read(layout.chan(c, id)).unwrap_or_default();
            for r in queue::envelope::records(&data).unwrap_or_default() {
                let done = if r.kind == b'D' { "  done" } else { "" };
                out.push_str(&format!(
                    "{done}\t{}\t{}\n",
                    c.name(),
                    String::from_utf8_lossy(&r.value)
                ));
            }
        }
    }
    print!("{out}");
}

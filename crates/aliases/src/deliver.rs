//! What `fastforward` does with a message for an alias, run by qmail-local from
//! `~alias/.qmail-default` (so as the user alias, with qmail-command(8)'s environment):
//! forwards go back into the queue in one qmail-queue run, with qmail-local's
//! `Delivered-To` line on top (so a loop is caught) and the sender qmail-local chose
//! for forwards (`NEWSENDER`), or `owner-NAME@domain` when that alias exists (a mailing
//! list's bounces go to its owner, as sendmail does); programs run under `/bin/sh -c`
//! with the message on their input, files get it appended in mbox format.

use crate::expand::Delivery;
use delivery::Fail;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What qmail-local told us, from its environment.
pub struct Context {
    /// `DTLINE`, `RPLINE`, `UFLINE` as qmail-local made them.
    pub dtline: String,
    pub rpline: String,
    pub ufline: String,
    /// The envelope sender for the forwarded copy.
    pub sender: String,
    /// qmail-queue, for the forwards.
    pub qmail_queue: PathBuf,
    /// Where programs run (alias's home).
    pub home: PathBuf,
}

/// Deliver `message` to `deliveries`; the text qmail-local logs on success.
pub fn deliver(message: &mut File, deliveries: &[Delivery], ctx: &Context) -> Result<String, Fail> {
    let (mut files, mut programs) = (0, 0);
    let mut forwards = Vec::new();
    for d in deliveries {
        match d {
            Delivery::Forward(a) => forwards.push(a.clone()),
            Delivery::File(p) => {
                let prefix = format!("{}{}{}", ctx.ufline, ctx.rpline, ctx.dtline);
                delivery::mbox::deliver(Path::new(p), prefix.as_bytes(), message)?;
                files += 1;
            }
            Delivery::Program(cmd) => {
                run_program(cmd, message, &ctx.home)?;
                programs += 1;
            }
        }
    }
    let mut text = format!("fastforward: did {files}+{}+{programs}", forwards.len());
    if !forwards.is_empty() {
        rewind(message)?;
        let qp = queue::client::inject(&ctx.qmail_queue, ctx.sender.as_bytes(), &forwards, |w| {
            w.write_all(ctx.dtline.as_bytes())?;
            std::io::copy(message, w)?;
            Ok(())
        })
        .map_err(|e| Fail {
            permanent: e.permanent,
            text: format!("Unable to forward message: {}.", e.text),
        })?;
        text.push_str(&format!(" qp {qp}"));
    }
    Ok(text)
}

fn rewind(message: &mut File) -> Result<(), Fail> {
    message
        .seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|_| Fail::temp("Unable to rewind message. (#4.3.0)"))
}

/// `/bin/sh -c cmd` in `home` with the message on its input; its exit code as
/// qmail-local reads a program's (0 done, 100 and the sysexits permanent, else retry).
fn run_program(cmd: &str, message: &mut File, home: &Path) -> Result<(), Fail> {
    rewind(message)?;
    let stdin = message
        .try_clone()
        .map_err(|_| Fail::temp("Unable to duplicate message. (#4.3.0)"))?;
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(home)
        .stdin(Stdio::from(stdin))
        .status()
        .map_err(|_| Fail::temp("Unable to run /bin/sh: fork failed. (#4.3.0)"))?;
    match status.code() {
        Some(0) | Some(99) => Ok(()),
        Some(c) if delivery::local::program_permanent(c) => Err(Fail::perm(format!(
            "alias program failed with exit code {c}. (#5.3.0)"
        ))),
        Some(c) => Err(Fail::temp(format!(
            "alias program failed with exit code {c}. (#4.3.0)"
        ))),
        None => Err(Fail::temp("Aack, alias program crashed. (#4.3.0)")),
    }
}

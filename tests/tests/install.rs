//! qmail-install, the log run scripts and the set-id programs against a less privileged
//! user who plants links, and several installers at once (issue 11 items 1, 2 and 8).
//!
//! Each test installs into its own temporary root from a source directory holding only
//! the programs it needs (hard links to `target/debug`), so six installs cost little.

use e2e::{build_dir, need_root};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary directory, traversable by the qmail users and `nobody`.
fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("qmail-e2e-install")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// `dir/src` with `qmail-install` and `programs` from the build directory (what the
/// installer installs is what lies beside it).
fn source(dir: &Path, programs: &[&str]) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for p in std::iter::once(&"qmail-install").chain(programs) {
        let from = build_dir().join(p);
        let to = src.join(p);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    src
}

fn install(src: &Path, root: &Path) -> Output {
    Command::new(src.join("qmail-install"))
        .arg("--root")
        .arg(root)
        .args(["--me", "mx.example.test"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn install_ok(src: &Path, root: &Path) {
    let out = install(src, root);
    assert!(
        out.status.success(),
        "qmail-install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Owner, group and permission bits of `p` (not following a link).
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A root-owned directory and file an attacker would like to own: `victim/` (0755) and
/// `victim/secret` (0600).
fn victim(dir: &Path) -> PathBuf {
    let v = dir.join("victim");
    std::fs::create_dir(&v).unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(v.join("secret"), "secret\n").unwrap();
    std::fs::set_permissions(v.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    v
}

fn assert_untouched(v: &Path) {
    assert_eq!(owner_mode(v), (0, 0, 0o755), "{} was changed", v.display());
    let s = v.join("secret");
    assert_eq!(owner_mode(&s), (0, 0, 0o600), "{} was changed", s.display());
    assert_eq!(std::fs::read_to_string(&s).unwrap(), "secret\n");
}

/// The upgrade run fails with exit 111 and a message naming `rel` and what was found.
fn assert_refused(out: &Output, rel: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "stderr: {err}");
    assert!(
        err.starts_with("qmail-install: fatal: refusing to touch ")
            && err.contains(rel)
            && err.contains(what),
        "unclear message: {err}"
    );
}

#[test]
fn a_queue_directory_replaced_by_a_link_is_refused() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &[]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let v = victim(d.path());
    // a compromised qmails replaces queue/info/5 by a link to a root directory
    let info5 = root.join("queue/info/5");
    std::fs::remove_dir(&info5).unwrap();
    symlink(&v, &info5).unwrap();
    assert_refused(&install(&src, &root), "queue/info/5", "symbolic link");
    assert_untouched(&v);
    // a compromised qmailq replaces all of queue/info: nothing below it is reached
    std::fs::remove_file(&info5).unwrap();
    std::fs::rename(root.join("queue/info"), d.path().join("info.old")).unwrap();
    symlink(&v, root.join("queue/info")).unwrap();
    assert_refused(&install(&src, &root), "queue/info", "symbolic link");
    assert_untouched(&v);
    assert!(!v.join("5").exists());
}

#[test]
fn a_lock_file_replaced_by_a_link_is_refused() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &[]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let v = victim(d.path());
    let tcpto = root.join("queue/lock/tcpto");
    std::fs::remove_file(&tcpto).unwrap();
    symlink(v.join("secret"), &tcpto).unwrap();
    assert_refused(&install(&src, &root), "queue/lock/tcpto", "symbolic link");
    assert_untouched(&v);
    // a hard link to the secret (possible for its owner's victims where
    // fs.protected_hardlinks=0)
    std::fs::remove_file(&tcpto).unwrap();
    std::fs::hard_link(v.join("secret"), &tcpto).unwrap();
    assert_refused(&install(&src, &root), "queue/lock/tcpto", "2 links");
    assert_untouched(&v);
    // a dangling link where the trigger FIFO belongs: its target is not created
    std::fs::remove_file(&tcpto).unwrap();
    let trigger = root.join("queue/lock/trigger");
    std::fs::remove_file(&trigger).unwrap();
    symlink(v.join("made"), &trigger).unwrap();
    assert_refused(&install(&src, &root), "queue/lock/trigger", "symbolic link");
    assert!(!v.join("made").exists());
    // repaired, the upgrade goes through again
    std::fs::remove_file(&trigger).unwrap();
    install_ok(&src, &root);
    assert_eq!(std::fs::metadata(&tcpto).unwrap().len(), 1024);
}

/// qmailq owns queue/lock and may hard-link a named pipe of its own or (where
/// `fs.protected_hardlinks=0`) anyone's there: the installer would give that pipe to
/// qmails with mode 0622 (world-writable). It refuses instead, and the pipe's other name
/// keeps its owner and mode.
#[test]
fn a_hard_linked_fifo_at_the_trigger_is_refused() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &[]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let v = victim(d.path());
    let pipe = v.join("pipe");
    nix::unistd::mkfifo(&pipe, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::set_permissions(&pipe, std::fs::Permissions::from_mode(0o600)).unwrap();
    let trigger = root.join("queue/lock/trigger");
    std::fs::remove_file(&trigger).unwrap();
    std::fs::hard_link(&pipe, &trigger).unwrap();
    assert_refused(&install(&src, &root), "queue/lock/trigger", "2 links");
    assert_eq!(owner_mode(&pipe), (0, 0, 0o600), "the pipe was given away");
    assert_untouched(&v);
}

/// As root, an installation below a directory a user owns (the quick start run by root
/// from a checkout in /home/USER) would hold a set-id qmail-queue that refuses to run:
/// qmail-install refuses it up front and creates nothing there; init/quickstart stops
/// with that message and says what to do instead.
#[test]
fn a_root_install_in_a_users_tree_is_refused_up_front() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &[]);
    let user_home = d.path().join("home/user");
    std::fs::create_dir_all(user_home.join("checkout")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for p in [&user_home, &user_home.join("checkout")] {
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let run = user_home.join("checkout/run");
    let out = install(&src, &run.join("qmail"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "stderr: {err}");
    assert!(
        err.starts_with("qmail-install: fatal: refusing to install as root into ")
            && err.contains(&format!(
                "{} is not root's alone",
                user_home.join("checkout").display()
            ))
            && err.contains("/var/qmail"),
        "unclear message: {err}"
    );
    assert!(!run.exists(), "created in the user's tree");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/quickstart");
    let out = Command::new("sh")
        .arg(&script)
        .arg(&run)
        .env("QUICKSTART_BIN", &src)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "stderr: {err}");
    assert!(
        err.contains("refusing to install as root")
            && err.contains("quickstart: fatal: unable to install into")
            && err.contains("root-owned tree"),
        "unclear message: {err}"
    );
    assert!(!run.join("qmail").exists());
}

/// `~alias` is alias's own: whatever it put where the installer would create a file is
/// left alone (documented in install::hier::install), and nothing is followed.
#[test]
fn links_in_the_alias_home_are_left_alone() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &[]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let v = victim(d.path());
    let alias = root.join("alias");
    let dot_root = alias.join(".qmail-root");
    std::fs::remove_file(&dot_root).unwrap();
    symlink(v.join("created"), &dot_root).unwrap();
    std::fs::remove_dir_all(alias.join("Maildir")).unwrap();
    symlink(&v, alias.join("Maildir")).unwrap();
    install_ok(&src, &root);
    assert!(
        !v.join("created").exists(),
        "the dangling link's target was made"
    );
    assert!(
        !v.join("new").exists(),
        "a Maildir was made through the link"
    );
    assert!(std::fs::symlink_metadata(&dot_root).unwrap().is_symlink());
    assert_untouched(&v);
    // a dangling Maildir link: its target is not created either
    std::fs::remove_file(alias.join("Maildir")).unwrap();
    symlink(v.join("md"), alias.join("Maildir")).unwrap();
    install_ok(&src, &root);
    assert!(!v.join("md").exists());
}

/// Six installers at once on a machine without the qmail users: every one succeeds and
/// each account is made exactly once. Runs in a private mount namespace over a copy of
/// /etc without the qmail accounts (and without nscd or sssd caches), checked with
/// getent to be really unknown there, so it proves the race also where they exist.
#[test]
fn six_installers_at_once_without_the_qmail_users() {
    need_root!();
    for tool in ["unshare", "mount", "useradd", "groupadd", "getent"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            e2e::skip(&format!("{tool} is missing"));
            return;
        }
    }
    let d = tempdir();
    source(d.path(), &[]);
    let script = r#"
set -e
T=$1
# another useradd on this machine may come and go meanwhile: its lock files are
# not copied (cp may miss one that vanished), the account files must be
cp -a /etc "$T/etc" 2>/dev/null || true
rm -f "$T"/etc/*.lock "$T"/etc/*+
for f in passwd group; do [ -s "$T/etc/$f" ] || { echo "no $T/etc/$f"; exit 1; }; done
for u in alias qmaild qmaill qmailp qmailq qmailr qmails; do
  for f in passwd shadow; do [ ! -f "$T/etc/$f" ] || sed -i "/^$u:/d" "$T/etc/$f"; done
done
for g in qmail nofiles; do
  for f in group gshadow; do [ ! -f "$T/etc/$f" ] || sed -i "/^$g:/d" "$T/etc/$f"; done
done
# only the files answer: no nsswitch module, no nscd or sssd cache that still
# knows the accounts from the real /etc
[ ! -f "$T/etc/nsswitch.conf" ] ||
  sed -i -E 's/^(passwd|group|shadow|gshadow):.*/\1: files/' "$T/etc/nsswitch.conf"
mkdir "$T/empty"
for s in /run/nscd /var/run/nscd /var/lib/sss/pipes; do
  [ ! -d "$s" ] || mount --bind "$T/empty" "$s"
done
mount --bind "$T/etc" /etc
for u in alias qmaild qmaill qmailp qmailq qmailr qmails; do
  ! getent passwd $u >/dev/null || { echo "user $u still resolves"; exit 3; }
done
for g in qmail nofiles; do
  ! getent group $g >/dev/null || { echo "group $g still resolves"; exit 3; }
done
for i in 1 2 3 4 5 6; do
  ( rc=0; "$T/src/qmail-install" --root "$T/r$i" --me mx.example.test \
      >"$T/out$i" 2>&1 || rc=$?; echo $rc >"$T/rc$i" ) &
done
wait
for u in alias qmaild qmaill qmailp qmailq qmailr qmails; do
  getent passwd $u >/dev/null || { echo "user $u was not made"; exit 1; }
done
"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(d.path())
        .output()
        .unwrap();
    if out.status.code() == Some(3) {
        // without a lookup that misses, the installers would race for nothing
        let why = String::from_utf8_lossy(&out.stdout);
        e2e::skip(&format!("the qmail accounts cannot be hidden here: {why}"));
        return;
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("unshare failed") || err.contains("Operation not permitted") {
            e2e::skip(&format!("no private mount namespace here: {err}"));
            return;
        }
        panic!(
            "setup failed: {}{err}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for i in 1..=6 {
        let rc = std::fs::read_to_string(d.path().join(format!("rc{i}"))).unwrap();
        let text = std::fs::read_to_string(d.path().join(format!("out{i}"))).unwrap();
        assert_eq!(rc.trim(), "0", "installer {i} failed: {text}");
    }
    let count = |file: &str, name: &str| {
        std::fs::read_to_string(d.path().join("etc").join(file))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .count()
    };
    for u in [
        "alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails",
    ] {
        assert_eq!(count("passwd", u), 1, "user {u}");
    }
    for g in ["qmail", "nofiles"] {
        assert_eq!(count("group", g), 1, "group {g}");
    }
}

/// Run `HOME/supervise/qmail-send/log/run` as root with an empty stdin.
fn run_log_script(root: &Path) -> Output {
    let dir = root.join("supervise/qmail-send/log");
    Command::new("sh")
        .arg("./run")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_log_run_script_gives_main_to_qmaill_once_and_nothing_linked_into_it() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &["setuidgid", "multilog"]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let qmaill = nix::unistd::User::from_name("qmaill")
        .unwrap()
        .expect("qmaill made by qmail-install")
        .uid
        .as_raw();
    let main = root.join("supervise/qmail-send/log/main");
    let out = run_log_script(&root);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(owner_mode(&main).0, qmaill);
    assert!(main.join("current").is_file());

    // qmaill hard-links a root file into main (fs.protected_hardlinks=0): the next
    // start must not give it away (the old `chown -R qmaill main` did)
    let v = victim(d.path());
    std::fs::hard_link(v.join("secret"), main.join("planted")).unwrap();
    let _ = run_log_script(&root);
    assert_untouched(&v);
    // (qmaill cannot replace main itself: log/ is root's)
    let (uid, _, mode) = owner_mode(main.parent().unwrap());
    assert!(uid == 0 && mode & 0o022 == 0, "log/ is not root's alone");
}

/// A set-id qmail-queue copied (as a hard link would place it) into a tree a user owns,
/// run by that user: it refuses with a clear message and exit 61 (trouble in home
/// directory) instead of taking that tree as its home.
#[test]
fn a_setuid_program_refuses_a_home_its_caller_controls() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &["qmail-queue"]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let evil = d.path().join("evil");
    std::fs::create_dir_all(evil.join("bin")).unwrap();
    for p in [&evil, &evil.join("bin")] {
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let planted = evil.join("bin/qmail-queue");
    std::fs::copy(root.join("bin/qmail-queue"), &planted).unwrap();
    let qmailq = nix::unistd::User::from_name("qmailq").unwrap().unwrap();
    nix::unistd::chown(&planted, Some(qmailq.uid), None).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o4711)).unwrap();
    assert_eq!(owner_mode(&planted).2, 0o4711);

    // our own setuidgid (built with everything else), not util-linux's runuser
    let run = |prog: &Path| {
        Command::new(build_dir().join("setuidgid"))
            .arg("nobody")
            .arg(prog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&planted);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(61), "stderr: {err}");
    assert!(
        err.contains("qmail-queue: alert: refusing to run set-id from")
            && err.contains(&evil.display().to_string()),
        "unclear message: {err}"
    );
    // a root-owned home inside the user's tree: the user could rename it away
    let inner = evil.join("inner");
    std::fs::create_dir_all(inner.join("bin")).unwrap();
    std::fs::rename(&planted, inner.join("bin/qmail-queue")).unwrap();
    let out = run(&inner.join("bin/qmail-queue"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(61), "stderr: {err}");
    assert!(err.contains("refusing to run set-id"), "{err}");
    // the installed one, in a root-owned home, gets past its home
    let out = run(&root.join("bin/qmail-queue"));
    assert_ne!(out.status.code(), Some(61), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("refusing"));
}

fn vuser(root: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(root.join("bin/qmail-vuser"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// qmail-vuser (run as root) in a domain directory whose owner planted links: a link
/// where a user's directory belongs is refused with a message naming it; a domain added
/// again over its old directory gets a new `.qmail-default` instead of writing through
/// the owner's link.
#[test]
fn qmail_vuser_follows_no_link_the_domain_owner_planted() {
    need_root!();
    let d = tempdir();
    let src = source(d.path(), &["qmail-vuser"]);
    let root = d.path().join("root");
    install_ok(&src, &root);
    let v = victim(d.path());
    let ok = |o: Output| assert!(o.status.success(), "{o:?}");
    ok(vuser(
        &root,
        &["adddomain", "virt.example", "--owner", "nobody"],
        "",
    ));
    let vdir = root.join("vdomains/virt.example");
    symlink(&v, vdir.join("bob")).unwrap();
    let out = vuser(&root, &["add", "bob@virt.example"], "Good-Password-42\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "{err}");
    assert!(
        err.starts_with("qmail-vuser: fatal: ")
            && err.contains("refusing to touch")
            && err.contains("virt.example/bob")
            && err.contains("symbolic link"),
        "unclear message: {err}"
    );
    assert_untouched(&v);

    ok(vuser(&root, &["deldomain", "virt.example"], ""));
    let dq = vdir.join(".qmail-default");
    std::fs::remove_file(&dq).unwrap();
    symlink(v.join("secret"), &dq).unwrap();
    ok(vuser(
        &root,
        &["adddomain", "virt.example", "--owner", "nobody"],
        "",
    ));
    assert_untouched(&v);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert!(std::fs::symlink_metadata(&dq).unwrap().is_file());
    assert_eq!(owner_mode(&dq).0, nobody.uid.as_raw());
    assert!(
        std::fs::read_to_string(&dq)
            .unwrap()
            .contains("qmail-vdeliver")
    );
}

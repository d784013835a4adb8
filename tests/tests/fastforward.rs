//! fastforward (issue 12): a real aliases file in a temporary root, compiled by
//! newaliases and delivered through `~alias/.qmail-default`: names followed, `\name`,
//! addresses, `:include:` lists, owner-NAME as the sender of a list's copies, a file
//! and a program run as the user alias, an unknown name bounced, a loop ended; a
//! mistake in the file reported with its line and the old table kept.

use e2e::*;
use std::path::Path;
use std::process::Command;

const ME: &str = "mx.example.test";

fn alias_uid() -> u32 {
    nix::unistd::User::from_name("alias")
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// A Maildir `~alias/NAME/` and `~alias/.qmail-NAME` delivering into it.
fn alias_box(alias: &Path, name: &str, uid: u32) {
    for sub in ["", "/new", "/cur", "/tmp"] {
        let d = alias.join(format!("{name}{sub}"));
        std::fs::create_dir_all(&d).unwrap();
        nix::unistd::chown(&d, Some(uid.into()), None).unwrap();
    }
    write_owned(
        &alias.join(format!(".qmail-{name}")),
        &format!("./{name}/\n"),
        uid,
    );
}

fn newaliases(sys: &System, file: &Path) -> std::process::Output {
    Command::new(sys.bin("newaliases"))
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn an_aliases_file_delivered_through_fastforward() {
    need_root!();
    let mut sys = System::install(ME, &[ME]);
    let alias = sys.root.join("alias");
    let uid = alias_uid();
    for b in ["box1", "box2", "box3"] {
        alias_box(&alias, b, uid);
    }
    let etc = sys.root.parent().unwrap().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let team = etc.join("team.list");
    std::fs::write(&team, "# the team\nbox3\n").unwrap();
    let archive = alias.join("archive.mbox");
    let tick = alias.join("tick.out");
    let aliases = etc.join("aliases");
    std::fs::write(
        &aliases,
        format!(
            "# as sendmail had it\n\
             Sales: box1,\n\tbox2@{ME}\n\
             team: :include:{}\n\
             list: box1, box3\n\
             owner-list: box2\n\
             archive: {}\n\
             tick: \"|id -u > {}; cat >> {}\"\n\
             loop1: loop2\n\
             loop2: loop1\n",
            team.display(),
            archive.display(),
            tick.display(),
            tick.display()
        ),
    )
    .unwrap();
    let o = newaliases(&sys, &aliases);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("8 aliases written"));
    write_owned(
        &alias.join(".qmail-default"),
        &format!(
            "| {} {}.cdb\n",
            sys.bin("fastforward").display(),
            aliases.display()
        ),
        uid,
    );
    sys.start();

    let send = |rcpt: &str, subject: &str| {
        let msg = format!("From: someone@remote.test\nSubject: {subject}\n\nhello\n");
        let r = format!("{rcpt}@{ME}");
        assert_eq!(
            sys.queue(&format!("box2@{ME}"), &[r.as_str()], msg.as_bytes()),
            0
        );
    };
    send("sales", "to sales");
    let b1 = wait_maildir(&alias.join("box1"), 1, 60);
    let b2 = wait_maildir(&alias.join("box2"), 1, 60);
    assert!(b1[0].contains("Subject: to sales") && b2[0].contains("Subject: to sales"));
    assert!(
        b1[0].contains(&format!("Delivered-To: sales@{ME}")),
        "{}",
        b1[0]
    );

    send("team", "to the team");
    let b3 = wait_maildir(&alias.join("box3"), 1, 60);
    assert!(b3[0].contains("Subject: to the team"));

    // a list's copies go out from its owner: bounces reach owner-list
    send("list", "to the list");
    let b3 = wait_maildir(&alias.join("box3"), 2, 60);
    let copy = b3.iter().find(|m| m.contains("to the list")).unwrap();
    assert!(
        copy.contains(&format!("Return-Path: <owner-list@{ME}>")),
        "{copy}"
    );

    send("archive", "archived");
    send("tick", "ticket");
    wait_until("the file and the program", 60, || {
        let a = std::fs::read_to_string(&archive).ok()?;
        let t = std::fs::read_to_string(&tick).ok()?;
        (a.contains("Subject: archived") && t.contains("Subject: ticket")).then_some((a, t))
    });
    let a = std::fs::read_to_string(&archive).unwrap();
    assert!(a.starts_with("From box2@mx.example.test "), "{a}");
    let t = std::fs::read_to_string(&tick).unwrap();
    assert_eq!(
        t.lines().next(),
        Some(uid.to_string().as_str()),
        "runs as alias"
    );

    // an unknown name bounces to the sender (box2), a loop ends without mail storms
    send("nosuch", "to nobody");
    send("loop1", "looping");
    let b2 = wait_maildir(&alias.join("box2"), 3, 60);
    assert!(
        b2.iter()
            .any(|m| m.contains("Sorry, no mailbox here by that name. (#5.1.1)")),
        "{b2:?}"
    );
    sys.wait_log("delivery", 5);
}

#[test]
fn a_mistake_is_named_with_its_line_and_the_old_table_stays() {
    let sys = System::install(ME, &[]);
    let file = sys.root.parent().unwrap().join("aliases");
    std::fs::write(&file, "root: admin@example.org\n").unwrap();
    assert!(newaliases(&sys, &file).status.success());
    let cdb = std::fs::read(format!("{}.cdb", file.display())).unwrap();
    std::fs::write(&file, "root: admin@example.org\nthis line has no colon\n").unwrap();
    let o = newaliases(&sys, &file);
    assert_eq!(o.status.code(), Some(100), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 2: no colon after the alias name"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(format!("{}.cdb", file.display())).unwrap(),
        cdb
    );
}

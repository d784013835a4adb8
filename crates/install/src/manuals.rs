//! The manuals of every program, taken from the module doc its `main.rs` opens with
//! (`qsys::manual`), installed as man pages in `HOME/man/man8/NAME.8` and as text in
//! `HOME/doc/NAME.txt`, so `man qmail-smtpd` and `PROG --help` say the same.

macro_rules! manuals {
    ($($name:literal),* $(,)?) => {
        /// (program, the source of its main.rs), for every program in bin/.
        pub const MANUALS: &[(&str, &str)] = &[$(($name, include_str!(concat!("../../../bin/", $name, "/src/main.rs")))),*];
    };
}

manuals!(
    "checkpassword",
    "envdir",
    "fastforward",
    "envuidgid",
    "maildirmake",
    "multilog",
    "newaliases",
    "qmail-authcheck",
    "qmail-clean",
    "qmail-dkim",
    "qmail-dkimsign",
    "qmail-guard",
    "qmail-inject",
    "qmail-install",
    "qmail-local",
    "qmail-lspawn",
    "qmail-newmrh",
    "qmail-newu",
    "qmail-pop3d",
    "qmail-popup",
    "qmail-qfilter",
    "qmail-qfilterd",
    "qmail-qread",
    "qmail-qstat",
    "qmail-quarantine",
    "qmail-queue",
    "qmail-queued",
    "qmail-recipients",
    "qmail-remote",
    "qmail-rspawn",
    "qmail-scan",
    "qmail-send",
    "qmail-showctl",
    "qmail-smtpd",
    "qmail-spamc",
    "qmail-spamlearn",
    "qmail-start",
    "qmail-tcpok",
    "qmail-tcpto",
    "qmail-vdeliver",
    "qmail-vuser",
    "qmailctl",
    "rblsmtpd",
    "sendmail",
    "setuidgid",
    "softlimit",
    "supervise",
    "svc",
    "svok",
    "svscan",
    "svscanboot",
    "svstat",
    "tai64n",
    "tai64nlocal",
    "tcpclient",
    "tcprules",
    "tcprulescheck",
    "tcpserver",
    "qmail-stats",
    "qmail-audit",
);

#[cfg(test)]
mod tests {
    use super::MANUALS;

    /// A program added to bin/ needs its line above, or it would have no man page.
    #[test]
    fn every_program_in_bin_has_a_manual_and_each_opens_with_its_name() {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bin");
        let mut names: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| bin.join(n).join("src/main.rs").is_file())
            .collect();
        names.sort();
        let mut listed: Vec<String> = MANUALS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(listed, names);
        for (name, source) in MANUALS {
            let text = qsys::manual::text(source);
            assert!(
                text.starts_with(&format!("{name} - "))
                    || text.starts_with(&format!("NAME\n    {name} - ")),
                "{name}: manual opens with {:?}",
                text.lines().next()
            );
        }
    }
}

//! What happens to a message after its checks: the control files that say it
//! (`dmarcreject`, `dmarcquarantine`, `spfpolicy`, `authchecklookups`,
//! `authchecktimeout`) and [`decide`], the one rule that turns results into a
//! disposition.
//!
//! The rule, in order (RFC 7489 section 6.6 for DMARC; section 10.1's advice that SPF
//! alone should not refuse what DKIM vouches for):
//! 1. DMARC fails and the domain's policy, after `pct=` sampling (section 6.6.4: a
//!    message outside the percentage gets the next weaker policy), is `reject`: refused
//!    with 550 5.7.1 (`dmarcreject` `refuse`, the default) or delivered marked `reject`.
//! 2. DMARC fails with policy `quarantine`: delivered marked `quarantine` (the default)
//!    or kept in HOME/quarantine (`dmarcquarantine` `quarantine`).
//! 3. DMARC could not be decided for a temporary DNS failure while the domain's policy
//!    is `reject` and we refuse: 451, so the sender retries.
//! 4. SPF `fail` (the domain's `-all` matched) and no DKIM signature passed: refused
//!    with 550 5.7.23 (`spfpolicy` `refuse`) or delivered marked `spf-fail` (default).
//! 5. Anything else is delivered, marked `temperror` when a check could not finish,
//!    `pass` when SPF or a DKIM signature passed, else `none`.

use mail_auth::SpfResult;

/// DMARC's result for the header (RFC 8601 section 2.7.7 registry values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcResult {
    Pass,
    Fail,
    None,
    TempError,
    PermError,
}

/// A DMARC policy (`p=`/`sp=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// The next weaker policy (for a message outside `pct=`).
    pub fn weaker(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

/// What the checks found, as far as the policy is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    pub spf: SpfResult,
    /// The SPF domain (MAIL FROM's, or HELO's for the null sender).
    pub spf_domain: String,
    /// Some DKIM signature passed (aligned or not).
    pub dkim_pass: bool,
    /// Some DKIM signature could not be checked for a DNS failure.
    pub dkim_temperror: bool,
    pub dmarc: DmarcResult,
    /// The From: domain DMARC looked at (empty: none).
    pub dmarc_domain: String,
    /// The domain's policy (`p=`, or `sp=` for a subdomain), after `pct=`.
    pub dmarc_policy: Policy,
}

/// The policy from the control files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `dmarcreject`: refuse (true, default) or mark.
    pub refuse_dmarc_reject: bool,
    /// `dmarcquarantine`: keep in HOME/quarantine (true) or mark (false, default).
    pub quarantine_dmarc_quarantine: bool,
    /// `spfpolicy`: refuse (true) or mark (false, default).
    pub refuse_spf_fail: bool,
    /// `authchecklookups`: DNS lookups allowed to each of SPF, DKIM and DMARC.
    pub lookups: u32,
    /// `authchecktimeout`: seconds per DNS lookup.
    pub timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            refuse_dmarc_reject: true,
            quarantine_dmarc_quarantine: false,
            refuse_spf_fail: false,
            lookups: DEFAULT_LOOKUPS,
            timeout_secs: DEFAULT_TIMEOUT,
        }
    }
}

/// `authchecklookups` default.
pub const DEFAULT_LOOKUPS: u32 = 40;
/// `authchecktimeout` default, seconds.
pub const DEFAULT_TIMEOUT: u64 = 5;

impl Config {
    /// Read the control files; a malformed value is logged by the reader and replaced as
    /// its table entry says. `Err`: a file could not be read.
    pub fn read(controls: &control::Controls) -> std::io::Result<Config> {
        let word = |name: &str| -> std::io::Result<&'static str> {
            let (w, invalid) = controls.choice(name)?;
            if let Some(i) = invalid {
                qsys::die::warn("qmail-authcheck", "warning", &i.to_string());
            }
            Ok(w)
        };
        Ok(Config {
            refuse_dmarc_reject: word("dmarcreject")? == "refuse",
            quarantine_dmarc_quarantine: word("dmarcquarantine")? == "quarantine",
            refuse_spf_fail: word("spfpolicy")? == "refuse",
            lookups: u32::try_from(controls.int("authchecklookups", DEFAULT_LOOKUPS as u64)?)
                .unwrap_or(u32::MAX),
            timeout_secs: controls.int("authchecktimeout", DEFAULT_TIMEOUT)?,
        })
    }
}

/// What becomes of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Passed on with `X-Qmail-Authcheck: MARK`.
    Deliver(&'static str),
    /// Refused for good with this text (`D` on fd 6; it starts with the reply code).
    Refuse(String),
    /// Refused for now with this text (`Z`).
    Defer(String),
    /// Kept in the quarantine; the reason.
    Quarantine(String),
}

/// The rule of the module doc.
pub fn decide(f: &Findings, cfg: &Config) -> Disposition {
    let domain = qsys::logsafe::text(f.dmarc_domain.as_bytes());
    if f.dmarc == DmarcResult::Fail {
        match f.dmarc_policy {
            Policy::Reject if cfg.refuse_dmarc_reject => {
                return Disposition::Refuse(format!(
                    "550 message rejected per the DMARC policy of {domain} (#5.7.1)"
                ));
            }
            Policy::Reject => return Disposition::Deliver("reject"),
            Policy::Quarantine if cfg.quarantine_dmarc_quarantine => {
                return Disposition::Quarantine(format!(
                    "DMARC policy quarantine of {domain} failed"
                ));
            }
            Policy::Quarantine => return Disposition::Deliver("quarantine"),
            Policy::None => {}
        }
    }
    if f.dmarc == DmarcResult::TempError
        && f.dmarc_policy == Policy::Reject
        && cfg.refuse_dmarc_reject
    {
        return Disposition::Defer(format!(
            "451 temporary DNS failure checking the DMARC policy of {domain} (#4.4.3)"
        ));
    }
    if f.spf == SpfResult::Fail && !f.dkim_pass && f.dmarc != DmarcResult::Pass {
        if cfg.refuse_spf_fail {
            let spf = qsys::logsafe::text(f.spf_domain.as_bytes());
            return Disposition::Refuse(format!(
                "550 SPF of {spf} does not allow this sender (#5.7.23)"
            ));
        }
        return Disposition::Deliver("spf-fail");
    }
    let temp =
        f.spf == SpfResult::TempError || f.dkim_temperror || f.dmarc == DmarcResult::TempError;
    if temp && f.dmarc != DmarcResult::Pass {
        Disposition::Deliver("temperror")
    } else if f.spf == SpfResult::Pass || f.dkim_pass || f.dmarc == DmarcResult::Pass {
        Disposition::Deliver("pass")
    } else {
        Disposition::Deliver("none")
    }
}

/// Whether a message is inside a DMARC record's `pct=` (0..=100), given a uniform
/// random number.
pub fn within_pct(pct: u8, random: u64) -> bool {
    pct >= 100 || random % 100 < u64::from(pct)
}

/// The `pct=` tag of a DMARC record's text (RFC 7489 section 6.3): 100 when absent or
/// malformed (the default), clamped to 100.
pub fn pct_of(record: &str) -> u8 {
    record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u32>().ok())
        .map_or(100, |n| n.min(100) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Findings {
        Findings {
            spf: SpfResult::None,
            spf_domain: "s.test".into(),
            dkim_pass: false,
            dkim_temperror: false,
            dmarc: DmarcResult::None,
            dmarc_domain: "d.test".into(),
            dmarc_policy: Policy::None,
        }
    }

    #[test]
    fn dmarc_reject_refuses_or_marks() {
        let mut x = f();
        x.dmarc = DmarcResult::Fail;
        x.dmarc_policy = Policy::Reject;
        let cfg = Config::default();
        match decide(&x, &cfg) {
            Disposition::Refuse(t) => {
                assert_eq!(
                    t,
                    "550 message rejected per the DMARC policy of d.test (#5.7.1)"
                )
            }
            d => panic!("{d:?}"),
        }
        let mark = Config {
            refuse_dmarc_reject: false,
            ..cfg
        };
        assert_eq!(decide(&x, &mark), Disposition::Deliver("reject"));
    }

    #[test]
    fn dmarc_quarantine_marks_or_keeps() {
        let mut x = f();
        x.dmarc = DmarcResult::Fail;
        x.dmarc_policy = Policy::Quarantine;
        assert_eq!(
            decide(&x, &Config::default()),
            Disposition::Deliver("quarantine")
        );
        let keep = Config {
            quarantine_dmarc_quarantine: true,
            ..Config::default()
        };
        assert!(matches!(decide(&x, &keep), Disposition::Quarantine(_)));
        x.dmarc_policy = Policy::None;
        assert_eq!(decide(&x, &keep), Disposition::Deliver("none"));
    }

    #[test]
    fn a_temporary_failure_defers_only_where_the_policy_refuses() {
        let mut x = f();
        x.dmarc = DmarcResult::TempError;
        x.dmarc_policy = Policy::Reject;
        assert!(matches!(
            decide(&x, &Config::default()),
            Disposition::Defer(t) if t.starts_with("451 ") && t.ends_with("(#4.4.3)")
        ));
        let mark = Config {
            refuse_dmarc_reject: false,
            ..Config::default()
        };
        assert_eq!(decide(&x, &mark), Disposition::Deliver("temperror"));
        x.dmarc_policy = Policy::Quarantine;
        assert_eq!(
            decide(&x, &Config::default()),
            Disposition::Deliver("temperror")
        );
        let mut y = f();
        y.spf = SpfResult::TempError;
        assert_eq!(
            decide(&y, &Config::default()),
            Disposition::Deliver("temperror")
        );
    }

    #[test]
    fn spf_fail_counts_only_without_a_dkim_pass() {
        let mut x = f();
        x.spf = SpfResult::Fail;
        assert_eq!(
            decide(&x, &Config::default()),
            Disposition::Deliver("spf-fail")
        );
        let refuse = Config {
            refuse_spf_fail: true,
            ..Config::default()
        };
        assert!(matches!(
            decide(&x, &refuse),
            Disposition::Refuse(t) if t == "550 SPF of s.test does not allow this sender (#5.7.23)"
        ));
        x.dkim_pass = true;
        assert_eq!(decide(&x, &refuse), Disposition::Deliver("pass"));
        let mut y = f();
        y.spf = SpfResult::SoftFail;
        assert_eq!(decide(&y, &refuse), Disposition::Deliver("none"));
    }

    #[test]
    fn aligned_dkim_passes_dmarc_despite_spf() {
        let mut x = f();
        x.spf = SpfResult::Fail;
        x.dkim_pass = true;
        x.dmarc = DmarcResult::Pass;
        x.dmarc_policy = Policy::Reject;
        let refuse = Config {
            refuse_spf_fail: true,
            ..Config::default()
        };
        assert_eq!(decide(&x, &refuse), Disposition::Deliver("pass"));
    }

    #[test]
    fn hostile_domains_cannot_break_the_reply_line() {
        let mut x = f();
        x.dmarc = DmarcResult::Fail;
        x.dmarc_policy = Policy::Reject;
        x.dmarc_domain = "evil\r\n250 ok".into();
        let Disposition::Refuse(t) = decide(&x, &Config::default()) else {
            panic!()
        };
        assert!(!t.contains('\n') && !t.contains('\r'), "{t}");
    }

    #[test]
    fn pct_tags() {
        assert_eq!(pct_of("v=DMARC1; p=reject"), 100);
        assert_eq!(pct_of("v=DMARC1; p=reject; pct=0"), 0);
        assert_eq!(pct_of("v=DMARC1;p=reject;PCT = 25 "), 25);
        assert_eq!(pct_of("v=DMARC1; pct=500"), 100);
        assert_eq!(pct_of("v=DMARC1; pct=x"), 100);
        assert!(within_pct(100, 99));
        assert!(!within_pct(0, 0));
        assert!(within_pct(25, 124));
        assert!(!within_pct(25, 125));
        assert_eq!(Policy::Reject.weaker(), Policy::Quarantine);
        assert_eq!(Policy::Quarantine.weaker(), Policy::None);
    }
}

//! Times on the command line and in the reports, all in UTC.
//!
//! `--since` takes `NUMBER[smhdw]` (that long before now), `@` and 24 hex digits (a
//! TAI64N label as multilog writes it), a plain number of unix seconds, or
//! `YYYY-MM-DD[(T| )HH:MM[:SS]]` in UTC. Reports print `YYYY-MM-DD HH:MM:SS` in UTC.

/// The unix milliseconds `text` names, given the time `now_ms`; None when it is not one
/// of the forms above.
pub fn parse_since(text: &str, now_ms: i64) -> Option<i64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix('@') {
        let label = format!("@{hex} ");
        return crate::tally::split_stamp(label.as_bytes()).0;
    }
    if let Some(unit) = t.chars().last().filter(|c| "smhdw".contains(*c)) {
        let n: i64 = digits(&t[..t.len() - 1])?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 604_800,
        };
        return now_ms.checked_sub(n.checked_mul(secs)?.checked_mul(1000)?);
    }
    if let Some(secs) = digits(t) {
        return secs.checked_mul(1000);
    }
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, c),
        None => (t, "00:00"),
    };
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&c.len()) {
        return None;
    }
    let (y, mo, da) = (digits(d[0])?, digits(d[1])?, digits(d[2])?);
    let (h, mi) = (digits(c[0])?, digits(c[1])?);
    let s = if c.len() == 3 { digits(c[2])? } else { 0 };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    Some(((days * 86_400) + h * 3600 + mi * 60 + s) * 1000)
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix milliseconds.
pub fn format_utc(ms: i64) -> String {
    // qmail's own calendar (qsys::date); a stamp before 1970 shows as 1970
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    let (y, m, d, h, mi, s, _) = qsys::date::civil(secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `YYYY-MM-DD HH:00` (UTC) of an hour number (unix seconds / 3600).
pub fn format_hour(hour: i64) -> String {
    let full = format_utc(hour.saturating_mul(3_600_000));
    format!("{}:00", &full[..13])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_since("1h", now), Some(now - 3_600_000));
        assert_eq!(parse_since("2d", now), Some(now - 172_800_000));
        assert_eq!(parse_since("86400", now), Some(86_400_000));
        assert_eq!(parse_since("1970-01-02", now), Some(86_400_000));
        assert_eq!(
            parse_since("2026-12-06T08:30", now),
            Some(1_796_545_800_000)
        );
        assert_eq!(
            parse_since("2026-12-06 08:30:05", now),
            Some(1_796_545_805_000)
        );
        assert_eq!(parse_since("@400000000000000a00000000", now), Some(0));
        for bad in [
            "",
            "h",
            "-1h",
            "yesterday",
            "2026-13-01",
            "2026-12-06T25:00",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_since(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_utc(1_796_545_805_000), "2026-12-06 08:30:05");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_hour(1_796_545_805 / 3600), "2026-12-06 08:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}

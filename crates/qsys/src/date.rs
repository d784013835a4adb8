//! Dates in the forms qmail writes: `date822fmt` (`23 Nov 2026 10:00:00 -0000`, GMT, no
//! weekday) for Received lines and bounces, plus the pieces qmail-inject needs.

/// (year, month 1-12, day 1-31, hour, minute, second, weekday 0=Sunday) in UTC.
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (h, mi, s) = (
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    );
    let weekday = ((days + 4).rem_euclid(7)) as u32; // 1970-01-01 was a Thursday
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, h, mi, s, weekday)
}

pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
pub const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// `23 Nov 2026 10:00:00 -0000` (qmail's date822fmt, without the newline).
pub fn date822(secs: u64) -> String {
    let (y, m, d, h, mi, s, _) = civil(secs);
    format!(
        "{d} {} {y} {h:02}:{mi:02}:{s:02} -0000",
        MONTHS[(m - 1) as usize]
    )
}

/// `Mon, 23 Nov 2026 10:00:00 +0000` (RFC 5322 with weekday).
pub fn rfc5322(secs: u64) -> String {
    let (y, m, d, h, mi, s, wd) = civil(secs);
    format!(
        "{}, {d} {} {y} {h:02}:{mi:02}:{s:02} +0000",
        DAYS[wd as usize],
        MONTHS[(m - 1) as usize]
    )
}

/// `Thu Jan  1 00:00:00 1970` (ctime, as in mbox `From ` lines), without the newline.
pub fn ctime(secs: u64) -> String {
    let (y, m, d, h, mi, s, wd) = civil(secs);
    format!(
        "{} {} {d:2} {h:02}:{mi:02}:{s:02} {y}",
        DAYS[wd as usize],
        MONTHS[(m - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(date822(0), "1 Jan 1970 00:00:00 -0000");
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        // 2000-02-29 12:34:56 UTC
        assert_eq!(date822(951_827_696), "29 Feb 2000 12:34:56 -0000");
        assert_eq!(rfc5322(951_827_696), "Tue, 29 Feb 2000 12:34:56 +0000");
        // 2026-11-23 00:00:00 UTC is a Monday
        assert_eq!(rfc5322(1_795_392_000), "Mon, 23 Nov 2026 00:00:00 +0000");
    }
}

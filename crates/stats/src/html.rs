//! The report as one self-contained HTML page: the figures of the text report as tables,
//! and plots drawn by plotters' SVG backend inlined as `<svg>` elements.
//!
//! The page loads nothing: no script, no style sheet, font or image from elsewhere, and a
//! Content-Security-Policy of `default-src 'none'` (inline style only) says so to the
//! browser, so it can be mailed or published as it is. Every text a client chose
//! (addresses, domains, reply texts, client addresses) goes through [`escape`]; the plots
//! carry only our own labels and numbers (plotters escapes its text as well).

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::event::{Reason, Verdict};
use crate::tally::{HOUR_SERIES, MAX_HOURS, Stats};
use crate::time::{format_hour, format_utc};

/// `&`, `<`, `>`, `"` and `'` as entities: safe in element text and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
td.n{text-align:right}figure{margin:1em 0}h2{margin-top:1.5em}";

/// The whole page.
pub fn page(s: &Stats, top: usize) -> String {
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    o.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    o.push_str("<title>qmail-stats</title>\n<style>");
    o.push_str(STYLE);
    o.push_str("</style></head><body>\n<h1>Mail statistics</h1>\n");
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| format!("{} UTC", format_utc(t)));
    o.push_str(&format!(
        "<p id=\"period\">From {} to {}{}.</p>\n",
        when(s.first_ms),
        when(s.last_ms),
        s.since_ms()
            .map_or(String::new(), |t| format!(" (since {})", when(Some(t))))
    ));
    let delay = |p| {
        s.delay_percentile(p)
            .map_or("-".to_string(), |ms| format!("{:.3} s", ms as f64 / 1000.0))
    };
    let summary: Vec<(String, String)> = vec![
        ("messages received".into(), s.received.to_string()),
        ("bytes received".into(), s.bytes.to_string()),
        ("delivered locally".into(), s.delivered_local.to_string()),
        ("delivered remotely".into(), s.delivered_remote.to_string()),
        ("bounced recipients".into(), s.bounced.to_string()),
        ("deferrals".into(), s.deferred.to_string()),
        ("bounce messages".into(), s.bounce_messages.to_string()),
        ("accepted by SMTP".into(), s.smtp_accepted.to_string()),
        ("SMTP refusals".into(), s.refused().to_string()),
        ("delay p50".into(), delay(50)),
        ("delay p90".into(), delay(90)),
        ("delay p99".into(), delay(99)),
        ("delay max".into(), delay(100)),
    ];
    table(&mut o, "summary", &["", ""], &summary);

    o.push_str("<h2>Per hour (UTC)</h2>\n");
    figure(&mut o, "hourly", hourly_chart(s));
    o.push_str("<h2>Deliveries</h2>\n");
    let outcomes = [
        ("local", s.delivered_local),
        ("remote", s.delivered_remote),
        ("bounced", s.bounced),
        ("deferred", s.deferred),
    ];
    figure(
        &mut o,
        "outcomes",
        bar_chart("delivery attempts", &outcomes),
    );
    o.push_str("<h2>SMTP refusals</h2>\n");
    let reasons: Vec<(&str, u64)> = Reason::ALL
        .iter()
        .filter_map(|r| s.refusals.get(r).map(|n| (r.name(), *n)))
        .collect();
    figure(
        &mut o,
        "refusals",
        bar_chart("refusals by reason", &reasons),
    );
    counted(
        &mut o,
        "by-client",
        "Refusals by client",
        "client",
        &s.refusing_clients.top(top),
    );
    let verdicts: Vec<(String, String)> = Verdict::ALL
        .iter()
        .zip(s.scanned)
        .map(|(v, n)| (v.name().to_string(), n.to_string()))
        .collect();
    o.push_str("<h2>Content filter (qmail-scan)</h2>\n");
    table(
        &mut o,
        "content-filter",
        &["verdict", "messages"],
        &verdicts,
    );
    counted(
        &mut o,
        "viruses",
        "Viruses found",
        "virus",
        &s.viruses.top(top),
    );
    counted(
        &mut o,
        "deferral-reasons",
        "Deferrals by reason",
        "reason",
        &s.deferral_reasons.top(top),
    );
    counted(
        &mut o,
        "bounce-reasons",
        "Bounces by reason",
        "reason",
        &s.bounce_reasons.top(top),
    );
    counted(
        &mut o,
        "senders",
        "Top senders",
        "address",
        &s.senders.top(top),
    );
    counted(
        &mut o,
        "recipients",
        "Top recipients",
        "address",
        &s.recipients.top(top),
    );
    counted(
        &mut o,
        "domains",
        "Top remote domains",
        "domain",
        &s.remote_domains.top(top),
    );
    o.push_str("</body></html>\n");
    o
}

fn table(o: &mut String, id: &str, head: &[&str], rows: &[(String, String)]) {
    o.push_str(&format!("<table id=\"{}\">", escape(id)));
    if head.iter().any(|h| !h.is_empty()) {
        o.push_str("<tr>");
        for h in head {
            o.push_str(&format!("<th>{}</th>", escape(h)));
        }
        o.push_str("</tr>");
    }
    for (k, v) in rows {
        o.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(k),
            escape(v)
        ));
    }
    o.push_str("</table>\n");
}

fn counted(o: &mut String, id: &str, title: &str, what: &str, rows: &[(String, u64)]) {
    o.push_str(&format!("<h2>{}</h2>\n", escape(title)));
    if rows.is_empty() {
        o.push_str("<p>none</p>\n");
        return;
    }
    let rows: Vec<(String, String)> = rows
        .iter()
        .map(|(k, n)| (k.clone(), n.to_string()))
        .collect();
    table(o, id, &[what, "count"], &rows);
}

fn figure(o: &mut String, id: &str, svg: Option<String>) {
    o.push_str(&format!("<figure id=\"{}\">", escape(id)));
    match svg {
        Some(svg) => o.push_str(&svg),
        None => o.push_str("<p>no data</p>"),
    }
    o.push_str("</figure>\n");
}

/// The per-hour series as lines with a circle on every hour; hours without lines count
/// zero (unless the period is longer than the report keeps, then only hours with lines).
fn hourly_chart(s: &Stats) -> Option<String> {
    let (&first, _) = s.hours.first_key_value()?;
    let (&last, _) = s.hours.last_key_value()?;
    let hours: Vec<i64> = if last - first < MAX_HOURS as i64 {
        (first..=last).collect()
    } else {
        s.hours.keys().copied().collect()
    };
    let series: Vec<Vec<(i64, u64)>> = (0..HOUR_SERIES.len())
        .map(|i| {
            hours
                .iter()
                .map(|h| (*h, s.hours.get(h).map_or(0, |c| c.series()[i])))
                .collect()
        })
        .collect();
    let top = series
        .iter()
        .flatten()
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .caption("lines per hour (UTC)", ("sans-serif", 18))
            // an hour of room on either side, so the first and last points and their
            // labels are not on the frame
            .build_cartesian_2d(first - 1..last + 1, 0u64..top + top / 10 + 1)?;
        chart
            .configure_mesh()
            .x_labels(12)
            .x_label_formatter(&|h: &i64| format_hour(*h)[5..].to_string())
            .y_desc("count")
            .draw()?;
        for (i, points) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(HOUR_SERIES[i])
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    drawn.ok().map(|_| svg)
}

/// One bar per `(label, count)`, the count written above it.
fn bar_chart(title: &str, bars: &[(&str, u64)]) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let top = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    // an integer range holds both its ends: n bars are 0..n-1
    let n = bars.len() as u32;
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .caption(title, ("sans-serif", 18))
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0u64..top + top / 5 + 1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|v: &SegmentValue<u32>| match v {
                SegmentValue::CenterOf(i) => bars
                    .get(*i as usize)
                    .map_or(String::new(), |(l, _)| (*l).to_string()),
                _ => String::new(),
            })
            .y_desc("count")
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let i = i as u32;
            let color = COLORS[i as usize % COLORS.len()];
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 8, 8);
            bar
        }))?;
        let above = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                v.to_string(),
                (SegmentValue::CenterOf(i as u32), *v),
                above.clone(),
            )
        }))?;
        root.present()?;
        Ok(())
    })();
    drawn.ok().map(|_| svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut s = Stats::new(None);
        for l in [
            "@400000006900000000000000 new msg 1",
            "@400000006900000000000000 info msg 1: bytes 10 from <<script>alert(1)</script>@x> qp 1 uid 0",
            "@400000006900f00000000000 new msg 2",
            "@400000006900000300000000 qmail-smtpd: pid 1: refused RCPT <x@y> from 10.0.0.1: 553 5.7.1 we don't relay (#5.7.1)",
        ] {
            s.feed_line(l.as_bytes());
        }
        let p = page(&s, 10);
        assert!(!p.contains("<script"), "{p}");
        assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt;@x"));
        assert!(!p.contains("src="));
        assert!(!p.contains("href="));
        // 0xf000 s later is 17 hours later: every hour has its points, 18 hours, 5 series
        let hourly = &p[p.find("id=\"hourly\"").unwrap()..p.find("id=\"outcomes\"").unwrap()];
        assert_eq!(hourly.matches("<circle").count(), 5 * 18);
        let refusals = &p[p.find("id=\"refusals\"").unwrap()..];
        assert_eq!(
            refusals.matches("\nrelay\n</text>").count(),
            1,
            "{refusals}"
        );
        assert_eq!(
            refusals.matches("<rect").count(),
            2,
            "background and one bar"
        );
    }

    /// Stamps at the ends of the TAI64N range (a forged or corrupt log file) make a
    /// page, not a panic or a huge allocation.
    #[test]
    fn extreme_stamps_make_a_page() {
        let mut s = Stats::new(None);
        for l in [
            "@000000000000000000000000 new msg 1",
            "@400000000000000000000000 new msg 2",
            "@7fffffffffffffff00000000 new msg 3",
            "@ffffffffffffffffffffffff new msg 4",
        ] {
            s.feed_line(l.as_bytes());
        }
        assert_eq!(s.received, 4);
        let p = page(&s, 10);
        assert!(p.contains("<figure id=\"hourly\">"));
        let _ = crate::report::text(&s, 10);
        let _ = crate::report::json(&s, 10);
    }

    #[test]
    fn empty_stats_make_a_page() {
        let p = page(&Stats::new(None), 10);
        assert!(p.contains("<figure id=\"hourly\"><p>no data</p></figure>"));
    }
}

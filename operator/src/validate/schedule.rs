//! pg_cron's schedule grammar: 5-field cron, `@hourly`-style macros, or `N seconds`.

use std::str::FromStr;

/// A schedule pg_cron accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Cron,
    /// `N seconds`: needs pg_cron 1.5 or later.
    Seconds(u8),
}

const MACROS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
const NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun", "mon", "tue", "wed",
    "thu", "fri", "sat",
];

pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    if MACROS.contains(&text) {
        return Ok(Schedule::Cron);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if let [count, unit] = words.as_slice()
        && let Ok(n) = count.parse::<u32>()
    {
        let unit = unit.to_ascii_lowercase();
        if unit.starts_with("second") {
            return match u8::try_from(n) {
                Ok(n @ 1..=59) => Ok(Schedule::Seconds(n)),
                _ => Err(format!("{text:?}: pg_cron runs 1 to 59 seconds apart at most; use cron syntax beyond that")),
            };
        }
        let hint = match unit.trim_end_matches('s') {
            "minute" if (1..60).contains(&n) => format!("'*/{n} * * * *'"),
            "hour" if (1..24).contains(&n) => format!("'0 */{n} * * *'"),
            "day" if n == 1 => "'0 0 * * *' or '@daily'".to_string(),
            _ => "a 5-field cron expression".to_string(),
        };
        return Err(format!("{text:?} is not a pg_cron schedule; write {hint}"));
    }
    if words.len() != 5 {
        return Err(format!(
            "{text:?} has {} fields; pg_cron takes 5 (minute hour day month weekday), a macro such as @hourly, or 'N seconds'",
            words.len()
        ));
    }
    // croner also knows L, W, # and ?; pg_cron does not.
    for field in &words {
        let mut rest = field.to_ascii_lowercase();
        for name in NAMES {
            rest = rest.replace(name, "");
        }
        if let Some(c) = rest.chars().find(|c| !(c.is_ascii_digit() || "*,-/".contains(*c))) {
            return Err(format!("{text:?}: {c:?} in {field:?} is not cron syntax pg_cron understands"));
        }
    }
    croner::Cron::from_str(text).map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))?;
    Ok(Schedule::Cron)
}

/// When pg_cron runs a schedule next after `now` (UTC).
pub fn next_run(text: &str, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
    match parse_schedule(text).ok()? {
        Schedule::Seconds(n) => Some(now + chrono::Duration::seconds(n.into())),
        Schedule::Cron => croner::Cron::from_str(text.trim()).ok()?.find_next_occurrence(&now, false).ok(),
    }
}

/// The time between two runs after `now`.
pub fn period(text: &str, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::Duration> {
    let next = next_run(text, now)?;
    Some(next_run(text, next)? - next)
}

/// Whether a refresh whose last success was at `last_success` missed three runs of `schedule`.
pub fn is_stale(
    schedule: &str,
    last_success: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    match (last_success, period(schedule, now)) {
        (Some(at), Some(period)) => now - at > period * 3,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_is_stale_after_three_missed_periods() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:30Z").unwrap().to_utc();
        let minutes = |m: i64| Some(now - chrono::Duration::minutes(m));
        assert_eq!(period("*/5 * * * *", now), Some(chrono::Duration::minutes(5)));
        assert!(!is_stale("*/5 * * * *", minutes(14), now));
        assert!(is_stale("*/5 * * * *", minutes(16), now));
        assert!(!is_stale("@hourly", minutes(170), now));
        assert!(is_stale("30 seconds", minutes(2), now));
        assert!(!is_stale("@hourly", None, now), "never run yet is not stale");
    }

    #[test]
    fn pg_cron_grammar_is_accepted() {
        for ok in ["*/5 * * * *", "0 3 * * 1-5", "0 0 1 jan *", "@hourly", "30 seconds", "15 9 * * mon"] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_schedule("10 seconds"), Ok(Schedule::Seconds(10)));
    }

    #[test]
    fn five_minutes_gets_a_hint() {
        let err = parse_schedule("5 minutes").unwrap_err();
        assert!(err.contains("'*/5 * * * *'"), "{err}");
    }

    #[test]
    fn what_pg_cron_would_misread_is_refused() {
        for bad in
            ["*/5 * * * * junk", "61 seconds", "0 seconds", "* * *", "0 0 L * *", "0 0 * * 5#2", "99 * * * *", ""]
        {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }
}

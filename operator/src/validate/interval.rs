//! Postgres interval text (`1 day`, `30 days`, `1 mon`, `01:00:00`, `1 day 02:00:00`), parsed
//! enough to validate a spec and to compare it with what pg_partman stored.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

const SECOND: i64 = 1_000_000;

impl Interval {
    pub fn parse(text: &str) -> Result<Interval, String> {
        let mut total = Interval::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err("is empty; write a Postgres interval such as '1 day'".into());
        }
        let mut i = 0;
        while i < words.len() {
            let word = words[i];
            if word.contains(':') {
                total.micros += clock(word)?;
                i += 1;
                continue;
            }
            let (number, unit) = match word.find(|c: char| c.is_ascii_alphabetic()) {
                Some(at) if at > 0 => (&word[..at], &word[at..]),
                _ => {
                    let unit = words.get(i + 1).ok_or_else(|| format!("{text:?}: {word:?} has no unit"))?;
                    i += 1;
                    (word, *unit)
                }
            };
            let n: i64 = number.parse().map_err(|_| format!("{text:?}: {number:?} is not a whole number"))?;
            let unit = unit.to_ascii_lowercase();
            let unit = match unit.as_str() {
                "ms" | "msec" | "msecs" => "millisecond",
                "us" | "usec" | "usecs" => "microsecond",
                other => other.trim_end_matches('s'),
            };
            match unit {
                "microsecond" => total.micros += n,
                "millisecond" => total.micros += n * 1_000,
                "m" => total.micros += n * 60 * SECOND,
                "second" | "sec" | "" => total.micros += n * SECOND,
                "minute" | "min" => total.micros += n * 60 * SECOND,
                "hour" | "h" | "hr" => total.micros += n * 3_600 * SECOND,
                "day" | "d" => total.days += n,
                "week" | "w" => total.days += 7 * n,
                "month" | "mon" => total.months += n,
                "year" | "y" | "yr" => total.months += 12 * n,
                other => return Err(format!("{text:?}: unknown unit {other:?}")),
            }
            i += 1;
        }
        if total.months < 0 || total.days < 0 || total.micros < 0 || total == Interval::default() {
            return Err(format!("{text:?} must be a positive interval"));
        }
        Ok(total)
    }
}

impl Interval {
    /// Its length as Postgres compares intervals: a month is 30 days, a day 24 hours.
    pub fn compared_micros(&self) -> i128 {
        let day = 86_400 * SECOND as i128;
        (self.months as i128 * 30 + self.days as i128) * day + self.micros as i128
    }
}

fn clock(word: &str) -> Result<i64, String> {
    let parts: Vec<i64> = word
        .split(':')
        .map(|p| p.parse::<i64>().map_err(|_| format!("{word:?} is not a time of day")))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [h, m] => Ok((h * 3_600 + m * 60) * SECOND),
        [h, m, s] => Ok((h * 3_600 + m * 60 + s) * SECOND),
        _ => Err(format!("{word:?} is not a time of day")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_and_catalog_spellings_compare_equal() {
        assert_eq!(Interval::parse("1 day"), Interval::parse("1 days"));
        assert_eq!(Interval::parse("30 days").unwrap().days, 30);
        assert_eq!(Interval::parse("1 week"), Interval::parse("7 days"));
        assert_eq!(Interval::parse("1 month"), Interval::parse("1 mon"));
        assert_eq!(Interval::parse("01:00:00"), Interval::parse("1 hour"));
        assert_eq!(Interval::parse("1 day 02:00:00").unwrap(), Interval { months: 0, days: 1, micros: 7_200 * SECOND });
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "5 fortnights", "day", "-1 day", "0 days", "1; DROP"] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
    }
}

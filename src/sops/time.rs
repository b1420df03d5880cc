//! Timestamps the way Go's `time` package parses and prints them.
//!
//! sops stores `lastmodified` and `created_at` as RFC 3339 strings, and since
//! 3.10 encrypts YAML timestamps with type `time` using `MarshalText`
//! (RFC 3339 with nanoseconds). Byte compatibility needs Go's exact rules, so
//! this small module replaces a date crate.

use std::fmt::Write as _;

/// An instant with the UTC offset it was written with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Offset east of UTC in seconds (0 prints as `Z`).
    pub offset: i32,
}

impl Timestamp {
    /// The current time in UTC, whole seconds (what sops writes).
    pub fn now_utc() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            unix: d.as_secs() as i64,
            nanos: 0,
            offset: 0,
        }
    }

    /// Go's `Format(time.RFC3339)`: seconds precision, `Z` or `±hh:mm`.
    pub fn rfc3339(&self) -> String {
        self.format(false)
    }

    /// Go's `MarshalText` / `RFC3339Nano`: trailing zero digits of the
    /// fraction are dropped, and the fraction is left out when zero.
    pub fn rfc3339_nano(&self) -> String {
        self.format(true)
    }

    fn format(&self, nanos: bool) -> String {
        let local = self.unix + self.offset as i64;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut out = String::with_capacity(35);
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            m,
            d,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if nanos && self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        if self.offset == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            let off = self.offset.unsigned_abs();
            let _ = write!(out, "{}{:02}:{:02}", sign, off / 3600, off / 60 % 60);
        }
        out
    }

    /// Go's `time.Parse(time.RFC3339, s)`, which also accepts a fraction.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let mut p = Cursor { b, i: 0 };
        let year = p.fixed(4)?;
        p.lit(b'-')?;
        let month = p.fixed(2)?;
        p.lit(b'-')?;
        let day = p.fixed(2)?;
        p.lit(b'T')?;
        let hour = p.fixed(2)?;
        p.lit(b':')?;
        let min = p.fixed(2)?;
        p.lit(b':')?;
        let sec = p.fixed(2)?;
        let nanos = p.fraction()?;
        let offset = p.zone()?;
        if p.i != b.len() {
            return None;
        }
        build(year, month, day, hour, min, sec, nanos, offset)
    }

    /// yaml.v3's timestamp resolution for plain scalars: the layouts
    /// `2006-1-2T15:4:5.999999999Z07:00` (also with `t`), `2006-1-2 15:4:5.999999999`
    /// (UTC) and `2006-1-2`.
    pub fn parse_yaml(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        // yaml.v3's quick check: exactly four digits, then '-'.
        if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
            return None;
        }
        let mut p = Cursor { b, i: 0 };
        let year = p.fixed(4)?;
        p.lit(b'-')?;
        let month = p.upto2()?;
        p.lit(b'-')?;
        let day = p.upto2()?;
        if p.i == b.len() {
            return build(year, month, day, 0, 0, 0, 0, 0);
        }
        let sep = b[p.i];
        p.i += 1;
        let hour = p.upto2()?;
        p.lit(b':')?;
        let min = p.upto2()?;
        p.lit(b':')?;
        let sec = p.upto2()?;
        let nanos = p.fraction()?;
        let offset = match sep {
            b'T' | b't' => p.zone()?,
            b' ' => 0,
            _ => return None,
        };
        if p.i != b.len() {
            return None;
        }
        build(year, month, day, hour, min, sec, nanos, offset)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn fixed(&mut self, n: usize) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(digits.iter().fold(0, |a, d| a * 10 + (d - b'0') as u32))
    }

    fn upto2(&mut self) -> Option<u32> {
        let first = *self.b.get(self.i)?;
        if !first.is_ascii_digit() {
            return None;
        }
        match self.b.get(self.i + 1) {
            Some(d) if d.is_ascii_digit() => self.fixed(2),
            _ => self.fixed(1),
        }
    }

    fn lit(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// An optional `.ddd…` fraction (any number of digits, first nine kept).
    fn fraction(&mut self) -> Option<u32> {
        if !matches!(self.b.get(self.i), Some(b'.') | Some(b',')) {
            return Some(0);
        }
        self.i += 1;
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        let mut nanos = 0u32;
        for k in 0..9 {
            let d = self.b.get(start + k).filter(|_| start + k < self.i);
            nanos = nanos * 10 + d.map_or(0, |d| (d - b'0') as u32);
        }
        Some(nanos)
    }

    fn zone(&mut self) -> Option<i32> {
        match self.b.get(self.i)? {
            b'Z' => {
                self.i += 1;
                Some(0)
            }
            c @ (b'+' | b'-') => {
                let neg = *c == b'-';
                self.i += 1;
                let h = self.fixed(2)?;
                self.lit(b':')?;
                let m = self.fixed(2)?;
                if h > 24 || m > 59 {
                    return None;
                }
                let off = (h * 3600 + m * 60) as i32;
                Some(if neg { -off } else { off })
            }
            _ => None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    offset: i32,
) -> Option<Timestamp> {
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let local = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64;
    Some(Timestamp {
        unix: local - offset as i64,
        nanos,
        offset,
    })
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-11-22T05:22:01Z").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-22T05:22:01Z");
        let t = Timestamp::parse_rfc3339("2024-02-29T23:59:59.5+02:00").unwrap();
        assert_eq!(t.rfc3339(), "2024-02-29T23:59:59+02:00");
        assert_eq!(t.rfc3339_nano(), "2024-02-29T23:59:59.5+02:00");
        // Go turns a zero offset into UTC, printed as Z.
        let t = Timestamp::parse_rfc3339("2024-01-01T00:00:00+00:00").unwrap();
        assert_eq!(t.rfc3339(), "2024-01-01T00:00:00Z");
        assert!(Timestamp::parse_rfc3339("2023-02-29T00:00:00Z").is_none());
        assert!(Timestamp::parse_rfc3339("2023-01-01").is_none());
    }

    #[test]
    fn yaml_layouts() {
        let f = |s| Timestamp::parse_yaml(s).map(|t| t.rfc3339_nano());
        assert_eq!(f("2024-01-01").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(f("2024-1-2").as_deref(), Some("2024-01-02T00:00:00Z"));
        assert_eq!(
            f("2001-12-14t21:59:43.10-05:00").as_deref(),
            Some("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(
            f("2001-12-14 21:59:43.10").as_deref(),
            Some("2001-12-14T21:59:43.1Z")
        );
        assert_eq!(f("2001-12-14 21:59:43.10 -5"), None);
        assert_eq!(f("20011-12-14"), None);
        assert_eq!(f("1900-01-01").as_deref(), Some("1900-01-01T00:00:00Z"));
    }
}

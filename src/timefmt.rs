//! RFC 3339 timestamps without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as UTC RFC 3339 with nanoseconds, as runc's `created` field.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let (secs, nanos) = split(t);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nanos:09}Z")
}

/// Formats `t` as UTC RFC 3339 to the second, as logrus writes log times.
pub fn rfc3339_secs(t: SystemTime) -> String {
    let (secs, _) = split(t);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// Converts seconds since the epoch into (year, month, day, hour, minute, second),
/// using Howard Hinnant's days-to-civil algorithm.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::new(0, 0);
        assert_eq!(rfc3339_nanos(t), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000789Z: a leap day.
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 789);
        assert_eq!(rfc3339_nanos(t), "2024-02-29T12:34:56.000000789Z");
        assert_eq!(rfc3339_secs(t), "2024-02-29T12:34:56Z");
    }
}

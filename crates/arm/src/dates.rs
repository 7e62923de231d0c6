//! Date functions: `dateTimeAdd`, `dateTimeFromEpoch`, `dateTimeToEpoch`.
//!
//! Times are UTC and formatted with .NET date format strings
//! (<https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-date>).

use chrono::{DateTime, Datelike, Duration, Months, NaiveDateTime, TimeZone, Timelike, Utc};

use crate::functions::{Args, FnError};
use crate::value::Value;

type FnResult = Result<Value, FnError>;

/// Help for an invalid date and time format.
pub(crate) const FORMAT_HELP: &str =
    "use a standard format such as `u`, `o` or `d`, or a custom one such as `yyyyMMddTHHmmssZ`";

pub(crate) fn from_epoch(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let seconds = call.int(0)?;
    let time = Utc.timestamp_opt(seconds, 0).single().ok_or_else(|| {
        FnError::new(
            format!("`dateTimeFromEpoch` value `{seconds}` is out of range"),
            "pass seconds since 1970-01-01T00:00:00Z",
        )
    })?;
    Ok(Value::String(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

pub(crate) fn to_epoch(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let time = parse_time(call, 0)?;
    Ok(Value::Int(time.timestamp()))
}

pub(crate) fn add(call: &Args<'_>) -> FnResult {
    call.between(2, 3)?;
    let base = parse_time(call, 0)?;
    let duration = call.str(1)?;
    let time = add_duration(base, duration).ok_or_else(|| {
        FnError::new(
            format!("`dateTimeAdd` duration `{duration}` is not a valid ISO 8601 duration"),
            "pass a duration such as `P1D`, `PT1H` or `-P9D`",
        )
    })?;
    let text = if call.args.len() == 3 {
        format_dotnet(&time, call.str(2)?).map_err(|message| FnError::new(message, FORMAT_HELP))?
    } else {
        default_text(&time)
    };
    Ok(Value::String(text))
}

fn default_text(time: &DateTime<Utc>) -> String {
    if time.nanosecond() == 0 {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
    }
}

fn parse_time(call: &Args<'_>, index: usize) -> Result<DateTime<Utc>, FnError> {
    let text = call.str(index)?;
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y%m%dT%H%M%SZ",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, pattern) {
            return Ok(Utc.from_utc_datetime(&naive));
        }
    }
    Err(FnError::new(
        format!("`{}` got `{text}`, which is not a date and time", call.name),
        "pass an ISO 8601 time such as `2023-03-31T01:00:38Z`",
    ))
}

/// Adds `[-]P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]`.
fn add_duration(base: DateTime<Utc>, text: &str) -> Option<DateTime<Utc>> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let rest = rest.strip_prefix('P')?;

    let mut in_time = false;
    let mut number = String::new();
    let mut months: i64 = 0;
    let mut seconds: f64 = 0.0;
    let mut any = false;
    for ch in rest.chars() {
        if ch == 'T' {
            in_time = true;
            continue;
        }
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        let amount: f64 = number.parse().ok()?;
        number.clear();
        any = true;
        // `as` saturates, and the checked operations reject durations beyond any date.
        let whole = amount as i64;
        match (in_time, ch) {
            (false, 'Y') => months = months.checked_add(whole.checked_mul(12)?)?,
            (false, 'M') => months = months.checked_add(whole)?,
            (false, 'W') => seconds += amount * 7.0 * 86_400.0,
            (false, 'D') => seconds += amount * 86_400.0,
            (true, 'H') => seconds += amount * 3_600.0,
            (true, 'M') => seconds += amount * 60.0,
            (true, 'S') => seconds += amount,
            _ => return None,
        }
    }
    if !number.is_empty() || !any {
        return None;
    }

    let month_count = Months::new(u32::try_from(months).ok()?);
    let time = if negative {
        base.checked_sub_months(month_count)?
    } else {
        base.checked_add_months(month_count)?
    };
    let nanos = (seconds * 1e9).round() as i64;
    let nanos = if negative {
        nanos.checked_neg()?
    } else {
        nanos
    };
    time.checked_add_signed(Duration::nanoseconds(nanos))
}

const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Formats a UTC time with a .NET date and time format string in the invariant culture, as
/// ARM's `utcNow` and `dateTimeAdd` do. One letter is a standard format, anything longer a
/// custom one (Microsoft Learn, "Standard date and time format strings" and "Custom date and
/// time format strings"). The error names what .NET rejects with a `FormatException`.
pub(crate) fn format_dotnet(time: &DateTime<Utc>, format: &str) -> Result<String, String> {
    let custom = match format {
        "d" => "MM/dd/yyyy",
        "D" => "dddd, dd MMMM yyyy",
        "f" => "dddd, dd MMMM yyyy HH:mm",
        "F" | "U" => "dddd, dd MMMM yyyy HH:mm:ss",
        "g" => "MM/dd/yyyy HH:mm",
        "G" => "MM/dd/yyyy HH:mm:ss",
        "M" | "m" => "MMMM dd",
        "O" | "o" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
        "R" | "r" => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        "t" => "HH:mm",
        "T" => "HH:mm:ss",
        "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        "Y" | "y" => "yyyy MMMM",
        "" => "MM/dd/yyyy HH:mm:ss",
        single if single.chars().count() == 1 => {
            return Err(format!("`{single}` is not a standard date and time format"))
        }
        other => other,
    };

    let chars: Vec<char> = custom.chars().collect();
    let mut out = String::new();
    let mut index = 0;
    while index < chars.len() {
        let ch = chars[index];
        let run = chars[index..]
            .iter()
            .take_while(|next| **next == ch)
            .count();
        match ch {
            '\'' | '"' => {
                let closing = chars[index + 1..].iter().position(|next| *next == ch);
                let Some(offset) = closing else {
                    return Err(format!("the quoted text in `{format}` is not closed"));
                };
                out.extend(&chars[index + 1..index + 1 + offset]);
                index += offset + 2;
                continue;
            }
            '\\' => {
                let Some(escaped) = chars.get(index + 1) else {
                    return Err(format!("`{format}` ends with a lone backslash"));
                };
                out.push(*escaped);
                index += 2;
                continue;
            }
            // `%` makes the next letter a custom specifier on its own, as in `%d`.
            '%' => {
                index += 1;
                continue;
            }
            'y' => {
                let year = time.year();
                match run {
                    1 => out.push_str(&(year % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", year % 100)),
                    _ => out.push_str(&format!("{year:0>run$}")),
                }
            }
            'M' => match run {
                1 | 2 => out.push_str(&format!("{:0>run$}", time.month())),
                3 => out.push_str(&MONTH_NAMES[time.month0() as usize][..3]),
                _ => out.push_str(MONTH_NAMES[time.month0() as usize]),
            },
            'd' => {
                let day_name = DAY_NAMES[time.weekday().num_days_from_monday() as usize];
                match run {
                    1 | 2 => out.push_str(&format!("{:0>run$}", time.day())),
                    3 => out.push_str(&day_name[..3]),
                    _ => out.push_str(day_name),
                }
            }
            'H' => out.push_str(&format!("{:0>width$}", time.hour(), width = run.min(2))),
            'h' => {
                let hour = match time.hour() % 12 {
                    0 => 12,
                    other => other,
                };
                out.push_str(&format!("{hour:0>width$}", width = run.min(2)));
            }
            'm' => out.push_str(&format!("{:0>width$}", time.minute(), width = run.min(2))),
            's' => out.push_str(&format!("{:0>width$}", time.second(), width = run.min(2))),
            'f' | 'F' => {
                if run > 7 {
                    return Err(format!(
                        "`{format}` asks for more than 7 digits of a second"
                    ));
                }
                // .NET keeps seven digits of a second (ticks of 100 ns).
                let digits = format!("{:07}", time.nanosecond() / 100);
                let digits = &digits[..run];
                if ch == 'f' {
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    // With nothing to show, `F` also removes the decimal point before it.
                    if trimmed.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                    out.push_str(trimmed);
                }
            }
            't' => {
                let designator = if time.hour() < 12 { "AM" } else { "PM" };
                out.push_str(if run == 1 {
                    &designator[..1]
                } else {
                    designator
                });
            }
            'K' => out.push('Z'),
            'z' => out.push_str(match run {
                1 => "+0",
                2 => "+00",
                _ => "+00:00",
            }),
            other => {
                for _ in 0..run {
                    out.push(other);
                }
            }
        }
        index += run;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> FnResult {
        crate::functions::call_pure(name, args).unwrap()
    }

    #[test]
    fn epoch_round_trip() {
        // Azure/bicep EvaluationTests: dateTimeFromEpoch(1680224438) then dateTimeAdd P1D.
        let text = call("datetimefromepoch", &[Value::Int(1_680_224_438)]).unwrap();
        assert_eq!(text, Value::String("2023-03-31T01:00:38Z".to_owned()));
        let back = call("datetimetoepoch", std::slice::from_ref(&text)).unwrap();
        assert_eq!(back, Value::Int(1_680_224_438));
        let next = call("datetimeadd", &[text, Value::String("P1D".to_owned())]).unwrap();
        assert_eq!(next, Value::String("2023-04-01T01:00:38Z".to_owned()));
    }

    #[test]
    fn epoch_psrule_vectors() {
        let text = call("datetimefromepoch", &[Value::Int(1_683_040_573)]).unwrap();
        assert_eq!(text, Value::String("2023-05-02T15:16:13Z".to_owned()));
        let seconds = call(
            "datetimetoepoch",
            &[Value::String("2020-04-07T14:53:14Z".to_owned())],
        );
        assert_eq!(seconds.unwrap(), Value::Int(1_586_271_194));
    }

    #[test]
    fn add_durations() {
        let base = Value::String("2020-04-07T14:53:14Z".to_owned());
        let cases = [
            ("P3Y", "2023-04-07T14:53:14Z"),
            ("-P9D", "2020-03-29T14:53:14Z"),
            ("PT1H", "2020-04-07T15:53:14Z"),
            ("P1MT30M", "2020-05-07T15:23:14Z"),
        ];
        for (duration, expected) in cases {
            let result = call(
                "datetimeadd",
                &[base.clone(), Value::String(duration.to_owned())],
            );
            assert_eq!(
                result.unwrap(),
                Value::String(expected.to_owned()),
                "{duration}"
            );
        }
    }

    #[test]
    fn add_rejects_bad_duration() {
        let base = Value::String("2020-04-07T14:53:14Z".to_owned());
        assert!(call(
            "datetimeadd",
            &[base.clone(), Value::String("1D".to_owned())]
        )
        .is_err());
        let huge = Value::String("P99999999999999999999Y".to_owned());
        assert!(call("datetimeadd", &[base, huge]).is_err());
    }

    #[test]
    fn dotnet_formats() {
        let time = Utc.with_ymd_and_hms(2023, 3, 31, 1, 0, 38).unwrap();
        let cases = [
            ("yyyyMMddTHHmmssZ", "20230331T010038Z"),
            ("u", "2023-03-31 01:00:38Z"),
            ("yyyy-MM-dd", "2023-03-31"),
            ("d", "03/31/2023"),
            ("D", "Friday, 31 March 2023"),
            ("f", "Friday, 31 March 2023 01:00"),
            ("g", "03/31/2023 01:00"),
            ("M", "March 31"),
            ("o", "2023-03-31T01:00:38.0000000Z"),
            ("R", "Fri, 31 Mar 2023 01:00:38 GMT"),
            ("s", "2023-03-31T01:00:38"),
            ("t", "01:00"),
            ("T", "01:00:38"),
            ("Y", "2023 March"),
            ("MMMM ddd tt h", "March Fri AM 1"),
            ("%d", "31"),
            ("HH:mm:ss.FFFK", "01:00:38Z"),
            (r"yyyy\-MM", "2023-03"),
        ];
        for (format, expected) in cases {
            assert_eq!(
                format_dotnet(&time, format).as_deref(),
                Ok(expected),
                "{format}"
            );
        }
        for invalid in ["Q", "x", "ffffffff", "'open"] {
            assert!(format_dotnet(&time, invalid).is_err(), "{invalid}");
        }
    }
}

//! Text renderings of values as the .NET-based engine produces them: `string()`, `concat()`,
//! `format()` (composite formatting) and residual expressions for unknown values.

use crate::value::{Object, Value};

/// Renders a value as `string()` does: bools as `True`/`False`, null as an empty string,
/// arrays and objects as compact JSON.
pub(crate) fn to_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Int(number) => number.to_string(),
        Value::Float(number) => float_text(*number),
        Value::String(text) => text.clone(),
        Value::Array(_) | Value::Object(_) => to_json_text(value),
        Value::Unknown(unknown) => format!("[{}]", unknown.expression),
    }
}

/// Renders a `format()` argument: like [`to_text`], but arrays and objects become compact JSON
/// with every `"` replaced by `'` (the engine's `TransformJTokenForOutput`).
pub(crate) fn format_arg_text(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => to_json_text(value).replace('"', "'"),
        other => to_text(other),
    }
}

/// Compact JSON text; unknown values appear as their residual expression in brackets.
pub(crate) fn to_json_text(value: &Value) -> String {
    serde_json::to_string(&to_json(value)).unwrap_or_default()
}

pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Int(number) => serde_json::Value::from(*number),
        Value::Float(number) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(text) => serde_json::Value::String(text.clone()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(object) => serde_json::Value::Object(
            object
                .iter()
                .map(|(key, value)| (key.clone(), to_json(value)))
                .collect(),
        ),
        Value::Unknown(unknown) => serde_json::Value::String(format!("[{}]", unknown.expression)),
    }
}

/// .NET `double.ToString()` (shortest round-trip) for the common range.
pub(crate) fn float_text(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "∞" } else { "-∞" }.to_owned();
    }
    format!("{number}")
}

/// Renders a value as an expression that evaluates to it, for residual expressions.
pub(crate) fn to_expression(value: &Value) -> String {
    match value {
        Value::Null => "null()".to_owned(),
        Value::Bool(true) => "true()".to_owned(),
        Value::Bool(false) => "false()".to_owned(),
        Value::Int(number) => number.to_string(),
        Value::Float(number) => format!("json('{}')", float_text(*number)),
        Value::String(text) => format!("'{}'", text.replace('\'', "''")),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(to_expression).collect();
            format!("createArray({})", parts.join(", "))
        }
        Value::Object(object) => format!("createObject({})", object_arguments(object)),
        Value::Unknown(unknown) => unknown.expression.clone(),
    }
}

fn object_arguments(object: &Object) -> String {
    let parts: Vec<String> = object
        .iter()
        .map(|(key, value)| format!("'{}', {}", key.replace('\'', "''"), to_expression(value)))
        .collect();
    parts.join(", ")
}

/// Applies a .NET composite format string (`{index[,alignment][:formatString]}`, `{{`, `}}`).
pub(crate) fn composite_format(pattern: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(format!("format string `{pattern}` has an unmatched `}}`")),
            '{' => {
                let mut item = String::new();
                let mut closed = false;
                for next in chars.by_ref() {
                    if next == '}' {
                        closed = true;
                        break;
                    }
                    item.push(next);
                }
                if !closed {
                    return Err(format!("format string `{pattern}` has an unmatched `{{`"));
                }
                out.push_str(&format_item(pattern, &item, args)?);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn format_item(pattern: &str, item: &str, args: &[Value]) -> Result<String, String> {
    let (head, spec) = match item.split_once(':') {
        Some((head, spec)) => (head, Some(spec)),
        None => (item, None),
    };
    let (index_text, alignment) = match head.split_once(',') {
        Some((index, alignment)) => (index, Some(alignment.trim())),
        None => (head, None),
    };
    let index: usize = index_text
        .trim()
        .parse()
        .map_err(|_| format!("format string `{pattern}` has an invalid item `{{{item}}}`"))?;
    let value = args.get(index).ok_or_else(|| {
        format!(
            "format string `{pattern}` refers to argument {index}, but only {} were given",
            args.len()
        )
    })?;

    let mut text = match (spec, value) {
        (Some(spec), Value::Int(number)) => format_integer(*number, spec)?,
        (Some(spec), Value::Float(number)) => format_float(*number, spec)?,
        _ => format_arg_text(value),
    };

    if let Some(alignment) = alignment {
        let width: i64 = alignment.parse().map_err(|_| {
            format!("format string `{pattern}` has an invalid alignment `{alignment}`")
        })?;
        // .NET rejects alignments of one million or more (`FormatException`).
        if width.unsigned_abs() >= 1_000_000 {
            return Err(format!(
                "format string `{pattern}` has an alignment `{width}` beyond 999999"
            ));
        }
        let length = text.chars().count() as i64;
        let pad = (width.unsigned_abs() as i64 - length).max(0) as usize;
        if width > 0 {
            text = format!("{}{text}", " ".repeat(pad));
        } else {
            text.push_str(&" ".repeat(pad));
        }
    }
    Ok(text)
}

// NOTE: .NET accepts precisions up to 999999999; this bound only keeps a template from
// exhausting memory.
const MAX_PRECISION: usize = 1_000;

/// Standard numeric format strings for integers (invariant culture).
fn format_integer(number: i64, spec: &str) -> Result<String, String> {
    let Some(kind) = spec.chars().next() else {
        return Ok(number.to_string());
    };
    let precision: Option<usize> = match &spec[kind.len_utf8()..] {
        "" => None,
        digits => Some(
            digits
                .parse()
                .map_err(|_| format!("unsupported numeric format `{spec}`"))?,
        ),
    };
    if precision.is_some_and(|precision| precision > MAX_PRECISION) {
        return Err(format!(
            "numeric format `{spec}` asks for more than {MAX_PRECISION} digits"
        ));
    }
    let text = match kind {
        'D' | 'd' => {
            let digits = number.unsigned_abs().to_string();
            let width = precision.unwrap_or(0);
            let sign = if number < 0 { "-" } else { "" };
            format!("{sign}{digits:0>width$}")
        }
        'N' | 'n' => group_thousands(number as f64, precision.unwrap_or(2)),
        'F' | 'f' => format!("{:.*}", precision.unwrap_or(2), number as f64),
        'X' => format!("{:0>width$X}", number, width = precision.unwrap_or(0)),
        'x' => format!("{:0>width$x}", number, width = precision.unwrap_or(0)),
        'P' | 'p' => format!(
            "{} %",
            group_thousands(number as f64 * 100.0, precision.unwrap_or(2))
        ),
        'G' | 'g' => number.to_string(),
        _ => custom_integer(number, spec),
    };
    Ok(text)
}

fn format_float(number: f64, spec: &str) -> Result<String, String> {
    let Some(kind) = spec.chars().next() else {
        return Ok(float_text(number));
    };
    let precision: Option<usize> = spec[kind.len_utf8()..]
        .parse()
        .ok()
        .map(|precision: usize| precision.min(MAX_PRECISION));
    let text = match kind {
        'N' | 'n' => group_thousands(number, precision.unwrap_or(2)),
        'F' | 'f' => format!("{:.*}", precision.unwrap_or(2), number),
        'P' | 'p' => format!(
            "{} %",
            group_thousands(number * 100.0, precision.unwrap_or(2))
        ),
        _ => float_text(number),
    };
    Ok(text)
}

/// Custom formats made only of `0` and `#` placeholders, such as `000`.
fn custom_integer(number: i64, spec: &str) -> String {
    if spec.chars().all(|ch| ch == '0' || ch == '#') {
        let zeros = spec.chars().filter(|ch| *ch == '0').count();
        let digits = number.unsigned_abs().to_string();
        let sign = if number < 0 { "-" } else { "" };
        return format!("{sign}{digits:0>zeros$}");
    }
    // NOTE: other custom numeric formats are returned verbatim, as .NET does for literal text.
    spec.to_owned()
}

fn group_thousands(number: f64, decimals: usize) -> String {
    let fixed = format!("{:.*}", decimals, number.abs());
    let (integer, fraction) = match fixed.split_once('.') {
        Some((integer, fraction)) => (integer.to_owned(), Some(fraction.to_owned())),
        None => (fixed, None),
    };
    let mut grouped = String::new();
    for (index, digit) in integer.chars().enumerate() {
        if index > 0 && (integer.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if number < 0.0 && fixed_is_nonzero(&grouped, fraction.as_deref()) {
        "-"
    } else {
        ""
    };
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}

fn fixed_is_nonzero(integer: &str, fraction: Option<&str>) -> bool {
    integer
        .chars()
        .chain(fraction.unwrap_or("").chars())
        .any(|ch| ch.is_ascii_digit() && ch != '0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(pairs: &[(&str, Value)]) -> Value {
        let mut object = Object::new();
        for (key, value) in pairs {
            object.insert(*key, value.clone());
        }
        Value::Object(object)
    }

    #[test]
    fn format_bicep_interpolation_vector() {
        let args = [
            Value::Bool(false),
            Value::Int(12948),
            Value::String("hello!".to_owned()),
            object(&[("a", Value::String("b".to_owned())), ("!c", Value::Int(2))]),
            Value::Array(vec![
                Value::Bool(true),
                Value::Int(2893),
                Value::String("abc".to_owned()),
            ]),
        ];
        let text = composite_format(">{0}<>{1}<>{2}<>{3}<>{4}<", &args).unwrap();
        assert_eq!(
            text,
            ">False<>12948<>hello!<>{'a':'b','!c':2}<>[true,2893,'abc']<"
        );
    }

    #[test]
    fn format_numbers_and_bool() {
        let args = [
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Bool(true),
        ];
        assert_eq!(
            composite_format("{0}/{1}/{2}/{3}", &args).unwrap(),
            "1/2/3/True"
        );
    }

    #[test]
    fn format_numeric_specs() {
        let cases = [
            ("{0:N0}", 8_175_133, "8,175,133"),
            ("{0:N2}", 1234, "1,234.00"),
            ("{0:D5}", 42, "00042"),
            ("{0:X}", 255, "FF"),
            ("{0:x4}", 255, "00ff"),
            ("{0:F1}", 3, "3.0"),
            ("{0:000}", 7, "007"),
            ("{0,5}", 13, "   13"),
            ("{0,-4}|", 1, "1   |"),
            ("{{{0}}}", 5, "{5}"),
            ("{0:N0}", -1234, "-1,234"),
        ];
        for (pattern, number, expected) in cases {
            let text = composite_format(pattern, &[Value::Int(number)]).unwrap();
            assert_eq!(text, expected, "{pattern}");
        }
    }

    #[test]
    fn format_errors() {
        assert!(composite_format("{1}", &[Value::Int(1)]).is_err());
        assert!(composite_format("{0", &[Value::Int(1)]).is_err());
        assert!(composite_format("a}b", &[]).is_err());
        assert!(composite_format("{0,1000000}", &[Value::Int(1)]).is_err());
        assert!(composite_format("{0:D100000}", &[Value::Int(1)]).is_err());
    }

    #[test]
    fn text_renderings() {
        assert_eq!(to_text(&Value::Null), "");
        assert_eq!(to_text(&Value::Bool(true)), "True");
        assert_eq!(
            to_text(&object(&[("valueA", Value::Int(10))])),
            "{\"valueA\":10}"
        );
        assert_eq!(to_text(&Value::Float(1.5)), "1.5");
    }

    #[test]
    fn expression_rendering() {
        let value = Value::Array(vec![Value::String("it's".to_owned()), Value::Null]);
        assert_eq!(to_expression(&value), "createArray('it''s', null())");
    }
}

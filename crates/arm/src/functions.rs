//! Built-in template functions that only need their arguments.
//!
//! Functions that read the deployment (parameters, variables, scope, resources, copy loops)
//! or evaluate their arguments lazily (`if`, `and`, `or`, `coalesce`, lambdas) live in the
//! evaluator. Semantics follow the function reference at
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions>;
//! where the page is silent, the engine's behaviour as folded by the Bicep compiler tests
//! (Azure/bicep `FunctionResolverTests.cs`, `baselines_bicepparam`) decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::format::{composite_format, to_text};
use crate::source::{parse_text, ReadOptions};
use crate::value::{Object, Value};

mod collections;
mod strings;

use collections::*;
use strings::*;

/// A function failure, located by the caller.
#[derive(Debug)]
pub(crate) struct FnError {
    pub message: String,
    pub help: String,
}

impl FnError {
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        FnError {
            message: message.into(),
            help: help.into(),
        }
    }
}

type FnResult = Result<Value, FnError>;

/// Calls a pure built-in function by lower-case name; `None` when no such function exists.
pub(crate) fn call_pure(name: &str, args: &[Value]) -> Option<FnResult> {
    let call = Args { name, args };
    let result = match name {
        "array" => call.exactly(1).map(|()| match &args[0] {
            Value::Array(_) => args[0].clone(),
            other => Value::Array(vec![other.clone()]),
        }),
        "concat" => concat(&call),
        "createarray" => Ok(Value::Array(args.to_vec())),
        "createobject" => create_object(&call),
        "empty" => call.exactly(1).map(|()| {
            Value::Bool(match &args[0] {
                Value::Null => true,
                Value::String(text) => text.is_empty(),
                Value::Array(items) => items.is_empty(),
                Value::Object(object) => object.is_empty(),
                _ => false,
            })
        }),
        "length" => length(&call),
        "first" => first_or_last(&call, true),
        "last" => first_or_last(&call, false),
        "contains" => contains(&call),
        "indexof" => index_of(&call, false),
        "lastindexof" => index_of(&call, true),
        "intersection" => intersection(&call),
        "union" => union(&call),
        "skip" => skip_take(&call, true),
        "take" => skip_take(&call, false),
        "range" => range(&call),
        "min" => min_max(&call, false),
        "max" => min_max(&call, true),
        "flatten" => flatten(&call),
        "distinct" => call.exactly(1).and_then(|()| {
            let items = call.array(0)?;
            let mut out: Vec<Value> = Vec::new();
            for item in items {
                if !out.iter().any(|seen| deep_equals(seen, item)) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }),
        "objectkeys" => call.exactly(1).and_then(|()| {
            let mut keys: Vec<&String> = call.object(0)?.0.keys().collect();
            keys.sort_by_key(|key| ordinal_ignore_case_key(key));
            Ok(Value::Array(
                keys.into_iter()
                    .map(|key| Value::String(key.clone()))
                    .collect(),
            ))
        }),
        "items" => items(&call),
        "shallowmerge" => call.exactly(1).and_then(|()| {
            let mut merged = Object::new();
            for item in call.array(0)? {
                match item {
                    Value::Object(object) => {
                        for (key, value) in object.iter() {
                            insert_insensitive(&mut merged, key, value.clone());
                        }
                    }
                    Value::Null => {}
                    other => {
                        return Err(call.type_error(0, "an array of objects", other));
                    }
                }
            }
            Ok(Value::Object(merged))
        }),
        "tryget" => try_get(&call),
        "tryindexfromend" | "indexfromend" => index_from_end(&call, name == "tryindexfromend"),
        "join" => join(&call),
        "equals" => call
            .exactly(2)
            .map(|()| Value::Bool(deep_equals(&args[0], &args[1]))),
        "less" => compare(&call, |ordering| ordering.is_lt()),
        "lessorequals" => compare(&call, |ordering| ordering.is_le()),
        "greater" => compare(&call, |ordering| ordering.is_gt()),
        "greaterorequals" => compare(&call, |ordering| ordering.is_ge()),
        "not" => call
            .exactly(1)
            .and_then(|()| Ok(Value::Bool(!call.bool(0)?))),
        "bool" => to_bool(&call),
        "true" => call.exactly(0).map(|()| Value::Bool(true)),
        "false" => call.exactly(0).map(|()| Value::Bool(false)),
        "null" => call.exactly(0).map(|()| Value::Null),
        "add" | "sub" | "mul" | "div" | "mod" => arithmetic(&call),
        "int" => to_int(&call),
        "float" => to_float(&call),
        "string" => call.exactly(1).map(|()| Value::String(to_text(&args[0]))),
        "json" => json(&call),
        "base64" => call.exactly(1).and_then(|()| {
            let text = call.str(0)?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            ))
        }),
        "base64tostring" => call.exactly(1).and_then(|()| {
            let bytes = decode_base64(&call, 0)?;
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }),
        "base64tojson" => call.exactly(1).and_then(|()| {
            let bytes = decode_base64(&call, 0)?;
            parse_json_text(&call, &String::from_utf8_lossy(&bytes))
        }),
        "datauri" => call.exactly(1).map(|()| {
            // The current engine writes `charset=utf-8` (older docs show `utf8`).
            let (media, text) = match &args[0] {
                Value::Array(_) | Value::Object(_) => {
                    ("application/json", crate::format::to_json_text(&args[0]))
                }
                other => ("text/plain", to_text(other)),
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            Value::String(format!("data:{media};charset=utf-8;base64,{encoded}"))
        }),
        "datauritostring" => data_uri_to_string(&call),
        "uricomponent" => call.exactly(1).and_then(|()| {
            let text = call.str(0)?;
            Ok(Value::String(
                utf8_percent_encode(text, URI_COMPONENT).to_string(),
            ))
        }),
        "uricomponenttostring" => call.exactly(1).and_then(|()| {
            let text = call.str(0)?;
            Ok(Value::String(
                percent_decode_str(text).decode_utf8_lossy().into_owned(),
            ))
        }),
        "uri" => uri(&call),
        "parseuri" => parse_uri(&call),
        "builduri" => build_uri(&call),
        "format" => format(&call),
        "guid" => hash_strings(&call).map(|parts| Value::String(crate::hash::guid(&parts))),
        "uniquestring" => {
            hash_strings(&call).map(|parts| Value::String(crate::hash::unique_string(&parts)))
        }
        "padleft" => pad_left(&call),
        "substring" => substring(&call),
        "tolower" => call
            .exactly(1)
            .and_then(|()| Ok(Value::String(call.str(0)?.to_lowercase()))),
        "toupper" => call
            .exactly(1)
            .and_then(|()| Ok(Value::String(call.str(0)?.to_uppercase()))),
        "trim" => call
            .exactly(1)
            .and_then(|()| Ok(Value::String(call.str(0)?.trim().to_owned()))),
        "startswith" => call.exactly(2).and_then(|()| {
            let (text, prefix) = (fold_case(call.str(0)?), fold_case(call.str(1)?));
            Ok(Value::Bool(text.starts_with(&prefix)))
        }),
        "endswith" => call.exactly(2).and_then(|()| {
            let (text, suffix) = (fold_case(call.str(0)?), fold_case(call.str(1)?));
            Ok(Value::Bool(text.ends_with(&suffix)))
        }),
        "split" => split(&call),
        "replace" => call.exactly(3).and_then(|()| {
            let (text, old, new) = (call.str(0)?, call.str(1)?, call.str(2)?);
            if old.is_empty() {
                return Err(FnError::new(
                    "the second argument of `replace` must not be empty",
                    "pass the text to replace",
                ));
            }
            // NOTE: case-sensitive like .NET `string.Replace`; whether ARM ignores case here is
            // not confirmed by a real-engine vector.
            Ok(Value::String(text.replace(old, new)))
        }),
        "like" => call.exactly(2).and_then(|()| {
            let (text, pattern) = (call.str(0)?, call.str(1)?);
            Ok(Value::Bool(wildcard_match(
                &fold_case(text).chars().collect::<Vec<_>>(),
                &fold_case(pattern).chars().collect::<Vec<_>>(),
            )))
        }),
        "datetimefromepoch" => crate::dates::from_epoch(&call),
        "datetimetoepoch" => crate::dates::to_epoch(&call),
        "datetimeadd" => crate::dates::add(&call),
        "parsecidr" => crate::cidr::parse_cidr(&call),
        "cidrsubnet" => crate::cidr::cidr_subnet(&call),
        "cidrhost" => crate::cidr::cidr_host(&call),
        _ => return None,
    };
    Some(result)
}

/// Compares two values the way `equals()` does: numbers numerically, everything else by
/// JSON deep equality (strings case-sensitive, objects unordered).
pub(crate) fn deep_equals(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => (*a as f64) == *b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| deep_equals(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, value)| b.0.get(key).is_some_and(|other| deep_equals(value, other)))
        }
        _ => left == right,
    }
}

/// Sort key for .NET `StringComparer.OrdinalIgnoreCase`: compares upper-cased characters.
pub(crate) fn ordinal_ignore_case_key(text: &str) -> Vec<char> {
    text.chars().flat_map(char::to_uppercase).collect()
}

/// Accessor for the arguments of one call, producing uniform errors.
pub(crate) struct Args<'a> {
    pub name: &'a str,
    pub args: &'a [Value],
}

impl Args<'_> {
    pub fn exactly(&self, count: usize) -> Result<(), FnError> {
        self.between(count, count)
    }

    pub fn between(&self, min: usize, max: usize) -> Result<(), FnError> {
        let given = self.args.len();
        if given >= min && given <= max {
            return Ok(());
        }
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        Err(FnError::new(
            format!(
                "function `{}` expects {expected} argument(s), but {given} were given",
                self.name
            ),
            format!("check the call of `{}`", self.name),
        ))
    }

    pub fn type_error(&self, index: usize, expected: &str, found: &Value) -> FnError {
        let shown = match found {
            Value::String(text) => format!("string `'{}'`", shorten(text)),
            Value::Int(number) => format!("int `{number}`"),
            Value::Bool(flag) => format!("bool `{flag}`"),
            other => other.type_name().to_owned(),
        };
        FnError::new(
            format!(
                "argument {} of `{}` must be {expected}, found {shown}",
                index + 1,
                self.name
            ),
            format!("pass {expected} to `{}`", self.name),
        )
    }

    fn value(&self, index: usize) -> &Value {
        self.args.get(index).unwrap_or(&Value::Null)
    }

    pub fn str(&self, index: usize) -> Result<&str, FnError> {
        match self.value(index) {
            Value::String(text) => Ok(text),
            other => Err(self.type_error(index, "a string", other)),
        }
    }

    pub fn int(&self, index: usize) -> Result<i64, FnError> {
        match self.value(index) {
            Value::Int(number) => Ok(*number),
            other => Err(self.type_error(index, "an int", other)),
        }
    }

    pub fn bool(&self, index: usize) -> Result<bool, FnError> {
        match self.value(index) {
            Value::Bool(flag) => Ok(*flag),
            other => Err(self.type_error(index, "a bool", other)),
        }
    }

    pub fn array(&self, index: usize) -> Result<&[Value], FnError> {
        match self.value(index) {
            Value::Array(items) => Ok(items),
            other => Err(self.type_error(index, "an array", other)),
        }
    }

    pub fn object(&self, index: usize) -> Result<&Object, FnError> {
        match self.value(index) {
            Value::Object(object) => Ok(object),
            other => Err(self.type_error(index, "an object", other)),
        }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        return text.to_owned();
    }
    let head: String = text.chars().take(57).collect();
    format!("{head}...")
}

/// Inserts into an object, replacing a key that differs only in case.
pub(crate) fn insert_insensitive(object: &mut Object, key: &str, value: Value) {
    if let Some(existing) = object
        .0
        .keys()
        .find(|existing| existing.eq_ignore_ascii_case(key))
        .cloned()
    {
        object.0.insert(existing, value);
    } else {
        object.insert(key, value);
    }
}

fn compare(call: &Args<'_>, accept: fn(std::cmp::Ordering) -> bool) -> FnResult {
    call.exactly(2)?;
    let ordering = match (&call.args[0], &call.args[1]) {
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (a, b) = (number(&call.args[0]), number(&call.args[1]));
            a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
        }
        // NOTE: the engine compares strings with the invariant culture; this approximates it
        // by comparing case-insensitively first and lower case before upper case on ties.
        (Value::String(a), Value::String(b)) => a
            .to_lowercase()
            .cmp(&b.to_lowercase())
            .then_with(|| b.cmp(a)),
        (Value::String(_), other) | (Value::Int(_) | Value::Float(_), other) => {
            return Err(call.type_error(1, "the same type as argument 1", other))
        }
        (other, _) => return Err(call.type_error(0, "an int or a string", other)),
    };
    Ok(Value::Bool(accept(ordering)))
}

fn number(value: &Value) -> f64 {
    match value {
        Value::Int(number) => *number as f64,
        Value::Float(number) => *number,
        _ => 0.0,
    }
}

fn to_bool(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Bool(flag) => Ok(Value::Bool(*flag)),
        Value::Int(number) => Ok(Value::Bool(*number != 0)),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        other => Err(call.type_error(0, "`'true'`, `'false'`, an int or a bool", other)),
    }
}

fn arithmetic(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let (a, b) = (call.int(0)?, call.int(1)?);
    let overflow = || {
        FnError::new(
            format!("`{}({a}, {b})` overflows a 64-bit integer", call.name),
            "use smaller numbers",
        )
    };
    let divide_by_zero = || {
        FnError::new(
            format!("`{}({a}, {b})` divides by zero", call.name),
            "make sure the second argument is not 0",
        )
    };
    let result = match call.name {
        "add" => a.checked_add(b).ok_or_else(overflow)?,
        "sub" => a.checked_sub(b).ok_or_else(overflow)?,
        "mul" => a.checked_mul(b).ok_or_else(overflow)?,
        "div" if b == 0 => return Err(divide_by_zero()),
        "div" => a.checked_div(b).ok_or_else(overflow)?,
        _ if b == 0 => return Err(divide_by_zero()),
        _ => a.checked_rem(b).ok_or_else(overflow)?,
    };
    Ok(Value::Int(result))
}

fn to_int(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Int(number) => Ok(Value::Int(*number)),
        Value::Float(number) => Ok(Value::Int(number.round_ties_even() as i64)),
        Value::String(text) => text.trim().parse::<i64>().map(Value::Int).map_err(|_| {
            FnError::new(
                format!("`int` cannot convert `'{}'` to an integer", shorten(text)),
                "pass a whole number",
            )
        }),
        other => Err(call.type_error(0, "an int or a numeric string", other)),
    }
}

fn to_float(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Int(number) => Ok(Value::Float(*number as f64)),
        Value::Float(number) => Ok(Value::Float(*number)),
        Value::String(text) => text.trim().parse::<f64>().map(Value::Float).map_err(|_| {
            FnError::new(
                format!("`float` cannot convert `'{}'` to a number", shorten(text)),
                "pass a number",
            )
        }),
        other => Err(call.type_error(0, "an int or a numeric string", other)),
    }
}

/// Formats an IP address for CIDR results.
pub(crate) fn ip_text(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => Ipv4Addr::to_string(&v4),
        IpAddr::V6(v6) => Ipv6Addr::to_string(&v6),
    }
}

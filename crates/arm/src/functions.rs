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
use crate::value::{Object, Unknown, UnknownCause, Value};

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
        "newguid" | "utcnow" => Ok(Value::Unknown(Unknown {
            expression: format!("{name}()"),
            cause: UnknownCause::Nondeterministic,
            secret: false,
        })),
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

fn utf16(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

fn from_utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// Simple per-character case folding that keeps the UTF-16 length, for case-insensitive
/// searches whose result is an index.
fn fold_case(text: &str) -> String {
    text.chars()
        .map(|ch| {
            let mut lower = ch.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(single), None) if single.len_utf16() == ch.len_utf16() => single,
                _ => ch,
            }
        })
        .collect()
}

fn concat(call: &Args<'_>) -> FnResult {
    if call.args.is_empty() {
        return Err(FnError::new(
            "function `concat` expects at least 1 argument(s), but 0 were given",
            "pass the arrays or strings to join",
        ));
    }
    if call
        .args
        .iter()
        .all(|arg| matches!(arg, Value::Array(_) | Value::Null))
        && call.args.iter().any(|arg| matches!(arg, Value::Array(_)))
    {
        let mut out = Vec::new();
        for arg in call.args {
            if let Value::Array(items) = arg {
                out.extend(items.iter().cloned());
            }
        }
        return Ok(Value::Array(out));
    }
    let mut out = String::new();
    for (index, arg) in call.args.iter().enumerate() {
        match arg {
            Value::Null => {}
            Value::String(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                out.push_str(&to_text(arg));
            }
            other => {
                return Err(call.type_error(
                    index,
                    "a string, int or bool (or every argument an array)",
                    other,
                ))
            }
        }
    }
    Ok(Value::String(out))
}

fn create_object(call: &Args<'_>) -> FnResult {
    if !call.args.len().is_multiple_of(2) {
        return Err(FnError::new(
            format!(
                "function `createObject` expects key/value pairs, but {} arguments were given",
                call.args.len()
            ),
            "pass an even number of arguments",
        ));
    }
    let mut object = Object::new();
    for pair in 0..call.args.len() / 2 {
        let key = call.str(pair * 2)?;
        // JSON objects in the engine (Newtonsoft `JObject`) compare keys by exact case.
        if object.0.contains_key(key) {
            return Err(FnError::new(
                format!("function `createObject` got the key `{key}` twice"),
                "use each key once",
            ));
        }
        object.insert(key, call.args[pair * 2 + 1].clone());
    }
    Ok(Value::Object(object))
}

fn length(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let count = match &call.args[0] {
        Value::String(text) => text.encode_utf16().count(),
        Value::Array(items) => items.len(),
        Value::Object(object) => object.len(),
        Value::Null => 0,
        other => return Err(call.type_error(0, "a string, array or object", other)),
    };
    Ok(Value::Int(count as i64))
}

fn first_or_last(call: &Args<'_>, first: bool) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Array(items) => {
            let item = if first { items.first() } else { items.last() };
            Ok(item.cloned().unwrap_or(Value::Null))
        }
        Value::String(text) => {
            let units = utf16(text);
            let unit = if first { units.first() } else { units.last() };
            Ok(Value::String(
                unit.map_or(String::new(), |unit| from_utf16(&[*unit])),
            ))
        }
        Value::Null => Ok(Value::Null),
        other => Err(call.type_error(0, "an array or a string", other)),
    }
}

fn contains(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let found = match &call.args[0] {
        Value::Array(items) => items.iter().any(|item| deep_equals(item, &call.args[1])),
        Value::Object(object) => {
            let key = call.str(1)?;
            object.0.keys().any(|name| name.eq_ignore_ascii_case(key))
        }
        Value::String(text) => match &call.args[1] {
            Value::String(needle) => text.contains(needle.as_str()),
            Value::Int(_) | Value::Bool(_) => text.contains(&to_text(&call.args[1])),
            other => return Err(call.type_error(1, "a string", other)),
        },
        Value::Null => false,
        other => return Err(call.type_error(0, "an array, object or string", other)),
    };
    Ok(Value::Bool(found))
}

fn index_of(call: &Args<'_>, last: bool) -> FnResult {
    call.exactly(2)?;
    match &call.args[0] {
        Value::Array(items) => {
            let mut positions = items
                .iter()
                .enumerate()
                .filter(|(_, item)| deep_equals(item, &call.args[1]))
                .map(|(index, _)| index as i64);
            let found = if last {
                positions.next_back()
            } else {
                positions.next()
            };
            Ok(Value::Int(found.unwrap_or(-1)))
        }
        Value::String(text) => {
            // .NET `IndexOf(..., InvariantCultureIgnoreCase)`; positions are UTF-16 units.
            let haystack = utf16(&fold_case(text));
            let needle = utf16(&fold_case(call.str(1)?));
            if needle.is_empty() {
                let position = if last {
                    haystack.len().saturating_sub(1)
                } else {
                    0
                };
                return Ok(Value::Int(position as i64));
            }
            let mut matches = haystack
                .windows(needle.len())
                .enumerate()
                .filter(|(_, window)| *window == needle.as_slice())
                .map(|(index, _)| index as i64);
            let found = if last {
                matches.next_back()
            } else {
                matches.next()
            };
            Ok(Value::Int(found.unwrap_or(-1)))
        }
        other => Err(call.type_error(0, "an array or a string", other)),
    }
}

fn intersection(call: &Args<'_>) -> FnResult {
    call.between(2, usize::MAX)?;
    match &call.args[0] {
        Value::Array(first) => {
            let mut rest = Vec::new();
            for index in 1..call.args.len() {
                rest.push(call.array(index)?);
            }
            let mut out: Vec<Value> = Vec::new();
            for item in first {
                let everywhere = rest
                    .iter()
                    .all(|other| other.iter().any(|candidate| deep_equals(candidate, item)));
                if everywhere && !out.iter().any(|seen| deep_equals(seen, item)) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        Value::Object(first) => {
            let mut rest = Vec::new();
            for index in 1..call.args.len() {
                rest.push(call.object(index)?);
            }
            let mut out = Object::new();
            for (key, value) in first.iter() {
                let everywhere = rest.iter().all(|other| {
                    other
                        .get(key)
                        .is_some_and(|candidate| deep_equals(candidate, value))
                });
                if everywhere {
                    out.insert(key.clone(), value.clone());
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(call.type_error(0, "an array or an object", other)),
    }
}

fn union(call: &Args<'_>) -> FnResult {
    call.between(1, usize::MAX)?;
    let arrays = call.args.iter().any(|arg| matches!(arg, Value::Array(_)));
    if arrays {
        let mut out: Vec<Value> = Vec::new();
        for (index, arg) in call.args.iter().enumerate() {
            match arg {
                Value::Array(items) => {
                    for item in items {
                        if !out.iter().any(|seen| deep_equals(seen, item)) {
                            out.push(item.clone());
                        }
                    }
                }
                Value::Null => {}
                other => return Err(call.type_error(index, "an array", other)),
            }
        }
        return Ok(Value::Array(out));
    }
    let mut merged = Object::new();
    for (index, arg) in call.args.iter().enumerate() {
        match arg {
            Value::Object(object) => merge_deep(&mut merged, object),
            Value::Null => {}
            other => return Err(call.type_error(index, "an object", other)),
        }
    }
    Ok(Value::Object(merged))
}

/// Merges `other` into `target`: nested objects merge recursively, everything else (arrays
/// included) is replaced; keys match ignoring case.
fn merge_deep(target: &mut Object, other: &Object) {
    for (key, value) in other.iter() {
        let existing = target
            .0
            .iter_mut()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, slot)| slot);
        match (existing, value) {
            (Some(Value::Object(inner)), Value::Object(incoming)) => merge_deep(inner, incoming),
            (Some(slot), _) => *slot = value.clone(),
            (None, _) => target.insert(key.clone(), value.clone()),
        }
    }
}

fn skip_take(call: &Args<'_>, skip: bool) -> FnResult {
    call.exactly(2)?;
    let count = call.int(1)?.max(0) as usize;
    match &call.args[0] {
        Value::Array(items) => {
            let count = count.min(items.len());
            let slice = if skip {
                &items[count..]
            } else {
                &items[..count]
            };
            Ok(Value::Array(slice.to_vec()))
        }
        Value::String(text) => {
            let units = utf16(text);
            let count = count.min(units.len());
            let slice = if skip {
                &units[count..]
            } else {
                &units[..count]
            };
            Ok(Value::String(from_utf16(slice)))
        }
        Value::Null => Ok(Value::Null),
        other => Err(call.type_error(0, "an array or a string", other)),
    }
}

fn range(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let (start, count) = (call.int(0)?, call.int(1)?);
    if !(0..=10_000).contains(&count) {
        return Err(FnError::new(
            format!("`range` count `{count}` is outside 0 to 10000"),
            "pass a count between 0 and 10000",
        ));
    }
    let past_end = start.checked_add(count).unwrap_or(i64::MAX);
    if past_end - 1 > i64::from(i32::MAX) {
        return Err(FnError::new(
            format!("`range({start}, {count})` goes past 2147483647"),
            "lower the start index or the count",
        ));
    }
    Ok(Value::Array(
        (start..start + count).map(Value::Int).collect(),
    ))
}

fn min_max(call: &Args<'_>, max: bool) -> FnResult {
    call.between(1, usize::MAX)?;
    let values: &[Value] = match (&call.args[0], call.args.len()) {
        (Value::Array(items), 1) => items,
        _ => call.args,
    };
    if values.is_empty() {
        return Err(FnError::new(
            format!("`{}` got an empty array", call.name),
            "pass at least one number",
        ));
    }
    let mut best: Option<&Value> = None;
    for (index, value) in values.iter().enumerate() {
        let number = match value {
            Value::Int(number) => *number as f64,
            Value::Float(number) => *number,
            other => return Err(call.type_error(index, "an int", other)),
        };
        let better = match best {
            None => true,
            Some(Value::Int(current)) => {
                (number > *current as f64) == max && number != *current as f64
            }
            Some(Value::Float(current)) => (number > *current) == max && number != *current,
            Some(_) => false,
        };
        if better {
            best = Some(value);
        }
    }
    Ok(best.cloned().unwrap_or(Value::Null))
}

fn flatten(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let mut out = Vec::new();
    for (index, item) in call.array(0)?.iter().enumerate() {
        match item {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            Value::Null => {}
            other => return Err(call.type_error(index, "an array of arrays", other)),
        }
    }
    Ok(Value::Array(out))
}

fn items(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let mut entries: Vec<(&String, &Value)> = call.object(0)?.iter().collect();
    // Sorted by key with OrdinalIgnoreCase; the sort is stable, so keys that differ only in
    // case keep their order (Azure/bicep EvaluationTests `items` baseline).
    entries.sort_by_key(|(key, _)| ordinal_ignore_case_key(key));
    let list = entries
        .into_iter()
        .map(|(key, value)| {
            let mut entry = Object::new();
            entry.insert("key", Value::String(key.clone()));
            entry.insert("value", value.clone());
            Value::Object(entry)
        })
        .collect();
    Ok(Value::Array(list))
}

fn try_get(call: &Args<'_>) -> FnResult {
    call.between(2, usize::MAX)?;
    let mut current = match step(&call.args[0], &call.args[1]) {
        Some(value) => value,
        None => return Ok(Value::Null),
    };
    for (offset, key) in call.args[2..].iter().enumerate() {
        if matches!(current, Value::Null) {
            return Ok(Value::Null);
        }
        current = step(&current, key).ok_or_else(|| {
            FnError::new(
                format!(
                    "`tryGet` key {} `{}` does not exist",
                    offset + 3,
                    to_text(key)
                ),
                "only the first key of `tryGet` may be missing",
            )
        })?;
    }
    Ok(current)
}

fn step(base: &Value, key: &Value) -> Option<Value> {
    match (base, key) {
        (Value::Object(object), Value::String(name)) => object.get(name).cloned(),
        (Value::Array(items), Value::Int(index)) => usize::try_from(*index)
            .ok()
            .and_then(|index| items.get(index))
            .cloned(),
        _ => None,
    }
}

fn index_from_end(call: &Args<'_>, lenient: bool) -> FnResult {
    call.exactly(2)?;
    let found = match (&call.args[0], &call.args[1]) {
        (Value::Array(items), Value::Int(from_end)) if *from_end >= 1 => usize::try_from(*from_end)
            .ok()
            .and_then(|from_end| items.len().checked_sub(from_end))
            .and_then(|index| items.get(index))
            .cloned(),
        _ => None,
    };
    match found {
        Some(value) => Ok(value),
        None if lenient => Ok(Value::Null),
        None => Err(FnError::new(
            format!("`{}` index is out of range", call.name),
            "pass an index between 1 and the array length",
        )),
    }
}

fn join(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let delimiter = call.str(1)?;
    let mut parts = Vec::new();
    for item in call.array(0)? {
        match item {
            Value::String(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                parts.push(to_text(item));
            }
            other => return Err(call.type_error(0, "an array of strings, ints or bools", other)),
        }
    }
    Ok(Value::String(parts.join(delimiter)))
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

fn json(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Null => Ok(Value::Object(Object::new())),
        Value::String(text) if text.trim().is_empty() => Ok(Value::Null),
        Value::String(text) => parse_json_text(call, text),
        other => Err(call.type_error(0, "a string", other)),
    }
}

fn parse_json_text(call: &Args<'_>, text: &str) -> FnResult {
    // Newtonsoft, which the engine uses, also accepts single-quoted strings.
    let node = parse_text(
        text,
        ReadOptions {
            single_quotes: true,
        },
    )
    .map_err(|failure| {
        FnError::new(
            format!(
                "`{}` got invalid JSON `{}`: {}",
                call.name,
                shorten(text),
                failure.message
            ),
            "pass valid JSON text",
        )
    })?;
    Ok(crate::eval::literal_value(&node))
}

fn decode_base64(call: &Args<'_>, index: usize) -> Result<Vec<u8>, FnError> {
    let text = call.str(index)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            FnError::new(
                format!("`{}` got invalid base64 `{}`", call.name, shorten(text)),
                "pass base64 text with padding",
            )
        })
}

fn data_uri_to_string(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let text = call.str(0)?;
    let invalid = || {
        FnError::new(
            format!(
                "`dataUriToString` got an invalid data URI `{}`",
                shorten(text)
            ),
            "pass a URI such as `data:;base64,SGVsbG8=`",
        )
    };
    let rest = text.strip_prefix("data:").ok_or_else(invalid)?;
    let (metadata, data) = rest.split_once(',').ok_or_else(invalid)?;
    if metadata.ends_with(";base64") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| invalid())?;
        return Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(Value::String(
        percent_decode_str(data).decode_utf8_lossy().into_owned(),
    ))
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded with upper-case
/// hex, as .NET `Uri.EscapeDataString` does.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn uri(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let (base, relative) = (call.str(0)?, call.str(1)?);
    let base = url::Url::parse(base).map_err(|_| {
        FnError::new(
            format!("`uri` base `{}` is not an absolute URI", shorten(base)),
            "pass an absolute URI such as `https://example.com/path/` as the base",
        )
    })?;
    let joined = base.join(relative).map_err(|_| {
        FnError::new(
            format!("`uri` cannot combine the base with `{}`", shorten(relative)),
            "pass a valid relative URI",
        )
    })?;
    Ok(Value::String(joined.to_string()))
}

fn format(call: &Args<'_>) -> FnResult {
    call.between(1, usize::MAX)?;
    let pattern = call.str(0)?;
    composite_format(pattern, &call.args[1..])
        .map(Value::String)
        .map_err(|message| FnError::new(message, "match each `{n}` with an argument of `format`"))
}

fn hash_strings<'a>(call: &'a Args<'a>) -> Result<Vec<&'a str>, FnError> {
    call.between(1, usize::MAX)?;
    (0..call.args.len()).map(|index| call.str(index)).collect()
}

fn pad_left(call: &Args<'_>) -> FnResult {
    call.between(2, 3)?;
    let text = match &call.args[0] {
        Value::String(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        other => return Err(call.type_error(0, "a string or an int", other)),
    };
    let width = call.int(1)?;
    let pad = if call.args.len() == 3 {
        let pad = call.str(2)?;
        let mut chars = pad.chars();
        match (chars.next(), chars.next()) {
            (Some(single), None) => single,
            _ => {
                return Err(FnError::new(
                    format!("`padLeft` padding `'{pad}'` must be exactly one character"),
                    "pass a single character such as `'0'`",
                ))
            }
        }
    } else {
        ' '
    };
    // NOTE: the engine's own limit on the width is not documented; this bound only keeps a
    // template from exhausting memory.
    if width > MAX_PAD_WIDTH {
        return Err(FnError::new(
            format!("`padLeft` width `{width}` is larger than {MAX_PAD_WIDTH}"),
            "use a smaller total length",
        ));
    }
    let length = text.encode_utf16().count() as i64;
    let missing = (width - length).max(0) as usize;
    Ok(Value::String(format!(
        "{}{text}",
        pad.to_string().repeat(missing)
    )))
}

const MAX_PAD_WIDTH: i64 = 1_000_000;

fn substring(call: &Args<'_>) -> FnResult {
    call.between(2, 3)?;
    let units = utf16(call.str(0)?);
    let start = call.int(1)?;
    let length = if call.args.len() == 3 {
        call.int(2)?
    } else {
        units.len() as i64 - start
    };
    let total = units.len() as i64;
    if start < 0 || start > total || length < 0 || start + length > total {
        return Err(FnError::new(
            format!(
                "`substring` start `{start}` and length `{length}` are out of bounds for a string of length {total}"
            ),
            "keep start and start + length within the string",
        ));
    }
    let (start, end) = (start as usize, (start + length) as usize);
    Ok(Value::String(from_utf16(&units[start..end])))
}

fn split(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let text = call.str(0)?;
    let separators: Vec<String> = match &call.args[1] {
        Value::String(separator) => vec![separator.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(separator) => Ok(separator.clone()),
                other => Err(call.type_error(1, "a string or an array of strings", other)),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(call.type_error(1, "a string or an array of strings", other)),
    };
    let separators: Vec<&String> = separators.iter().filter(|sep| !sep.is_empty()).collect();
    if separators.is_empty() {
        return Ok(Value::Array(vec![Value::String(text.to_owned())]));
    }
    // .NET `Split(string[])` tries the separators in order at each position.
    let mut parts = Vec::new();
    let mut start = 0;
    let mut position = 0;
    while position < text.len() {
        let rest = &text[position..];
        if let Some(separator) = separators.iter().find(|sep| rest.starts_with(sep.as_str())) {
            parts.push(Value::String(text[start..position].to_owned()));
            position += separator.len();
            start = position;
        } else {
            position += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    parts.push(Value::String(text[start..].to_owned()));
    Ok(Value::Array(parts))
}

/// Matches `*` wildcards (any run of characters) iteratively, backtracking to the last `*`.
fn wildcard_match(text: &[char], pattern: &[char]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|ch| *ch == '*')
}

/// Formats an IP address for CIDR results.
pub(crate) fn ip_text(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => Ipv4Addr::to_string(&v4),
        IpAddr::V6(v6) => Ipv6Addr::to_string(&v6),
    }
}

//! Array and object functions with more than a line of logic.

use super::*;

pub(super) fn concat(call: &Args<'_>) -> FnResult {
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

pub(super) fn create_object(call: &Args<'_>) -> FnResult {
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

pub(super) fn length(call: &Args<'_>) -> FnResult {
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

pub(super) fn first_or_last(call: &Args<'_>, first: bool) -> FnResult {
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

pub(super) fn contains(call: &Args<'_>) -> FnResult {
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

pub(super) fn index_of(call: &Args<'_>, last: bool) -> FnResult {
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

pub(super) fn intersection(call: &Args<'_>) -> FnResult {
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

pub(super) fn union(call: &Args<'_>) -> FnResult {
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
pub(super) fn merge_deep(target: &mut Object, other: &Object) {
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

pub(super) fn skip_take(call: &Args<'_>, skip: bool) -> FnResult {
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

pub(super) fn range(call: &Args<'_>) -> FnResult {
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

pub(super) fn min_max(call: &Args<'_>, max: bool) -> FnResult {
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

pub(super) fn flatten(call: &Args<'_>) -> FnResult {
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

pub(super) fn items(call: &Args<'_>) -> FnResult {
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

pub(super) fn try_get(call: &Args<'_>) -> FnResult {
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

pub(super) fn step(base: &Value, key: &Value) -> Option<Value> {
    match (base, key) {
        (Value::Object(object), Value::String(name)) => object.get(name).cloned(),
        (Value::Array(items), Value::Int(index)) => usize::try_from(*index)
            .ok()
            .and_then(|index| items.get(index))
            .cloned(),
        _ => None,
    }
}

pub(super) fn index_from_end(call: &Args<'_>, lenient: bool) -> FnResult {
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

pub(super) fn join(call: &Args<'_>) -> FnResult {
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

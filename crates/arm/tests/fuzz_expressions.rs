//! Random function calls never panic the evaluator: every outcome is a value or an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use subnetlock_arm::{evaluate_str, EvalOptions, OfflineProvider};

const FUNCTIONS: &[&str] = &[
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "concat",
    "format",
    "toLower",
    "toUpper",
    "substring",
    "padLeft",
    "range",
    "take",
    "skip",
    "first",
    "last",
    "length",
    "empty",
    "contains",
    "indexOf",
    "lastIndexOf",
    "union",
    "intersection",
    "createArray",
    "createObject",
    "split",
    "replace",
    "string",
    "int",
    "bool",
    "json",
    "base64",
    "base64ToString",
    "dataUriToString",
    "uriComponent",
    "uri",
    "uniqueString",
    "guid",
    "trim",
    "startsWith",
    "endsWith",
    "coalesce",
    "if",
    "and",
    "or",
    "not",
    "equals",
    "less",
    "greater",
    "tryGet",
    "items",
    "objectKeys",
    "flatten",
    "join",
    "min",
    "max",
    "cidrSubnet",
    "cidrHost",
    "parseCidr",
    "dateTimeAdd",
    "dateTimeFromEpoch",
    "dateTimeToEpoch",
    "resourceId",
    "copyIndex",
    "array",
    "shallowMerge",
    "tryIndexFromEnd",
    "indexFromEnd",
    "distinct",
    "like",
    "reference",
    "listKeys",
];

fn argument() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9 /.:{},%=*-]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("null()".to_owned()),
        Just("true()".to_owned()),
        Just("createArray(1, 'a')".to_owned()),
        Just("createObject('a', 1)".to_owned()),
        Just("resourceGroup()".to_owned()),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (
            proptest::sample::select(FUNCTIONS),
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, args)| format!("{name}({})", args.join(", ")))
    })
}

proptest! {
    #[test]
    fn random_calls_never_panic(
        name in proptest::sample::select(FUNCTIONS),
        args in proptest::collection::vec(argument(), 0..4),
    ) {
        let expression = format!("[{name}({})]", args.join(", "));
        let template = format!(
            r#"{{"resources": [], "outputs": {{"o": {{"type": "object", "value": {}}}}}}}"#,
            serde_json::to_string(&expression).unwrap()
        );
        let result = evaluate_str("fuzz.json", &template, &EvalOptions::default(), &OfflineProvider);
        if let Err(error) = result {
            let location = error.location().expect("evaluation errors are located");
            prop_assert_eq!(location.json_path.as_str(), "$.outputs.o.value");
            prop_assert!(!error.message().is_empty());
        }
    }
}

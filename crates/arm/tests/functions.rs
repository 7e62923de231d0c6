//! Function vectors folded by the real ARM engine (Azure/bicep `EvaluationTests.cs`,
//! `FunctionResolverTests.cs`, `baselines_bicepparam/Expressions/parameters.json` and the
//! snapshot command tests), plus documented examples from Microsoft Learn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use subnetlock_arm::{evaluate_str, EvalOptions, OfflineProvider, Parameters, Scope, Value};

/// Evaluates one expression as the value of an output.
fn eval_with(expression: &str, scope: Scope) -> Result<Value, subnetlock_arm::Error> {
    let template = format!(
        r#"{{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [],
  "outputs": {{ "result": {{ "type": "object", "value": {} }} }} }}"#,
        serde_json::to_string(expression).unwrap()
    );
    let options = EvalOptions {
        scope,
        parameters: Parameters::new(),
    };
    let deployment = evaluate_str("vector.json", &template, &options, &OfflineProvider)?;
    Ok(deployment.outputs["result"].clone())
}

fn eval(expression: &str) -> Value {
    eval_with(expression, Scope::default()).unwrap_or_else(|error| panic!("{expression}: {error}"))
}

fn json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

fn check(cases: &[(&str, &str)]) {
    for (expression, expected) in cases {
        let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(json(&eval(expression)), expected, "{expression}");
    }
}

#[test]
fn numeric_vectors() {
    // Azure/bicep EvaluationTests.
    check(&[
        ("[add(1, 3)]", "4"),
        ("[mul(4, 5)]", "20"),
        ("[mod(20, 7)]", "6"),
        ("[div(6, 11)]", "0"),
        ("[sub(0, 13)]", "-13"),
        ("[div(-7, 2)]", "-3"),
        ("[mod(-7, 2)]", "-1"),
        ("[int('42')]", "42"),
        ("[range(0, 3)]", "[0,1,2]"),
        ("[range(1, 0)]", "[]"),
        ("[max(1, 2, 3)]", "3"),
        ("[min(createArray(10, 4, 1, 6))]", "1"),
    ]);
}

#[test]
fn comparison_and_logic_vectors() {
    check(&[
        ("[less(123, 456)]", "true"),
        ("[lessOrEquals(123, 456)]", "true"),
        ("[greater(123, 456)]", "false"),
        ("[greaterOrEquals(123, 456)]", "false"),
        ("[equals(123, 456)]", "false"),
        ("[not(true())]", "false"),
        ("[and(true(), false())]", "false"),
        ("[or(true(), false())]", "true"),
        ("[coalesce(null(), 123)]", "123"),
        ("[greater('Test2', 'Test1')]", "true"),
        ("[bool('TRUE')]", "true"),
        ("[bool(0)]", "false"),
        (
            "[equals(createObject('a', 1), createObject('a', 1))]",
            "true",
        ),
    ]);
}

#[test]
fn lazy_functions_skip_unselected_branch() {
    // `if` evaluates only the chosen branch; `and`/`or`/`coalesce` stop early.
    check(&[
        ("[if(true(), 'yes', div(1, 0))]", r#""yes""#),
        ("[if(false(), parameters('missing'), 'no')]", r#""no""#),
        ("[and(false(), div(1, 0))]", "false"),
        ("[or(true(), div(1, 0))]", "true"),
        ("[coalesce('first', div(1, 0))]", r#""first""#),
    ]);
}

#[test]
fn string_vectors() {
    check(&[
        (
            "[format('>{0}<>{1}<>{2}<>{3}<>{4}<', false(), 12948, 'hello!', createObject('a','b','!c',2), createArray(true(),2893,'abc'))]",
            r#"">False<>12948<>hello!<>{'a':'b','!c':2}<>[true,2893,'abc']<""#,
        ),
        ("[format('{0}/{1}/{2}/{3}', 1, 2, 3, true())]", r#""1/2/3/True""#),
        ("[format('->{0}<-', 123)]", r#""->123<-""#),
        ("[format('{0:N0}', 8175133)]", r#""8,175,133""#),
        ("[join(createArray('abc', 123, true()), '/')]", r#""abc/123/True""#),
        ("[join(createArray('abc', 'def', 'ghi'), '')]", r#""abcdefghi""#),
        ("[base64(' Fizz ')]", r#""IEZpenog""#),
        ("[base64('one, two, three')]", r#""b25lLCB0d28sIHRocmVl""#),
        ("[base64ToString('IEZpenog')]", r#"" Fizz ""#),
        ("[base64ToJson(base64('{\"hi\": \"there\"}')).hi]", r#""there""#),
        ("[dataUri(' Fizz ')]", r#""data:text/plain;charset=utf-8;base64,IEZpenog""#),
        ("[dataUriToString(dataUri('abc'))]", r#""abc""#),
        ("[dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')]", r#""Hello, World!""#),
        ("[uriComponent(' Fizz ')]", r#""%20Fizz%20""#),
        ("[uriComponent('UB*8h 0+=_)9h9n')]", r#""UB%2A8h%200%2B%3D_%299h9n""#),
        ("[uriComponentToString('%20%25%20')]", r#"" % ""#),
        ("[padLeft('00', 5, ' ')]", r#""   00""#),
        ("[padLeft(13, 5)]", r#""   13""#),
        ("[padLeft('123', 10, '0')]", r#""0000000123""#),
        ("[uri('https://github.com/another/repo', '/Azure/bicep')]", r#""https://github.com/Azure/bicep""#),
        ("[uri('https://github.com', 'Azure/bicep')]", r#""https://github.com/Azure/bicep""#),
        ("[uri('http://contoso.org/firstpath', 'myscript.sh')]", r#""http://contoso.org/myscript.sh""#),
        ("[uri('http://contoso.org/firstpath/', 'myscript.sh')]", r#""http://contoso.org/firstpath/myscript.sh""#),
        ("[indexOf('FOOBAR', 'foo')]", "0"),
        ("[contains('FOOBAR', 'foo')]", "false"),
        ("[indexOf(createArray('FOO', 'BAR'), 'foo')]", "-1"),
        ("[contains(createArray('FOO', 'BAR'), 'foo')]", "false"),
        ("[contains(createArray('FOO', 'BAR'), 123)]", "false"),
        ("[indexOf('abc', 'b')]", "1"),
        ("[lastIndexOf('abcba', 'b')]", "3"),
        ("[lastIndexOf('food', 'o')]", "2"),
        ("[replace('abc', 'b', '/')]", r#""a/c""#),
        ("[replace('foot', 't', 'd')]", r#""food""#),
        ("[split('a/b/c', '/')]", r#"["a","b","c"]"#),
        ("[split('one;two,three', createArray(';', ','))]", r#"["one","two","three"]"#),
        ("[substring('foot', 0, 3)]", r#""foo""#),
        ("[substring('asdfasf', 3)]", r#""fasf""#),
        ("[toLower('AiKInIniIN')]", r#""aikininiin""#),
        ("[toUpper('abc')]", r#""ABC""#),
        ("[trim('  adf asdf  ')]", r#""adf asdf""#),
        ("[endsWith('abcdef', 'F')]", "true"),
        ("[startsWith('abcdef', 'AB')]", "true"),
        ("[length('table')]", "5"),
        ("[string(empty(''))]", r#""True""#),
        ("[string(createObject('valueA', 10, 'valueB', 'Example Text'))]", r#""{\"valueA\":10,\"valueB\":\"Example Text\"}""#),
        ("[concat('a', 1, true())]", r#""a1True""#),
        ("[first('Fizz')]", r#""F""#),
        ("[last('Fizz')]", r#""z""#),
        ("[skip('foot', 3)]", r#""t""#),
        ("[take('foot', 3)]", r#""foo""#),
        ("[json('{''a'': ''b''}').a]", r#""b""#),
        ("[json('null')]", "null"),
        ("[json('1.5')]", "1.5"),
    ]);
}

#[test]
fn hash_vectors() {
    check(&[
        (
            "[uniqueString('snap', 'crackle', 'pop')]",
            r#""byghxckddilkc""#,
        ),
        (
            "[guid('foo', 'bar', 'baz')]",
            r#""2ed86837-7c7c-5eaa-9864-dd077fd19b0d""#,
        ),
        (
            "[uniqueString('asd', 'asdf', 'asdf')]",
            r#""iizpqit7ih3cc""#,
        ),
        (
            "[guid('asdf')]",
            r#""228d27cc-6fdb-5934-b7ac-1efccebade04""#,
        ),
    ]);
}

#[test]
fn storage_name_snapshot_vector() {
    // Azure/bicep SnapshotCommandTests `basic`: sub 0000..., resource group `myRg`.
    let scope = Scope {
        resource_group: "myRg".to_owned(),
        ..Scope::default()
    };
    let name = eval_with(
        "[format('store{0}', uniqueString(resourceGroup().id))]",
        scope.clone(),
    )
    .unwrap();
    assert_eq!(name, Value::String("storejs26ofeqkqeve".to_owned()));
    let id = eval_with(
        "[resourceId('Microsoft.Storage/storageAccounts', format('store{0}', uniqueString(resourceGroup().id)))]",
        scope,
    )
    .unwrap();
    let expected = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myRg/providers/Microsoft.Storage/storageAccounts/storejs26ofeqkqeve";
    assert_eq!(id, Value::String(expected.to_owned()));
}

#[test]
fn resource_id_vectors() {
    // Azure/bicep EvaluationTests `ResourceId_expressions_are_evaluated_successfully`.
    let scope = Scope {
        subscription_id: "87d64d6d-6d17-4ad7-b507-16d9bc498781".to_owned(),
        resource_group: "testRg".to_owned(),
        ..Scope::default()
    };
    let cases = [
        (
            "[resourceId('My.Rp/parent/child', 'myParent', 'myChild')]",
            "/subscriptions/87d64d6d-6d17-4ad7-b507-16d9bc498781/resourceGroups/testRg/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[resourceId('customRg', 'My.Rp/parent/child', 'myParent', 'myChild')]",
            "/subscriptions/87d64d6d-6d17-4ad7-b507-16d9bc498781/resourceGroups/customRg/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[resourceId('2e518a80-f860-4467-a00e-d81aaf1ff42e', 'customRg', 'My.Rp/parent/child', 'myParent', 'myChild')]",
            "/subscriptions/2e518a80-f860-4467-a00e-d81aaf1ff42e/resourceGroups/customRg/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[tenantResourceId('My.Rp/parent/child', 'myParent', 'myChild')]",
            "/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[subscriptionResourceId('My.Rp/parent/child', 'myParent', 'myChild')]",
            "/subscriptions/87d64d6d-6d17-4ad7-b507-16d9bc498781/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[managementGroupResourceId('2e518a80-f860-4467-a00e-d81aaf1ff42e', 'My.Rp/parent/child', 'myParent', 'myChild')]",
            "/providers/Microsoft.Management/managementGroups/2e518a80-f860-4467-a00e-d81aaf1ff42e/providers/My.Rp/parent/myParent/child/myChild",
        ),
        (
            "[extensionResourceId(tenantResourceId('My.Rp/parent/child', 'myParent', 'myChild'), 'My.ExtensionRp/parent/child', 'myParent', 'myChild')]",
            "/providers/My.Rp/parent/myParent/child/myChild/providers/My.ExtensionRp/parent/myParent/child/myChild",
        ),
        (
            "[extensionResourceId('/subscriptions/0/resourceGroups/rg-test-001', 'Microsoft.Resources/deployments', 'a')]",
            "/subscriptions/0/resourceGroups/rg-test-001/providers/Microsoft.Resources/deployments/a",
        ),
        (
            "[resourceId('Microsoft.Network/virtualNetworks/', 'vnet')]",
            "/subscriptions/87d64d6d-6d17-4ad7-b507-16d9bc498781/resourceGroups/testRg/providers/Microsoft.Network/virtualNetworks/vnet",
        ),
    ];
    for (expression, expected) in cases {
        let value = eval_with(expression, scope.clone()).unwrap();
        assert_eq!(value, Value::String(expected.to_owned()), "{expression}");
    }
}

#[test]
fn collection_vectors() {
    check(&[
        (
            "[concat(createArray('abc'), createArray('def'))]",
            r#"["abc","def"]"#,
        ),
        ("[empty(createArray())]", "true"),
        ("[first(createArray(124, 25))]", "124"),
        ("[last(createArray(1, 2))]", "2"),
        (
            "[flatten(createArray(createArray('abc'), createArray('def')))]",
            r#"["abc","def"]"#,
        ),
        ("[flatten(createArray())]", "[]"),
        (
            "[intersection(createArray(1, 2, 3), createArray(2, 3, 4))]",
            "[2,3]",
        ),
        (
            "[intersection(createArray('fizz','buzz','pop'), createArray('snap','crackle','pop'))]",
            r#"["pop"]"#,
        ),
        (
            "[union(createArray('fizz', 'buzz'), createArray('pop'))]",
            r#"["fizz","buzz","pop"]"#,
        ),
        ("[skip(createArray(1, 2, 3), 1)]", "[2,3]"),
        ("[take(createArray(1, 2, 3), 2)]", "[1,2]"),
        (
            "[items(createObject('foo', 'abc', 'bar', 123))]",
            r#"[{"key":"bar","value":123},{"key":"foo","value":"abc"}]"#,
        ),
        (
            "[shallowMerge(createArray(createObject('a', 123), createObject('b', 456)))]",
            r#"{"a":123,"b":456}"#,
        ),
        (
            "[objectKeys(createObject('a', 123, 'b', 456))]",
            r#"["a","b"]"#,
        ),
        ("[tryGet(createObject('a', 1), 'b')]", "null"),
        ("[tryGet(createArray(1, 2), 10)]", "null"),
        (
            "[tryGet(createObject('a', createObject('b', 2)), 'a', 'b')]",
            "2",
        ),
        ("[tryIndexFromEnd(createArray(1, 2, 3), 1)]", "3"),
        ("[tryIndexFromEnd(createArray(1, 2, 3), 5)]", "null"),
        ("[array('a')]", r#"["a"]"#),
        ("[createObject()]", "{}"),
        ("[length(createObject('a', 1, 'b', 2))]", "2"),
        ("[contains(createObject('Key', 1), 'key')]", "true"),
        ("[like('abcdef', 'A*D*')]", "true"),
        ("[like('abc', 'a*x')]", "false"),
    ]);
}

#[test]
fn items_sort_order() {
    // Ordinal ignore-case, stable: Azure/bicep EvaluationTests items() ordering.
    let value = eval(
        "[items(createObject('ghiKey', 1, 'defKey', 2, 'abcKey', 3, '123Key', 4, 'GHIKey', 5, 'DEFKey', 6, 'ABCKey', 7, '456Key', 8))]",
    );
    let keys: Vec<&str> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item.get("key").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["123Key", "456Key", "abcKey", "ABCKey", "defKey", "DEFKey", "ghiKey", "GHIKey"]
    );
}

#[test]
fn union_merges_objects_deeply() {
    // Example of template-functions-object#union on Microsoft Learn.
    let value = eval(
        "[union(json('{\"property\":{\"one\":\"a\",\"two\":\"b\",\"three\":\"c1\"},\"nestedArray\":[1,2]}'), json('{\"property\":{\"three\":\"c2\",\"four\":\"d\",\"five\":\"e\"},\"nestedArray\":[3,4]}'))]",
    );
    let expected: serde_json::Value = serde_json::from_str(
        r#"{"property":{"one":"a","two":"b","three":"c2","four":"d","five":"e"},"nestedArray":[3,4]}"#,
    )
    .unwrap();
    assert_eq!(json(&value), expected);
}

#[test]
fn lambda_vectors() {
    check(&[
        (
            "[sort(createArray(8, 3, 10, -13, 5), lambda('x', 'y', less(lambdaVariables('x'), lambdaVariables('y'))))]",
            "[-13,3,5,8,10]",
        ),
        (
            "[sort(createArray('c', 'd', 'a'), lambda('a', 'b', less(lambdaVariables('a'), lambdaVariables('b'))))]",
            r#"["a","c","d"]"#,
        ),
        (
            "[reduce(range(1, 5), 1, lambda('cur', 'next', mul(lambdaVariables('cur'), lambdaVariables('next'))))]",
            "120",
        ),
        (
            "[reduce(createArray('a', 'b', 'c'), '', lambda('a', 'b', format('{0}-{1}', lambdaVariables('a'), lambdaVariables('b'))))]",
            r#""-a-b-c""#,
        ),
        (
            "[toObject(createArray(123, 456, 789), lambda('i', format('{0}', div(lambdaVariables('i'), 100))))]",
            r#"{"1":123,"4":456,"7":789}"#,
        ),
        (
            "[groupBy(createArray(createObject('type', 'a', 'value', 123), createObject('type', 'b', 'value', 456), createObject('type', 'a', 'value', 789)), lambda('x', lambdaVariables('x').type), lambda('x', lambdaVariables('x').value))]",
            r#"{"a":[123,789],"b":[456]}"#,
        ),
        (
            "[mapValues(createObject('a', 123, 'b', 456), lambda('v', mul(lambdaVariables('v'), 2)))]",
            r#"{"a":246,"b":912}"#,
        ),
        ("[filter(createArray(1, 2), lambda('i', less(lambdaVariables('i'), 2)))]", "[1]"),
        (
            "[filter(createArray('a', 'b', 'c', 'd'), lambda('item', 'i', equals(mod(lambdaVariables('i'), 2), 0)))]",
            r#"["a","c"]"#,
        ),
        (
            "[map(range(0, 3), lambda('i', format('Hi {0}!', lambdaVariables('i'))))]",
            r#"["Hi 0!","Hi 1!","Hi 2!"]"#,
        ),
        ("[map(createArray(), lambda('i', lambdaVariables('i')))]", "[]"),
    ]);
}

#[test]
fn date_and_cidr_vectors() {
    check(&[
        (
            "[dateTimeAdd(dateTimeFromEpoch(1680224438), 'P1D')]",
            r#""2023-04-01T01:00:38Z""#,
        ),
        (
            "[dateTimeToEpoch(dateTimeFromEpoch(1680224438))]",
            "1680224438",
        ),
        ("[cidrSubnet('10.144.0.0/20', 24, 3)]", r#""10.144.3.0/24""#),
        ("[cidrHost('10.144.3.0/24', 0)]", r#""10.144.3.1""#),
        (
            "[parseCidr('10.144.0.0/20').broadcast]",
            r#""10.144.15.255""#,
        ),
    ]);
}

#[test]
fn context_functions() {
    let scope = Scope::default();
    check(&[
        ("[resourceGroup().name]", r#""subnetlock""#),
        (
            "[subscription().id]",
            r#""/subscriptions/00000000-0000-0000-0000-000000000000""#,
        ),
        ("[deployment().name]", r#""subnetlock""#),
        ("[environment().suffixes.storage]", r#""core.windows.net""#),
        ("[toLower(ENVIRONMENT().Name)]", r#""azurecloud""#),
        ("[[not an expression]", r#""[not an expression]""#),
    ]);
    let location = eval_with("[resourceGroup().location]", scope).unwrap();
    assert_eq!(location, Value::String("westeurope".to_owned()));
}

#[test]
fn unknowns_propagate() {
    let value = eval("[concat('x', deployment().properties.templateLink.uri)]");
    let Value::Unknown(unknown) = value else {
        panic!("known: {value:?}");
    };
    assert_eq!(
        unknown.expression,
        "concat('x', deployment().properties.templateLink.uri)"
    );
}

#[test]
fn nondeterministic_functions_only_in_defaults() {
    let template = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "parameters": {
    "stamp": { "type": "string", "defaultValue": "[utcNow('yyyy-MM-dd HH:mm')]" },
    "plain": { "type": "string", "defaultValue": "[utcNow()]" },
    "id": { "type": "string", "defaultValue": "[newGuid()]" }
  },
  "resources": [],
  "outputs": {
    "stamp": { "type": "string", "value": "[parameters('stamp')]" },
    "plain": { "type": "string", "value": "[parameters('plain')]" },
    "id": { "type": "string", "value": "[parameters('id')]" }
  }}"#;
    let options = EvalOptions::default();

    // Checked before deployment, the values are unknown.
    let offline = evaluate_str("t.json", template, &options, &OfflineProvider).unwrap();
    assert!(offline.outputs["stamp"].is_unknown());
    assert!(offline.outputs["id"].is_unknown());

    // A deploying provider supplies them.
    struct Deploying;
    impl subnetlock_arm::Provider for Deploying {
        fn reference(&self, _: &subnetlock_arm::ReferenceRequest<'_>) -> Option<Value> {
            None
        }
        fn list(&self, _: &subnetlock_arm::ListRequest<'_>) -> Option<Value> {
            None
        }
        fn deployment_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
            chrono::DateTime::parse_from_rfc3339("2026-12-05T01:02:03Z")
                .ok()
                .map(|time| time.to_utc())
        }
        fn new_guid(&self) -> Option<String> {
            Some("0f8fad5b-d9cb-469f-a165-70867728950e".to_owned())
        }
    }
    let deployed = evaluate_str("t.json", template, &options, &Deploying).unwrap();
    assert_eq!(
        deployed.outputs["stamp"],
        Value::String("2026-12-05 01:02".into())
    );
    assert_eq!(
        deployed.outputs["plain"],
        Value::String("20261205T010203Z".into())
    );
    assert_eq!(
        deployed.outputs["id"],
        Value::String("0f8fad5b-d9cb-469f-a165-70867728950e".into())
    );

    // A format .NET rejects is an error offline too.
    let bad_format = template.replace("utcNow()", "utcNow('Q')");
    let error = evaluate_str("t.json", &bad_format, &options, &OfflineProvider).unwrap_err();
    assert!(error.to_string().contains("`Q`"), "{error}");

    // Anywhere else, ARM rejects the template.
    for expression in ["[newGuid()]", "[utcNow()]"] {
        let error = eval_with(expression, Scope::default()).unwrap_err();
        assert!(error.to_string().contains("defaultValue"), "{error}");
    }
}

#[test]
fn nondeterministic_functions_rejected_where_not_evaluated() {
    // Each case puts a call where offline evaluation never reaches it; ARM rejects the
    // template all the same. The second string is the JSON path of the string with the call.
    let cases = [
        (
            r#""resources": [{ "condition": false, "type": "Microsoft.Web/sites",
                "apiVersion": "2022-09-01", "name": "[concat('a', utcNow())]" }]"#,
            "$.resources[0].name",
        ),
        (
            r#""resources": [], "outputs": { "o": { "type": "string",
                "value": "[if(true(), 'x', newGuid())]" } }"#,
            "$.outputs.o.value",
        ),
        (
            r#""functions": [{ "namespace": "ns", "members": { "f": {
                "output": { "type": "string", "value": "[utcNow()]" } } } }],
               "resources": []"#,
            "$.functions[0].members.f.output.value",
        ),
        (
            r#""resources": [{ "type": "Microsoft.Resources/deployments",
                "apiVersion": "2022-09-01", "name": "inner",
                "properties": { "mode": "Incremental",
                  "parameters": { "p": { "value": "[utcNow()]" } },
                  "template": { "resources": [] } } }]"#,
            "$.resources[0].properties.parameters.p.value",
        ),
        (
            r#""parameters": { "p": { "type": "string", "defaultValue": "x",
                "allowedValues": ["[newGuid()]"] } }, "resources": []"#,
            "$.parameters.p.allowedValues[0]",
        ),
    ];
    for (body, path) in cases {
        let template = format!("{{ \"contentVersion\": \"1.0.0.0\", {body} }}");
        let error = evaluate_str(
            "t.json",
            &template,
            &EvalOptions::default(),
            &OfflineProvider,
        )
        .expect_err(path);
        assert!(
            error.to_string().contains("defaultValue"),
            "{path}: {error}"
        );
        let location = error.location().expect("located");
        assert_eq!(location.json_path, path);
    }
}

#[test]
fn nondeterministic_call_first_in_file_reported() {
    // Three misplaced calls: the error names the one that comes first in the file.
    let template = r#"{ "contentVersion": "1.0.0.0",
      "variables": { "a": "x", "b": ["y", "[newGuid()]", "[utcNow()]"] },
      "resources": [{ "condition": false, "type": "Microsoft.Web/sites",
        "apiVersion": "2022-09-01", "name": "[concat('a', utcNow())]" }] }"#;
    let error = evaluate_str(
        "t.json",
        template,
        &EvalOptions::default(),
        &OfflineProvider,
    )
    .expect_err("misplaced calls");
    let location = error.location().expect("located");
    assert_eq!(location.json_path, "$.variables.b[1]");
    assert!(error.to_string().contains("`newGuid`"), "{error}");
}

#[test]
fn nondeterministic_functions_allowed_in_any_template_default() {
    // A nested template's own parameter defaults, an escaped literal, and a user-defined
    // function that happens to be called `utcNow`.
    let template = r#"{ "contentVersion": "1.0.0.0",
      "functions": [{ "namespace": "ns", "members": { "utcNow": {
          "output": { "type": "string", "value": "fixed" } } } }],
      "resources": [{ "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01",
        "name": "inner",
        "properties": { "mode": "Incremental",
          "expressionEvaluationOptions": { "scope": "inner" },
          "template": {
            "parameters": { "stamp": { "type": "string", "defaultValue": "[utcNow()]" } },
            "resources": [] } } }],
      "outputs": {
        "literal": { "type": "string", "value": "[[utcNow()]" },
        "udf": { "type": "string", "value": "[ns.utcNow()]" } } }"#;
    let deployment = evaluate_str(
        "t.json",
        template,
        &EvalOptions::default(),
        &OfflineProvider,
    )
    .unwrap();
    assert_eq!(
        deployment.outputs["literal"],
        Value::String("[utcNow()]".into())
    );
    assert_eq!(deployment.outputs["udf"], Value::String("fixed".into()));
}

#[test]
fn out_of_range_arguments_are_errors() {
    let cases = [
        "[substring('abc', 1, int('9223372036854775807'))]",
        "[range(int('9223372036854775800'), 100)]",
        "[add(int('9223372036854775807'), 1)]",
        "[mul(int('9223372036854775807'), 2)]",
        "[div(1, 0)]",
        "[mod(int('-9223372036854775808'), -1)]",
        "[padLeft('a', 2000000)]",
        "[copyIndex(int('9223372036854775807'))]",
    ];
    for expression in cases {
        assert!(
            eval_with(expression, Scope::default()).is_err(),
            "{expression}"
        );
    }
}

#[test]
fn parse_uri_and_build_uri() {
    // `buildUri({scheme:'https',host:'example.com'})` is the documented example; the other
    // values follow .NET `System.Uri` (default port, query with its `?`).
    check(&[
        (
            "[buildUri(createObject('scheme', 'https', 'host', 'example.com'))]",
            r#""https://example.com/""#,
        ),
        (
            "[parseUri('https://example.com:8443/a/b?x=1')]",
            r#"{"scheme":"https","host":"example.com","port":8443,"path":"/a/b","query":"?x=1"}"#,
        ),
        (
            "[parseUri('https://example.com')]",
            r#"{"scheme":"https","host":"example.com","port":443,"path":"/","query":""}"#,
        ),
        (
            "[buildUri(parseUri('http://contoso.org:8080/path?q=2'))]",
            r#""http://contoso.org:8080/path?q=2""#,
        ),
        (
            "[buildUri(parseUri('https://contoso.org/p'))]",
            r#""https://contoso.org/p""#,
        ),
    ]);
}

#[test]
fn parse_uri_rejects_relative() {
    let error = eval_with("[parseUri('relative/path')]", Scope::default()).expect_err("relative");
    assert!(error.to_string().contains("not an absolute URI"), "{error}");
}

//! A version's inputs: the values a run sees. Every input has its published default;
//! an API run may override some by name (`inputParams`), and each override must name a
//! declared input and have its type.
//!
//! Types and the JSON values they accept:
//! * `TEXT` — a string; `NUMBER` — a number; `BOOLEAN` — `true`/`false`;
//! * `DATE` — a `YYYY-MM-DD` string naming a real calendar day;
//! * `SELECT` — one of the input's `options` (compared as JSON values).
//!
//! A default may be `null` (the template then sees `none`): an app may leave an input
//! unset until someone picks a value. An override may not be `null`, since an API caller
//! asking for "no value" is far more likely a client bug than intent.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::domain::model::{InputDef, InputType};

/// Why an input definition or value was refused; `field` names it the way the API does
/// (`inputParams.region`, `inputs[2].default`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: String,
    pub message: String,
}

/// The values of a run's inputs: every declared input at its default, then `overrides`
/// applied after checking each names a declared input and fits its type.
pub fn resolve_inputs(
    defs: &[InputDef],
    overrides: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, InputError> {
    let mut values: Map<String, Value> = defs
        .iter()
        .map(|d| (d.name.clone(), d.default.clone()))
        .collect();
    let Some(overrides) = overrides else {
        return Ok(values);
    };
    for (name, value) in overrides {
        let field = format!("inputParams.{name}");
        let Some(def) = defs.iter().find(|d| &d.name == name) else {
            return Err(InputError {
                field,
                message: format!("the project has no input named {name:?}"),
            });
        };
        if value.is_null() {
            return Err(InputError {
                field,
                message: format!("input {name:?} needs a value, not null"),
            });
        }
        check_value(def, value).map_err(|message| InputError {
            field: field.clone(),
            message,
        })?;
        values.insert(name.clone(), value.clone());
    }
    Ok(values)
}

/// Checks that each input definition is usable: a `SELECT` has options, and every
/// non-null default fits its input's type. Names are checked by the version validation.
pub fn validate_input_defs(defs: &[InputDef]) -> Result<(), InputError> {
    for (i, def) in defs.iter().enumerate() {
        if def.input_type == InputType::Select && def.options.is_empty() {
            return Err(InputError {
                field: format!("inputs[{i}].options"),
                message: format!("SELECT input {:?} needs at least one option", def.name),
            });
        }
        if !def.default.is_null() {
            check_value(def, &def.default).map_err(|message| InputError {
                field: format!("inputs[{i}].default"),
                message,
            })?;
        }
    }
    Ok(())
}

/// Whether `value` (non-null) fits `def`'s type; the error says what was expected.
pub fn check_value(def: &InputDef, value: &Value) -> Result<(), String> {
    let ok = match def.input_type {
        InputType::Text => value.is_string(),
        InputType::Number => value.is_number(),
        InputType::Boolean => value.is_boolean(),
        InputType::Date => value.as_str().is_some_and(is_date),
        InputType::Select => def.options.contains(value),
    };
    if ok {
        return Ok(());
    }
    Err(match def.input_type {
        InputType::Text => format!("input {:?} is TEXT and needs a string", def.name),
        InputType::Number => format!("input {:?} is NUMBER and needs a number", def.name),
        InputType::Boolean => format!("input {:?} is BOOLEAN and needs true or false", def.name),
        InputType::Date => format!(
            "input {:?} is DATE and needs a YYYY-MM-DD string naming a real day",
            def.name
        ),
        InputType::Select => format!("input {:?} must be one of its options", def.name),
    })
}

/// `YYYY-MM-DD`, exactly: chrono alone would also take `2024-1-2`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, t: InputType, default: Value, options: Vec<Value>) -> InputDef {
        InputDef {
            name: name.into(),
            input_type: t,
            default,
            options,
        }
    }

    fn defs() -> Vec<InputDef> {
        vec![
            def("region", InputType::Text, json!("EU"), vec![]),
            def("limit", InputType::Number, json!(10), vec![]),
            def("active", InputType::Boolean, json!(true), vec![]),
            def("day", InputType::Date, json!("2024-02-29"), vec![]),
            def(
                "size",
                InputType::Select,
                json!("S"),
                vec![json!("S"), json!("M"), json!(3)],
            ),
            def("unset", InputType::Text, Value::Null, vec![]),
        ]
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn defaults_fill_every_input() {
        let got = resolve_inputs(&defs(), None).unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got["region"], json!("EU"));
        assert_eq!(got["unset"], Value::Null);
        let empty = Map::new();
        assert_eq!(resolve_inputs(&defs(), Some(&empty)).unwrap(), got);
    }

    #[test]
    fn valid_overrides_replace_defaults() {
        let o = map(json!({
            "region": "US", "limit": 2.5, "active": false, "day": "2023-12-31", "size": 3, "unset": "x"
        }));
        let got = resolve_inputs(&defs(), Some(&o)).unwrap();
        assert_eq!(got["region"], json!("US"));
        assert_eq!(got["limit"], json!(2.5));
        assert_eq!(got["active"], json!(false));
        assert_eq!(got["day"], json!("2023-12-31"));
        assert_eq!(got["size"], json!(3));
        assert_eq!(got["unset"], json!("x"));
    }

    #[test]
    fn invalid_overrides_are_refused_with_the_field() {
        let cases = [
            (json!({ "nope": 1 }), "inputParams.nope"),
            (json!({ "region": 5 }), "inputParams.region"),
            (json!({ "region": null }), "inputParams.region"),
            (json!({ "limit": "10" }), "inputParams.limit"),
            (json!({ "active": "true" }), "inputParams.active"),
            (json!({ "active": 1 }), "inputParams.active"),
            (json!({ "day": "2023-02-30" }), "inputParams.day"),
            (json!({ "day": "2023-2-3" }), "inputParams.day"),
            (json!({ "day": "2023-02-03T00:00:00Z" }), "inputParams.day"),
            (json!({ "day": 20230203 }), "inputParams.day"),
            (json!({ "size": "L" }), "inputParams.size"),
            (json!({ "size": "3" }), "inputParams.size"),
        ];
        for (overrides, field) in cases {
            let o = map(overrides.clone());
            let err = resolve_inputs(&defs(), Some(&o)).unwrap_err();
            assert_eq!(err.field, field, "{overrides}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn defaults_must_fit_their_type() {
        assert!(validate_input_defs(&defs()).is_ok());
        let cases = [
            (
                def("t", InputType::Text, json!(1), vec![]),
                "inputs[0].default",
            ),
            (
                def("n", InputType::Number, json!("1"), vec![]),
                "inputs[0].default",
            ),
            (
                def("b", InputType::Boolean, json!(0), vec![]),
                "inputs[0].default",
            ),
            (
                def("d", InputType::Date, json!("yesterday"), vec![]),
                "inputs[0].default",
            ),
            (
                def("s", InputType::Select, json!("x"), vec![json!("y")]),
                "inputs[0].default",
            ),
            (
                def("s", InputType::Select, Value::Null, vec![]),
                "inputs[0].options",
            ),
        ];
        for (d, field) in cases {
            let err = validate_input_defs(std::slice::from_ref(&d)).unwrap_err();
            assert_eq!(err.field, field, "{d:?}");
        }
    }
}

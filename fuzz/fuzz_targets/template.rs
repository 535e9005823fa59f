//! SQL templates from untrusted input: checking, listing variables and rendering never
//! panic (minijinja's fuel bounds loops), and a rendered statement never contains the
//! text of an input value: values only ever become bind parameters.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use scheduled_runs::domain::template::{self, CellView, TemplateContext};
use scheduled_runs::ports::Dialect;

/// An input value that cannot occur in SQL text unless a value was spliced into it.
const MARKER: &str = "zq'x\"MARKER";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = template::check_syntax(text);
    let _ = template::variables(text);
    let mut inputs = serde_json::Map::new();
    inputs.insert("region".into(), MARKER.into());
    inputs.insert("n".into(), 42.into());
    inputs.insert("list".into(), serde_json::json!([MARKER, 1, true]));
    let mut ctx = TemplateContext::new(&inputs, true, "scheduled");
    ctx.add_cell(
        "orders".to_owned(),
        Arc::new(CellView {
            columns: vec!["name".into()],
            rows: vec![vec![MARKER.into()]].into(),
            row_count: 1,
        }),
    );
    // The executor renders a planned version's templates compiled; they must render as a
    // one-off render does.
    let compiled = template::check_constructs(text)
        .is_ok()
        .then(|| template::CompiledTemplates::new(vec![("cell".into(), text.to_owned())]));
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let rendered = template::render_sql(text, &ctx, dialect);
        if let Some(again) = compiled
            .as_ref()
            .and_then(|c| c.render("cell", &ctx, dialect))
        {
            assert_eq!(again, rendered, "a compiled template rendered otherwise");
        }
        if let Ok(bound) = rendered
            && !text.contains("MARKER")
        {
            assert!(
                !bound.sql.contains("MARKER"),
                "an input value reached the SQL text: {:?}",
                bound.sql
            );
        }
    }
});

//! SQL templates from untrusted input: checking, listing variables and rendering never
//! panic (minijinja's fuel bounds loops), and a rendered statement never contains the
//! text of an input value: values only ever become bind parameters.
#![no_main]

use std::collections::HashMap;
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
    let mut cells = HashMap::new();
    cells.insert(
        "orders".to_owned(),
        Arc::new(CellView {
            columns: vec!["name".into()],
            rows: vec![vec![MARKER.into()]].into(),
            row_count: 1,
        }),
    );
    let ctx = TemplateContext {
        inputs: &inputs,
        hex_scheduled: true,
        hex_run_context: "scheduled",
        cells: &cells,
    };
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        if let Ok(bound) = template::render_sql(text, &ctx, dialect)
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

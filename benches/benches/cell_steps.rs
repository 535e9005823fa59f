//! The CPU steps the engine takes for every cell of every run, cache hit or not, apart from
//! the store and the warehouse (requirement 7; `engine` measures them in place, where they
//! are a few microseconds beside hundreds of the run's writes and not resolvable):
//!
//! * `plan`: `cells::execution_plan` of a published chain of 5 cells (each template parsed
//!   for the cells it reads), and `plan, cached`: what a run of a version planned before
//!   pays (`PlanCache::plan`);
//! * `render`: `template::render_sql` of one cell of that chain (constructs check, parse,
//!   render with its input and the upstream cell's `rowCount`, binds), and `render, checked
//!   at planning`: the same without the constructs check (`template::render_checked_sql`),
//!   and `render, compiled at planning`: the cell's template compiled once with its
//!   version's plan (`Plan::templates`), as the executor renders the cells of a version it
//!   planned;
//! * `cache_key`: `template::cache_key` of the rendered statement.
//!
//! `cargo bench -p scheduled-runs-benches --bench cell_steps`

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use scheduled_runs::domain::cells;
use scheduled_runs::domain::model::{
    AppDef, Cell, CellType, InputDef, InputType, ProjectVersion, VersionBody,
};
use scheduled_runs::domain::template::{self, CellView, TemplateContext};
use scheduled_runs::ports::sql::Dialect;
use scheduled_runs::services::executor::PlanCache;

const CELLS: usize = 5;

/// The `engine` bench's `cheap` chain.
fn chain() -> VersionBody {
    let cells = (0..CELLS)
        .map(|i| Cell {
            id: format!("c{i}"),
            cell_type: CellType::Sql,
            connection: "warehouse".into(),
            sql: if i == 0 {
                "SELECT id, k, v, label FROM events WHERE id <= {{ rows }} ORDER BY id".into()
            } else {
                format!(
                    "SELECT id, k, v, label FROM events WHERE id <= {{{{ rows }}}} \
                     AND {{{{ cells.c{}.rowCount }}}} >= 0 ORDER BY id",
                    i - 1
                )
            },
        })
        .collect::<Vec<_>>();
    VersionBody {
        inputs: vec![InputDef {
            name: "rows".into(),
            input_type: InputType::Number,
            default: serde_json::json!(10),
            options: Vec::new(),
        }],
        app: AppDef {
            cells: vec![format!("c{}", CELLS - 1)],
        },
        cells,
    }
}

fn steps(c: &mut Criterion) {
    let body = chain();
    c.bench_function("plan (5 cells)", |b| {
        b.iter(|| cells::execution_plan(black_box(&body)).expect("a plan"))
    });
    let version = ProjectVersion {
        project_id: "p".into(),
        version: 1,
        body: body.clone(),
        published_at: Utc::now(),
        published_by: "u".into(),
    };
    let plans = PlanCache::default();
    c.bench_function("plan, cached (5 cells)", |b| {
        b.iter(|| plans.plan("w", black_box(&version)).expect("a plan"))
    });

    let mut inputs = serde_json::Map::new();
    inputs.insert("rows".into(), serde_json::json!(100));
    let mut ctx = TemplateContext::new(&inputs, true, "scheduled");
    ctx.add_cell(
        "c0".to_owned(),
        Arc::new(CellView {
            columns: vec!["id".into()],
            rows: vec![vec![serde_json::json!(1)]].into(),
            row_count: 100,
        }),
    );
    let sql = &body.cells[1].sql;
    c.bench_function("render (1 cell)", |b| {
        b.iter(|| template::render_sql(black_box(sql), &ctx, Dialect::Sqlite).expect("renders"))
    });

    c.bench_function("render, checked at planning (1 cell)", |b| {
        b.iter(|| {
            template::render_checked_sql(black_box(sql), &ctx, Dialect::Sqlite).expect("renders")
        })
    });

    let plan = plans.plan("w", &version).expect("a plan");
    c.bench_function("render, compiled at planning (1 cell)", |b| {
        b.iter(|| {
            plan.templates
                .render(black_box("c1"), &ctx, Dialect::Sqlite)
                .expect("compiled")
                .expect("renders")
        })
    });

    let bound = template::render_sql(sql, &ctx, Dialect::Sqlite).expect("renders");
    c.bench_function("cache_key (1 cell)", |b| {
        b.iter(|| template::cache_key("warehouse", black_box(&bound)))
    });
}

criterion_group!(benches, steps);
criterion_main!(benches);

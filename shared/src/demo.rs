//! The demo data `scheduled-runs serve` starts with: a workspace on plan TEAM, a small
//! SQLite warehouse of orders, a `warehouse` connection to it, and a published project whose
//! app shows three dependent SQL cells and one input.

use std::path::Path;

use chrono::{Duration, NaiveDate};

use crate::domain::model::{
    AppDef, Caller, Cell, CellType, ConnectionConfig, InputDef, InputType, Plan, VersionBody,
    WorkspaceRole,
};
use crate::http::AppState;
use crate::ports::PortError;
use crate::services::ServiceError;

pub const DEMO_WORKSPACE: &str = "demo";
pub const DEMO_ADMIN: &str = "demo-admin";
/// The demo warehouse file, relative to the warehouse directory.
pub const DEMO_WAREHOUSE: &str = "demo.db";

pub struct DemoSeed {
    pub admin: Caller,
    /// Set when the demo project was created by this call.
    pub project_id: Option<String>,
}

pub fn demo_admin() -> Caller {
    Caller {
        user_id: DEMO_ADMIN.to_owned(),
        workspace_id: DEMO_WORKSPACE.to_owned(),
        workspace_role: WorkspaceRole::Admin,
        email: Some("demo-admin@example.com".to_owned()),
    }
}

/// Creates the demo workspace, warehouse, connection and published project, unless the
/// workspace exists already.
pub async fn seed(state: &AppState, warehouse_dir: &Path) -> Result<DemoSeed, ServiceError> {
    let admin = demo_admin();
    match state.workspaces.create(DEMO_WORKSPACE, Plan::Team).await {
        Ok(_) => {}
        Err(ServiceError::Conflict { .. }) => {
            return Ok(DemoSeed {
                admin,
                project_id: None,
            });
        }
        Err(e) => return Err(e),
    }
    write_warehouse(&warehouse_dir.join(DEMO_WAREHOUSE)).map_err(ServiceError::Backend)?;
    state
        .connections
        .put(
            &admin,
            "warehouse",
            &ConnectionConfig::Sqlite {
                path: DEMO_WAREHOUSE.to_owned(),
            },
        )
        .await?;
    let project = state
        .projects
        .create(
            &admin,
            "Daily sales",
            Some("Demo app: revenue by region from the demo warehouse".to_owned()),
        )
        .await?;
    let id = project.project.project_id;
    state.projects.put_draft(&admin, &id, &version()).await?;
    state.projects.publish(&admin, &id).await?;
    Ok(DemoSeed {
        admin,
        project_id: Some(id),
    })
}

/// The demo app: a region input, and three SQL cells that build on each other.
pub fn version() -> VersionBody {
    let cell = |id: &str, sql: &str| Cell {
        id: id.to_owned(),
        cell_type: CellType::Sql,
        connection: "warehouse".to_owned(),
        sql: sql.to_owned(),
    };
    VersionBody {
        inputs: vec![InputDef {
            name: "region".to_owned(),
            input_type: InputType::Select,
            default: serde_json::Value::String("EMEA".to_owned()),
            options: vec!["EMEA".into(), "AMER".into(), "APAC".into()],
        }],
        cells: vec![
            cell(
                "orders",
                "SELECT order_id, region, amount, ordered_at FROM orders WHERE region = {{ region }} ORDER BY order_id",
            ),
            cell(
                "daily_revenue",
                "SELECT date(ordered_at) AS day, SUM(amount) AS revenue, COUNT(*) AS orders FROM orders \
                 WHERE region = {{ region }} GROUP BY day ORDER BY day",
            ),
            cell(
                "summary",
                "SELECT {{ cells.orders.rowCount }} AS orders, {{ cells.daily_revenue.rowCount }} AS days, \
                 ROUND({% if cells.orders.rowCount > 0 %}(SELECT SUM(amount) FROM orders WHERE region = {{ region }}){% else %}0{% endif %}, 2) AS revenue",
            ),
        ],
        app: AppDef {
            cells: vec!["daily_revenue".to_owned(), "summary".to_owned()],
        },
    }
}

/// Writes the demo warehouse: 90 days of orders in three regions. Deterministic, so demo
/// numbers are the same on every machine.
pub fn write_warehouse(path: &Path) -> Result<(), PortError> {
    let fail = |e: &dyn std::fmt::Display| PortError::fatal(format!("demo warehouse: {e}"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let mut conn = rusqlite::Connection::open(path).map_err(|e| fail(&e))?;
    let tx = conn.transaction().map_err(|e| fail(&e))?;
    tx.execute_batch(
        "DROP TABLE IF EXISTS orders;
         CREATE TABLE orders (order_id INTEGER PRIMARY KEY, region TEXT NOT NULL,
                              amount REAL NOT NULL, ordered_at TEXT NOT NULL);",
    )
    .map_err(|e| fail(&e))?;
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let regions = ["EMEA", "AMER", "APAC"];
    let mut id = 0i64;
    for day in 0..90i64 {
        let date = start + Duration::days(day);
        for (r, region) in regions.iter().enumerate() {
            for n in 0..((day + r as i64) % 4 + 1) {
                id += 1;
                let amount = ((id * 37 + n * 11) % 500) as f64 + 0.99;
                tx.execute(
                    "INSERT INTO orders (order_id, region, amount, ordered_at) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![id, region, amount, format!("{date}T{:02}:00:00Z", 8 + n)],
                )
                .map_err(|e| fail(&e))?;
            }
        }
    }
    tx.commit().map_err(|e| fail(&e))
}

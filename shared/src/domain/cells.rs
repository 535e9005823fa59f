//! The cells of a version as a graph: which upstream results each SQL template reads
//! (`cells.<id>` references create the edges), the order a run executes them in, and the
//! structural checks a version must pass before it may be published.
//!
//! References are found statically in the template (minijinja's undeclared variables with
//! dotted paths). Only the attribute form `cells.<id>…` is understood: subscripts such as
//! `cells["x"]`, loops over `cells` or aliasing it (`{% set c = cells %}`) would hide the
//! dependency edge, so publishing refuses any use of `cells` that is not `cells.<id>`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use crate::domain::inputs::validate_input_defs;
use crate::domain::model::{Cell, VersionBody};
use crate::domain::template::{self, CONTEXT_NAMES, TemplateError};

/// Why a version cannot be published or planned; `field` points into the version body
/// (`cells[2].sql`, `app.cells[0]`, `inputs[1].name`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct VersionError {
    pub field: String,
    pub message: String,
}

impl VersionError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        VersionError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Names an input may not take: the context's own names and names Jinja gives a meaning
/// to (literals, loop and macro helpers), which would make the input unreachable.
const RESERVED_NAMES: [&str; 13] = [
    "cells",
    "hex_scheduled",
    "hex_run_context",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
    "true",
    "false",
    "none",
    "namespace",
];

/// The ids of the upstream cells `cell`'s template reads (`cells.<id>…`).
pub fn references(cell: &Cell) -> Result<BTreeSet<String>, TemplateError> {
    let mut refs = BTreeSet::new();
    for path in template::variables(&cell.sql)? {
        let mut parts = path.split('.');
        if parts.next() != Some("cells") {
            continue;
        }
        match parts.next() {
            Some(id) => {
                refs.insert(id.to_owned());
            }
            None => {
                return Err(TemplateError::Unsupported(
                    "refer to upstream results as cells.<id> (e.g. cells.orders.rows); \
                     subscripting, looping over or aliasing `cells` is not supported"
                        .into(),
                ));
            }
        }
    }
    Ok(refs)
}

/// The cells a run executes, in order: the app's cells plus everything they depend on,
/// each after all of its dependencies, and nothing else. Among cells that are ready at the
/// same time the one declared first goes first, so the plan is deterministic.
pub fn execution_plan(body: &VersionBody) -> Result<Vec<String>, VersionError> {
    let graph = Graph::build(body)?;
    // The closure of the app's cells over "depends on".
    let mut needed = vec![false; body.cells.len()];
    let mut stack = Vec::new();
    for (i, id) in body.app.cells.iter().enumerate() {
        let Some(&idx) = graph.index.get(id.as_str()) else {
            return Err(VersionError::new(
                format!("app.cells[{i}]"),
                format!("the app shows unknown cell {id:?}"),
            ));
        };
        stack.push(idx);
    }
    while let Some(idx) = stack.pop() {
        if std::mem::replace(&mut needed[idx], true) {
            continue;
        }
        stack.extend(graph.deps[idx].iter().copied());
    }
    graph.topological_order(&needed, body)
}

/// Checks a version before it is published: identifiers and duplicates, input defaults
/// that fit their types, app cells that exist, connections that exist (`connection_exists`
/// answers for a name), templates that parse and read only known variables and cells, and
/// no dependency cycles.
pub fn validate_version(
    body: &VersionBody,
    connection_exists: &dyn Fn(&str) -> bool,
) -> Result<(), VersionError> {
    let mut input_names = HashSet::new();
    for (i, input) in body.inputs.iter().enumerate() {
        let field = format!("inputs[{i}].name");
        if !is_identifier(&input.name) {
            return Err(VersionError::new(
                field,
                "input names must be identifiers (letters, digits, _; not starting with a digit)",
            ));
        }
        if RESERVED_NAMES.contains(&input.name.as_str()) {
            return Err(VersionError::new(
                field,
                format!("{:?} is reserved and cannot name an input", input.name),
            ));
        }
        if !input_names.insert(input.name.as_str()) {
            return Err(VersionError::new(
                field,
                format!("duplicate input name {:?}", input.name),
            ));
        }
    }
    validate_input_defs(&body.inputs).map_err(|e| VersionError::new(e.field, e.message))?;

    let mut cell_ids = HashSet::new();
    for (i, cell) in body.cells.iter().enumerate() {
        if !is_identifier(&cell.id) {
            return Err(VersionError::new(
                format!("cells[{i}].id"),
                "cell ids must be identifiers (letters, digits, _; not starting with a digit)",
            ));
        }
        if !cell_ids.insert(cell.id.as_str()) {
            return Err(VersionError::new(
                format!("cells[{i}].id"),
                format!("duplicate cell id {:?}", cell.id),
            ));
        }
    }
    for (i, id) in body.app.cells.iter().enumerate() {
        if !cell_ids.contains(id.as_str()) {
            return Err(VersionError::new(
                format!("app.cells[{i}]"),
                format!("the app shows unknown cell {id:?}"),
            ));
        }
    }

    let globals = template::global_names();
    for (i, cell) in body.cells.iter().enumerate() {
        if cell.connection.is_empty() || !connection_exists(&cell.connection) {
            return Err(VersionError::new(
                format!("cells[{i}].connection"),
                format!(
                    "the workspace has no data connection named {:?}",
                    cell.connection
                ),
            ));
        }
        let field = format!("cells[{i}].sql");
        template::check_constructs(&cell.sql)
            .map_err(|e| VersionError::new(&field, e.to_string()))?;
        let variables =
            template::variables(&cell.sql).map_err(|e| VersionError::new(&field, e.to_string()))?;
        for path in &variables {
            let root = path.split('.').next().unwrap_or_default();
            let known = input_names.contains(root)
                || CONTEXT_NAMES.contains(&root)
                || globals.contains(root);
            if !known {
                return Err(VersionError::new(
                    &field,
                    format!(
                        "unknown variable {root:?}: not an input, hex_scheduled, \
                         hex_run_context or cells.<id>"
                    ),
                ));
            }
        }
        let refs = references(cell).map_err(|e| VersionError::new(&field, e.to_string()))?;
        for id in refs {
            if !cell_ids.contains(id.as_str()) {
                return Err(VersionError::new(
                    &field,
                    format!("the template refers to unknown cell cells.{id}"),
                ));
            }
        }
    }

    // Every cell is checked for cycles, not only those the app shows: a cycle is a broken
    // version even where no run would reach it today.
    let graph = Graph::build(body)?;
    graph.topological_order(&vec![true; body.cells.len()], body)?;
    Ok(())
}

/// The dependency graph by declaration index.
struct Graph<'a> {
    index: HashMap<&'a str, usize>,
    /// `deps[i]`: the cells cell `i` reads, sorted.
    deps: Vec<Vec<usize>>,
}

impl<'a> Graph<'a> {
    fn build(body: &'a VersionBody) -> Result<Self, VersionError> {
        let mut index = HashMap::new();
        for (i, cell) in body.cells.iter().enumerate() {
            if index.insert(cell.id.as_str(), i).is_some() {
                return Err(VersionError::new(
                    format!("cells[{i}].id"),
                    format!("duplicate cell id {:?}", cell.id),
                ));
            }
        }
        let mut deps = Vec::with_capacity(body.cells.len());
        for (i, cell) in body.cells.iter().enumerate() {
            let field = format!("cells[{i}].sql");
            let refs = references(cell).map_err(|e| VersionError::new(&field, e.to_string()))?;
            let mut mine = Vec::with_capacity(refs.len());
            for id in refs {
                match index.get(id.as_str()) {
                    Some(&d) => mine.push(d),
                    None => {
                        return Err(VersionError::new(
                            &field,
                            format!("the template refers to unknown cell cells.{id}"),
                        ));
                    }
                }
            }
            mine.sort_unstable();
            deps.push(mine);
        }
        Ok(Graph { index, deps })
    }

    /// Kahn's algorithm over the cells marked in `include` (a set closed under
    /// dependencies), smallest declaration index first among ready cells.
    fn topological_order(
        &self,
        include: &[bool],
        body: &VersionBody,
    ) -> Result<Vec<String>, VersionError> {
        let n = self.deps.len();
        let mut waiting = vec![0usize; n];
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in (0..n).filter(|&i| include[i]) {
            waiting[i] = self.deps[i].len();
            for &d in &self.deps[i] {
                dependants[d].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
            .filter(|&i| include[i] && waiting[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::new();
        while let Some(Reverse(i)) = ready.pop() {
            order.push(body.cells[i].id.clone());
            for &j in &dependants[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.push(Reverse(j));
                }
            }
        }
        let planned = include.iter().filter(|&&x| x).count();
        if order.len() == planned {
            return Ok(order);
        }
        // Whatever is still waiting sits on or behind a cycle; walk dependencies among
        // those until one repeats to name the cycle itself.
        let stuck: Vec<usize> = (0..n).filter(|&i| include[i] && waiting[i] > 0).collect();
        let cycle = self.find_cycle(&stuck, &waiting);
        let names: Vec<&str> = cycle.iter().map(|&i| body.cells[i].id.as_str()).collect();
        let first = cycle.first().copied().unwrap_or(0);
        Err(VersionError::new(
            format!("cells[{first}].sql"),
            format!("the cells form a dependency cycle: {}", names.join(" → ")),
        ))
    }

    /// A cycle among the `stuck` cells, as a path that ends where it starts.
    fn find_cycle(&self, stuck: &[usize], waiting: &[usize]) -> Vec<usize> {
        let Some(&start) = stuck.first() else {
            return Vec::new();
        };
        // Every stuck cell has at least one stuck dependency, so this walk never ends
        // on its own; it must revisit a cell within `stuck.len()` steps.
        let mut path = vec![start];
        let mut seen: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut at = start;
        loop {
            let Some(&next) = self.deps[at].iter().find(|&&d| waiting[d] > 0) else {
                return path;
            };
            if let Some(&pos) = seen.get(&next) {
                let mut cycle = path.split_off(pos);
                cycle.push(next);
                return cycle;
            }
            seen.insert(next, path.len());
            path.push(next);
            at = next;
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{AppDef, CellType, InputDef, InputType};
    use proptest::prelude::*;
    use serde_json::json;

    fn cell(id: &str, sql: &str) -> Cell {
        Cell {
            id: id.into(),
            cell_type: CellType::Sql,
            connection: "wh".into(),
            sql: sql.into(),
        }
    }

    fn body(cells: Vec<Cell>, app: &[&str]) -> VersionBody {
        VersionBody {
            inputs: vec![InputDef {
                name: "region".into(),
                input_type: InputType::Text,
                default: json!("EU"),
                options: vec![],
            }],
            cells,
            app: AppDef {
                cells: app.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn known(name: &str) -> bool {
        name == "wh"
    }

    #[test]
    fn references_are_found() {
        let c = cell(
            "c",
            "SELECT {{ cells.a.value }} {% for r in cells.b.rows %}{{ r.x }}{% endfor %} \
             {% if cells.a.rowCount > 0 %}{{ region }}{% endif %}",
        );
        let refs = references(&c).unwrap();
        assert_eq!(refs, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(references(&cell("x", "SELECT 1")).unwrap().is_empty());
    }

    #[test]
    fn subscripted_cells_are_unsupported() {
        for sql in [
            "SELECT {{ cells['a'].value }}",
            "{% set c = cells %}{{ c.a.value }}",
            "{% for k in cells %}{{ k }}{% endfor %}",
        ] {
            assert!(
                matches!(
                    references(&cell("x", sql)),
                    Err(TemplateError::Unsupported(_))
                ),
                "{sql}"
            );
        }
    }

    #[test]
    fn captured_blocks_are_refused_at_publish() {
        for sql in [
            "SELECT {% set q %}{{ region }}{% endset %}{{ q }}",
            "SELECT {% filter upper %}{{ region }}{% endfilter %}",
        ] {
            let b = body(vec![cell("a", sql)], &["a"]);
            let err = validate_version(&b, &known).unwrap_err();
            assert_eq!(err.field, "cells[0].sql", "{sql}");
            assert!(err.message.contains("captures SQL text"), "{sql}: {err}");
        }
    }

    #[test]
    fn plan_is_the_closure_in_dependency_order() {
        let b = body(
            vec![
                cell(
                    "report",
                    "SELECT {{ cells.totals.value }}, {{ cells.names.value }}",
                ),
                cell("unused", "SELECT {{ cells.raw.value }}"),
                cell("names", "SELECT 'n'"),
                cell("totals", "SELECT {{ cells.raw.rowCount }}"),
                cell("raw", "SELECT 1"),
                cell("other", "SELECT 2"),
            ],
            &["report"],
        );
        assert_eq!(
            execution_plan(&b).unwrap(),
            vec!["names", "raw", "totals", "report"]
        );
        let b2 = body(b.cells.clone(), &["other", "report", "other"]);
        assert_eq!(
            execution_plan(&b2).unwrap(),
            vec!["names", "raw", "totals", "report", "other"]
        );
        let empty = body(b.cells, &[]);
        assert!(execution_plan(&empty).unwrap().is_empty());
    }

    #[test]
    fn plan_refuses_unknown_app_cells_and_cycles() {
        let b = body(vec![cell("a", "SELECT 1")], &["zzz"]);
        assert_eq!(execution_plan(&b).unwrap_err().field, "app.cells[0]");
        let cyc = body(
            vec![
                cell("a", "SELECT {{ cells.b.value }}"),
                cell("b", "SELECT {{ cells.a.value }}"),
            ],
            &["a"],
        );
        let e = execution_plan(&cyc).unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");
    }

    #[test]
    fn validation_table() {
        let ok = body(
            vec![
                cell("a", "SELECT * FROM t WHERE r = {{ region }}"),
                cell(
                    "b",
                    "SELECT {{ cells.a.value }}, {{ hex_scheduled }}, {{ hex_run_context }}, \
                     {% for i in range(2) %}{{ i }}{% endfor %}",
                ),
            ],
            &["b"],
        );
        assert_eq!(validate_version(&ok, &known), Ok(()));

        let with = |f: &dyn Fn(&mut VersionBody)| {
            let mut b = ok.clone();
            f(&mut b);
            validate_version(&b, &known).unwrap_err()
        };
        let cases: Vec<(VersionError, &str, &str)> = vec![
            (
                with(&|b| b.inputs[0].name = "1x".into()),
                "inputs[0].name",
                "identifier",
            ),
            (
                with(&|b| b.inputs[0].name = "cells".into()),
                "inputs[0].name",
                "reserved",
            ),
            (
                with(&|b| b.inputs.push(b.inputs[0].clone())),
                "inputs[1].name",
                "duplicate",
            ),
            (
                with(&|b| b.inputs[0].default = json!(5)),
                "inputs[0].default",
                "TEXT",
            ),
            (
                with(&|b| b.cells[1].id = "a".into()),
                "cells[1].id",
                "duplicate",
            ),
            (
                with(&|b| b.cells[1].id = "b-c".into()),
                "cells[1].id",
                "identifier",
            ),
            (
                with(&|b| b.app.cells.push("nope".into())),
                "app.cells[1]",
                "unknown cell",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ x ".into()),
                "cells[0].sql",
                "syntax",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ cells.ghost.value }}".into()),
                "cells[0].sql",
                "unknown cell cells.ghost",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ typo }}".into()),
                "cells[0].sql",
                "unknown variable \"typo\"",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ cells['b'].value }}".into()),
                "cells[0].sql",
                "cells.<id>",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ cells.a.value }}".into()),
                "cells[0].sql",
                "a → a",
            ),
            (
                with(&|b| b.cells[0].sql = "SELECT {{ cells.b.value }}".into()),
                "cells[0].sql",
                "cycle: a → b → a",
            ),
            (
                with(&|b| b.cells[1].connection = "missing".into()),
                "cells[1].connection",
                "missing",
            ),
        ];
        for (err, field, needle) in cases {
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn cycles_outside_the_app_are_refused_too() {
        let b = body(
            vec![
                cell("shown", "SELECT 1"),
                cell("x", "SELECT {{ cells.y.value }}"),
                cell("y", "SELECT {{ cells.z.value }}"),
                cell("z", "SELECT {{ cells.x.value }}"),
            ],
            &["shown"],
        );
        let e = validate_version(&b, &known).unwrap_err();
        assert!(e.message.contains("x → y → z → x"), "{e}");
        // A run of the app alone is still plannable.
        assert_eq!(execution_plan(&b).unwrap(), vec!["shown"]);
    }

    /// A random DAG: cell `i` may depend only on cells with a smaller *rank*; ranks are a
    /// random permutation of declaration order, so dependencies point both ways in the
    /// declaration list.
    fn dag() -> impl Strategy<Value = (Vec<usize>, Vec<Vec<bool>>, Vec<bool>)> {
        (1usize..14).prop_flat_map(|n| {
            (
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n),
                proptest::collection::vec(any::<bool>(), n),
            )
        })
    }

    proptest! {
        #[test]
        fn random_dags_plan_dependencies_first((rank, edges, shown) in dag()) {
            let n = rank.len();
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| (0..n).filter(|&j| edges[i][j] && rank[j] < rank[i]).collect())
                .collect();
            let cells: Vec<Cell> = (0..n)
                .map(|i| {
                    let refs: Vec<String> =
                        deps[i].iter().map(|j| format!("{{{{ cells.c{j}.value }}}}")).collect();
                    cell(&format!("c{i}"), &format!("SELECT 1 {}", refs.join(" ")))
                })
                .collect();
            let app: Vec<String> = (0..n).filter(|&i| shown[i]).map(|i| format!("c{i}")).collect();
            let app_refs: Vec<&str> = app.iter().map(String::as_str).collect();
            let b = body(cells, &app_refs);
            prop_assert_eq!(validate_version(&b, &known), Ok(()));
            let plan = execution_plan(&b).unwrap();

            // Exactly the closure, once each.
            let mut closure = BTreeSet::new();
            let mut stack: Vec<usize> = (0..n).filter(|&i| shown[i]).collect();
            while let Some(i) = stack.pop() {
                if closure.insert(i) {
                    stack.extend(deps[i].iter().copied());
                }
            }
            let planned: BTreeSet<usize> =
                plan.iter().map(|id| id[1..].parse::<usize>().unwrap()).collect();
            prop_assert_eq!(planned.len(), plan.len());
            prop_assert_eq!(&planned, &closure);

            // Every dependency before its dependants.
            let pos: HashMap<&str, usize> =
                plan.iter().enumerate().map(|(p, id)| (id.as_str(), p)).collect();
            for &i in &closure {
                for &d in &deps[i] {
                    let (dep, cell) = (format!("c{}", d), format!("c{}", i));
                    prop_assert!(pos[dep.as_str()] < pos[cell.as_str()], "{} before {}", dep, cell);
                }
            }
            // Deterministic.
            prop_assert_eq!(execution_plan(&b).unwrap(), plan);
        }
    }
}

//! SQL cells are Jinja templates (minijinja). Rendering turns one into SQL text with
//! numbered placeholders plus the values bound to them: **every value printed with
//! `{{ … }}` becomes a bind parameter**, never SQL text, so no input, upstream result or
//! filter output (`|safe` included) can change the statement's structure. Only the
//! template's own literal text and its control flow (`{% if %}`, `{% for %}`, …) shape
//! the SQL.
//!
//! Variables a template sees:
//! * every input of the run, by name;
//! * `hex_scheduled` (bool) and `hex_run_context` (string);
//! * `cells.<id>` for upstream results: `.columns` (names), `.rows` (a list of objects keyed
//!   by column name — with duplicate column names the last one wins), `.rowCount` (the full
//!   count, even past the stored rows) and `.value` (first column of the first row, or none).
//!
//! Decisions:
//! * Undefined variables are errors (strict undefined), never silently empty. The one
//!   exception is Jinja's own: `{{ x if cond }}` with a false `cond` prints nothing (and
//!   binds nothing).
//! * Values map to binds as none→`Null`, bool→`Bool`, integers→`Int` (outside `i64` is an
//!   error), floats→`Float`, strings→`Text`. Lists, maps and bytes are refused with an
//!   error, because no single bind can carry them and `IN ({{ ids }})` splicing is exactly
//!   what binds must prevent: print the items one by one in a `{% for %}` loop instead.
//! * Constructs that capture rendered output as a string (`{% set x %}…{% endset %}` and
//!   `{% filter … %}…{% endfilter %}` blocks) are refused, at publish and at render: what
//!   they capture is SQL text with placeholders, so a value printed inside would reach the
//!   database as its placeholder's text (a wrong answer, silently). `{% set x = … %}` and
//!   filters on values (`{{ x | upper }}`) do the same jobs and bind the value. Macros are
//!   not compiled into the engine at all (a syntax error).
//! * A hostile template cannot hang or exhaust the executor: rendering is bounded by
//!   minijinja fuel (instructions), a recursion limit, a cap on the rendered SQL's size and
//!   on the number of binds, and the template source itself is capped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use minijinja::value::{Enumerator, Object, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use sha2::{Digest, Sha256};

use super::model::Rows;
use crate::ports::sql::{BoundSql, Dialect, SqlValue};

/// The largest template source accepted (the API caps request bodies at 256 KiB anyway).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// The largest SQL text a render may produce.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;
/// The most bind parameters one statement may carry (SQLite's default ceiling).
pub const MAX_BINDS: usize = 32_766;
/// Instructions one render may execute: ample for loops over an upstream cell's 1,000 rows,
/// small enough that `{% for i in range(100000) %}{% for j in range(100000) %}` stops fast.
const FUEL: u64 = 2_000_000;
/// Nesting depth of macro calls and similar.
const RECURSION_LIMIT: usize = 64;
/// The name errors point at (`… (in sql:3)`).
const TEMPLATE_NAME: &str = "sql";

/// The names every template sees besides the inputs; inputs may not take them.
pub const CONTEXT_NAMES: [&str; 3] = ["cells", "hex_scheduled", "hex_run_context"];

/// An upstream cell's result as the executor hands it to downstream templates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellView {
    pub columns: Vec<String>,
    /// The stored rows (at most the run's row cap), each in column order.
    pub rows: Rows,
    /// The full row count, which may exceed `rows.len()`.
    pub row_count: u64,
}

/// Everything a run's templates may read: its inputs and run context, turned into
/// template values once per run, and the results of the cells that already ran, added as
/// each ends. Every render of the run shares it instead of assembling its variables again
/// (BENCHMARKS.md §7); a cell's `.rows` are turned into values at most once per run.
#[derive(Clone, Debug)]
pub struct TemplateContext {
    root: Arc<Root>,
}

/// The root of a render's variables.
#[derive(Clone, Debug)]
struct Root {
    /// The run's resolved input values, by input name.
    inputs: BTreeMap<String, Value>,
    hex_scheduled: Value,
    /// `scheduled`, `api-triggered`, `app` or `logic`.
    hex_run_context: Value,
    /// Results of the cells that already ran, by cell id.
    cells: Arc<Cells>,
}

#[derive(Clone, Debug, Default)]
struct Cells(BTreeMap<String, Value>);

impl TemplateContext {
    pub fn new(
        inputs: &serde_json::Map<String, serde_json::Value>,
        hex_scheduled: bool,
        hex_run_context: &str,
    ) -> Self {
        let root = Root {
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
                .collect(),
            hex_scheduled: Value::from(hex_scheduled),
            hex_run_context: Value::from(hex_run_context),
            cells: Arc::default(),
        };
        TemplateContext {
            root: Arc::new(root),
        }
    }

    /// Makes the result of cell `id` visible as `cells.<id>`.
    pub fn add_cell(&mut self, id: String, view: Arc<CellView>) {
        // No render holds the context between two renders, so neither is copied.
        let root = Arc::make_mut(&mut self.root);
        Arc::make_mut(&mut root.cells)
            .0
            .insert(id, cell_value(view));
    }

    fn has_input(&self, name: &str) -> bool {
        self.root.inputs.contains_key(name)
    }

    fn has_cell(&self, id: &str) -> bool {
        self.root.cells.0.contains_key(id)
    }
}

/// The fixed names come first, so that they win should an input ever share one
/// (publishing refuses such inputs anyway).
impl Object for Root {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "hex_scheduled" => Some(self.hex_scheduled.clone()),
            "hex_run_context" => Some(self.hex_run_context.clone()),
            "cells" => Some(Value::from_dyn_object(Arc::clone(&self.cells))),
            name => self.inputs.get(name).cloned(),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let fixed = CONTEXT_NAMES.iter().map(|name| Value::from(*name));
        let inputs = self
            .inputs
            .keys()
            .filter(|name| !CONTEXT_NAMES.contains(&name.as_str()))
            .map(|name| Value::from(name.as_str()));
        Enumerator::Values(fixed.chain(inputs).collect())
    }
}

impl Object for Cells {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|id| Value::from(id.as_str())).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("template syntax error: {0}")]
    Syntax(String),
    /// Rendering failed: an undefined variable, a value that cannot be bound, a failing
    /// filter, …
    #[error("template error: {0}")]
    Render(String),
    /// The template is too large, runs too long or produces too much.
    #[error("template limit exceeded: {0}")]
    Limit(String),
    /// The template uses a construct the engine deliberately does not support.
    #[error("{0}")]
    Unsupported(String),
}

/// The environment templates render in for `dialect`: every printed value becomes a bind
/// (`bind`), written as the dialect's placeholder.
fn environment<'s>(dialect: Dialect) -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // As in `parsing_environment`, which must parse the same way.
    env.set_keep_trailing_newline(true);
    env.set_formatter(move |out, state, value| bind(out, state, value, dialect));
    env
}

/// The name of the render's binds among its state's temps, which only Rust code can reach:
/// a template can neither read nor replace them.
const BINDS: &str = "scheduled-runs.binds";

/// The values a render has bound so far, in placeholder order.
#[derive(Debug, Default)]
struct Binds(Mutex<Vec<SqlValue>>);

impl Object for Binds {}

/// The formatter: prints `value` as the next placeholder and binds the value to it.
fn bind(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
    dialect: Dialect,
) -> Result<(), minijinja::Error> {
    // `{{ x if cond }}` with a false `cond` prints nothing and binds nothing.
    if value.is_undefined() {
        return Ok(());
    }
    let bound = to_sql_value(value)?;
    let binds = match state.get_temp(BINDS) {
        Some(binds) => binds,
        None => {
            let binds = Value::from_object(Binds::default());
            state.set_temp(BINDS, binds.clone());
            binds
        }
    };
    let binds = binds.downcast_object_ref::<Binds>().ok_or_else(|| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "the render's binds are lost")
    })?;
    let mut binds = binds.0.lock().unwrap_or_else(PoisonError::into_inner);
    if binds.len() >= MAX_BINDS {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("a statement may carry at most {MAX_BINDS} bind parameters"),
        ));
    }
    binds.push(bound);
    let n = binds.len();
    let written = match dialect {
        Dialect::Sqlite => write!(out, "?{n}"),
        Dialect::Postgres => write!(out, "${n}"),
    };
    written.map_err(|_| minijinja::Error::from(ErrorKind::WriteFailure))
}

/// The environment templates are checked in: the settings that shape parsing, and none of
/// the builtin filters, tests and globals, which only rendering needs. Those are most of
/// the engine's code, and the API function parses templates but never renders one, so
/// leaving them out of parsing keeps them out of its binary (BENCHMARKS.md, requirement 1).
fn parsing_environment<'s>() -> Environment<'s> {
    let mut env = Environment::empty();
    // SQL may legitimately end in a newline; keep the text exactly as written.
    env.set_keep_trailing_newline(true);
    env
}

fn check_size(template: &str) -> Result<(), TemplateError> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::Limit(format!(
            "the SQL template is larger than {MAX_TEMPLATE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks that `template` parses.
pub fn check_syntax(template: &str) -> Result<(), TemplateError> {
    check_size(template)?;
    let env = parsing_environment();
    env.template_from_named_str(TEMPLATE_NAME, template)
        .map(|_| ())
        .map_err(|e| TemplateError::Syntax(e.to_string()))
}

/// Checks that `template` uses no construct that captures rendered output (see the module
/// documentation): `{% set x %}…{% endset %}` and `{% filter … %}…{% endfilter %}`.
pub fn check_constructs(template: &str) -> Result<(), TemplateError> {
    use minijinja::machinery::{WhitespaceConfig, ast, parse};
    check_size(template)?;
    let whitespace = WhitespaceConfig {
        keep_trailing_newline: true,
        ..WhitespaceConfig::default()
    };
    let root = parse(template, TEMPLATE_NAME, Default::default(), whitespace)
        .map_err(|e| TemplateError::Syntax(e.to_string()))?;
    let mut pending = vec![&root];
    while let Some(stmt) = pending.pop() {
        let body: Vec<&[ast::Stmt<'_>]> = match stmt {
            ast::Stmt::SetBlock(block) => {
                return Err(captured(
                    "a {% set … %}…{% endset %} block",
                    block.span().start_line,
                    "assign with {% set name = … %} instead",
                ));
            }
            ast::Stmt::FilterBlock(block) => {
                return Err(captured(
                    "a {% filter … %}…{% endfilter %} block",
                    block.span().start_line,
                    "apply the filter to the value instead: {{ value | filter }}",
                ));
            }
            ast::Stmt::Template(t) => vec![&t.children],
            ast::Stmt::ForLoop(l) => vec![&l.body, &l.else_body],
            ast::Stmt::IfCond(c) => vec![&c.true_body, &c.false_body],
            ast::Stmt::WithBlock(w) => vec![&w.body],
            ast::Stmt::AutoEscape(a) => vec![&a.body],
            ast::Stmt::EmitExpr(_)
            | ast::Stmt::EmitRaw(_)
            | ast::Stmt::Set(_)
            | ast::Stmt::Do(_) => Vec::new(),
        };
        pending.extend(body.into_iter().flatten());
    }
    Ok(())
}

fn captured(what: &str, line: u16, instead: &str) -> TemplateError {
    TemplateError::Unsupported(format!(
        "{what} (line {line}) captures SQL text, so the values printed in it cannot be bound \
         as parameters; {instead}"
    ))
}

/// The variables `template` reads from its context, as dotted paths where the template
/// uses attribute syntax (`cells.orders.rows`, `region`), without the ones it assigns
/// itself (`{% set %}`, loop targets, macro arguments).
pub fn variables(template: &str) -> Result<BTreeSet<String>, TemplateError> {
    check_size(template)?;
    let env = parsing_environment();
    let tmpl = env
        .template_from_named_str(TEMPLATE_NAME, template)
        .map_err(|e| TemplateError::Syntax(e.to_string()))?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

/// The global functions every template may call: minijinja's builtins, listed here
/// rather than read from `environment()` so that checking a template does not need the
/// rendering environment (see `parsing_environment`); a test keeps the two in step.
const GLOBAL_NAMES: [&str; 4] = ["debug", "dict", "namespace", "range"];

/// The names of the global functions every template may call (`range`, `dict`, …).
pub fn global_names() -> BTreeSet<String> {
    GLOBAL_NAMES.iter().map(|name| (*name).to_owned()).collect()
}

/// Renders `template` into SQL for `dialect`, with every printed value turned into a bind
/// parameter (`?N` for SQLite, `$N` for PostgreSQL, numbered from 1 in print order).
pub fn render_sql(
    template: &str,
    ctx: &TemplateContext,
    dialect: Dialect,
) -> Result<BoundSql, TemplateError> {
    // Versions published before captured blocks were refused may still hold one.
    check_constructs(template)?;
    render_checked_sql(template, ctx, dialect)
}

/// [`render_sql`] of a template known to pass [`check_constructs`], parsed and compiled
/// for this render alone. The executor renders a planned version's templates with
/// [`CompiledTemplates`] instead, which checks them once and compiles them once.
pub fn render_checked_sql(
    template: &str,
    ctx: &TemplateContext,
    dialect: Dialect,
) -> Result<BoundSql, TemplateError> {
    let env = environment(dialect);
    let tmpl = env
        .template_from_named_str(TEMPLATE_NAME, template)
        .map_err(|e| TemplateError::Syntax(e.to_string()))?;
    render_template(&tmpl, ctx)
}

/// Renders a compiled template: its SQL text, and the values bound to its placeholders.
fn render_template(
    tmpl: &minijinja::Template<'_, '_>,
    ctx: &TemplateContext,
) -> Result<BoundSql, TemplateError> {
    let root = Value::from_dyn_object(Arc::clone(&ctx.root));
    let mut out = CappedWriter::default();
    let rendered = tmpl.render_captured_to(&root, &mut out);
    let captured = rendered.map_err(|e| render_error(&e, &out, tmpl.source(), ctx))?;
    let sql = String::from_utf8(out.buf)
        .map_err(|_| TemplateError::Render("the rendered SQL is not valid UTF-8".into()))?;
    let binds = captured
        .state()
        .get_temp(BINDS)
        .and_then(|binds| {
            binds.downcast_object_ref::<Binds>().map(|binds| {
                std::mem::take(&mut *binds.0.lock().unwrap_or_else(PoisonError::into_inner))
            })
        })
        .unwrap_or_default();
    Ok(BoundSql { sql, binds })
}

/// The templates of a published version's cells, each compiled once for each dialect it
/// is rendered in, instead of parsed and compiled again at every render, which was most of
/// a render's cost (BENCHMARKS.md §7). A version never changes, so neither do they.
pub struct CompiledTemplates {
    /// (cell id, template) of the templates that passed `check_constructs`.
    sources: Vec<(String, String)>,
    sqlite: OnceLock<Environment<'static>>,
    postgres: OnceLock<Environment<'static>>,
}

impl CompiledTemplates {
    /// `sources`: (name, template) pairs, each already through `check_constructs`.
    pub fn new(sources: Vec<(String, String)>) -> Self {
        CompiledTemplates {
            sources,
            sqlite: OnceLock::new(),
            postgres: OnceLock::new(),
        }
    }

    /// How many templates there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether the template named `name` is among them.
    pub fn contains(&self, name: &str) -> bool {
        self.sources.iter().any(|(n, _)| n == name)
    }

    /// Renders the template named `name` as `render_checked_sql` would; `None` if there is
    /// no such template, or it does not compile (it is then left to `render_sql`, which
    /// reports why at its cell).
    pub fn render(
        &self,
        name: &str,
        ctx: &TemplateContext,
        dialect: Dialect,
    ) -> Option<Result<BoundSql, TemplateError>> {
        let env = match dialect {
            Dialect::Sqlite => &self.sqlite,
            Dialect::Postgres => &self.postgres,
        }
        .get_or_init(|| {
            let mut env = environment(dialect);
            for (name, source) in &self.sources {
                // One that fails to compile is left out, and rendered apart.
                let _ = env.add_template_owned(name.clone(), source.clone());
            }
            env
        });
        let tmpl = env.get_template(name).ok()?;
        Some(render_template(&tmpl, ctx))
    }
}

impl std::fmt::Debug for CompiledTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTemplates")
            .field(
                "names",
                &self.sources.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Explains a failed render in the user's terms.
fn render_error(
    e: &minijinja::Error,
    out: &CappedWriter,
    template: &str,
    ctx: &TemplateContext,
) -> TemplateError {
    if out.overflowed {
        return TemplateError::Limit(format!(
            "the rendered SQL is larger than {MAX_RENDERED_BYTES} bytes"
        ));
    }
    match e.kind() {
        ErrorKind::OutOfFuel => TemplateError::Limit(
            "the template ran too long (too many loop iterations or operations)".into(),
        ),
        ErrorKind::UndefinedError => {
            // minijinja does not say which name was undefined; name the top-level ones we
            // can tell are missing so the author sees what to fix.
            let globals = global_names();
            let missing: BTreeSet<String> = variables(template)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|path| {
                    let mut parts = path.split('.');
                    let root = parts.next()?.to_owned();
                    let known = ctx.has_input(&root)
                        || root == "hex_scheduled"
                        || root == "hex_run_context"
                        || globals.contains(&root);
                    if root == "cells" {
                        let id = parts.next()?;
                        (!ctx.has_cell(id)).then(|| format!("cells.{id}"))
                    } else {
                        (!known).then_some(root)
                    }
                })
                .collect();
            if missing.is_empty() {
                TemplateError::Render(message(e))
            } else {
                let names: Vec<String> = missing.into_iter().collect();
                TemplateError::Render(format!(
                    "{}: undefined variable(s) {}",
                    message(e),
                    names.join(", ")
                ))
            }
        }
        _ => TemplateError::Render(message(e)),
    }
}

/// `e`'s message as minijinja writes it, but pointing at the template as
/// [`TEMPLATE_NAME`] whatever name it was compiled under (a compiled template is named
/// for its cell), so a template's errors read the same however it was rendered.
fn message(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if e.name().is_some() {
        let _ = write!(text, " (in {TEMPLATE_NAME}:{})", e.line().unwrap_or(0));
    }
    text
}

fn cell_value(view: Arc<CellView>) -> Value {
    Value::from_object(CellObject {
        view,
        rows: OnceLock::new(),
    })
}

/// An upstream cell as templates see it: `columns`, `rows` (objects keyed by column name),
/// `rowCount` and `value`. A template usually reads only `rowCount` or `value`, so `rows`
/// is built on first use instead of for every upstream cell on every render (up to 1,000
/// rows each; see BENCHMARKS.md, requirement 7).
#[derive(Debug)]
struct CellObject {
    view: Arc<CellView>,
    rows: OnceLock<Value>,
}

impl Object for CellObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let view = &self.view;
        match key.as_str()? {
            "columns" => Some(Value::from_serialize(&view.columns)),
            "rowCount" => Some(Value::from(view.row_count)),
            "value" => Some(
                view.rows
                    .first()
                    .and_then(|row| row.first())
                    .map_or(Value::from(()), Value::from_serialize),
            ),
            "rows" => Some(self.rows.get_or_init(|| rows_value(view)).clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["columns", "rows", "rowCount", "value"])
    }
}

fn rows_value(view: &CellView) -> Value {
    let rows: Vec<Value> = view
        .rows
        .iter()
        .map(|row| {
            let object: BTreeMap<&str, Value> = view
                .columns
                .iter()
                .map(String::as_str)
                .zip(row.iter().map(Value::from_serialize))
                .collect();
            Value::from(object)
        })
        .collect();
    Value::from(rows)
}

/// Maps a printed template value to the bind parameter carrying it.
fn to_sql_value(value: &Value) -> Result<SqlValue, minijinja::Error> {
    let refuse = |what: &str| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "cannot bind {what} as a SQL parameter; print its items one by one \
                 (e.g. in a {{% for %}} loop)"
            ),
        )
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(SqlValue::Null),
        ValueKind::Bool => Ok(SqlValue::Bool(value.is_true())),
        ValueKind::Number if value.is_integer() => {
            value.as_i64().map(SqlValue::Int).ok_or_else(|| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("the integer {value} does not fit a 64-bit SQL parameter"),
                )
            })
        }
        ValueKind::Number => f64::try_from(value.clone()).map(SqlValue::Float),
        ValueKind::String => Ok(SqlValue::Text(
            value.as_str().map(str::to_owned).unwrap_or_default(),
        )),
        ValueKind::Bytes => Err(refuse("bytes")),
        ValueKind::Seq | ValueKind::Iterable => Err(refuse("a list")),
        ValueKind::Map => Err(refuse("a map")),
        _ => Err(refuse("this value")),
    }
}

/// Collects rendered SQL, refusing to grow past [`MAX_RENDERED_BYTES`] so a template that
/// emits text in a loop fails instead of exhausting memory.
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("rendered SQL too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The SQL cache key of a rendered statement on a connection: hex SHA-256 over an
/// unambiguous encoding (a version tag, then length-prefixed connection name and SQL text,
/// then each bind with a type tag), so that e.g. `Int(1)` and `Text("1")` never collide.
pub fn cache_key(connection_name: &str, sql: &BoundSql) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"scheduled-runs/sql-cache/v1\0");
    let put_bytes = |hasher: &mut Sha256, bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    put_bytes(&mut hasher, connection_name.as_bytes());
    put_bytes(&mut hasher, sql.sql.as_bytes());
    hasher.update((sql.binds.len() as u64).to_be_bytes());
    for bind in &sql.binds {
        match bind {
            SqlValue::Null => hasher.update([0u8]),
            SqlValue::Bool(b) => hasher.update([1u8, u8::from(*b)]),
            SqlValue::Int(i) => {
                hasher.update([2u8]);
                hasher.update(i.to_be_bytes());
            }
            SqlValue::Float(f) => {
                hasher.update([3u8]);
                hasher.update(f.to_bits().to_be_bytes());
            }
            SqlValue::Text(t) => {
                hasher.update([4u8]);
                put_bytes(&mut hasher, t.as_bytes());
            }
        }
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = hasher.finalize();
    // Not `write!("{byte:02x}")` per byte: the formatting machinery was most of the key's
    // cost (BENCHMARKS.md §7).
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use serde_json::json;

    fn inputs(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    fn render_with(
        template: &str,
        inputs: &serde_json::Map<String, serde_json::Value>,
        cells: &HashMap<String, Arc<CellView>>,
        dialect: Dialect,
    ) -> Result<BoundSql, TemplateError> {
        let mut ctx = TemplateContext::new(inputs, true, "scheduled");
        for (id, view) in cells {
            ctx.add_cell(id.clone(), Arc::clone(view));
        }
        let one_off = render_sql(template, &ctx, dialect);
        if check_constructs(template).is_ok() {
            // A compiled template renders exactly as a one-off render does, every time,
            // whatever it is named.
            let compiled = CompiledTemplates::new(vec![("c7".into(), template.into())]);
            for _ in 0..2 {
                match compiled.render("c7", &ctx, dialect) {
                    Some(rendered) => assert_eq!(rendered, one_off, "{template}"),
                    None => assert!(
                        matches!(one_off, Err(TemplateError::Syntax(_))),
                        "only a template that does not compile is left out: {one_off:?}"
                    ),
                }
            }
        }
        one_off
    }

    fn render(template: &str, input: serde_json::Value) -> Result<BoundSql, TemplateError> {
        render_with(template, &inputs(input), &HashMap::new(), Dialect::Sqlite)
    }

    #[test]
    fn injection_attempt_is_only_a_bind_value() {
        let hostile = "'; DROP TABLE t; --";
        let out = render(
            "SELECT * FROM t WHERE name = {{ name }}",
            json!({ "name": hostile }),
        )
        .unwrap();
        assert_eq!(out.sql, "SELECT * FROM t WHERE name = ?1");
        assert_eq!(out.binds, vec![SqlValue::Text(hostile.into())]);
        assert!(!out.sql.contains("DROP"));
    }

    #[test]
    fn blocks_that_capture_output_are_refused_wherever_they_nest() {
        for (template, line) in [
            ("SELECT {% set q %}{{ region }}{% endset %}{{ q }}", 1),
            (
                "SELECT {% set q | upper %}{{ region }}{% endset %}{{ q }}",
                1,
            ),
            ("SELECT\n{% filter upper %}{{ region }}{% endfilter %}", 2),
            (
                "SELECT 1 {% if true %}\n{% for r in [1] %}{% with a = 1 %}\n{% autoescape false %}\
              {% filter trim %}x{% endfilter %}{% endautoescape %}{% endwith %}{% endfor %}{% endif %}",
                3,
            ),
            (
                "{% for r in [] %}{% else %}{% set x %}1{% endset %}{% endfor %}",
                1,
            ),
            (
                "{% if false %}{% else %}{% filter lower %}{% endfilter %}{% endif %}",
                1,
            ),
        ] {
            let err = check_constructs(template).unwrap_err();
            assert!(
                matches!(&err, TemplateError::Unsupported(m) if m.contains(&format!("(line {line})"))),
                "{template}: {err:?}"
            );
            // A version published before the check still cannot render one.
            let rendered = render(template, json!({ "region": "EMEA" }));
            assert_eq!(rendered, Err(err), "{template}");
        }
    }

    #[test]
    fn assignments_filters_on_values_and_control_flow_are_allowed() {
        let template = "{% set q = region | upper %}{% with n = 2 %}SELECT {{ q }}, {{ n }}\
            {% for r in [1] %} {{ r }}{% endfor %}{% if true %} {{ region | lower }}{% endif %}\
            {% raw %} '{% set x %}{% filter %}' {% endraw %}{% endwith %}";
        assert_eq!(check_constructs(template), Ok(()));
        let out = render(template, json!({ "region": "Emea" })).unwrap();
        assert_eq!(out.sql, "SELECT ?1, ?2 ?3 ?4 '{% set x %}{% filter %}' ");
        assert_eq!(
            out.binds,
            vec![
                SqlValue::Text("EMEA".into()),
                SqlValue::Int(2),
                SqlValue::Int(1),
                SqlValue::Text("emea".into())
            ]
        );
    }

    #[test]
    fn safe_filter_does_not_splice_text() {
        let out = render("SELECT {{ x|safe }}", json!({ "x": "1; DROP TABLE t" })).unwrap();
        assert_eq!(out.sql, "SELECT ?1");
        assert_eq!(out.binds, vec![SqlValue::Text("1; DROP TABLE t".into())]);
    }

    #[test]
    fn numbered_placeholders_per_dialect() {
        let i = inputs(json!({ "a": 1, "b": "x" }));
        let cells = HashMap::new();
        let sqlite = render_with(
            "SELECT {{ a }}, {{ b }}, {{ a }}",
            &i,
            &cells,
            Dialect::Sqlite,
        )
        .unwrap();
        assert_eq!(sqlite.sql, "SELECT ?1, ?2, ?3");
        let pg = render_with(
            "SELECT {{ a }}, {{ b }}, {{ a }}",
            &i,
            &cells,
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(pg.sql, "SELECT $1, $2, $3");
        assert_eq!(
            pg.binds,
            vec![
                SqlValue::Int(1),
                SqlValue::Text("x".into()),
                SqlValue::Int(1)
            ]
        );
    }

    #[test]
    fn every_render_numbers_and_collects_its_own_binds() {
        // Renders on several threads at once must neither see nor number each other's
        // values.
        let renders: Vec<_> = (0..8i64)
            .map(|n| {
                std::thread::spawn(move || {
                    let i = inputs(json!({ "a": n, "b": format!("t{n}") }));
                    (0..50)
                        .map(|_| {
                            render_with(
                                "SELECT {{ a }}, {{ b }}",
                                &i,
                                &HashMap::new(),
                                Dialect::Sqlite,
                            )
                            .expect("renders")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (n, render) in renders.into_iter().enumerate() {
            for out in render.join().expect("thread") {
                assert_eq!(out.sql, "SELECT ?1, ?2");
                assert_eq!(
                    out.binds,
                    vec![SqlValue::Int(n as i64), SqlValue::Text(format!("t{n}"))]
                );
            }
        }
    }

    #[test]
    fn value_types_map_to_binds() {
        let out = render(
            "{{ n }} {{ f }} {{ b }} {{ s }} {{ z }} {{ 2.0 }} {{ 1 + 1 }}",
            json!({ "n": -7, "f": 1.5, "b": true, "s": "t", "z": null }),
        )
        .unwrap();
        assert_eq!(
            out.binds,
            vec![
                SqlValue::Int(-7),
                SqlValue::Float(1.5),
                SqlValue::Bool(true),
                SqlValue::Text("t".into()),
                SqlValue::Null,
                SqlValue::Float(2.0),
                SqlValue::Int(2),
            ]
        );
    }

    #[test]
    fn lists_and_maps_are_refused() {
        let e = render("SELECT {{ xs }}", json!({ "xs": [1, 2] })).unwrap_err();
        assert!(
            matches!(e, TemplateError::Render(ref m) if m.contains("list")),
            "{e}"
        );
        let e = render("SELECT {{ m }}", json!({ "m": { "a": 1 } })).unwrap_err();
        assert!(
            matches!(e, TemplateError::Render(ref m) if m.contains("map")),
            "{e}"
        );
    }

    #[test]
    fn for_loops_bind_each_printed_value() {
        let out = render(
            "SELECT * FROM t WHERE id IN ({% for id in ids %}{{ id }}{% if not loop.last %}, {% endif %}{% endfor %})",
            json!({ "ids": [3, 5, 8] }),
        )
        .unwrap();
        assert_eq!(out.sql, "SELECT * FROM t WHERE id IN (?1, ?2, ?3)");
        assert_eq!(
            out.binds,
            vec![SqlValue::Int(3), SqlValue::Int(5), SqlValue::Int(8)]
        );
    }

    #[test]
    fn control_flow_stays_template_logic() {
        let t = "SELECT * FROM t{% if region %} WHERE region = {{ region }}{% endif %}";
        let with = render(t, json!({ "region": "EU" })).unwrap();
        assert_eq!(with.sql, "SELECT * FROM t WHERE region = ?1");
        let without = render(t, json!({ "region": "" })).unwrap();
        assert_eq!(without.sql, "SELECT * FROM t");
        assert!(without.binds.is_empty());
    }

    #[test]
    fn undefined_variables_are_errors() {
        let e = render("SELECT {{ missing }}", json!({})).unwrap_err();
        assert!(
            matches!(e, TemplateError::Render(ref m) if m.contains("missing")),
            "{e}"
        );
        let e = render("SELECT 1 {% if missing %}x{% endif %}", json!({})).unwrap_err();
        assert!(matches!(e, TemplateError::Render(_)), "{e}");
        let e = render("SELECT {{ cells.nope.value }}", json!({})).unwrap_err();
        assert!(
            matches!(e, TemplateError::Render(ref m) if m.contains("cells.nope")),
            "{e}"
        );
    }

    #[test]
    fn false_inline_if_prints_nothing() {
        let out = render("SELECT 1{{ ' x' if flag }}", json!({ "flag": false })).unwrap();
        assert_eq!(out.sql, "SELECT 1");
        assert!(out.binds.is_empty());
    }

    #[test]
    fn run_context_variables() {
        let out = render(
            "SELECT {{ hex_scheduled }}, {{ hex_run_context }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(
            out.binds,
            vec![SqlValue::Bool(true), SqlValue::Text("scheduled".into())]
        );
    }

    #[test]
    fn the_context_grows_cell_by_cell_and_its_fixed_names_win() {
        let inputs = inputs(json!({ "cells": 5, "hex_scheduled": "no", "n": 1 }));
        let mut ctx = TemplateContext::new(&inputs, false, "api-triggered");
        let view = |rows: u64| {
            Arc::new(CellView {
                columns: vec!["x".into()],
                rows: vec![vec![json!(rows)]].into(),
                row_count: rows,
            })
        };
        let sql = "SELECT {{ n }}, {{ hex_scheduled }}, {{ cells|length }}\
                   {% for id, c in cells|items %}, {{ id }}, {{ c.rowCount }}{% endfor %}";
        let compiled = CompiledTemplates::new(vec![("c".into(), sql.into())]);
        let binds = |ctx: &TemplateContext| {
            let one_off = render_sql(sql, ctx, Dialect::Sqlite).expect("renders");
            let again = compiled
                .render("c", ctx, Dialect::Sqlite)
                .expect("compiled");
            assert_eq!(again.expect("renders"), one_off);
            one_off.binds
        };
        use SqlValue::{Bool, Int, Text};
        assert_eq!(binds(&ctx), [Int(1), Bool(false), Int(0)]);
        ctx.add_cell("b".into(), view(7));
        assert_eq!(
            binds(&ctx),
            [Int(1), Bool(false), Int(1), Text("b".into()), Int(7)]
        );
        ctx.add_cell("a".into(), view(3));
        assert_eq!(
            binds(&ctx),
            [
                Int(1),
                Bool(false),
                Int(2),
                Text("a".into()),
                Int(3),
                Text("b".into()),
                Int(7)
            ]
        );
    }

    #[test]
    fn upstream_cells_are_visible() {
        let mut cells = HashMap::new();
        cells.insert(
            "top".to_owned(),
            Arc::new(CellView {
                columns: vec!["id".into(), "name".into()],
                rows: vec![vec![json!(10), json!("a")], vec![json!(20), json!("b")]].into(),
                row_count: 5000,
            }),
        );
        cells.insert("empty".to_owned(), Arc::new(CellView::default()));
        let out = render_with(
            "SELECT {{ cells.top.value }}, {{ cells.top.rowCount }}, {{ cells.top.columns|length }}, \
             {% for r in cells.top.rows %}{{ r.name }}{% endfor %}, {{ cells.empty.value }}",
            &inputs(json!({})),
            &cells,
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(out.sql, "SELECT $1, $2, $3, $4$5, $6");
        assert_eq!(
            out.binds,
            vec![
                SqlValue::Int(10),
                SqlValue::Int(5000),
                SqlValue::Int(2),
                SqlValue::Text("a".into()),
                SqlValue::Text("b".into()),
                SqlValue::Null,
            ]
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        let e = render("SELECT {{ x ", json!({ "x": 1 })).unwrap_err();
        assert!(matches!(e, TemplateError::Syntax(_)), "{e}");
        assert!(check_syntax("{% if x %}").is_err());
        assert!(check_syntax("SELECT {{ x }}").is_ok());
    }

    #[test]
    fn the_listed_globals_are_the_rendering_environments() {
        let rendering: BTreeSet<String> = environment(Dialect::Sqlite)
            .globals()
            .map(|(name, _)| name.to_owned())
            .collect();
        assert_eq!(global_names(), rendering);
    }

    #[test]
    fn checking_and_rendering_parse_alike() {
        let templates = [
            "SELECT {{ x }}\n",
            "SELECT 1 {% if a %}{{ b | upper }}{% endif %}",
            "{% for r in cells.a.rows %}{{ r.x }}{% else %}0{% endfor %}",
            "{{ unknown_filter_is_a_render_error | nope }}",
            "{% if x %}",
            "{{ x | }}",
            "{% macro m() %}{% endmacro %}",
            "{% set x %}y{% endset %}",
        ];
        for template in templates {
            let checked = parsing_environment()
                .template_from_named_str(TEMPLATE_NAME, template)
                .map(|t| (t.source().to_owned(), t.undeclared_variables(true)))
                .map_err(|e| e.to_string());
            let rendered = environment(Dialect::Postgres)
                .template_from_named_str(TEMPLATE_NAME, template)
                .map(|t| (t.source().to_owned(), t.undeclared_variables(true)))
                .map_err(|e| e.to_string());
            assert_eq!(checked, rendered, "{template}");
        }
    }

    #[test]
    fn runaway_templates_stop() {
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(matches!(e, TemplateError::Limit(_)), "{e}");
        let e = render(
            "{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(matches!(e, TemplateError::Limit(_)), "{e}");
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            render(&big, json!({})),
            Err(TemplateError::Limit(_))
        ));
    }

    #[test]
    fn variables_lists_dotted_paths() {
        let vars = variables(
            "{% set n = 3 %}{{ cells.a.value }} {{ region }} {% for r in cells.b.rows %}{{ r.x }}{% endfor %} {{ n }}",
        )
        .unwrap();
        assert!(vars.contains("cells.a.value"));
        assert!(vars.contains("cells.b.rows"));
        assert!(vars.contains("region"));
        // Names the template assigns itself are not context variables.
        assert!(
            !vars
                .iter()
                .any(|v| v == "n" || v == "r" || v.starts_with("r."))
        );
    }

    #[test]
    fn cache_key_is_stable_and_typed() {
        let a = BoundSql {
            sql: "SELECT ?1".into(),
            binds: vec![SqlValue::Int(1)],
        };
        let b = BoundSql {
            sql: "SELECT ?1".into(),
            binds: vec![SqlValue::Text("1".into())],
        };
        assert_eq!(cache_key("wh", &a), cache_key("wh", &a.clone()));
        // Pinned (computed apart, over the encoding above): the keys of entries stored
        // already must still be found.
        assert_eq!(
            cache_key("wh", &a),
            "61bd6c15c32f6dad6c9fc368b3c02a5ae5324513fc3a5cd811d4df146f41bb9c"
        );
        assert_ne!(cache_key("wh", &a), cache_key("wh", &b));
        assert_ne!(cache_key("wh", &a), cache_key("other", &a));
        // Length prefixes keep the fields apart.
        let c = BoundSql {
            sql: "b".into(),
            binds: vec![],
        };
        let d = BoundSql {
            sql: "".into(),
            binds: vec![],
        };
        assert_ne!(cache_key("a", &c), cache_key("ab", &d));
    }
}

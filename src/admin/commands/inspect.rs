//! `redkeep inspect …`: any table, index and record of the store as an operator looks at it,
//! the way `sqlite3` shows a database. Each command reads one snapshot and writes nothing.
//! `dump` streams its records as JSON lines, so its memory does not grow with the table;
//! `count` holds one counter per distinct value of its field.
//!
//! Records of tables the handle has a type for (redkeep's own, and the application's when
//! the command runs inside it) are read through that type; other tables through their
//! self-describing values. Password and token hashes are shown as `<redacted>` unless
//! `--show-secrets` is given, and so is whatever could hold them: the index entries of a
//! table with secret fields, and the values serde quotes in why one of its records does not
//! read. Tokens themselves are never stored, so never shown.

use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::admin::io::Io;
use crate::admin::reply::{Reply, yes_no};
use crate::auth::api_keys::{ApiKey, KeyOwner};
use crate::bytes::hex;
use crate::store::{
    Content, EntryCheck, EntryView, KeyRange, ReadTx, RecordView, TableView, entry_text,
    parse_prefix,
};
use crate::{Error, Redkeep, Result};

/// What stands in for secret material.
const REDACTED: &str = "<redacted>";

/// How many index entries `inspect index` shows without `--limit`.
pub const DEFAULT_INDEX_LIMIT: usize = 1000;

/// Inspection commands: look at the store itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum InspectCmd {
    /// Every table (redkeep's and the application's): records, bytes, record versions, and
    /// each index with its entries.
    Tables,
    /// Records as JSON lines in key order, filtered and paged; streams any number.
    Dump(DumpArgs),
    /// One record: its key bytes, version, fields and every index entry derived from it.
    Get {
        /// The table (see `redkeep inspect tables`).
        table: String,
        /// The record's key, as `dump` prints it (`42`, `3,7`, a string, hex or `0x…`).
        key: String,
        /// Show password and token hashes instead of `<redacted>`.
        #[cfg_attr(feature = "cli", arg(long))]
        show_secrets: bool,
    },
    /// Index entries in order, each with the record it points at and whether that record
    /// exists and agrees.
    Index {
        /// The table.
        table: String,
        /// The index (see `redkeep inspect tables`).
        index: String,
        /// Only entries starting with these values, comma-separated (`3`, `ann`,
        /// `3,2027-01-15T08:00:00Z`, `true`, `0x…`).
        #[cfg_attr(feature = "cli", arg(long, value_name = "VALUE"))]
        prefix: Option<String>,
        /// At most this many entries (at least 1; default 1000).
        #[cfg_attr(
            feature = "cli",
            arg(long, value_name = "N", value_parser = super::common::limit_arg::<usize>)
        )]
        limit: Option<usize>,
        /// Show the keys of token-hash tables, and the entries of the indexes of tables
        /// with secret fields, instead of `<redacted>`.
        #[cfg_attr(feature = "cli", arg(long))]
        show_secrets: bool,
    },
    /// Records counted by the value of one field, largest groups first (`GROUP BY field
    /// HAVING COUNT(*) >= N`).
    Count {
        /// The table.
        table: String,
        /// The field to group by (`a.b` reaches into a nested object).
        #[cfg_attr(feature = "cli", arg(long, value_name = "FIELD"))]
        by: String,
        /// Only groups of at least this many records.
        #[cfg_attr(feature = "cli", arg(long, value_name = "N", default_value_t = 1))]
        min: u64,
    },
}

/// Arguments of `redkeep inspect dump`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DumpArgs {
    /// The table (see `redkeep inspect tables`).
    pub table: String,
    /// At most this many records (at least 1; default every record).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", value_parser = super::common::limit_arg::<u64>)
    )]
    pub limit: Option<u64>,
    /// Start after this key: the last key of the previous page.
    #[cfg_attr(feature = "cli", arg(long, value_name = "KEY"))]
    pub after: Option<String>,
    /// Only records whose FIELD equals VALUE (`null`, numbers, `true`/`false`, strings);
    /// repeat to require several.
    #[cfg_attr(feature = "cli", arg(long = "where", value_name = "FIELD=VALUE"))]
    pub filters: Vec<String>,
    /// Only these fields, comma-separated.
    #[cfg_attr(feature = "cli", arg(long, value_name = "F,G", value_delimiter = ','))]
    pub fields: Vec<String>,
    /// Show password and token hashes instead of `<redacted>`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub show_secrets: bool,
}

pub fn run(rk: &Redkeep, cmd: &InspectCmd, io: Io<'_>) -> Result<Reply> {
    match cmd {
        InspectCmd::Tables => tables(rk),
        InspectCmd::Dump(args) => dump(rk, args, io),
        InspectCmd::Get {
            table,
            key,
            show_secrets,
        } => get(rk, table, key, *show_secrets),
        InspectCmd::Index {
            table,
            index,
            prefix,
            limit,
            show_secrets,
        } => entries(
            rk,
            table,
            index,
            prefix.as_deref(),
            limit.unwrap_or(DEFAULT_INDEX_LIMIT),
            *show_secrets,
        ),
        InspectCmd::Count { table, by, min } => count(rk, table, by, *min),
    }
}

/// Why records of a table without its type show only their keys and sizes.
fn opaque_reason(table: &str, n: u64) -> String {
    format!(
        "{table}: {n} record(s) are in the first release's binary format (format 1), which is not self-describing, so only their keys and sizes are shown; run the command while the application holds the store (it answers through its admin socket), once it registers the table with `Redkeep::register_table`"
    )
}

/// How secret material of one table is shown.
struct Secrets<'v> {
    fields: &'v [String],
    key: bool,
    show: bool,
}

impl<'v> Secrets<'v> {
    fn of(view: &'v TableView, show: bool) -> Secrets<'v> {
        Secrets {
            fields: &view.info().secret_fields,
            key: view.info().secret_key,
            show,
        }
    }

    fn key(&self, view: &TableView, key: &[u8]) -> String {
        if self.key && !self.show {
            REDACTED.into()
        } else {
            view.key_text(key)
        }
    }

    fn key_hex(&self, key: &[u8]) -> String {
        if self.key && !self.show {
            REDACTED.into()
        } else {
            hex(key)
        }
    }

    /// Whether the field `name` (a record's top-level field) is shown as `<redacted>`.
    fn hides(&self, name: &str) -> bool {
        !self.show && self.fields.iter().any(|f| f == name)
    }

    fn redact(&self, record: &mut Value) {
        if let Value::Object(map) = record {
            for (name, v) in map.iter_mut() {
                if self.hides(name) {
                    *v = Value::String(REDACTED.into());
                }
            }
        }
    }

    /// The value of the field at `path` in `record`: `<redacted>` when the path lies in a
    /// secret field (`codes.0` in `codes`), `null` when the record has none.
    fn field(&self, record: &Value, path: &Path) -> Value {
        if self.hides(path.top()) {
            Value::String(REDACTED.into())
        } else {
            path.lookup(record).cloned().unwrap_or(Value::Null)
        }
    }

    /// Whether index entries are shown as `<redacted>`. Neither a record type's indexes nor
    /// the catalog say which fields an index is built from, so any index of a table with a
    /// secret field may hold one (`vault.by_token` holds `token_hash`). Redkeep's own
    /// tables keep their entries: the only one with secret fields, `credentials`, has no
    /// index.
    fn hides_entries(&self) -> bool {
        !self.show && !self.fields.is_empty()
    }

    /// An entry's value of the index `index` of `table` as text and as hex. `whole` says
    /// the value may be the whole stored entry (a malformed one), which holds the primary
    /// key too.
    fn entry(&self, table: &str, index: &str, value: &[u8], whole: bool) -> (String, String) {
        if self.hides_entries() || (whole && self.key && !self.show) {
            (REDACTED.into(), REDACTED.into())
        } else {
            (shown_entry(table, index, value), hex(value))
        }
    }

    /// Why a record did not read, without the values serde quotes from it
    /// (`invalid type: string "…"`) when the table has secret fields.
    fn problem(&self, text: &str) -> String {
        if self.show || self.fields.is_empty() {
            text.to_string()
        } else {
            without_quoted_values(text)
        }
    }
}

/// An index entry's value as text: by its type for an index whose entries' look does not
/// tell their parts (`api_keys.by_owner`: `user,2`), else by their look.
fn shown_entry(table: &str, index: &str, value: &[u8]) -> String {
    if is_owner_index(table, index)
        && let Some(text) = KeyOwner::index_entry_text(value)
    {
        return text;
    }
    entry_text(value)
}

/// Reads `--prefix` for the index `index` of `table`: as [`shown_entry`] shows its entries.
fn prefix_of(table: &str, index: &str, text: &str) -> Result<Vec<u8>> {
    if is_owner_index(table, index) {
        return KeyOwner::index_prefix(text).ok_or_else(|| {
            Error::invalid(
                "prefix",
                format!(
                    "{text:?} is no owner; give `user` or `org`, with a numeric id or not \
                     (user,2 or org,5), as the entries show"
                ),
            )
        });
    }
    parse_prefix(text).map_err(|e| Error::invalid("prefix", e))
}

fn is_owner_index(table: &str, index: &str) -> bool {
    table == <ApiKey as crate::store::Record>::TABLE && index == ApiKey::BY_OWNER.name
}

/// The words before a value serde quotes from the data in its errors
/// (`invalid type: string "9f86…", expected u64`, ``invalid value: integer `7` ``,
/// ``unknown variant `x` ``), with the quote that closes it.
const QUOTED_VALUES: [(&str, char); 6] = [
    ("string \"", '"'),
    ("integer `", '`'),
    ("floating point `", '`'),
    ("character `", '`'),
    ("boolean `", '`'),
    ("unknown variant `", '`'),
];

/// `text` with every value serde quotes from the data shown as `<redacted>` (field names,
/// as in ``missing field `x` ``, stay).
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = QUOTED_VALUES
            .iter()
            .filter_map(|&(lead, close)| rest.find(lead).map(|at| (at + lead.len(), close)))
            .min_by_key(|&(start, _)| start);
        let Some((start, close)) = next else {
            out.push_str(rest);
            return out;
        };
        // `start` is just past the opening quote, a one-byte character.
        out.push_str(&rest[..start - 1]);
        out.push_str(REDACTED);
        let body = &rest[start..];
        // A string is quoted as by `Debug`: `\"` and `\\` are escapes. A value whose
        // closing quote is missing runs to the end.
        let mut escaped = false;
        let end = body.char_indices().find_map(|(i, c)| {
            let closes = c == close && !escaped;
            escaped = !escaped && c == '\\' && close == '"';
            closes.then_some(i + 1)
        });
        rest = end.map_or("", |e| &body[e..]);
    }
}

/// A field path: `a.b` reaches into nested objects (and arrays by position).
#[derive(Debug, Clone)]
struct Path {
    text: String,
    parts: Vec<String>,
}

impl Path {
    fn parse(text: &str, flag: &str) -> Result<Path> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(Error::invalid(
                "field",
                format!(
                    "{flag} {text:?} is not a field name; write it like current_org_id or owner.user"
                ),
            ));
        }
        Ok(Path {
            text: text.to_string(),
            parts,
        })
    }

    fn top(&self) -> &str {
        &self.parts[0]
    }

    fn lookup<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        let mut at = record;
        for p in &self.parts {
            at = match at {
                Value::Object(map) => map.get(p)?,
                Value::Array(items) => items.get(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }
}

/// One `--where FIELD=VALUE`.
#[derive(Debug, Clone)]
struct Filter {
    path: Path,
    text: String,
    want: Value,
}

impl Filter {
    fn parse(text: &str) -> Result<Filter> {
        let (field, value) = text.split_once('=').ok_or_else(|| {
            Error::invalid(
                "where",
                format!("--where {text:?} needs FIELD=VALUE, like current_org_id=null"),
            )
        })?;
        Ok(Filter {
            path: Path::parse(field.trim(), "--where")?,
            text: value.to_string(),
            // `null`, numbers, booleans and quoted strings read as JSON; anything else is text.
            want: serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into())),
        })
    }

    /// Whether the record's field equals the value; a missing field is `null`.
    fn matches(&self, record: &Value) -> bool {
        let got = self.path.lookup(record).unwrap_or(&Value::Null);
        match (got, &self.want) {
            (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
            (Value::String(s), want) if !want.is_string() => *s == self.text,
            (got, want) => got == want,
        }
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Checks that each path names a field the table's records use.
fn check_fields(tx: &ReadTx<'_>, view: &TableView, paths: &[&Path]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let names = view.field_names(tx)?;
    if names.first.is_empty() {
        return Ok(()); // no readable record: nothing to tell a typo by
    }
    match paths.iter().find(|p| !names.contains(p.top())) {
        Some(p) => Err(Error::invalid(
            "field",
            format!(
                "{} records have no field {:?}; their fields are {}",
                view.name(),
                p.top(),
                names.first.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Checks that each nested path of `--fields` (`owner.user`) leads to a value in some
/// record, as [`check_fields`] does for the top level: else every line would show it as
/// `null`, the same as a field that is null. Reads until each is found, so the whole table
/// only for a path that is refused (or for no readable record: nothing to tell a typo by).
fn check_nested(tx: &ReadTx<'_>, view: &TableView, fields: &[Path]) -> Result<()> {
    let nested: Vec<&Path> = fields.iter().filter(|p| p.parts.len() > 1).collect();
    if nested.is_empty() {
        return Ok(());
    }
    let mut found = vec![false; nested.len()];
    // The fields seen in the object each path's last part is looked up in.
    let mut siblings = vec![std::collections::BTreeSet::new(); nested.len()];
    let mut readable = false;
    view.for_each(tx, &KeyRange::all(), &mut |rec| {
        let Some(json) = rec.content.json() else {
            return Ok(true);
        };
        readable = true;
        for (i, p) in nested.iter().enumerate() {
            if found[i] {
                continue;
            }
            found[i] = p.lookup(json).is_some();
            let parent = Path {
                text: String::new(),
                parts: p.parts[..p.parts.len() - 1].to_vec(),
            };
            if let Some(Value::Object(map)) = parent.lookup(json) {
                siblings[i].extend(map.keys().cloned());
            }
        }
        Ok(found.contains(&false))
    })?;
    if !readable {
        return Ok(());
    }
    match found.iter().position(|f| !f) {
        Some(i) => {
            let p = nested[i];
            let parent = p.parts[..p.parts.len() - 1].join(".");
            let hint = if is_secret(view, p) {
                // A map there may be keyed by secret material: its names are not shown.
                format!("the names under {parent} are not listed: it holds secret material")
            } else if siblings[i].is_empty() {
                format!("{parent} holds no object with named fields in any record")
            } else {
                let names: Vec<&str> = siblings[i].iter().map(String::as_str).collect();
                format!("the fields under {parent} are {}", names.join(", "))
            };
            Err(Error::invalid(
                "field",
                format!(
                    "no {} record has the field {:?}; {hint}",
                    view.name(),
                    p.text
                ),
            ))
        }
        None => Ok(()),
    }
}

/// What a dump saw.
#[derive(Debug, Default, Serialize)]
struct DumpSummary {
    table: String,
    /// Records read.
    read: u64,
    /// Records printed.
    shown: u64,
    /// The key of the last record printed (for `--after`).
    last_key: Option<String>,
    /// Whether it stopped at `--limit`.
    limited: bool,
    /// Records `--where` could not test (unreadable).
    untested: u64,
    /// Records shown by key and size only.
    opaque: u64,
    /// Records that do not decode.
    corrupt: u64,
    /// Whether the reader closed the output early.
    #[serde(skip)]
    closed: bool,
}

/// The JSON line of one record.
fn record_line(
    view: &TableView,
    rec: &RecordView,
    fields: &[Path],
    secrets: &Secrets<'_>,
) -> Value {
    let mut line = Map::new();
    line.insert("key".into(), json!(secrets.key(view, &rec.key)));
    line.insert("version".into(), json!(rec.version));
    let mut record = |json: &Value| {
        let shown = if fields.is_empty() {
            let mut all = json.clone();
            secrets.redact(&mut all);
            all
        } else {
            Value::Object(
                fields
                    .iter()
                    .map(|f| (f.text.clone(), secrets.field(json, f)))
                    .collect(),
            )
        };
        line.insert("record".into(), shown);
    };
    match &rec.content {
        Content::Typed(json) => record(json),
        Content::Stored { json, problem } => {
            record(json);
            if let Some(p) = problem {
                line.insert("error".into(), json!(secrets.problem(p)));
            }
        }
        Content::Opaque => {
            line.insert("format".into(), json!(rec.format));
            line.insert("bytes".into(), json!(rec.bytes));
        }
        Content::Corrupt(why) => {
            line.insert("bytes".into(), json!(rec.bytes));
            line.insert("error".into(), json!(secrets.problem(why)));
        }
    }
    Value::Object(line)
}

fn write_line(out: &mut dyn Write, line: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

fn dump(rk: &Redkeep, args: &DumpArgs, io: Io<'_>) -> Result<Reply> {
    let filters = args
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    let fields = args
        .fields
        .iter()
        .map(|f| Path::parse(f.trim(), "--fields"))
        .collect::<Result<Vec<_>>>()?;
    let tables = rk.tables();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, io.output);
    let mut s = DumpSummary {
        table: args.table.clone(),
        ..DumpSummary::default()
    };
    let mut write_error = None;
    rk.store().read(|tx| {
        let view = TableView::find(tx, &tables, &args.table)?;
        let paths: Vec<&Path> = filters.iter().map(|f| &f.path).chain(&fields).collect();
        check_fields(tx, &view, &paths)?;
        check_nested(tx, &view, &fields)?;
        // Matching a value tells what it is: secret fields are filtered on only where
        // they could be shown.
        if !args.show_secrets
            && let Some(f) = filters.iter().find(|f| is_secret(&view, &f.path))
        {
            return Err(Error::denied(format!(
                "{}.{} holds secret material; filter by another field, or add --show-secrets",
                args.table,
                f.path.top()
            )));
        }
        let range = match &args.after {
            Some(k) => KeyRange::all().after(&view.parse_key(k)?),
            None => KeyRange::all(),
        };
        if let Some(limit) = args.limit {
            super::common::check_limit(limit)?;
        }
        let secrets = Secrets::of(&view, args.show_secrets);
        view.for_each(tx, &range, &mut |rec| {
            s.read += 1;
            if !filters.is_empty() {
                match rec.content.json() {
                    None => {
                        s.untested += 1;
                        return Ok(true);
                    }
                    Some(json) if !filters.iter().all(|f| f.matches(json)) => return Ok(true),
                    Some(_) => {}
                }
            }
            match rec.content {
                Content::Opaque => s.opaque += 1,
                Content::Corrupt(_) => s.corrupt += 1,
                _ => {}
            }
            if let Err(e) = write_line(&mut out, &record_line(&view, &rec, &fields, &secrets)) {
                // A reader that stops early (`| head`) ends the dump; other failures are errors.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    write_error = Some(e);
                }
                s.closed = true;
                return Ok(false);
            }
            s.shown += 1;
            s.last_key = Some(secrets.key(&view, &rec.key));
            s.limited = args.limit.is_some_and(|l| s.shown >= l);
            Ok(!s.limited)
        })
    })?;
    if let Some(e) = write_error {
        return Err(Error::io("writing the records", e));
    }
    if !s.closed
        && let Err(e) = out.flush()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(Error::io("writing the records", e));
    }
    let mut lines = vec![match (&s.last_key, s.limited) {
        // The reader stopped early (`| head`): what it took of the records written is
        // unknown, and the end was not reached.
        _ if s.closed => format!(
            "{}: the reader closed the output early (at most {} record(s) reached it); not \
             the end of the table",
            s.table, s.shown
        ),
        (Some(k), true) if k != REDACTED => format!(
            "{}: {} record(s) shown; the next page: --after {k}",
            s.table, s.shown
        ),
        (Some(_), true) => format!(
            "{}: {} record(s) shown; its keys are token hashes: add --show-secrets to page with --after",
            s.table, s.shown
        ),
        _ => format!(
            "{}: {} record(s) shown of {} read; end of the table",
            s.table, s.shown, s.read
        ),
    }];
    if s.opaque > 0 {
        lines.push(opaque_reason(&s.table, s.opaque));
    }
    if s.untested > 0 {
        lines.push(format!(
            "{} record(s) could not be read, so --where could not test them",
            s.untested
        ));
    }
    if s.corrupt > 0 {
        lines.push(format!(
            "{} record(s) do not decode; `redkeep check` reports them",
            s.corrupt
        ));
    }
    let mut reply = Reply::text(serde_json::to_value(&s).unwrap_or_default(), lines);
    reply.raw = true;
    Ok(reply)
}

/// A record's fields as pretty JSON lines, for people.
fn pretty_lines(json: &Value) -> Vec<String> {
    crate::admin::reply::pretty_json_lines(json)
}

fn entry_state_text(e: &EntryCheck, view: &TableView, secrets: &Secrets<'_>) -> String {
    use crate::store::EntryState;
    match e.state {
        EntryState::Present => "present".into(),
        EntryState::Missing => "MISSING".into(),
        EntryState::Malformed => "present with a MALFORMED value".into(),
        EntryState::PointsElsewhere => format!(
            "held by ANOTHER record ({})",
            e.points_at
                .as_deref()
                .map_or_else(|| "?".into(), |k| secrets.key(view, k))
        ),
        EntryState::None => "none (the record has no entry in this index)".into(),
    }
}

fn get(rk: &Redkeep, table: &str, key: &str, show_secrets: bool) -> Result<Reply> {
    let tables = rk.tables();
    let (view, rec, entries) = rk.store().read(|tx| {
        let view = TableView::find(tx, &tables, table)?;
        let k = view.parse_key(key)?;
        let rec = view
            .get(tx, &k)?
            .ok_or_else(|| Error::not_found(format!("{table} record {}", key.trim())))?;
        let entries = view.entries_of(tx, &k)?;
        Ok((view, rec, entries))
    })?;
    let secrets = Secrets::of(&view, show_secrets);
    let shown_key = secrets.key(&view, &rec.key);
    let mut record = rec.content.json().cloned();
    if let Some(r) = record.as_mut() {
        secrets.redact(r);
    }
    let read_as = match &rec.content {
        Content::Typed(_) => Some("type"),
        Content::Stored { .. } => Some("stored"),
        _ => None,
    };
    let problem = match &rec.content {
        Content::Stored { problem, .. } => problem.as_deref().map(|p| secrets.problem(p)),
        Content::Opaque => Some(opaque_reason(table, 1)),
        Content::Corrupt(why) => Some(secrets.problem(why)),
        Content::Typed(_) => None,
    };
    let mut lines = vec![format!(
        "{table} {shown_key}: key bytes {}, {} bytes, record version {}, format {}, read {}",
        secrets.key_hex(&rec.key),
        rec.bytes,
        rec.version.map_or_else(|| "?".into(), |v| v.to_string()),
        rec.format.map_or_else(|| "?".into(), |v| v.to_string()),
        match read_as {
            Some("type") => "through its type",
            Some(_) => "from its self-describing value",
            None => "as bytes only",
        }
    )];
    if let Some(r) = &record {
        lines.extend(pretty_lines(r));
    }
    if let Some(p) = &problem {
        lines.push(format!("problem: {p}"));
    }
    let indexes = match &entries {
        Ok(list) => {
            lines.push(if list.is_empty() {
                "index entries: none (the table has no index)".into()
            } else {
                "index entries:".into()
            });
            let mut out = Vec::new();
            for e in list {
                let (value, value_hex) = e
                    .value
                    .as_deref()
                    .map(|v| secrets.entry(view.name(), &e.index, v, false))
                    .unzip();
                lines.push(format!(
                    "  {}{} {}: {}",
                    e.index,
                    if e.unique { " (unique)" } else { "" },
                    value.as_deref().unwrap_or("-"),
                    entry_state_text(e, &view, &secrets)
                ));
                out.push(json!({
                    "index": e.index,
                    "unique": e.unique,
                    "entry": value,
                    "entry_hex": value_hex,
                    "state": e.state,
                    "points_at": e.points_at.as_deref().map(|k| secrets.key(&view, k)),
                }));
            }
            Value::Array(out)
        }
        Err(why) => {
            lines.push(format!(
                "index entries: cannot be derived: {}",
                secrets.problem(why)
            ));
            Value::Null
        }
    };
    let json = json!({
        "table": table,
        "key": shown_key,
        "key_hex": secrets.key_hex(&rec.key),
        "bytes": rec.bytes,
        "version": rec.version,
        "format": rec.format,
        "read_as": read_as,
        "record": record,
        "problem": problem,
        "indexes": indexes,
        "indexes_unknown": entries.as_ref().err().map(|why| secrets.problem(why)),
    });
    Ok(Reply::text(json, lines))
}

fn entries(
    rk: &Redkeep,
    table: &str,
    index: &str,
    prefix: Option<&str>,
    limit: usize,
    show_secrets: bool,
) -> Result<Reply> {
    super::common::check_limit(limit as u64)?;
    let tables = rk.tables();
    let (view, iv, entries, more) = rk.store().read(|tx| {
        let view = TableView::find(tx, &tables, table)?;
        let iv = view.index(index)?.clone();
        // Which entries a prefix selects tells what they start with: entries shown as
        // `<redacted>` are not selected by one, as `dump --where` refuses secret fields.
        if prefix.is_some() && Secrets::of(&view, show_secrets).hides_entries() {
            return Err(Error::denied(format!(
                "{table}.{} may hold secret material ({table} has the secret field(s) {}); list it without --prefix, or add --show-secrets",
                iv.name,
                view.info().secret_fields.join(", ")
            )));
        }
        let range = match prefix {
            Some(p) => KeyRange::prefix(prefix_of(view.name(), &iv.name, p)?),
            None => KeyRange::all(),
        };
        let mut entries: Vec<EntryView> = Vec::new();
        let mut more = false;
        view.for_each_entry(tx, &iv, &range, &mut |e| {
            if entries.len() >= limit {
                more = true;
                return Ok(false);
            }
            entries.push(e);
            Ok(true)
        })?;
        Ok((view, iv, entries, more))
    })?;
    let secrets = Secrets::of(&view, show_secrets);
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for e in &entries {
        let target = e.target.as_deref().map(|k| secrets.key(&view, k));
        let agrees = e.agrees.map_or_else(|| "?".into(), yes_no);
        // An index neither the type nor the catalog names (one of an older layout, on a
        // store not migrated up) may be split wrongly between its value and the primary key
        // it holds: shown whole, it may show that key (a token hash).
        let (entry, entry_hex) = secrets.entry(
            view.name(),
            &iv.name,
            &e.value,
            e.target.is_none() || iv.unique.is_none(),
        );
        let problem = e.problem.as_deref().map(|p| secrets.problem(p));
        rows.push(vec![
            entry.clone(),
            target.clone().unwrap_or_else(|| "-".into()),
            if e.exists { "exists" } else { "MISSING" }.to_string(),
            agrees,
            problem.clone().unwrap_or_default(),
        ]);
        items.push(json!({
            "entry": entry,
            "entry_hex": entry_hex,
            "points_at": target,
            "exists": e.exists,
            "agrees": e.agrees,
            "problem": problem,
        }));
    }
    let json = json!({
        "table": table,
        "index": iv.name,
        "unique": iv.unique,
        "entries": items,
        "more": more,
    });
    let mut reply = Reply::table(
        json,
        &["entry", "points at", "record", "agrees", "problem"],
        rows,
    )
    .footer(format!(
        "{} entr{} of {table}.{}{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        iv.name,
        match iv.unique {
            Some(true) => " (unique)",
            Some(false) => "",
            None => " (an index neither the type nor the catalog names)",
        }
    ));
    if more {
        reply = reply.footer(format!(
            "more entries follow; pass --limit (now {limit}){}",
            if secrets.hides_entries() {
                ""
            } else {
                " or a longer --prefix"
            }
        ));
    }
    if secrets.hides_entries() && !entries.is_empty() {
        reply = reply.footer(format!(
            "the entries are shown as {REDACTED}: {table} has the secret field(s) {}, and which fields an index is built from is not recorded; add --show-secrets to see them",
            view.info().secret_fields.join(", ")
        ));
    }
    let version = rk.store().schema_version()?;
    if let Some(v) = version.filter(|v| *v < crate::SCHEMA_VERSION)
        && !entries.is_empty()
    {
        reply = reply.footer(format!(
            "the store is at schema version {v}, whose indexes have that version's layout: read \
             as today's, their entries may look malformed or disagree with their records \
             though they are sound; `redkeep migrate up` rebuilds them"
        ));
    }
    if !view.is_typed() && !entries.is_empty() {
        reply = reply.footer(format!(
            "whether each record agrees (\"?\") is decided by the application's code; run the command inside the application (through its admin socket) to check {table}'s entries"
        ));
    }
    Ok(reply)
}

/// Whether `path` lies in one of the table's secret fields.
fn is_secret(view: &TableView, path: &Path) -> bool {
    view.info().secret_fields.iter().any(|f| f == path.top())
}

fn count(rk: &Redkeep, table: &str, by: &str, min: u64) -> Result<Reply> {
    let path = Path::parse(by.trim(), "--by")?;
    let tables = rk.tables();
    let mut groups: HashMap<String, u64> = HashMap::new();
    let (mut records, mut unread, mut opaque) = (0u64, 0u64, 0u64);
    rk.store().read(|tx| {
        let view = TableView::find(tx, &tables, table)?;
        if is_secret(&view, &path) {
            return Err(Error::denied(format!(
                "{table}.{} holds secret material; count by another field",
                path.top()
            )));
        }
        check_fields(tx, &view, &[&path])?;
        view.for_each(tx, &KeyRange::all(), &mut |rec| {
            records += 1;
            match rec.content.json() {
                Some(json) => {
                    let value = path.lookup(json).unwrap_or(&Value::Null);
                    *groups.entry(value.to_string()).or_default() += 1;
                }
                None => {
                    unread += 1;
                    opaque += u64::from(rec.content == Content::Opaque);
                }
            }
            Ok(true)
        })
    })?;
    let mut shown: Vec<(Value, u64)> = groups
        .into_iter()
        .filter(|(_, n)| *n >= min)
        .map(|(k, n)| (serde_json::from_str(&k).unwrap_or(Value::String(k)), n))
        .collect();
    shown.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    let rows = shown
        .iter()
        .map(|(v, n)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![text, n.to_string()]
        })
        .collect();
    let json = json!({
        "table": table,
        "by": path.text,
        "min": min,
        "records": records,
        "unreadable": unread,
        "groups": shown.iter().map(|(v, n)| json!({"value": v, "count": n})).collect::<Vec<_>>(),
    });
    let mut reply = Reply::table(json, &[path.text.as_str(), "count"], rows).footer(format!(
        "{} group(s) of at least {min} among {records} record(s) of {table}",
        shown.len()
    ));
    if opaque > 0 {
        reply = reply.footer(opaque_reason(table, opaque));
    } else if unread > 0 {
        reply = reply.footer(format!(
            "{unread} record(s) do not decode and were not counted; `redkeep check` reports them"
        ));
    }
    Ok(reply)
}

fn tables(rk: &Redkeep) -> Result<Reply> {
    let known = rk.tables();
    let summaries = rk.store().read(|tx| {
        TableView::all(tx, &known)?
            .into_iter()
            .map(|v| {
                let s = v.summary(tx)?;
                Ok((v, s))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut notes = Vec::new();
    for (view, s) in &summaries {
        let legacy: u64 = s
            .versions
            .iter()
            .filter(|v| v.format == 1)
            .map(|v| v.records)
            .sum();
        let reads_as = match (view.is_typed(), legacy) {
            (true, _) => "its type",
            (false, 0) => "self-describing",
            (false, n) if n == s.records => "keys and sizes",
            (false, _) => "self-describing; format 1: keys and sizes",
        };
        if !view.is_typed() && legacy > 0 {
            notes.push(opaque_reason(view.name(), legacy));
        }
        let versions: Vec<String> = s
            .versions
            .iter()
            .map(|v| {
                format!(
                    "v{} ×{}{}",
                    v.version,
                    v.records,
                    if v.format == 1 { " (format 1)" } else { "" }
                )
            })
            .chain((s.unreadable > 0).then(|| format!("unreadable ×{}", s.unreadable)))
            .collect();
        rows.push(vec![
            view.name().to_string(),
            "table".into(),
            s.records.to_string(),
            s.bytes.to_string(),
            if versions.is_empty() {
                "-".into()
            } else {
                versions.join(", ")
            },
            reads_as.into(),
        ]);
        for i in &s.indexes {
            rows.push(vec![
                format!("{}.{}", view.name(), i.index.name),
                match i.index.unique {
                    Some(true) => "unique index",
                    Some(false) => "index",
                    None => "index (not in the catalog)",
                }
                .into(),
                i.entries.to_string(),
                i.bytes.to_string(),
                String::new(),
                String::new(),
            ]);
        }
        items.push(json!({
            "name": view.name(),
            "records": s.records,
            "bytes": s.bytes,
            "versions": s.versions,
            "unreadable": s.unreadable,
            "reads_as": reads_as,
            "typed": view.is_typed(),
            "catalogued": view.is_catalogued(),
            "version": view.info().version,
            "key_len": view.info().key_len,
            "secret_fields": view.info().secret_fields,
            "secret_key": view.info().secret_key,
            "indexes": s.indexes,
        }));
    }
    let mut reply = Reply::table(
        json!({ "tables": items }),
        &[
            "name",
            "kind",
            "entries",
            "bytes",
            "versions",
            "read through",
        ],
        rows,
    );
    for n in notes {
        reply = reply.footer(n);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::without_quoted_values;

    #[test]
    fn every_value_serde_quotes_is_redacted_and_field_names_stay() {
        assert_eq!(
            without_quoted_values(
                r#"invalid type: string "9f86\"d0\\", expected u64; missing field `pin`"#
            ),
            "invalid type: string <redacted>, expected u64; missing field `pin`"
        );
        assert_eq!(
            without_quoted_values("invalid value: integer `31415`, unknown variant `Gold`"),
            "invalid value: integer <redacted>, unknown variant <redacted>"
        );
        // A quote that does not close hides the rest.
        assert_eq!(
            without_quoted_values("invalid type: string \"9f86 and so on"),
            "invalid type: string <redacted>"
        );
        assert_eq!(without_quoted_values("no value here"), "no value here");
    }
}

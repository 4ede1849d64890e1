//! One way to run SQL on either backend. The store's logic is written once against [`Conn`]; its
//! SQL is written in SQLite's dialect with `?` / `?N` parameters, and the few constructs
//! PostgreSQL spells differently are rewritten once per statement text (see [`to_postgres`]),
//! then prepared and cached per connection. Statements that differ in substance (claims with
//! `FOR UPDATE SKIP LOCKED`, ids made in SQL) are written twice and picked with
//! [`Conn::pick`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use crate::{Result, StoreError};

/// A connection of either backend, inside the caller's transaction (writes) or not (reads).
pub(crate) enum Conn<'a> {
    /// SQLite.
    Lite(&'a rusqlite::Connection),
    /// PostgreSQL.
    Pg(&'a RefCell<PgClient>),
}

/// Most statements a PostgreSQL connection keeps prepared.
const MAX_PREPARED: usize = 512;

/// A PostgreSQL connection with its prepared statements, by source text.
pub(crate) struct PgClient {
    pub(crate) client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

impl PgClient {
    pub(crate) fn new(client: postgres::Client) -> PgClient {
        PgClient { client, prepared: HashMap::new() }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(&to_postgres(sql))?;
        // Filters with lists make a statement per list length: keep the cache bounded.
        if self.prepared.len() >= MAX_PREPARED {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
    Null,
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(v as i64)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Cow::Owned(v))
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Blob(Cow::Borrowed(v))
    }
}
impl From<Vec<u8>> for Arg<'_> {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(Cow::Owned(v))
    }
}
impl<'a, T> From<Option<T>> for Arg<'a>
where
    Arg<'a>: From<T>,
{
    fn from(v: Option<T>) -> Self {
        v.map(Arg::from).unwrap_or(Arg::Null)
    }
}
impl From<&Option<i64>> for Arg<'_> {
    fn from(v: &Option<i64>) -> Self {
        (*v).map(Arg::Int).unwrap_or(Arg::Null)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map(Arg::from).unwrap_or(Arg::Null)
    }
}

/// `args![a, b, c]`: a parameter list of values that convert into [`Arg`].
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::Arg::from($v)),*][..] };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Arg::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Arg::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

impl postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        // The column decides the wire type (integers are BIGINT in our schema, but a literal's
        // neighbour may make a parameter INT4 or BOOL): convert to it, refusing what does not fit.
        match self {
            Arg::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Arg::Text(s) => s.as_ref().to_sql(ty, out),
            Arg::Blob(b) => b.as_ref().to_sql(ty, out),
            Arg::Null => Ok(postgres::types::IsNull::Yes),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// One row of a result.
pub(crate) enum Row<'a> {
    Lite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

/// A value a column can be read as.
pub(crate) trait FromCol: Sized {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self>;
    fn pg(r: &postgres::Row, i: usize) -> Result<Self>;
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl FromCol for Option<i64> {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        use postgres::types::Type;
        let ty = r.columns()[i].type_().clone();
        Ok(match ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(corrupt)?,
            Type::INT4 => r.try_get::<_, Option<i32>>(i).map_err(corrupt)?.map(i64::from),
            Type::INT2 => r.try_get::<_, Option<i16>>(i).map_err(corrupt)?.map(i64::from),
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map_err(corrupt)?.map(i64::from),
            other => return Err(corrupt(format!("column {i} is {other}, not an integer"))),
        })
    }
}
impl FromCol for i64 {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        Option::<i64>::pg(r, i)?.ok_or_else(|| corrupt(format!("column {i} is NULL")))
    }
}
impl FromCol for bool {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        Ok(i64::pg(r, i)? != 0)
    }
}
impl FromCol for Option<String> {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        r.try_get(i).map_err(corrupt)
    }
}
impl FromCol for String {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        r.try_get(i).map_err(corrupt)
    }
}
impl FromCol for Vec<u8> {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        r.try_get(i).map_err(corrupt)
    }
}
impl FromCol for Option<Vec<u8>> {
    fn lite(r: &rusqlite::Row, i: usize) -> Result<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> Result<Self> {
        r.try_get(i).map_err(corrupt)
    }
}

impl Row<'_> {
    /// Column `i` as a `T`.
    pub(crate) fn get<T: FromCol>(&self, i: usize) -> Result<T> {
        match self {
            Row::Lite(r) => T::lite(r, i),
            Row::Pg(r) => T::pg(r, i),
        }
    }
}

/// Which backend a connection belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Conn<'_> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Lite(_) => Dialect::Sqlite,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }

    /// The statement of this backend, where the two differ in substance.
    pub(crate) fn pick<'s>(&self, sqlite: &'s str, postgres: &'s str) -> &'s str {
        match self {
            Conn::Lite(_) => sqlite,
            Conn::Pg(_) => postgres,
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, args: &[Arg]) -> Result<usize> {
        match self {
            Conn::Lite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args.iter()))?),
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let st = c.statement(sql)?;
                Ok(c.client.execute(&st, &pg_args(args))? as usize)
            }
        }
    }

    /// Runs `f` between `begin` and COMMIT, or ROLLBACK when it fails (`f`'s error is the one
    /// reported, not a failing ROLLBACK's).
    pub(crate) fn in_transaction<T>(&self, begin: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.batch(begin)?;
        match f() {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Runs statements without parameters (schema changes, transaction control).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Lite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => Ok(c.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// Every row of a query, each mapped by `f`.
    pub(crate) fn query<T>(&self, sql: &str, args: &[Arg], mut f: impl FnMut(&Row) -> Result<T>) -> Result<Vec<T>> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Lite(r))?);
                }
                Ok(out)
            }
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let st = c.statement(sql)?;
                let rows = c.client.query(&st, &pg_args(args))?;
                drop(c);
                rows.iter().map(|r| f(&Row::Pg(r))).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        args: &[Arg],
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                match rows.next()? {
                    Some(r) => Ok(Some(f(&Row::Lite(r))?)),
                    None => Ok(None),
                }
            }
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let st = c.statement(sql)?;
                // The first row, as SQLite gives it (a statement may match more).
                let row = c.client.query(&st, &pg_args(args))?.into_iter().next();
                drop(c);
                row.as_ref().map(|r| f(&Row::Pg(r))).transpose()
            }
        }
    }

    /// The first row of a query; `NotFound` if there is none.
    pub(crate) fn query_one<T>(&self, sql: &str, args: &[Arg], f: impl FnMut(&Row) -> Result<T>) -> Result<T> {
        self.query_opt(sql, args, f)?.ok_or(StoreError::NotFound)
    }

    /// The first column of the first row.
    pub(crate) fn value<T: FromCol>(&self, sql: &str, args: &[Arg]) -> Result<T> {
        self.query_one(sql, args, |r| r.get(0))
    }
}

/// A `LIKE … ESCAPE '\\'` pattern matching `s` anywhere, its wildcards taken literally.
pub(crate) fn like(s: &str) -> String {
    format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// The one filter builder: a `WHERE` clause of terms joined by `AND`, each term with its own
/// arguments, so no listing assembles its SQL and its argument list by hand. Column names and
/// operators come from the code; every value is an argument.
pub(crate) struct Where<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> Where<'a> {
    /// ` WHERE {term}` with the term's arguments.
    pub(crate) fn new(term: &str, args: impl IntoIterator<Item = Arg<'a>>) -> Self {
        Where { sql: format!(" WHERE {term}"), args: args.into_iter().collect() }
    }

    /// `AND {term}` with its arguments.
    pub(crate) fn and(mut self, term: &str, args: impl IntoIterator<Item = Arg<'a>>) -> Self {
        self.sql += " AND ";
        self.sql += term;
        self.args.extend(args);
        self
    }

    /// `AND {term}` with `value` as its argument, when there is a value.
    pub(crate) fn and_some<T: Into<Arg<'a>>>(self, term: &str, value: Option<T>) -> Self {
        match value {
            Some(v) => self.and(term, [v.into()]),
            None => self,
        }
    }

    /// `AND {column} IN (?, …)`, when `values` is not empty (an empty list filters nothing).
    pub(crate) fn and_in<T: Into<Arg<'a>>>(self, column: &str, values: impl IntoIterator<Item = T>) -> Self {
        let values: Vec<Arg<'a>> = values.into_iter().map(Into::into).collect();
        if values.is_empty() {
            return self;
        }
        let term = format!("{column} IN ({})", crate::placeholders(values.len()));
        self.and(&term, values)
    }

    /// `AND {column} LIKE ?` matching `key` anywhere, its wildcards taken literally, when there
    /// is a non-empty key.
    pub(crate) fn and_contains(self, column: &str, key: Option<&str>) -> Self {
        match key.filter(|k| !k.is_empty()) {
            Some(k) => self.and(&format!("{column} LIKE ? ESCAPE '\\'"), [like(k).into()]),
            None => self,
        }
    }

    /// `AND (a OR b OR …)`, each alternative a conjunction of `(term, argument)` pairs (an empty
    /// conjunction matches everything), when there are alternatives.
    pub(crate) fn and_any(self, alternatives: Vec<Vec<(&str, Arg<'a>)>>) -> Self {
        if alternatives.is_empty() {
            return self;
        }
        let mut args = Vec::new();
        let any: Vec<String> = alternatives
            .into_iter()
            .map(|all| {
                let terms: Vec<&str> = all.iter().map(|(t, _)| *t).collect();
                let sql = if terms.is_empty() { "1 = 1".to_string() } else { terms.join(" AND ") };
                args.extend(all.into_iter().map(|(_, a)| a));
                format!("({sql})")
            })
            .collect();
        self.and(&format!("({})", any.join(" OR ")), args)
    }

    /// The clause, starting with ` WHERE`.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// The clause's arguments, in order.
    pub(crate) fn args(&self) -> &[Arg<'a>] {
        &self.args
    }

    /// The arguments followed by a page's `LIMIT ? OFFSET ?`.
    pub(crate) fn paged(&self, limit: i64, offset: i64) -> Vec<Arg<'a>> {
        let mut args = self.args.clone();
        args.extend([limit.into(), offset.into()]);
        args
    }
}

/// A claim statement (`… WHERE rowid = (SELECT rowid … LIMIT 1)`) for both backends: as
/// written for SQLite, whose one writer makes it exclusive, and with `FOR UPDATE SKIP LOCKED`
/// for PostgreSQL, so concurrent claimers take different rows instead of waiting for each
/// other. PostgreSQL finds the row it locked by its physical address (`ctid`), so no index on
/// `rowid` is needed (one fewer index entry per task of a fan-out).
pub(crate) fn skip_locked(sqlite: String) -> [String; 2] {
    let postgres = sqlite.replacen("LIMIT 1)", "LIMIT 1 FOR UPDATE SKIP LOCKED)", 1).replacen(
        "WHERE rowid = (SELECT rowid FROM",
        "WHERE ctid = (SELECT ctid FROM",
        1,
    );
    assert!(
        postgres.contains("FOR UPDATE SKIP LOCKED") && postgres.contains("WHERE ctid ="),
        "a claim statement: {sqlite}"
    );
    [sqlite, postgres]
}

fn pg_args<'a>(args: &'a [Arg]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn postgres::types::ToSql + Sync)).collect()
}

/// A statement in SQLite's dialect, as PostgreSQL spells it: `?N` becomes `$N` and a bare `?`
/// the next number (SQLite's own numbering), `LIKE` (case-blind for ASCII in SQLite) becomes
/// `ILIKE`, `INDEXED BY name` goes (PostgreSQL's planner takes no hints), and the SQLite
/// clock expression becomes PostgreSQL's. Text inside quotes is left alone.
pub(crate) fn to_postgres(sql: &str) -> String {
    let sql = sql
        .replace(
            "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        )
        .replace(" LIKE ", " ILIKE ");
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let (mut quoted, mut highest) = (false, 0usize);
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = digits.parse().unwrap_or(highest + 1);
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(ch),
        }
    }
    strip_indexed_by(&out)
}

fn strip_indexed_by(sql: &str) -> String {
    let mut out = sql.to_string();
    while let Some(at) = out.find(" INDEXED BY ") {
        let rest = &out[at + " INDEXED BY ".len()..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        out = format!("{}{}", &out[..at], &rest[end..]);
    }
    out
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        match e.code() {
            // The server is shutting down or cannot take the connection.
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::TOO_MANY_CONNECTIONS
                    || *c == SqlState::CONNECTION_FAILURE =>
            {
                StoreError::Unavailable(e.to_string())
            }
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict,
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE => {
                StoreError::Contended(e.as_db_error().map(|d| d.to_string()).unwrap_or_else(|| e.to_string()))
            }
            Some(c)
                if *c == SqlState::FOREIGN_KEY_VIOLATION
                    || *c == SqlState::CHECK_VIOLATION
                    || *c == SqlState::NOT_NULL_VIOLATION =>
            {
                StoreError::Constraint(e.to_string())
            }
            Some(_) => StoreError::Db(e.as_db_error().map(|d| d.to_string()).unwrap_or_else(|| e.to_string())),
            // No SQLSTATE: the connection failed or closed (the server is down or unreachable).
            None if e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            None => StoreError::Db(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_statements_are_spelled_for_postgres() {
        assert_eq!(to_postgres("SELECT ? WHERE a = ? AND b = '?'"), "SELECT $1 WHERE a = $2 AND b = '?'");
        assert_eq!(to_postgres("x = ?2 OR y = ?1 AND z = ?"), "x = $2 OR y = $1 AND z = $3");
        assert_eq!(
            to_postgres("SELECT id FROM tasks INDEXED BY tasks_due WHERE n LIKE ? ESCAPE '\\'"),
            "SELECT id FROM tasks WHERE n ILIKE $1 ESCAPE '\\'"
        );
    }
}

//! Asset selections: a caller-chosen BusinessType (the RelationKey of SubmitOperationTask)
//! bound to a set of instances, built by adding and removing targets or criteria. Large
//! selections never pass through memory: criteria and submissions are single SQL statements.

use model::Vendor;

use crate::sql::{args, Arg, Row, Where};
use crate::whitelists::whitelisted_sql;
use crate::Instance;
use crate::{now_ms, Result, Store, StoreError};

/// A selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// `SelectionKey` (UUID-like).
    pub key: String,
    /// `BusinessType` (= the RelationKey).
    pub business_type: String,
    /// `instance` (listed targets) or `all_instance` (every instance of the account).
    pub target_type: String,
    /// `all`, `linux` or `windows`.
    pub platform: String,
}

/// One condition of a criteria search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// The instance id, exactly.
    InstanceId(String),
    /// A substring of the instance name.
    InstanceName(String),
    /// The region, exactly.
    RegionId(String),
    /// The vendor.
    Vendor(Vendor),
    /// The OS type (`linux`, `windows`).
    OsType(String),
    /// The instance fails this check item now (NOT_PASS and not whitelisted).
    FailsCheck(i64),
}

fn selection_from(r: &Row) -> Result<Selection> {
    Ok(Selection { key: r.get(0)?, business_type: r.get(1)?, target_type: r.get(2)?, platform: r.get(3)? })
}

const SELECTION_COLS: &str = "selection_key, business_type, target_type, platform";

/// The instances a selection holds: `FROM … WHERE …` over alias `i`, with its arguments.
pub(crate) fn selected_instances(account_id: &str, s: &Selection) -> (String, Vec<Arg<'static>>) {
    let (from, wh) = if s.target_type == "all_instance" {
        (" FROM instances i", Where::new("i.account_id = ?", [account_id.to_string().into()]))
    } else {
        (
            " FROM selection_targets t JOIN instances i ON i.pk = t.instance_pk",
            Where::new(
                "t.selection_key = ? AND i.account_id = ?",
                [s.key.clone().into(), account_id.to_string().into()],
            ),
        )
    };
    let wh = wh.and_some("i.os_type = ?", (s.platform != "all").then(|| s.platform.clone()));
    (format!("{from}{}", wh.sql()), wh.args().to_vec())
}

fn criterion_sql(c: &Criterion, args: &mut Vec<Arg<'static>>) -> String {
    match c {
        Criterion::InstanceId(v) => {
            args.push(v.clone().into());
            "i.instance_id = ?".into()
        }
        Criterion::InstanceName(v) => {
            args.push(crate::sql::like(v).into());
            "i.instance_name LIKE ? ESCAPE '\\'".into()
        }
        Criterion::RegionId(v) => {
            args.push(v.clone().into());
            "i.region_id = ?".into()
        }
        Criterion::Vendor(v) => {
            args.push(v.code().into());
            "i.vendor = ?".into()
        }
        Criterion::OsType(v) => {
            args.push(v.to_lowercase().into());
            "i.os_type = ?".into()
        }
        Criterion::FailsCheck(id) => {
            args.push((*id).into());
            format!(
                "EXISTS (SELECT 1 FROM check_results r WHERE r.account_id = i.account_id AND r.instance_pk = i.pk AND r.check_id = ? \
                 AND r.status = 'NOT_PASS' AND NOT {})",
                whitelisted_sql("r.account_id", "r.check_id", "r.instance_pk")
            )
        }
    }
}

impl crate::Selections for Store {
    fn create_selection(
        &self,
        account_id: &str,
        business_type: &str,
        target_type: &str,
        platform: &str,
    ) -> Result<(Selection, bool)> {
        let account_id = account_id.to_string();
        let business_type = business_type.to_string();
        let target_type = target_type.to_string();
        let platform = platform.to_string();
        let key = crate::uuid_like();
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO selections (selection_key, account_id, business_type, target_type, platform, created_ms) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT DO NOTHING",
                args![&key, &account_id, &business_type, &target_type, &platform, now_ms()],
            )?;
            let s = tx.query_one(
                &format!("SELECT {SELECTION_COLS} FROM selections WHERE account_id = ? AND business_type = ?"),
                args![&account_id, &business_type],
                selection_from,
            )?;
            Ok((s, n == 1))
        })
    }

    fn selection_by_business_type(&self, account_id: &str, business_type: &str) -> Result<Option<Selection>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {SELECTION_COLS} FROM selections WHERE account_id = ? AND business_type = ?"),
                args![account_id, business_type],
                selection_from,
            )
        })
    }

    fn selection(&self, account_id: &str, key: &str) -> Result<Option<Selection>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {SELECTION_COLS} FROM selections WHERE account_id = ? AND selection_key = ?"),
                args![account_id, key],
                selection_from,
            )
        })
    }

    fn apply_targets(&self, account_id: &str, s: &Selection, ops: &[(String, bool)]) -> Result<()> {
        let account_id = account_id.to_string();
        let s = s.clone();
        let ops = ops.to_vec();
        self.write(move |tx| {
            for (id, is_add) in &ops {
                let pks: Vec<i64> = tx.query(
                    "SELECT pk FROM instances WHERE account_id = ? AND instance_id = ?",
                    args![&account_id, id],
                    |r| r.get(0),
                )?;
                if pks.is_empty() {
                    return Err(StoreError::UnknownInstance(id.clone()));
                }
                for pk in pks {
                    let sql = if *is_add {
                        "INSERT INTO selection_targets (selection_key, instance_pk) VALUES (?, ?) ON CONFLICT DO NOTHING"
                    } else {
                        "DELETE FROM selection_targets WHERE selection_key = ? AND instance_pk = ?"
                    };
                    tx.execute(sql, args![&s.key, pk])?;
                }
            }
            Ok(())
        })
    }

    fn apply_criteria(
        &self,
        account_id: &str,
        s: &Selection,
        criteria: &[Criterion],
        any: bool,
        add: bool,
    ) -> Result<usize> {
        let account_id = account_id.to_string();
        let s = s.clone();
        let criteria = criteria.to_vec();
        let mut args: Vec<Arg<'static>> = Vec::new();
        let conds: Vec<String> = criteria.iter().map(|c| criterion_sql(c, &mut args)).collect();
        let joined =
            if conds.is_empty() { "1 = 1".to_string() } else { conds.join(if any { " OR " } else { " AND " }) };
        let matching = format!("SELECT i.pk FROM instances i WHERE i.account_id = ? AND ({joined})");
        let mut all_args: Vec<Arg<'static>> = vec![s.key.clone().into(), account_id.to_string().into()];
        all_args.extend(args);
        let sql = if add {
            // `WHERE TRUE`: SQLite reads `ON CONFLICT` after a bare `FROM (…)` as a join's ON.
            format!(
                "INSERT INTO selection_targets (selection_key, instance_pk) SELECT ?, pk FROM ({}) AS m WHERE TRUE ON CONFLICT DO NOTHING",
                matching.replacen("SELECT i.pk", "SELECT i.pk AS pk", 1)
            )
        } else {
            format!("DELETE FROM selection_targets WHERE selection_key = ? AND instance_pk IN ({matching})")
        };
        self.write(move |tx| {
            let changed = tx.execute(&sql, &all_args)?;
            crate::pg::analyze_after_bulk(tx, "selection_targets", changed)?;
            Ok(changed)
        })
    }

    fn list_selection_targets(
        &self,
        account_id: &str,
        s: &Selection,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<(String, String)>, i64)> {
        let (from, args) = selected_instances(account_id, s);
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*){from}"), &args)?;
            let mut page = args.clone();
            page.push(limit.into());
            page.push(offset.into());
            let rows = c.query(
                &format!("SELECT i.instance_id, i.instance_name{from} ORDER BY i.pk LIMIT ? OFFSET ?"),
                &page,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((rows, total))
        })
    }

    fn selected_instances_page(
        &self,
        account_id: &str,
        s: &Selection,
        connector: &str,
        exclude_pks: &[i64],
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Instance>, i64)> {
        let (from, mut args) = selected_instances(account_id, s);
        args.push(connector.to_string().into());
        let mut sql = format!("{from} AND i.connector = ?");
        if !exclude_pks.is_empty() {
            sql += &format!(" AND i.pk NOT IN ({})", crate::placeholders(exclude_pks.len()));
            args.extend(exclude_pks.iter().map(|pk| Arg::from(*pk)));
        }
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*){sql}"), &args)?;
            let mut page = args.clone();
            page.extend([limit.into(), offset.into()]);
            let rows = c.query(
                &format!("SELECT {}{sql} ORDER BY i.pk LIMIT ? OFFSET ?", crate::instances::INSTANCE_COLS),
                &page,
                |r| crate::instances::instance_from(r, 0),
            )?;
            Ok((rows, total))
        })
    }

    fn selected_among(&self, account_id: &str, s: &Selection, ids: &[String]) -> Result<Vec<(String, String)>> {
        let (from, args) = selected_instances(account_id, s);
        self.read(|c| {
            let sql = format!("SELECT i.instance_id, i.instance_name{from} AND i.instance_id = ?");
            let mut out = Vec::new();
            for id in ids {
                let mut a = args.clone();
                a.push(id.as_str().into());
                out.extend(c.query(&sql, &a, |r| Ok((r.get(0)?, r.get(1)?)))?);
            }
            Ok(out)
        })
    }
}

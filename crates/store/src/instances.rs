use crate::sql::{args, Arg, Conn, Row, Where};
use crate::{now_ms, Result, Store, StoreError};
use model::{Services, Vendor};

/// An instance to register.
#[derive(Clone, Debug)]
pub struct NewInstance {
    /// Provider.
    pub vendor: Vendor,
    /// Region.
    pub region_id: String,
    /// The provider's instance id.
    pub instance_id: String,
    /// Display name.
    pub instance_name: String,
    /// Connector kind (`host`).
    pub connector: String,
    /// Where the connector finds it (host: the filesystem root).
    pub locator: String,
    /// `linux` or `windows`.
    pub os_type: String,
    /// For a host whose root is the running system: how its services are reached (None: only
    /// files; no live step runs).
    pub live: Option<Services>,
}

/// A registered instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Internal key.
    pub pk: i64,
    /// Owner.
    pub account_id: String,
    /// Provider.
    pub vendor: Vendor,
    /// Region.
    pub region_id: String,
    /// The provider's instance id.
    pub instance_id: String,
    /// Display name.
    pub instance_name: String,
    /// Connector kind.
    pub connector: String,
    /// Where the connector finds it.
    pub locator: String,
    /// It has been released.
    pub freed: bool,
    /// The cloud account it was discovered through (None for hosts).
    pub cloud_auth_id: Option<i64>,
    /// For a host whose root is the running system: how its services are reached.
    pub live: Option<Services>,
}

/// The locator of an instance reached through its agent (a root is an absolute path): the
/// engine's workers leave its tasks and check-run details to the agent.
pub const AGENT_LOCATOR: &str = "agent";

impl Instance {
    /// Whether the instance is reached through its agent.
    pub fn via_agent(&self) -> bool {
        self.locator == AGENT_LOCATOR
    }
}

const UPSERT_INSTANCE: &str = "INSERT INTO instances (account_id, vendor, region_id, instance_id, instance_name, connector, locator, os_type, live, created_ms)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (account_id, vendor, region_id, instance_id) DO UPDATE SET
       instance_name = excluded.instance_name, connector = excluded.connector, locator = excluded.locator,
       os_type = excluded.os_type, live = excluded.live, freed = 0";

/// Instances registered by one statement (10 parameters each: within SQLite's limit of 32,766).
const UPSERT_ROWS: usize = 500;

/// [`UPSERT_INSTANCE`] for `rows` instances at once.
fn upsert_rows_sql(rows: usize) -> String {
    let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    UPSERT_INSTANCE.replacen(one, &vec![one; rows].join(", "), 1)
}

pub(crate) const INSTANCE_COLS: &str =
    "i.pk, i.account_id, i.vendor, i.region_id, i.instance_id, i.instance_name, i.connector, i.locator, i.freed, i.cloud_auth_id, i.live";

pub(crate) fn instance_from(r: &Row, at: usize) -> Result<Instance> {
    Ok(Instance {
        pk: r.get(at)?,
        account_id: r.get(at + 1)?,
        vendor: Vendor::from_code(r.get(at + 2)?).unwrap_or(Vendor::Outside),
        region_id: r.get(at + 3)?,
        instance_id: r.get(at + 4)?,
        instance_name: r.get(at + 5)?,
        connector: r.get(at + 6)?,
        locator: r.get(at + 7)?,
        freed: r.get(at + 8)?,
        cloud_auth_id: r.get(at + 9)?,
        live: live_from(r.get(at + 10)?)?,
    })
}

/// The stored form of [`NewInstance::live`]: JSON, NULL for a root that is only files.
fn live_text(live: &Option<Services>) -> Option<String> {
    live.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default())
}

fn live_from(text: Option<String>) -> Result<Option<Services>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("instances.live: {e}")))).transpose()
}

/// Registers one instance in a transaction under way and returns it.
pub(crate) fn upsert_in(tx: &Conn, account_id: &str, n: &NewInstance) -> Result<Instance> {
    tx.execute(
        UPSERT_INSTANCE,
        args![
            account_id,
            n.vendor.code(),
            &n.region_id,
            &n.instance_id,
            &n.instance_name,
            &n.connector,
            &n.locator,
            &n.os_type,
            live_text(&n.live),
            now_ms()
        ],
    )?;
    tx.query_one(
        &format!("SELECT {INSTANCE_COLS} FROM instances i WHERE account_id = ? AND vendor = ? AND region_id = ? AND instance_id = ?"),
        args![account_id, n.vendor.code(), &n.region_id, &n.instance_id],
        |r| instance_from(r, 0),
    )
}

impl crate::Instances for Store {
    fn upsert_instances(&self, account_id: &str, list: &[NewInstance]) -> Result<usize> {
        let account_id = account_id.to_string();
        let list = list.to_vec();
        let now = now_ms();
        // One statement per chunk (a round trip each on PostgreSQL, not one per instance). An
        // instance listed twice is registered as last listed: one statement may not update a
        // row twice.
        let mut last = std::collections::HashMap::new();
        for (i, n) in list.iter().enumerate() {
            last.insert((n.vendor.code(), n.region_id.as_str(), n.instance_id.as_str()), i);
        }
        let mut kept: Vec<usize> = last.into_values().collect();
        kept.sort_unstable();
        let rows: Vec<NewInstance> = kept.into_iter().map(|i| list[i].clone()).collect();
        self.write(move |tx| {
            for chunk in rows.chunks(UPSERT_ROWS) {
                let mut values = Vec::with_capacity(chunk.len() * 10);
                for n in chunk {
                    values.extend([
                        Arg::from(account_id.as_str()),
                        n.vendor.code().into(),
                        n.region_id.as_str().into(),
                        n.instance_id.as_str().into(),
                        n.instance_name.as_str().into(),
                        n.connector.as_str().into(),
                        n.locator.as_str().into(),
                        n.os_type.as_str().into(),
                        live_text(&n.live).into(),
                        now.into(),
                    ]);
                }
                tx.execute(&upsert_rows_sql(chunk.len()), &values)?;
            }
            crate::pg::analyze_after_bulk(tx, "instances", rows.len())?;
            Ok(list.len())
        })
    }

    fn upsert_instance(&self, account_id: &str, n: &NewInstance) -> Result<Instance> {
        let account_id = account_id.to_string();
        let n = n.clone();
        self.write(move |tx| upsert_in(tx, &account_id, &n))
    }

    fn find_instances(&self, account_id: &str, instance_id: &str) -> Result<Vec<Instance>> {
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {INSTANCE_COLS} FROM instances i WHERE account_id = ? AND instance_id = ? ORDER BY pk"
                ),
                args![account_id, instance_id],
                |r| instance_from(r, 0),
            )
        })
    }

    fn find_instances_by_ids(&self, account_id: &str, instance_ids: &[String]) -> Result<Vec<Instance>> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let args: Vec<_> = std::iter::once(account_id.into()).chain(instance_ids.iter().map(Into::into)).collect();
            c.query(
                &format!(
                    "SELECT {INSTANCE_COLS} FROM instances i WHERE account_id = ? AND instance_id IN ({}) ORDER BY pk",
                    crate::placeholders(instance_ids.len())
                ),
                &args,
                |r| instance_from(r, 0),
            )
        })
    }

    fn list_instances(&self, account_id: &str) -> Result<Vec<Instance>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {INSTANCE_COLS} FROM instances i WHERE account_id = ? ORDER BY pk"),
                args![account_id],
                |r| instance_from(r, 0),
            )
        })
    }

    fn instances_page(
        &self,
        account_id: &str,
        key: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Instance>, i64)> {
        let pattern = key.map(crate::sql::like);
        let wh = Where::new("account_id = ? AND freed = 0", [account_id.into()]).and_any(match &pattern {
            None => Vec::new(),
            Some(p) => vec![
                vec![("i.instance_id LIKE ? ESCAPE '\\'", p.into())],
                vec![("i.instance_name LIKE ? ESCAPE '\\'", p.into())],
            ],
        });
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*) FROM instances i{}", wh.sql()), wh.args())?;
            let rows = c.query(
                &format!("SELECT {INSTANCE_COLS} FROM instances i{} ORDER BY pk LIMIT ? OFFSET ?", wh.sql()),
                &wh.paged(limit, offset),
                |r| instance_from(r, 0),
            )?;
            Ok((rows, total))
        })
    }

    fn instance_connectors(&self, account_id: &str) -> Result<Vec<(i64, String)>> {
        self.read(|c| {
            c.query(
                "SELECT pk, connector FROM instances WHERE account_id = ? AND freed = 0 ORDER BY pk",
                args![account_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn instances_by_pks(&self, account_id: &str, pks: &[i64]) -> Result<Vec<Instance>> {
        self.read(|c| {
            let mut out = Vec::with_capacity(pks.len());
            for chunk in pks.chunks(crate::IN_LIST_MAX) {
                let wh = Where::new("account_id = ?", [account_id.into()]).and_in("pk", chunk.iter().copied());
                out.extend(c.query(
                    &format!("SELECT {INSTANCE_COLS} FROM instances i{}", wh.sql()),
                    wh.args(),
                    |r| instance_from(r, 0),
                )?);
            }
            Ok(out)
        })
    }

    fn mark_freed(&self, account_id: &str, pk: i64) -> Result<()> {
        let account_id = account_id.to_string();
        self.write(move |tx| {
            tx.execute("UPDATE instances SET freed = 1 WHERE account_id = ? AND pk = ?", args![&account_id, pk])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;
    use crate::*;
    use model::Vendor;

    crate::testutil::both_backends! {
        fn instances_are_paged_and_found_by_id_or_name_with_wildcards_taken_literally() {
            let (_p, s) = store();
            let acct = s.create_account("page").unwrap().id;
            let other = s.create_account("other").unwrap().id;
            let new = |id: &str, name: &str| NewInstance {
                vendor: Vendor::Aliyun,
                region_id: "cn-hangzhou".into(),
                instance_id: id.into(),
                instance_name: name.into(),
                connector: "host".into(),
                locator: "/nowhere".into(),
                os_type: "linux".into(),
                live: None,
            };
            let list = [new("i-1", "web-01"), new("i-2", "Web-02"), new("i-3", "db_1"), new("i-4", "dbx1"), new("i-5", "gone")];
            s.upsert_instances(&acct, &list).unwrap();
            s.upsert_instances(&other, &[new("i-9", "web-09")]).unwrap();
            let gone = s.find_instances(&acct, "i-5").unwrap()[0].pk;
            s.mark_freed(&acct, gone).unwrap();
            let ids = |key: Option<&str>, offset, limit| {
                let (rows, total) = s.instances_page(&acct, key, offset, limit).unwrap();
                (rows.into_iter().map(|i| i.instance_id).collect::<Vec<_>>(), total)
            };
            assert_eq!(ids(None, 0, 10), (vec!["i-1".into(), "i-2".into(), "i-3".into(), "i-4".into()], 4), "released left out");
            assert_eq!(ids(None, 1, 2), (vec!["i-2".into(), "i-3".into()], 4));
            assert_eq!(ids(Some("WEB"), 0, 10).1, 2, "case-blind, the other account's left out");
            assert_eq!(ids(Some("_"), 0, 10), (vec!["i-3".into()], 1), "an underscore is an underscore");
            assert_eq!(ids(Some("i-4"), 0, 10), (vec!["i-4".into()], 1), "by id");
        }
    }
}

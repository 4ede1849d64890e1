//! Cloud accounts (AddCloudVendorAccountAK and friends) and the instances discovered through
//! them. The AccessKey secret is sealed with the master key (see `secrets`) and is opened only
//! for the connector that calls the cloud; no listing returns it.

use std::collections::HashSet;

use crate::sql::{args, Row};
use crate::{now_ms, Result, Store, StoreError};
use model::{CloudAsset, Vendor};

/// A registered cloud account, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudAccount {
    /// `AuthId`.
    pub auth_id: i64,
    /// The posture account that owns it.
    pub account_id: String,
    /// The vendor's string code (`AWS`).
    pub vendor: String,
    /// `primary` or `sub`.
    pub ak_type: String,
    /// The AccessKey id.
    pub secret_id: String,
    /// `VendorAuthAlias`.
    pub alias: String,
    /// `Domain`.
    pub domain: String,
    /// The regions discovery covers.
    pub regions: Vec<String>,
    /// `AuthModules` (`CSPM`, `HOST`, …).
    pub modules: Vec<String>,
    /// 0 enabled, 1 disabled.
    pub status: i64,
    /// 0 in use, 1 exception (the last discovery failed; see `message`).
    pub service_status: i64,
    /// Why `service_status` is 1.
    pub message: String,
    /// The vendor's account id (AWS: 12 digits).
    pub vendor_uid: String,
    /// The user the keys belong to (AWS: the caller ARN).
    pub vendor_user: String,
    /// When it was added.
    pub created_ms: i64,
}

/// A cloud account to add.
#[derive(Clone, Debug)]
pub struct NewCloudAccount {
    /// Vendor string code.
    pub vendor: String,
    /// `primary` or `sub`.
    pub ak_type: String,
    /// AccessKey id.
    pub secret_id: String,
    /// AccessKey secret (sealed before it is stored).
    pub secret_key: String,
    /// Alias.
    pub alias: String,
    /// Domain.
    pub domain: String,
    /// Regions.
    pub regions: Vec<String>,
    /// Modules.
    pub modules: Vec<String>,
    /// The vendor's account id, as the verification call answered.
    pub vendor_uid: String,
    /// The caller, as the verification call answered.
    pub vendor_user: String,
}

/// What ModifyCloudVendorAccountAK changes; `None` keeps the stored value.
#[derive(Clone, Debug, Default)]
pub struct CloudAccountChange {
    /// New keys (id, secret) with the identity their verification answered.
    pub keys: Option<(String, String, String, String)>,
    /// Alias.
    pub alias: Option<String>,
    /// Domain.
    pub domain: Option<String>,
    /// Regions.
    pub regions: Option<Vec<String>>,
    /// Modules.
    pub modules: Option<Vec<String>>,
    /// 0 enabled, 1 disabled.
    pub status: Option<i64>,
}

const COLS: &str = "auth_id, account_id, vendor, ak_type, secret_id, alias, domain, regions, modules, status,
                    service_status, message, vendor_uid, vendor_user, created_ms";

fn account_from(r: &Row) -> Result<CloudAccount> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(CloudAccount {
        auth_id: r.get(0)?,
        account_id: r.get(1)?,
        vendor: r.get(2)?,
        ak_type: r.get(3)?,
        secret_id: r.get(4)?,
        alias: r.get(5)?,
        domain: r.get(6)?,
        regions: list(r.get(7)?),
        modules: list(r.get(8)?),
        status: r.get(9)?,
        service_status: r.get(10)?,
        message: r.get(11)?,
        vendor_uid: r.get(12)?,
        vendor_user: r.get(13)?,
        created_ms: r.get(14)?,
    })
}

/// What a sealed cloud secret is bound to: moved to another account, vendor or key id, it does
/// not open.
fn cloud_aad(account_id: &str, vendor: &str, secret_id: &str) -> String {
    format!("cloud:{account_id}:{vendor}:{secret_id}")
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

impl crate::CloudAccounts for Store {
    fn add_cloud_account(&self, account_id: &str, n: &NewCloudAccount) -> Result<CloudAccount> {
        let sealed = self.sealer.seal(&cloud_aad(account_id, &n.vendor, &n.secret_id), &n.secret_key);
        let account_id = account_id.to_string();
        let n = n.clone();
        let now = now_ms();
        self.write(move |tx| {
            tx.query_one(
                &format!(
                    "INSERT INTO cloud_accounts (account_id, vendor, ak_type, secret_id, sealed_secret, alias, domain, regions, modules,
                                                 vendor_uid, vendor_user, created_ms, updated_ms)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     RETURNING {COLS}"
                ),
                args![
                    &account_id,
                    &n.vendor,
                    &n.ak_type,
                    &n.secret_id,
                    &sealed,
                    &n.alias,
                    &n.domain,
                    json(&n.regions),
                    json(&n.modules),
                    &n.vendor_uid,
                    &n.vendor_user,
                    now,
                    now
                ],
                account_from,
            )
        })
    }

    fn cloud_accounts(&self, account_id: &str) -> Result<Vec<CloudAccount>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {COLS} FROM cloud_accounts WHERE account_id = ? ORDER BY auth_id"),
                args![account_id],
                account_from,
            )
        })
    }

    fn cloud_account(&self, account_id: &str, auth_id: i64) -> Result<Option<CloudAccount>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLS} FROM cloud_accounts WHERE account_id = ? AND auth_id = ?"),
                args![account_id, auth_id],
                account_from,
            )
        })
    }

    fn cloud_keys(&self, account_id: &str, auth_id: i64) -> Result<Option<(CloudAccount, String)>> {
        let row = self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLS}, sealed_secret FROM cloud_accounts WHERE account_id = ? AND auth_id = ?"),
                args![account_id, auth_id],
                |r| Ok((account_from(r)?, r.get::<Vec<u8>>(15)?)),
            )
        })?;
        let Some((a, sealed)) = row else { return Ok(None) };
        let secret =
            self.sealer.open(&cloud_aad(&a.account_id, &a.vendor, &a.secret_id), &sealed).ok_or_else(|| {
                StoreError::Db(format!("the secret of cloud account {} does not open with this master key", a.auth_id))
            })?;
        Ok(Some((a, secret)))
    }

    fn modify_cloud_account(
        &self,
        account_id: &str,
        auth_id: i64,
        change: &CloudAccountChange,
    ) -> Result<Option<CloudAccount>> {
        let Some(current) = self.cloud_account(account_id, auth_id)? else { return Ok(None) };
        let sealed = change
            .keys
            .as_ref()
            .map(|(id, secret, _, _)| self.sealer.seal(&cloud_aad(account_id, &current.vendor, id), secret));
        let account_id = account_id.to_string();
        let change = change.clone();
        self.write(move |tx| {
            let c = &change;
            if let (Some((id, _, uid, user)), Some(sealed)) = (&c.keys, &sealed) {
                tx.execute(
                    "UPDATE cloud_accounts SET secret_id = ?, sealed_secret = ?, vendor_uid = ?, vendor_user = ?,
                            service_status = 0, message = '' WHERE auth_id = ?",
                    args![id, sealed, uid, user, auth_id],
                )?;
            }
            tx.execute(
                "UPDATE cloud_accounts SET alias = COALESCE(?, alias), domain = COALESCE(?, domain),
                        regions = COALESCE(?, regions), modules = COALESCE(?, modules), status = COALESCE(?, status),
                        updated_ms = ? WHERE auth_id = ?",
                args![
                    &c.alias,
                    &c.domain,
                    c.regions.as_deref().map(json),
                    c.modules.as_deref().map(json),
                    &c.status,
                    now_ms(),
                    auth_id
                ],
            )?;
            tx.query_opt(
                &format!("SELECT {COLS} FROM cloud_accounts WHERE account_id = ? AND auth_id = ?"),
                args![&account_id, auth_id],
                account_from,
            )
        })
    }

    fn delete_cloud_account(&self, account_id: &str, auth_id: i64) -> Result<bool> {
        let account_id = account_id.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM cloud_accounts WHERE account_id = ? AND auth_id = ?",
                args![&account_id, auth_id],
            )?;
            if n > 0 {
                tx.execute(
                    "UPDATE instances SET freed = 1 WHERE account_id = ? AND cloud_auth_id = ?",
                    args![&account_id, auth_id],
                )?;
            }
            Ok(n > 0)
        })
    }

    fn set_cloud_account_health(&self, auth_id: i64, service_status: i64, message: &str) -> Result<()> {
        let message = message.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE cloud_accounts SET service_status = ?, message = ? WHERE auth_id = ?",
                args![service_status, &message, auth_id],
            )?;
            Ok(())
        })
    }

    fn sync_cloud_instances(
        &self,
        account_id: &str,
        auth_id: i64,
        vendor: Vendor,
        found: &[CloudAsset],
        complete_regions: &[String],
    ) -> Result<()> {
        let account_id = account_id.to_string();
        let found = found.to_vec();
        let complete = complete_regions.to_vec();
        let now = now_ms();
        self.write(move |tx| {
            // Another cloud account of the same posture account may see the same resource:
            // the last discovery names the account it is repaired through.
            const UPSERT: &str =
                "INSERT INTO instances (account_id, vendor, region_id, instance_id, instance_name, connector, locator, os_type, created_ms, cloud_auth_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'cloud', ?, ?)
                 ON CONFLICT (account_id, vendor, region_id, instance_id) DO UPDATE SET
                   instance_name = excluded.instance_name, connector = excluded.connector, locator = excluded.locator,
                   os_type = 'cloud', cloud_auth_id = excluded.cloud_auth_id, freed = 0";
            for f in &found {
                tx.execute(
                    UPSERT,
                    args![
                        &account_id,
                        vendor.code(),
                        &f.region_id,
                        &f.instance_id,
                        &f.instance_name,
                        &f.connector,
                        &f.locator,
                        now,
                        auth_id
                    ],
                )?;
            }
            let rows: Vec<(i64, String, String)> = tx.query(
                "SELECT pk, region_id, instance_id FROM instances WHERE cloud_auth_id = ? AND freed = 0",
                args![auth_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let seen: HashSet<(&str, &str)> =
                found.iter().map(|f| (f.region_id.as_str(), f.instance_id.as_str())).collect();
            for (pk, region, id) in rows {
                if !seen.contains(&(region.as_str(), id.as_str())) && complete.contains(&region) {
                    tx.execute("UPDATE instances SET freed = 1 WHERE pk = ?", args![pk])?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::{Accounts, CloudAccounts, Instances};

    fn new(secret_id: &str) -> NewCloudAccount {
        NewCloudAccount {
            vendor: "AWS".into(),
            ak_type: "primary".into(),
            secret_id: secret_id.into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            alias: "prod".into(),
            domain: "global".into(),
            regions: vec!["us-east-1".into()],
            modules: vec!["CSPM".into()],
            vendor_uid: "123456789012".into(),
            vendor_user: "arn:aws:iam::123456789012:user/posture".into(),
        }
    }

    fn found(region: &str, id: &str) -> CloudAsset {
        CloudAsset {
            region_id: region.into(),
            instance_id: id.into(),
            instance_name: id.into(),
            connector: "aws.sg".into(),
            locator: String::new(),
        }
    }

    crate::testutil::both_backends! {
        fn secrets_are_sealed_and_only_the_keys_call_opens_them() {
            let (dir, s) = store();
            let acc = s.create_account("A").unwrap().id;
            let a = s.add_cloud_account(&acc, &new("AKIAEXAMPLE")).unwrap();
            assert_eq!(a.regions, vec!["us-east-1"]);
            let (opened, secret) = s.cloud_keys(&acc, a.auth_id).unwrap().unwrap();
            assert_eq!(
                (opened.secret_id.as_str(), secret.as_str()),
                ("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
            );
            assert!(s.cloud_keys("other", a.auth_id).unwrap().is_none(), "another account cannot open it");
            assert!(matches!(s.add_cloud_account(&acc, &new("AKIAEXAMPLE")), Err(StoreError::Conflict)));
            drop(s);
            for f in std::fs::read_dir(dir.path()).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                assert!(!bytes.windows(12).any(|w| w == b"wJalrXUtnFEM"), "the secret is not in any file");
            }
        }
        fn modify_reseals_new_keys_and_keeps_what_is_not_given() {
            let (_dir, s) = store();
            let acc = s.create_account("A").unwrap().id;
            let a = s.add_cloud_account(&acc, &new("AKIAOLD")).unwrap();
            let change = CloudAccountChange {
                keys: Some(("AKIANEW".into(), "new-secret".into(), "123".into(), "arn".into())),
                status: Some(1),
                ..Default::default()
            };
            let m = s.modify_cloud_account(&acc, a.auth_id, &change).unwrap().unwrap();
            assert_eq!((m.secret_id.as_str(), m.status, m.alias.as_str()), ("AKIANEW", 1, "prod"));
            assert_eq!(s.cloud_keys(&acc, a.auth_id).unwrap().unwrap().1, "new-secret");
            assert!(s.modify_cloud_account(&acc, 999, &change).unwrap().is_none());
        }
        fn sync_releases_only_what_a_complete_region_no_longer_has() {
            let (_dir, s) = store();
            let acc = s.create_account("A").unwrap().id;
            let a = s.add_cloud_account(&acc, &new("AKIA1")).unwrap();
            let all = ["us-east-1".to_string(), "eu-west-1".to_string()];
            s.sync_cloud_instances(
                &acc,
                a.auth_id,
                Vendor::Aws,
                &[found("us-east-1", "sg-1"), found("eu-west-1", "sg-2")],
                &all,
            )
            .unwrap();
            // eu-west-1's listing failed this time: sg-2 stays; sg-1 is gone from a complete region.
            s.sync_cloud_instances(&acc, a.auth_id, Vendor::Aws, &[], &all[..1]).unwrap();
            let freed: Vec<(String, bool)> =
                s.list_instances(&acc).unwrap().into_iter().map(|i| (i.instance_id, i.freed)).collect();
            assert_eq!(freed, vec![("sg-1".to_string(), true), ("sg-2".to_string(), false)]);
            assert!(s.delete_cloud_account(&acc, a.auth_id).unwrap());
            assert!(s.list_instances(&acc).unwrap().iter().all(|i| i.freed && i.cloud_auth_id == Some(a.auth_id)));
            assert!(!s.delete_cloud_account(&acc, a.auth_id).unwrap());
        }
    }
}

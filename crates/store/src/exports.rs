//! Exports of check results (ExportRecord): the report, made once, kept in the database so
//! that any node serves its download, and reachable by the capability token of its link until
//! it expires. Expired exports, and an account's exports beyond its last [`KEPT_PER_ACCOUNT`],
//! are deleted when the next one is made.

use crate::sql::args;
use crate::{now_ms, Result, Store};

/// A new export, made by the API.
#[derive(Clone, Debug)]
pub struct NewExport {
    /// The file name (of the CSV; the JSON has the same stem).
    pub file_name: String,
    /// Result rows in it.
    pub total: i64,
    /// The report as CSV.
    pub csv: String,
    /// The report as JSON.
    pub json: String,
    /// The link's capability (random; whoever has the link may download).
    pub token: String,
    /// When the link stops working.
    pub expires_ms: i64,
}

/// An export as DescribeExportInfo tells of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    #[allow(missing_docs)]
    pub id: i64,
    #[allow(missing_docs)]
    pub file_name: String,
    #[allow(missing_docs)]
    pub total: i64,
    #[allow(missing_docs)]
    pub token: String,
    #[allow(missing_docs)]
    pub created_ms: i64,
    #[allow(missing_docs)]
    pub expires_ms: i64,
}

/// Exports and their downloads.
pub trait Exports: Send + Sync {
    /// Keeps a new export (and deletes the expired ones); returns its id.
    fn create_export(&self, account_id: &str, e: &NewExport) -> Result<i64>;

    /// An export of the account, expired or not (None once deleted or never made).
    fn export_info(&self, account_id: &str, id: i64) -> Result<Option<ExportInfo>>;

    /// The export's file name and its CSV (or, with `json`, its JSON) if `token` is its token
    /// and it has not expired. The token is checked before the report is read.
    fn export_download(&self, id: i64, token: &str, json: bool, now_ms: i64) -> Result<Option<(String, String)>>;
}

const INFO_COLS: &str = "id, file_name, total, token, created_ms, expires_ms";

/// Exports an account keeps at most (the oldest go first): a caller cannot fill the database.
pub const KEPT_PER_ACCOUNT: i64 = 5;

impl Exports for Store {
    fn create_export(&self, account_id: &str, e: &NewExport) -> Result<i64> {
        let (account_id, e) = (account_id.to_string(), e.clone());
        self.write(move |tx| {
            let now = now_ms();
            tx.execute("DELETE FROM exports WHERE expires_ms < ?", args![now])?;
            let id: i64 = tx.value(
                "INSERT INTO exports (account_id, file_name, total, csv, json, token, created_ms, expires_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                args![&account_id, &e.file_name, e.total, &e.csv, &e.json, &e.token, now, e.expires_ms],
            )?;
            tx.execute(
                "DELETE FROM exports WHERE account_id = ? AND id NOT IN
                   (SELECT id FROM exports WHERE account_id = ? ORDER BY id DESC LIMIT ?)",
                args![&account_id, &account_id, KEPT_PER_ACCOUNT],
            )?;
            Ok(id)
        })
    }

    fn export_info(&self, account_id: &str, id: i64) -> Result<Option<ExportInfo>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {INFO_COLS} FROM exports WHERE account_id = ? AND id = ?"),
                args![account_id, id],
                |r| {
                    Ok(ExportInfo {
                        id: r.get(0)?,
                        file_name: r.get(1)?,
                        total: r.get(2)?,
                        token: r.get(3)?,
                        created_ms: r.get(4)?,
                        expires_ms: r.get(5)?,
                    })
                },
            )
        })
    }

    fn export_download(&self, id: i64, token: &str, json: bool, now_ms: i64) -> Result<Option<(String, String)>> {
        self.read(|c| {
            let found: Option<(String, String)> = c.query_opt(
                "SELECT file_name, token FROM exports WHERE id = ? AND expires_ms > ?",
                args![id, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Compared in constant time, and before the report is read: the token is the only
            // thing between the link and the data, and a wrong one costs a small read.
            let Some((file_name, _)) = found.filter(|f| constant_time_eq(f.1.as_bytes(), token.as_bytes())) else {
                return Ok(None);
            };
            let column = if json { "json" } else { "csv" };
            let body: String = c.value(&format!("SELECT {column} FROM exports WHERE id = ?"), args![id])?;
            Ok(Some((file_name, body)))
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::Accounts;

    fn export(expires_ms: i64) -> NewExport {
        NewExport {
            file_name: "r.csv".into(),
            total: 2,
            csv: "a,b\n1,2\n".into(),
            json: "[]".into(),
            token: "t0k3n".into(),
            expires_ms,
        }
    }

    crate::testutil::both_backends! {
        fn an_export_is_read_by_its_account_and_downloaded_by_its_token_until_it_expires() {
            let (_p, s) = store();
            let acct = s.create_account("exports").unwrap().id;
            let other = s.create_account("other").unwrap().id;
            let later = now_ms() + 60_000;
            let id = s.create_export(&acct, &export(later)).unwrap();
            let info = s.export_info(&acct, id).unwrap().unwrap();
            assert_eq!((info.file_name.as_str(), info.total, info.token.as_str()), ("r.csv", 2, "t0k3n"));
            assert_eq!(s.export_info(&other, id).unwrap(), None, "another account's");
            let got = s.export_download(id, "t0k3n", false, now_ms()).unwrap().unwrap();
            assert_eq!((got.0.as_str(), got.1.as_str()), ("r.csv", "a,b\n1,2\n"));
            assert_eq!(s.export_download(id, "t0k3n", true, now_ms()).unwrap().unwrap().1, "[]");
            assert!(s.export_download(id, "t0k3m", false, now_ms()).unwrap().is_none());
            assert!(s.export_download(id, "", false, now_ms()).unwrap().is_none());
            assert!(s.export_download(id, "t0k3n", false, later).unwrap().is_none(), "expired");
            // An expired export is deleted when the next is made.
            let old = s.create_export(&acct, &export(now_ms() - 1)).unwrap();
            s.create_export(&acct, &export(later)).unwrap();
            assert_eq!(s.export_info(&acct, old).unwrap(), None);
            assert!(s.export_info(&acct, id).unwrap().is_some());
            // An account keeps its last few; another account's are not touched.
            let theirs = s.create_export(&other, &export(later)).unwrap();
            let newest: Vec<i64> = (0..KEPT_PER_ACCOUNT).map(|_| s.create_export(&acct, &export(later)).unwrap()).collect();
            assert_eq!(s.export_info(&acct, id).unwrap(), None, "the oldest went");
            assert!(newest.iter().all(|n| s.export_info(&acct, *n).unwrap().is_some()));
            assert!(s.export_info(&other, theirs).unwrap().is_some());
        }
    }
}

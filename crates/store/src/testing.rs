//! Test support shared by every crate's tests (and the benchmarks): a fresh PostgreSQL database
//! per test, so the
//! same tests run on both backends. The server comes from `POSTURE_TEST_DATABASE_URL` (the
//! README's test command starts one); without it the PostgreSQL half of a test is skipped,
//! loudly — or fails, when `POSTURE_REQUIRE_POSTGRES=1` says it must run (as in CI).

use std::sync::atomic::{AtomicU64, Ordering};

/// A database created for one test on the test server, dropped (with its connections) after.
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    server: String,
    name: String,
}

/// The URL of `url` with another database name.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((url, String::new()));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

impl TestDatabase {
    /// A new, empty database; None (after saying so) when no test server is configured.
    pub fn create() -> Option<TestDatabase> {
        let Ok(server) = std::env::var("POSTURE_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("POSTURE_REQUIRE_POSTGRES").is_err(),
                "POSTURE_REQUIRE_POSTGRES is set but POSTURE_TEST_DATABASE_URL is not"
            );
            eprintln!("skipped on PostgreSQL: POSTURE_TEST_DATABASE_URL is not set");
            return None;
        };
        Some(TestDatabase::create_on(&server).unwrap_or_else(|e| panic!("POSTURE_TEST_DATABASE_URL: {e}")))
    }

    /// A new, empty database on the PostgreSQL server of `server` (a URL naming any database
    /// of it), dropped with the value: the benchmarks' throwaway databases.
    pub fn create_on(server: &str) -> Result<TestDatabase, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "posture_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            crate::new_id(4)
        );
        let mut admin = postgres::Client::connect(&with_dbname(server, "postgres"), postgres::NoTls)
            .map_err(|e| format!("cannot connect to {server}: {e}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("cannot create a database: {e}"))?;
        Ok(TestDatabase { url: with_dbname(server, &name), server: server.to_string(), name })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&with_dbname(&self.server, "postgres"), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_name_is_replaced_in_any_url() {
        assert_eq!(super::with_dbname("postgres://u@h:1/a", "b"), "postgres://u@h:1/b");
        assert_eq!(super::with_dbname("postgres://u@h:1/a?sslmode=disable", "b"), "postgres://u@h:1/b?sslmode=disable");
        assert_eq!(super::with_dbname("postgresql://h", "b"), "postgresql://h/b");
    }
}

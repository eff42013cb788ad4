//! A fresh PostgreSQL database per test, dropped when the test ends (even by a panic).
//!
//! `REGISTRY_TEST_DATABASE_URL` names a database the tests may connect to in order to
//! create others (e.g. `postgres://postgres@127.0.0.1:5432/test`). Unset, PostgreSQL tests
//! skip, except under `CI=true`, where they fail: CI must not pass by running nothing.

use rand::Rng;
use sqlx::{Connection, PgConnection};

pub const URL_VAR: &str = "REGISTRY_TEST_DATABASE_URL";

/// A database of its own, dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    /// Its name, `registry_test_<random>`.
    pub name: String,
    admin_url: String,
}

/// The admin URL, or `None` after saying the test is skipped; panics under `CI=true`.
pub fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{URL_VAR} must be set when CI=true: PostgreSQL tests cannot be skipped");
            }
            println!("skipped: {URL_VAR} not set");
            None
        }
    }
}

impl TestDatabase {
    /// Creates a new empty database, or returns `None` when PostgreSQL tests are skipped.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = admin_url()?;
        let suffix: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(12)
            .map(|b| char::from(b).to_ascii_lowercase())
            .collect();
        let name = format!("registry_test_{suffix}");
        let mut url =
            url::Url::parse(&admin_url).unwrap_or_else(|e| panic!("{URL_VAR} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));

        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        Some(TestDatabase {
            url: url.to_string(),
            name,
            admin_url,
        })
    }

    /// A daemon configuration on this database, with `dir` as its data dir.
    pub fn daemon_config(&self, dir: &std::path::Path) -> registry_server::Config {
        let mut config = super::config(dir);
        config.database_url = Some(self.url.clone());
        config
    }

    /// A daemon on this database with `dir` as its data dir and `admin` as its
    /// `REGISTRY_ADMIN_TOKEN`, which it uses as its admin.
    pub async fn start_daemon(&self, dir: tempfile::TempDir, admin: &str) -> super::Daemon {
        let mut config = self.daemon_config(dir.path());
        config.admin_token = Some(admin.into());
        let mut d = super::Daemon::start_with(config, dir).await;
        d.admin = admin.into();
        d
    }

    /// A direct connection to this database, for checks behind the store's back.
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime, which cannot block on itself: use a thread with a
        // runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: thread panicked",
                self.name
            ),
        }
    }
}

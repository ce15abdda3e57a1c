//! Schools (tenants): each has its own API key (stored only as a SHA-256 hash), webhook URL and
//! secret, and the origins allowed to embed its lessons. The key from the server's configuration
//! is the bootstrap school.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};

/// Id of the school whose key comes from `--api-key` (or the generated key file).
pub const BOOTSTRAP_SCHOOL: &str = "bootstrap";

/// A school as stored. The API key itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct School {
    /// Identifier.
    pub id: String,
    /// Name, for people.
    pub name: String,
    /// Where its webhooks go, if anywhere.
    pub webhook_url: Option<String>,
    /// The key its webhooks are signed with.
    #[serde(skip)]
    pub webhook_secret: String,
    /// Origins allowed to embed its lessons in an iframe.
    pub embed_origins: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// The stored form of an API key: lowercase hex SHA-256. Keys are long random strings, so a
/// plain hash is enough (nothing to brute-force).
pub fn key_hash(api_key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, api_key.trim().as_bytes());
    crate::hex(digest.as_ref())
}

const COLUMNS: &str = "id, name, webhook_url, webhook_secret, embed_origins, created_at";

fn row_to_school(r: &rusqlite::Row<'_>) -> rusqlite::Result<School> {
    let origins: String = r.get(4)?;
    Ok(School {
        id: r.get(0)?,
        name: r.get(1)?,
        webhook_url: r.get(2)?,
        webhook_secret: r.get(3)?,
        embed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        created_at: r.get(5)?,
    })
}

impl Store {
    /// Stores a new school with the hash of its API key.
    pub fn insert_school(&self, school: &School, api_key: &str) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO schools ({COLUMNS}, api_key_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                school.id,
                school.name,
                school.webhook_url,
                school.webhook_secret,
                serde_json::to_string(&school.embed_origins).expect("strings serialize"),
                school.created_at,
                key_hash(api_key),
            ],
        )?;
        Ok(())
    }

    /// The school whose API key this is.
    pub fn school_by_key(&self, api_key: &str) -> Result<Option<School>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM schools WHERE api_key_hash = ?1"),
                params![key_hash(api_key)],
                row_to_school,
            )
            .optional()?)
    }

    /// A school by id.
    pub fn school(&self, id: &str) -> Result<Option<School>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM schools WHERE id = ?1"),
                params![id],
                row_to_school,
            )
            .optional()?)
    }

    /// Makes the bootstrap school match the configuration: its key, and its webhook URL and
    /// secret when given (otherwise the stored ones; a new secret is `new_secret`).
    pub fn configure_bootstrap(
        &self,
        api_key: &str,
        webhook_url: Option<&str>,
        webhook_secret: Option<&str>,
        new_secret: &str,
        now: i64,
    ) -> Result<School, StoreError> {
        self.conn().execute(
            "INSERT INTO schools (id, name, api_key_hash, webhook_url, webhook_secret, created_at)
             VALUES (?1, ?1, ?2, ?3, COALESCE(?4, ?5), ?6)
             ON CONFLICT(id) DO UPDATE SET
                api_key_hash = excluded.api_key_hash,
                webhook_url = COALESCE(?3, webhook_url),
                webhook_secret = COALESCE(?4, webhook_secret)",
            params![
                BOOTSTRAP_SCHOOL,
                key_hash(api_key),
                webhook_url,
                webhook_secret,
                new_secret,
                now
            ],
        )?;
        self.school(BOOTSTRAP_SCHOOL)?
            .ok_or_else(|| StoreError::Corrupt {
                id: BOOTSTRAP_SCHOOL.into(),
                what: "the bootstrap school vanished".into(),
            })
    }

    /// Changes a school's own settings.
    pub fn update_school_settings(
        &self,
        id: &str,
        webhook_url: Option<&str>,
        embed_origins: &[String],
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE schools SET webhook_url = ?2, embed_origins = ?3 WHERE id = ?1",
            params![
                id,
                webhook_url,
                serde_json::to_string(embed_origins).expect("strings serialize")
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "jinke-schools-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("db.sqlite3")).unwrap(), dir)
    }

    #[test]
    fn keys_are_found_by_hash_and_never_stored() {
        let (store, dir) = store();
        let school = School {
            id: "s2".into(),
            name: "第二中学".into(),
            webhook_url: None,
            webhook_secret: "whsec".into(),
            embed_origins: vec!["https://school.example".into()],
            created_at: 1,
        };
        store
            .insert_school(&school, "key-of-school-two-0123")
            .unwrap();
        assert_eq!(
            store.school_by_key("key-of-school-two-0123").unwrap(),
            Some(school)
        );
        assert_eq!(store.school_by_key("key-of-school-two-0124").unwrap(), None);
        let raw = std::fs::read(dir.join("db.sqlite3")).unwrap();
        assert!(
            !raw.windows(22).any(|w| w == b"key-of-school-two-0123"),
            "the key itself is not in the database file"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_bootstrap_school_follows_the_configuration() {
        let (store, dir) = store();
        let first = store
            .configure_bootstrap("boot-key-0123456789", None, None, "generated", 1)
            .unwrap();
        assert_eq!(
            (first.webhook_url, first.webhook_secret.as_str()),
            (None, "generated")
        );
        // A restart with a new key and a webhook: the key changes, the secret is kept.
        let again = store
            .configure_bootstrap("boot-key-9876543210", Some("http://hook"), None, "other", 2)
            .unwrap();
        assert_eq!(again.webhook_url.as_deref(), Some("http://hook"));
        assert_eq!(again.webhook_secret, "generated");
        assert!(
            store
                .school_by_key("boot-key-0123456789")
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .school_by_key("boot-key-9876543210")
                .unwrap()
                .is_some()
        );
        store
            .update_school_settings(BOOTSTRAP_SCHOOL, None, &["https://a.example".into()])
            .unwrap();
        let s = store.school(BOOTSTRAP_SCHOOL).unwrap().unwrap();
        assert_eq!(
            (s.webhook_url, s.embed_origins),
            (None, vec!["https://a.example".to_owned()])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

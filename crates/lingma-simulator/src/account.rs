//! The simulated login: a JSON file `<workDir>/cache/user`, so that copying the workDir copies
//! the login as it does for the real server. Read on every `auth/status`, so a file changed by
//! another process (or a later login flow) takes effect at once.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `auth/status.status` values.
pub(crate) const STATUS_LOGGED_OUT: u8 = 1;
pub(crate) const STATUS_LOGGED_IN: u8 = 2;

const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) account_id: String,
    #[serde(default)]
    pub(crate) user_type: String,
    #[serde(default)]
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) org_id: String,
}

impl Account {
    /// The account a fresh simulator workDir is logged in as.
    pub(crate) fn test_account() -> Account {
        Account {
            id: "sim-user-1".into(),
            name: "simulator".into(),
            account_id: "sim-account-1".into(),
            user_type: "personal_standard".into(),
            email: String::new(),
            org_id: String::new(),
        }
    }

    /// A login made through the login page as user `name`, with fresh ids.
    pub(crate) fn logged_in_as(name: &str) -> Account {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Account {
            account_id: format!("sim-account-{id}"),
            id: format!("sim-user-{id}"),
            name: name.to_string(),
            user_type: "personal_standard".into(),
            email: String::new(),
            org_id: String::new(),
        }
    }
}

pub(crate) fn user_file(work_dir: &Path) -> PathBuf {
    work_dir.join("cache").join("user")
}

/// The stored login; `None` when logged out (no file, or one that does not parse).
pub(crate) fn load(work_dir: &Path) -> Option<Account> {
    let path = user_file(work_dir);
    let text = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Account>(&text) {
        Ok(a) if !a.id.is_empty() => Some(a),
        Ok(_) => None,
        Err(e) => {
            log::warn!(
                "simulator: ignoring unreadable login file {}: {e}",
                path.display()
            );
            None
        }
    }
}

/// Writes the login file atomically (temp file + rename).
pub(crate) fn store(work_dir: &Path, account: &Account) -> io::Result<()> {
    let path = user_file(work_dir);
    std::fs::create_dir_all(path.parent().expect("user file has a parent"))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(account).map_err(io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)
}

pub(crate) fn remove(work_dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(user_file(work_dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Tokens of this process; new ones on every start, as after a real token refresh.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub(crate) token: String,
    pub(crate) refresh_token: String,
    pub(crate) expire_ms: u64,
}

impl Tokens {
    pub(crate) fn generate() -> Tokens {
        let expire = SystemTime::now() + TOKEN_LIFETIME;
        Tokens {
            token: format!("sim-token-{}", uuid::Uuid::new_v4().simple()),
            refresh_token: format!("sim-refresh-{}", uuid::Uuid::new_v4().simple()),
            expire_ms: expire
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// The `auth/status` result.
pub(crate) fn auth_status(account: Option<&Account>, tokens: &Tokens) -> Value {
    match account {
        Some(a) => json!({
            "status": STATUS_LOGGED_IN,
            "id": a.id,
            "accountId": a.account_id,
            "name": a.name,
            "token": tokens.token,
            "refreshToken": tokens.refresh_token,
            "expireTime": tokens.expire_ms,
            "userType": a.user_type,
            "whitelist": 1,
            "quota": 100,
            "orgId": a.org_id,
            "email": a.email,
        }),
        None => json!({
            "status": STATUS_LOGGED_OUT,
            "id": "",
            "accountId": "",
            "name": "",
            "token": "",
            "refreshToken": "",
            "expireTime": 0,
            "userType": "",
            "whitelist": 0,
            "quota": 0,
            "orgId": "",
            "email": "",
        }),
    }
}

/// The `status -o json` output.
pub(crate) fn status_json(account: Option<&Account>, version: &str) -> Value {
    match account {
        Some(a) => {
            json!({"logged_in": true, "username": a.name, "user_type": a.user_type, "version": version})
        }
        None => json!({"logged_in": false, "version": version}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shapes() {
        let tokens = Tokens::generate();
        assert!(tokens.token.starts_with("sim-token-"));
        let a = Account::test_account();
        let v = auth_status(Some(&a), &tokens);
        assert_eq!(
            (v["status"].as_u64(), v["id"].as_str()),
            (Some(2), Some("sim-user-1"))
        );
        assert_eq!(v["userType"], "personal_standard");
        let v = auth_status(None, &tokens);
        assert_eq!(
            (v["status"].as_u64(), v["id"].as_str(), v["token"].as_str()),
            (Some(1), Some(""), Some(""))
        );
        assert_eq!(
            status_json(None, "2.11.1"),
            json!({"logged_in": false, "version": "2.11.1"})
        );
        assert_eq!(status_json(Some(&a), "v")["username"], "simulator");
    }

    #[test]
    fn page_logins_get_fresh_ids_and_survive_a_copy_of_the_work_dir() {
        let (a, b) = (
            Account::logged_in_as("alice"),
            Account::logged_in_as("alice"),
        );
        assert_eq!(a.name, "alice");
        assert!(a.id.starts_with("sim-user-") && !a.account_id.is_empty());
        assert_ne!(a.id, b.id);
        let dir = std::env::temp_dir().join(format!("sim-account-{}", uuid::Uuid::new_v4()));
        store(&dir, &a).unwrap();
        assert_eq!(load(&dir), Some(a.clone()));
        // The login is the file: what a copied workDir holds is the same login.
        let copy = dir.join("copy");
        std::fs::create_dir_all(copy.join("cache")).unwrap();
        std::fs::copy(user_file(&dir), user_file(&copy)).unwrap();
        assert_eq!(load(&copy), Some(a));
        remove(&dir).unwrap();
        remove(&dir).unwrap();
        assert_eq!(load(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn account_file_round_trips_and_tolerates_extra_fields() {
        let text = r#"{"id":"u","name":"n","accountId":"a","userType":"t","avatar":"x"}"#;
        let a: Account = serde_json::from_str(text).unwrap();
        assert_eq!(a.email, "");
        assert_eq!(
            serde_json::from_slice::<Account>(&serde_json::to_vec(&a).unwrap()).unwrap(),
            a
        );
    }
}

//! Where provisioned Users and Groups live. The IdP pushes changes, not full copies, so the
//! data must survive restarts: [`Backend`] is the durable part (the embedded [`RedbBackend`],
//! one file under `scim.state_dir`; a shared backend implements the same trait), and
//! [`Directory`] keeps every resource in memory with the indexes the gateway reads on each
//! request (user name → standing, user → group names), written through to the backend before
//! any change becomes visible.
//!
//! Why redb: a maintained, pure-Rust, embedded key-value store with ACID transactions in one
//! file (no C library, no server, crash-safe commits), which is all this data needs; SQLite
//! would bring a C dependency and SQL for what is a handful of keyed JSON documents.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use redb::{ReadableTable, TableDefinition};
use serde_json::Value;

use super::resources::{member_ids, Kind};

const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("groups");
/// Lower-cased user names of deleted users: they stay refused at sign-in.
const DELETED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("deleted_user_names");

/// One change to the durable store.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put(Kind, String, Vec<u8>),
    Delete(Kind, String),
    /// Remember (`true`) or forget (`false`) a deleted user name.
    Deleted(String, bool),
}

/// Everything a backend holds, read once at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<(String, Vec<u8>)>,
    pub groups: Vec<(String, Vec<u8>)>,
    pub deleted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("SCIM store: {0}")]
pub struct StoreError(pub String);

/// The durable part. `write` applies a batch atomically (all or nothing); it blocks (disk or
/// network), so callers run it off the async threads.
pub trait Backend: Send + Sync + 'static {
    fn load(&self) -> Result<Snapshot, StoreError>;
    fn write(&self, batch: &[Write]) -> Result<(), StoreError>;
}

/// The embedded store: one redb file.
pub struct RedbBackend {
    db: redb::Database,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedbBackend {
    /// Opens (or creates) the file, creating its directory with mode 0700.
    pub fn open(file: &Path) -> Result<RedbBackend, StoreError> {
        if let Some(dir) = file.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::create(file)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", file.display())))?;
        // Tables exist from the start, so a read never meets a missing one.
        let tx = db.begin_write().map_err(err)?;
        for t in [USERS, GROUPS, DELETED] {
            tx.open_table(t).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(RedbBackend { db })
    }
}

impl Backend for RedbBackend {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let read =
            |t: TableDefinition<'_, &str, &[u8]>| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
                let table = tx.open_table(t).map_err(err)?;
                let mut out = Vec::new();
                for row in table.iter().map_err(err)? {
                    let (k, v) = row.map_err(err)?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            };
        Ok(Snapshot {
            users: read(USERS)?,
            groups: read(GROUPS)?,
            deleted: read(DELETED)?.into_iter().map(|(k, _)| k).collect(),
        })
    }

    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut users = tx.open_table(USERS).map_err(err)?;
            let mut groups = tx.open_table(GROUPS).map_err(err)?;
            let mut deleted = tx.open_table(DELETED).map_err(err)?;
            for w in batch {
                match w {
                    Write::Put(Kind::User, id, v) => {
                        users.insert(id.as_str(), v.as_slice()).map(drop)
                    }
                    Write::Put(Kind::Group, id, v) => {
                        groups.insert(id.as_str(), v.as_slice()).map(drop)
                    }
                    Write::Delete(Kind::User, id) => users.remove(id.as_str()).map(drop),
                    Write::Delete(Kind::Group, id) => groups.remove(id.as_str()).map(drop),
                    Write::Deleted(name, true) => deleted.insert(name.as_str(), &[][..]).map(drop),
                    Write::Deleted(name, false) => deleted.remove(name.as_str()).map(drop),
                }
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

/// A backend in memory only (unit tests).
#[derive(Default)]
pub struct MemoryBackend(std::sync::Mutex<Vec<Write>>);

impl Backend for MemoryBackend {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut s = Snapshot::default();
        let log = self.0.lock().map_err(err)?;
        let mut users: HashMap<String, Vec<u8>> = HashMap::new();
        let mut groups: HashMap<String, Vec<u8>> = HashMap::new();
        let mut deleted: HashSet<String> = HashSet::new();
        for w in log.iter() {
            match w {
                Write::Put(Kind::User, id, v) => drop(users.insert(id.clone(), v.clone())),
                Write::Put(Kind::Group, id, v) => drop(groups.insert(id.clone(), v.clone())),
                Write::Delete(Kind::User, id) => drop(users.remove(id)),
                Write::Delete(Kind::Group, id) => drop(groups.remove(id)),
                Write::Deleted(n, true) => drop(deleted.insert(n.clone())),
                Write::Deleted(n, false) => drop(deleted.remove(n)),
            }
        }
        s.users = users.into_iter().collect();
        s.groups = groups.into_iter().collect();
        s.deleted = deleted.into_iter().collect();
        Ok(s)
    }

    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.0.lock().map_err(err)?.extend_from_slice(batch);
        Ok(())
    }
}

/// Whether a user name may sign in, as far as SCIM knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// SCIM never provisioned this name.
    Unknown,
    Active,
    /// `active` is false.
    Disabled,
    /// Deleted through SCIM.
    Deleted,
}

/// All resources and the derived indexes (rebuilt on each change: writes are rare, reads are
/// per request).
#[derive(Default)]
pub struct State {
    pub users: HashMap<String, Value>,
    pub groups: HashMap<String, Value>,
    pub deleted: HashSet<String>,
    /// Lower-cased userName → user id.
    by_user_name: HashMap<String, String>,
    /// User id → display names of the groups it is a member of (sorted).
    groups_of: HashMap<String, Vec<String>>,
}

impl State {
    fn reindex(&mut self) {
        self.by_user_name = self
            .users
            .iter()
            .filter_map(|(id, u)| Some((u.get("userName")?.as_str()?.to_lowercase(), id.clone())))
            .collect();
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for g in self.groups.values() {
            let Some(name) = g.get("displayName").and_then(Value::as_str) else {
                continue;
            };
            for member in member_ids(g) {
                if self.users.contains_key(member) {
                    groups_of
                        .entry(member.to_string())
                        .or_default()
                        .push(name.to_string());
                }
            }
        }
        for list in groups_of.values_mut() {
            list.sort();
            list.dedup();
        }
        self.groups_of = groups_of;
    }

    pub fn user_id_by_name(&self, user_name: &str) -> Option<&String> {
        self.by_user_name.get(&user_name.to_lowercase())
    }

    pub fn of(&self, kind: Kind) -> &HashMap<String, Value> {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }
}

/// The in-memory directory, written through to a [`Backend`].
pub struct Directory {
    backend: Arc<dyn Backend>,
    state: RwLock<State>,
    /// One writer at a time: a change is computed from, persisted and applied to one version.
    writer: tokio::sync::Mutex<()>,
}

impl Directory {
    /// Loads everything the backend holds (entries that are not JSON objects are skipped
    /// with a log line, never fatal).
    pub fn load(backend: Arc<dyn Backend>) -> Result<Directory, StoreError> {
        let snap = backend.load()?;
        let mut state = State::default();
        for (kind, rows) in [(Kind::User, snap.users), (Kind::Group, snap.groups)] {
            for (id, bytes) in rows {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v @ Value::Object(_)) => {
                        let map = match kind {
                            Kind::User => &mut state.users,
                            Kind::Group => &mut state.groups,
                        };
                        map.insert(id, v);
                    }
                    _ => {
                        tracing::error!(target: "samlgate::audit", event = "scim_store_entry_unreadable", kind = kind.name(), id = %crate::saml::error::clip(&id))
                    }
                }
            }
        }
        state.deleted = snap.deleted.into_iter().collect();
        state.reindex();
        Ok(Directory {
            backend,
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        // A poisoned lock means a panic mid-update of memory only; the data is still whole
        // (each update is a plain insert/remove), so reading on is safe.
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Takes the writer's turn: compute a change with [`Directory::read`], then [`commit`].
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// Persists `batch`, then applies it to memory. Call while holding [`Directory::lock`].
    pub async fn commit(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let backend = self.backend.clone();
        let persisted = batch.clone();
        tokio::task::spawn_blocking(move || backend.write(&persisted))
            .await
            .map_err(|e| StoreError(format!("store write task failed: {e}")))??;
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        for w in batch {
            match w {
                Write::Put(kind, id, bytes) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                        match kind {
                            Kind::User => s.users.insert(id, v),
                            Kind::Group => s.groups.insert(id, v),
                        };
                    }
                }
                Write::Delete(Kind::User, id) => drop(s.users.remove(&id)),
                Write::Delete(Kind::Group, id) => drop(s.groups.remove(&id)),
                Write::Deleted(name, true) => drop(s.deleted.insert(name)),
                Write::Deleted(name, false) => drop(s.deleted.remove(&name)),
            }
        }
        s.reindex();
        Ok(())
    }

    /// The standing of a signed-in user name (case-insensitive).
    pub fn standing(&self, user_name: &str) -> Standing {
        self.read(|s| match s.user_id_by_name(user_name) {
            Some(id) => match s.users.get(id).and_then(|u| u.get("active")) {
                Some(Value::Bool(false)) => Standing::Disabled,
                _ => Standing::Active,
            },
            None if s.deleted.contains(&user_name.to_lowercase()) => Standing::Deleted,
            None => Standing::Unknown,
        })
    }

    /// The display names of the groups SCIM put `user_name` in (empty when unknown).
    pub fn groups_of(&self, user_name: &str) -> Vec<String> {
        self.read(|s| {
            s.user_id_by_name(user_name)
                .and_then(|id| s.groups_of.get(id))
                .cloned()
                .unwrap_or_default()
        })
    }

    pub fn count(&self) -> usize {
        self.read(|s| s.users.len() + s.groups.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(kind: Kind, id: &str, v: Value) -> Write {
        Write::Put(kind, id.into(), serde_json::to_vec(&v).unwrap())
    }

    async fn exercise(dir: &Directory) {
        let _turn = dir.lock().await;
        dir.commit(vec![
            put(Kind::User, "u1", json!({"id": "u1", "userName": "Alice", "active": true})),
            put(Kind::User, "u2", json!({"id": "u2", "userName": "bob", "active": false})),
            put(Kind::Group, "g1", json!({"id": "g1", "displayName": "ops", "members": [{"value": "u1"}, {"value": "gone"}]})),
            put(Kind::Group, "g2", json!({"id": "g2", "displayName": "admins", "members": [{"value": "u1"}]})),
            Write::Deleted("carol".into(), true),
        ])
        .await
        .unwrap();
    }

    fn check(dir: &Directory) {
        assert_eq!(dir.standing("alice"), Standing::Active);
        assert_eq!(dir.standing("BOB"), Standing::Disabled);
        assert_eq!(dir.standing("Carol"), Standing::Deleted);
        assert_eq!(dir.standing("dave"), Standing::Unknown);
        assert_eq!(dir.groups_of("ALICE"), vec!["admins", "ops"]);
        assert!(dir.groups_of("bob").is_empty());
    }

    #[tokio::test]
    async fn standing_and_groups_and_they_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("state/scim.redb");
        {
            let dir = Directory::load(Arc::new(RedbBackend::open(&file).unwrap())).unwrap();
            exercise(&dir).await;
            check(&dir);
        }
        let dir = Directory::load(Arc::new(RedbBackend::open(&file).unwrap())).unwrap();
        check(&dir);
        assert_eq!(dir.count(), 4);
        // A re-created user name is no longer "deleted"; a removal is durable too.
        {
            let _turn = dir.lock().await;
            dir.commit(vec![
                Write::Deleted("carol".into(), false),
                Write::Delete(Kind::Group, "g2".into()),
            ])
            .await
            .unwrap();
        }
        drop(dir);
        let dir = Directory::load(Arc::new(RedbBackend::open(&file).unwrap())).unwrap();
        assert_eq!(dir.standing("carol"), Standing::Unknown);
        assert_eq!(dir.groups_of("alice"), vec!["ops"]);
        let mode = std::fs::metadata(file.parent().unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    }

    #[tokio::test]
    async fn memory_backend_behaves_alike() {
        let backend = Arc::new(MemoryBackend::default());
        let dir = Directory::load(backend.clone()).unwrap();
        exercise(&dir).await;
        check(&dir);
        check(&Directory::load(backend).unwrap());
    }
}

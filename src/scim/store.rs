//! Where provisioned Users and Groups live. The IdP pushes changes, not full copies, so the
//! data must survive restarts: [`Backend`] is the durable part (the embedded [`RedbBackend`],
//! one file under `scim.state_dir`; with `[state] backend = "redis"` the shared
//! [`super::redis_store::RedisBackend`]), and [`Directory`] keeps every resource in memory
//! with the indexes the gateway reads on each request (user name → standing, user → group
//! names), written through to the backend before any change becomes visible. With a shared
//! backend every write carries the version it was computed from (a replica that was behind
//! catches up and the write is refused, never merged blindly), and each replica follows the
//! others' changes ([`Directory::start_sync`]).
//!
//! Why redb: a maintained, pure-Rust, embedded key-value store with ACID transactions in one
//! file (no C library, no server, crash-safe commits), which is all this data needs; SQLite
//! would bring a C dependency and SQL for what is a handful of keyed JSON documents.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
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

/// Everything a backend holds, and the backend's version of it (always 0 for a backend only
/// this process writes).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub users: Vec<(String, Vec<u8>)>,
    pub groups: Vec<(String, Vec<u8>)>,
    pub deleted: Vec<String>,
    pub version: u64,
}

/// Why the store could not answer. Every variant leaves memory unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The shared backend did not answer (connection, timeout, server error).
    #[error("SCIM store unavailable: {0}")]
    Unavailable(String),
    /// Another replica changed the data after this one read it: nothing was written; this
    /// replica has caught up, and the request may be sent again.
    #[error("SCIM store changed by another replica at the same time")]
    Conflict,
    /// A stored value failed to open (edited, moved, or sealed under another secret): it is
    /// not served, and the data stays as it was before.
    #[error("SCIM store value refused: {0}")]
    Refused(String),
    /// The shared data is not loaded on this replica yet (the backend has not answered since
    /// the start).
    #[error("SCIM data not loaded from the shared store yet")]
    NotLoaded,
    /// The embedded store failed (disk, file).
    #[error("SCIM store: {0}")]
    Failed(String),
}

/// What a shared backend holds beyond the version a replica has.
#[derive(Debug)]
pub enum Changes {
    /// Nothing new.
    UpToDate,
    /// The current value of every entry changed since, as writes, and the version they bring.
    Entries(u64, Vec<Write>),
    /// Everything (the history needed for [`Changes::Entries`] is gone, or a full reload was
    /// asked for).
    Reload(Snapshot),
    /// The backend holds an older version than this replica (Redis restarted without
    /// persistence, was flushed or restored from an older snapshot): its version.
    Behind(u64),
}

/// The durable part. `write` applies a batch atomically (all or nothing) on top of version
/// `expected` and returns the new version.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Everything, read when the gateway is built (no async runtime may exist then); `None`
    /// for a shared backend, which is read by [`Directory::start_sync`] instead.
    fn load_at_start(&self) -> Result<Option<Snapshot>, StoreError>;
    async fn write(&self, batch: &[Write], expected: u64) -> Result<u64, StoreError>;
    /// What changed after version `since` (`full`: a whole snapshot unless behind). A
    /// backend only this process writes never changes underneath.
    async fn changes(&self, _since: u64, _full: bool) -> Result<Changes, StoreError> {
        Ok(Changes::UpToDate)
    }
    /// Replaces everything the backend holds with `snap` as version `new_version`, if it
    /// still holds version `expected`; [`StoreError::Conflict`] otherwise.
    async fn reseed(
        &self,
        _snap: &Snapshot,
        _expected: u64,
        _new_version: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Wakes [`Directory::start_sync`]'s task when another replica changed something.
    fn signal(&self) -> Option<Arc<SyncSignal>> {
        None
    }
}

/// Wakes a directory's sync task: a change was announced, or the channel was subscribed
/// again (then a full reload, since announcements may have been missed).
#[derive(Default)]
pub struct SyncSignal {
    pub notify: tokio::sync::Notify,
    pub full: AtomicBool,
}

impl SyncSignal {
    pub fn changed(&self) {
        self.notify.notify_one();
    }
    pub fn reload(&self) {
        self.full.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// The embedded store: one redb file.
pub struct RedbBackend {
    db: Arc<redb::Database>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
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
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::create(file)
            .map_err(|e| err(format!("cannot open {}: {e}", file.display())))?;
        // Tables exist from the start, so a read never meets a missing one.
        let tx = db.begin_write().map_err(err)?;
        for t in [USERS, GROUPS, DELETED] {
            tx.open_table(t).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(RedbBackend { db: Arc::new(db) })
    }

    /// Everything in an existing file, which is opened only for this read (and not
    /// created). Another process holding it open is an error.
    pub fn read_file(file: &Path) -> Result<Snapshot, StoreError> {
        let db = redb::Database::open(file)
            .map_err(|e| err(format!("cannot open {}: {e}", file.display())))?;
        RedbBackend { db: Arc::new(db) }.load()
    }

    /// Everything in the file.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
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
            version: 0,
        })
    }
}

fn redb_write(db: &redb::Database, batch: &[Write]) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(err)?;
    {
        let mut users = tx.open_table(USERS).map_err(err)?;
        let mut groups = tx.open_table(GROUPS).map_err(err)?;
        let mut deleted = tx.open_table(DELETED).map_err(err)?;
        for w in batch {
            match w {
                Write::Put(Kind::User, id, v) => users.insert(id.as_str(), v.as_slice()).map(drop),
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

#[async_trait]
impl Backend for RedbBackend {
    fn load_at_start(&self) -> Result<Option<Snapshot>, StoreError> {
        self.load().map(Some)
    }

    /// A disk write: run off the async threads.
    async fn write(&self, batch: &[Write], _expected: u64) -> Result<u64, StoreError> {
        let db = self.db.clone();
        let batch = batch.to_vec();
        tokio::task::spawn_blocking(move || redb_write(&db, &batch))
            .await
            .map_err(|e| err(format!("store write task failed: {e}")))??;
        Ok(0)
    }
}

/// A backend in memory only (unit tests).
#[derive(Default)]
pub struct MemoryBackend(std::sync::Mutex<Vec<Write>>);

#[async_trait]
impl Backend for MemoryBackend {
    fn load_at_start(&self) -> Result<Option<Snapshot>, StoreError> {
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
        Ok(Some(s))
    }

    async fn write(&self, batch: &[Write], _expected: u64) -> Result<u64, StoreError> {
        self.0.lock().map_err(err)?.extend_from_slice(batch);
        Ok(0)
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

/// Reads the data to import (`None`: nothing there after all).
pub type ImportSource = Box<dyn Fn() -> Result<Option<Snapshot>, StoreError> + Send + Sync>;

/// How often a replica compares its version with the shared backend's even when no change
/// was announced (a safety net for a lost announcement).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The in-memory directory, written through to a [`Backend`].
pub struct Directory {
    backend: Arc<dyn Backend>,
    state: RwLock<State>,
    /// One writer at a time: a change is computed from, persisted and applied to one version.
    /// Syncing from a shared backend takes it too.
    writer: tokio::sync::Mutex<()>,
    /// The backend's version that `state` reflects (changed only under `writer`).
    version: AtomicU64,
    /// False until a shared backend's data was read once: until then nothing is admitted on
    /// SCIM's word and nothing is written.
    loaded: AtomicBool,
    sync_started: AtomicBool,
    /// Where to read data for an empty shared backend at the first load (an embedded store
    /// file left from before the switch to Redis).
    import: std::sync::Mutex<Option<ImportSource>>,
}

/// Applies one write to memory (the indexes are rebuilt by the caller).
fn apply(s: &mut State, w: Write) {
    match w {
        Write::Put(kind, id, bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => {
                match kind {
                    Kind::User => s.users.insert(id, v),
                    Kind::Group => s.groups.insert(id, v),
                };
            }
            _ => {
                tracing::error!(target: "samlgate::audit", event = "scim_store_entry_unreadable", kind = kind.name(), id = %crate::saml::error::clip(&id))
            }
        },
        Write::Delete(Kind::User, id) => drop(s.users.remove(&id)),
        Write::Delete(Kind::Group, id) => drop(s.groups.remove(&id)),
        Write::Deleted(name, true) => drop(s.deleted.insert(name)),
        Write::Deleted(name, false) => drop(s.deleted.remove(&name)),
    }
}

/// The state a snapshot describes (entries that are not JSON objects are skipped with a log
/// line, never fatal).
fn state_of(snap: Snapshot) -> State {
    let mut state = State::default();
    for (kind, rows) in [(Kind::User, snap.users), (Kind::Group, snap.groups)] {
        for (id, bytes) in rows {
            apply(&mut state, Write::Put(kind, id, bytes));
        }
    }
    state.deleted = snap.deleted.into_iter().collect();
    state.reindex();
    state
}

/// Everything in `state`, as a backend would hold it (to put back into a shared backend
/// that lost it).
fn snapshot_of(state: &State, version: u64) -> Snapshot {
    let rows = |m: &HashMap<String, Value>| {
        m.iter()
            .filter_map(|(id, v)| Some((id.clone(), serde_json::to_vec(v).ok()?)))
            .collect()
    };
    Snapshot {
        users: rows(&state.users),
        groups: rows(&state.groups),
        deleted: state.deleted.iter().cloned().collect(),
        version,
    }
}

impl Directory {
    /// Loads what the backend holds now; a shared backend is loaded by the sync task.
    pub fn load(backend: Arc<dyn Backend>) -> Result<Directory, StoreError> {
        let (state, loaded) = match backend.load_at_start()? {
            Some(snap) => (state_of(snap), true),
            None => (State::default(), false),
        };
        Ok(Directory {
            backend,
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
            version: AtomicU64::new(0),
            loaded: AtomicBool::new(loaded),
            sync_started: AtomicBool::new(false),
            import: std::sync::Mutex::new(None),
        })
    }

    /// Whether the data is here (always, unless a shared backend has not answered yet).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Reads the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        // A poisoned lock means a panic mid-update of memory only; the data is still whole
        // (each update is a plain insert/remove), so reading on is safe.
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Takes the writer's turn, caught up with a shared backend (so a change is computed
    /// from the latest data any replica wrote): compute a change with [`Directory::read`],
    /// then [`Directory::commit`].
    pub async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, StoreError> {
        let turn = self.writer.lock().await;
        if self.backend.signal().is_some() {
            self.sync_locked(false).await?;
        }
        Ok(turn)
    }

    /// Persists `batch`, then applies it to memory. Call while holding [`Directory::lock`].
    /// Nothing changes in memory unless the backend stored it.
    pub async fn commit(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        if !self.is_loaded() {
            return Err(StoreError::NotLoaded);
        }
        let expected = self.version.load(Ordering::Acquire);
        let version = match self.backend.write(&batch, expected).await {
            Ok(v) => v,
            Err(StoreError::Conflict) => {
                // Another replica wrote first: catch up, and let the client send it again.
                let _ = self.sync_locked(false).await;
                return Err(StoreError::Conflict);
            }
            Err(e) => return Err(e),
        };
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        for w in batch {
            apply(&mut s, w);
        }
        s.reindex();
        self.version.store(version, Ordering::Release);
        Ok(())
    }

    /// Offers data (the embedded store's file) to a shared backend that holds no SCIM data
    /// yet: the first load reads it and puts it there, once, unless another replica was
    /// first.
    pub fn offer_import(&self, source: ImportSource) {
        *self.import.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// The import [`Directory::offer_import`] prepared, if the shared backend is still
    /// empty. Call while holding `writer`, before the first load. A source that cannot be
    /// read (another replica reading the same file) is tried again at the next sync.
    async fn import_locked(&self) -> Result<(), StoreError> {
        let mut slot = self.import.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(source) = slot.as_ref() else {
            return Ok(());
        };
        let empty = match self.backend.changes(0, false).await {
            Ok(changes) => matches!(changes, Changes::UpToDate),
            Err(e) => {
                *self.import.lock().unwrap_or_else(|p| p.into_inner()) = slot.take();
                return Err(e);
            }
        };
        let snap = match empty.then(source).transpose() {
            Ok(Some(Some(snap))) => snap,
            Ok(None) => {
                tracing::info!(target: "samlgate::audit", event = "scim_store_not_imported", "the shared store already holds SCIM data; the embedded store file is not imported");
                return Ok(());
            }
            Ok(Some(None)) => return Ok(()),
            Err(e) => {
                *self.import.lock().unwrap_or_else(|p| p.into_inner()) = slot.take();
                return Err(e);
            }
        };
        let result = self.backend.reseed(&snap, 0, 1).await;
        match result {
            Ok(()) => {
                let (users, groups) = (snap.users.len(), snap.groups.len());
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = state_of(snap);
                self.version.store(1, Ordering::Release);
                self.loaded.store(true, Ordering::Release);
                tracing::warn!(target: "samlgate::audit", event = "scim_store_imported", users, groups, "the embedded store file's SCIM data was copied into the empty shared store");
                Ok(())
            }
            // Another replica wrote first: load what it wrote.
            Err(StoreError::Conflict) => Ok(()),
            Err(e) => {
                *self.import.lock().unwrap_or_else(|p| p.into_inner()) = slot.take();
                Err(e)
            }
        }
    }

    /// Brings memory to the shared backend's version. Call while holding `writer`.
    async fn sync_locked(&self, full: bool) -> Result<(), StoreError> {
        if !self.is_loaded() {
            self.import_locked().await?;
        }
        let since = self.version.load(Ordering::Acquire);
        let full = full || !self.is_loaded();
        match self.backend.changes(since, full).await? {
            Changes::UpToDate => {}
            Changes::Entries(version, writes) => {
                let n = writes.len();
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                for w in writes {
                    apply(&mut s, w);
                }
                s.reindex();
                self.version.store(version, Ordering::Release);
                tracing::debug!(version, entries = n, "SCIM changes from another replica");
            }
            Changes::Reload(snap) => {
                let version = snap.version;
                let state = state_of(snap);
                let count = state.users.len() + state.groups.len();
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
                self.version.store(version, Ordering::Release);
                if !self.loaded.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        version,
                        resources = count,
                        "SCIM data loaded from the shared store"
                    );
                }
            }
            Changes::Behind(theirs) => self.restore(since, theirs).await?,
        }
        Ok(())
    }

    /// The shared backend holds less than this replica knows: it lost data. Put back what
    /// this replica holds (the first replica to notice does it; the others then load it), so
    /// that a disabled or deleted user does not become "unknown" and admitted again.
    async fn restore(&self, ours: u64, theirs: u64) -> Result<(), StoreError> {
        let version = ours.max(theirs) + 1;
        let snap = self.read(|s| snapshot_of(s, version));
        tracing::error!(target: "samlgate::audit", event = "scim_store_restored", ours, theirs, users = snap.users.len(), groups = snap.groups.len(), "the shared store held older SCIM data than this replica (Redis lost it); writing this replica's data back");
        match self.backend.reseed(&snap, theirs, version).await {
            Ok(()) => {
                self.version.store(version, Ordering::Release);
                Ok(())
            }
            // Another replica restored it first: load theirs.
            Err(StoreError::Conflict) => {
                self.version.store(0, Ordering::Release);
                Box::pin(self.sync_locked(true)).await
            }
            Err(e) => Err(e),
        }
    }

    /// Starts (once, inside a runtime) the task that keeps a shared backend's data here:
    /// loads it, then applies what other replicas change (announced, and checked every
    /// [`CHECK_INTERVAL`] in case an announcement was lost). Ends with the directory.
    pub fn start_sync(self: &Arc<Self>) {
        let Some(signal) = self.backend.signal() else {
            return;
        };
        if self.sync_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sync_started.swap(true, Ordering::AcqRel) {
            return;
        }
        signal.reload();
        handle.spawn(sync_task(Arc::downgrade(self), signal));
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

/// Keeps a directory in step with its shared backend until the directory is dropped.
async fn sync_task(dir: Weak<Directory>, signal: Arc<SyncSignal>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    // A slow sync (a large reload) is not followed by a burst of missed checks.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = signal.notify.notified() => {}
            _ = tick.tick() => {}
        }
        let Some(d) = dir.upgrade() else { return };
        let full = signal.full.swap(false, Ordering::AcqRel);
        let result = {
            let _turn = d.writer.lock().await;
            d.sync_locked(full).await
        };
        match result {
            Ok(()) => failing = false,
            Err(e) => {
                if full {
                    signal.full.store(true, Ordering::Release);
                }
                // Logged once per outage, not every tick.
                if !failing {
                    tracing::warn!(target: "samlgate::audit", event = "scim_sync_failed", error = %e);
                }
                failing = true;
            }
        }
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
        let _turn = dir.lock().await.unwrap();
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
            let _turn = dir.lock().await.unwrap();
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

    /// A shared backend in memory, with Redis's semantics as the Directory sees them: a
    /// version, a log, writes refused on a stale version, and an "unreachable" switch.
    #[derive(Default)]
    struct FakeShared {
        data: std::sync::Mutex<FakeData>,
        down: AtomicBool,
        signal: Arc<SyncSignal>,
    }

    #[derive(Default, Clone)]
    struct FakeData {
        version: u64,
        log: Vec<Write>,
        /// Versions before this are no longer in the log (a full reload is needed).
        log_from: u64,
    }

    impl FakeShared {
        fn up(&self) -> Result<std::sync::MutexGuard<'_, FakeData>, StoreError> {
            if self.down.load(Ordering::Acquire) {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(self.data.lock().unwrap())
        }
        /// Redis restarted empty.
        fn wipe(&self) {
            *self.data.lock().unwrap() = FakeData::default();
        }
    }

    fn snapshot(d: &FakeData) -> Snapshot {
        let mut s = MemoryBackend::default();
        s.0.get_mut().unwrap().clone_from(&d.log);
        let mut snap = s.load_at_start().unwrap().unwrap();
        snap.version = d.version;
        snap
    }

    #[async_trait]
    impl Backend for FakeShared {
        fn load_at_start(&self) -> Result<Option<Snapshot>, StoreError> {
            Ok(None)
        }
        async fn write(&self, batch: &[Write], expected: u64) -> Result<u64, StoreError> {
            let mut d = self.up()?;
            if d.version != expected {
                return Err(StoreError::Conflict);
            }
            d.log.extend_from_slice(batch);
            d.version += 1;
            Ok(d.version)
        }
        async fn changes(&self, since: u64, full: bool) -> Result<Changes, StoreError> {
            let d = self.up()?;
            Ok(if d.version < since {
                Changes::Behind(d.version)
            } else if full || since < d.log_from {
                Changes::Reload(snapshot(&d))
            } else if d.version == since {
                Changes::UpToDate
            } else {
                // Replaying the whole log is a superset of "the entries changed since".
                let snap = snapshot(&d);
                let mut writes: Vec<Write> = Vec::new();
                for (id, v) in snap.users {
                    writes.push(Write::Put(Kind::User, id, v));
                }
                for (id, v) in snap.groups {
                    writes.push(Write::Put(Kind::Group, id, v));
                }
                for n in snap.deleted {
                    writes.push(Write::Deleted(n, true));
                }
                Changes::Entries(d.version, writes)
            })
        }
        async fn reseed(&self, snap: &Snapshot, expected: u64, v: u64) -> Result<(), StoreError> {
            let mut d = self.up()?;
            if d.version != expected {
                return Err(StoreError::Conflict);
            }
            let mut log: Vec<Write> = Vec::new();
            for (id, b) in &snap.users {
                log.push(Write::Put(Kind::User, id.clone(), b.clone()));
            }
            for (id, b) in &snap.groups {
                log.push(Write::Put(Kind::Group, id.clone(), b.clone()));
            }
            for n in &snap.deleted {
                log.push(Write::Deleted(n.clone(), true));
            }
            *d = FakeData {
                version: v,
                log,
                log_from: v,
            };
            Ok(())
        }
        fn signal(&self) -> Option<Arc<SyncSignal>> {
            Some(self.signal.clone())
        }
    }

    #[tokio::test]
    async fn replicas_on_a_shared_backend_follow_each_other_and_never_write_blind() {
        let shared = Arc::new(FakeShared::default());
        let a = Directory::load(shared.clone()).unwrap();
        let b = Directory::load(shared.clone()).unwrap();
        // Nothing read yet: nothing admitted on SCIM's word, nothing written.
        assert!(!a.is_loaded());
        let blind = a.commit(vec![Write::Deleted("x".into(), true)]).await;
        assert_eq!(blind, Err(StoreError::NotLoaded));
        assert_eq!(shared.data.lock().unwrap().version, 0);

        // A writes; B, taking its turn, has caught up.
        exercise(&a).await;
        check(&a);
        drop(b.lock().await.unwrap());
        check(&b);

        // B is behind (a change by A it has not seen): its write is refused, it catches up,
        // and the change it raced with is not in memory.
        {
            let _turn = a.lock().await.unwrap();
            a.commit(vec![put(
                Kind::User,
                "u3",
                json!({"id": "u3", "userName": "erin"}),
            )])
            .await
            .unwrap();
        }
        let raced = b
            .commit(vec![put(
                Kind::User,
                "u4",
                json!({"id": "u4", "userName": "fay"}),
            )])
            .await;
        assert_eq!(raced, Err(StoreError::Conflict));
        assert_eq!(b.standing("erin"), Standing::Active, "caught up");
        assert_eq!(
            b.standing("fay"),
            Standing::Unknown,
            "not stored, not shown"
        );

        // Unreachable: the write fails and memory is as before.
        shared.down.store(true, Ordering::Release);
        assert!(matches!(a.lock().await, Err(StoreError::Unavailable(_))));
        let failed = a.commit(vec![Write::Deleted("erin".into(), true)]).await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))));
        assert_eq!(a.standing("erin"), Standing::Active);
        shared.down.store(false, Ordering::Release);

        // The backend comes back empty: the first replica to notice writes its data back,
        // the other loads it; nobody turns "unknown".
        shared.wipe();
        drop(a.lock().await.unwrap());
        assert_eq!(
            shared.data.lock().unwrap().version,
            3,
            "restored above what A had (2)"
        );
        check(&a);
        drop(b.lock().await.unwrap());
        check(&b);
        assert_eq!(b.standing("erin"), Standing::Active);
        // A full reload (re-subscription) gives the same.
        {
            let _turn = b.writer.lock().await;
            b.sync_locked(true).await.unwrap();
        }
        check(&b);
    }

    #[tokio::test]
    async fn an_import_fills_an_empty_shared_backend_once() {
        let shared = Arc::new(FakeShared::default());
        let old = Arc::new(MemoryBackend::default());
        exercise(&Directory::load(old.clone()).unwrap()).await;
        let source =
            |b: Arc<MemoryBackend>| -> ImportSource { Box::new(move || b.load_at_start()) };
        let a = Directory::load(shared.clone()).unwrap();
        let b = Directory::load(shared.clone()).unwrap();
        a.offer_import(source(old.clone()));
        b.offer_import(source(old.clone()));
        // Unreachable at first: the import waits for the next attempt.
        shared.down.store(true, Ordering::Release);
        assert!(a.lock().await.is_err());
        shared.down.store(false, Ordering::Release);
        drop(a.lock().await.unwrap());
        check(&a);
        assert_eq!(shared.data.lock().unwrap().version, 1);
        // B finds the backend no longer empty: it loads, it does not import again.
        drop(b.lock().await.unwrap());
        check(&b);
        assert_eq!(shared.data.lock().unwrap().version, 1);
    }
}

//! The SCIM store in the shared Redis (`[state] backend = "redis"`), so that every replica
//! sees what the IdP provisioned through any of them. All keys share one Redis Cluster hash
//! tag, `{<key_prefix>scim}` (on a Cluster, the gateway's own `{<key_prefix>}` followed by
//! `scim`), so one Lua script can change them together:
//!
//! | key | type | content |
//! |---|---|---|
//! | `{…scim}:users` / `:groups` | hash | resource id → sealed JSON document |
//! | `{…scim}:deleted` | hash | HMAC of a deleted user name → sealed name |
//! | `{…scim}:version` | string | counter, incremented by every change |
//! | `{…scim}:log` | list | the last [`LOG_KEEP`] changes, newest first: `<version> <entries>` |
//!
//! Values are sealed like sessions ([`crate::state::seal`]: ChaCha20-Poly1305 under a key
//! derived from the cookie secret, the Redis key and field as associated data), so a dump
//! shows no names or emails, and a value edited, moved or written without the secret is
//! refused ([`StoreError::Refused`]): the replica keeps what it had, never serves it. Ids are
//! the server's random UUIDs; user names appear only as HMACs or inside seals.
//!
//! A change is one script: check the version the replica computed it from (else
//! [`StoreError::Conflict`]), apply, increment the version, append to the log, and publish
//! `scim:<version>` on the invalidation channel. The other replicas, woken by that message
//! ([`crate::state::redis::ChannelListener`]) or by their periodic check, read the log since
//! their version and fetch the entries it names; a gap in the log, or a re-subscription,
//! means a full reload (HSCAN).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use redis::Script;

use super::resources::Kind;
use super::store::{Backend, Changes, Snapshot, StoreError, SyncSignal, Write};
use crate::state::redis::{ChannelListener, Shared};
use crate::state::seal::hex;

/// Changes kept in the log for replicas that are behind; further behind means a full reload.
pub const LOG_KEEP: u64 = 1000;
/// Fields read per HSCAN call of a full reload.
const SCAN_COUNT: u64 = 500;

/// KEYS: users, groups, deleted, version, log. ARGV: expected version, channel, log entries,
/// log length, reset version ('' for an ordinary change), then (op, field, value) triples:
/// op `S<n>` sets field of KEYS[n], `D<n>` deletes it. Returns the new version, or -1 when the
/// stored version is not the expected one (nothing changed).
const WRITE: &str = r"
local v = tonumber(redis.call('GET', KEYS[4]) or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
if ARGV[5] ~= '' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
end
for i = 6, #ARGV, 3 do
  local op = ARGV[i]
  local key = KEYS[tonumber(string.sub(op, 2))]
  if string.sub(op, 1, 1) == 'S' then
    redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', key, ARGV[i + 1])
  end
end
if ARGV[5] ~= '' then
  v = tonumber(ARGV[5])
  redis.call('SET', KEYS[4], v)
else
  v = redis.call('INCR', KEYS[4])
end
redis.call('LPUSH', KEYS[5], v .. ' ' .. ARGV[3])
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[2], 'scim:' .. v)
return v
";

/// The SCIM [`Backend`] on the shared Redis.
pub struct RedisBackend {
    shared: Arc<Shared>,
    users: String,
    groups: String,
    deleted: String,
    version: String,
    log: String,
    write: Script,
    signal: Arc<SyncSignal>,
}

impl ChannelListener for SyncSignal {
    fn message(&self, _rest: &[u8]) {
        self.changed();
    }
    fn resubscribed(&self) {
        self.reload();
    }
}

/// What one log entry names.
#[derive(Debug, Default, PartialEq, Eq)]
struct Touched {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// Deleted user names whose standing changed (opened from the log's seals).
    names: BTreeSet<String>,
}

/// What every SCIM key starts with: one hash tag for all of them, so one script can change
/// them together on a Redis Cluster. In Cluster mode `prefix` is already the gateway's tag
/// (`{samlgate:}`, [`crate::state::redis::key_base`]) and SCIM joins that slot; otherwise
/// the tag is made here (harmless where there are no slots).
fn scim_key_base(prefix: &str) -> String {
    if prefix.starts_with('{') && prefix.ends_with('}') {
        format!("{prefix}scim")
    } else {
        format!("{{{prefix}scim}}")
    }
}

impl RedisBackend {
    /// The backend on `shared`'s connection, listening on its invalidation channel.
    pub fn new(shared: Arc<Shared>) -> RedisBackend {
        let tag = scim_key_base(&shared.prefix);
        let signal = Arc::new(SyncSignal::default());
        let listener: Weak<dyn ChannelListener> = Arc::downgrade(&signal) as Weak<SyncSignal>;
        shared.set_listener(listener);
        RedisBackend {
            users: format!("{tag}:users"),
            groups: format!("{tag}:groups"),
            deleted: format!("{tag}:deleted"),
            version: format!("{tag}:version"),
            log: format!("{tag}:log"),
            write: Script::new(WRITE),
            signal,
            shared,
        }
    }

    /// The hash holding `kind`.
    fn hash(&self, kind: Kind) -> &str {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }

    /// Associated data of a value: its key and field.
    fn aad(key: &str, field: &str) -> String {
        format!("{key}\n{field}")
    }

    fn tag(&self, name: &str) -> String {
        self.shared.keys.index_tag(name)
    }

    fn open(&self, key: &str, field: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.shared
            .keys
            .open(&Self::aad(key, field), sealed)
            .map_err(|e| {
                tracing::error!(target: "samlgate::audit", event = "state_value_refused", kind = "scim", key = %key, field = %crate::saml::error::clip(field), reason = %e);
                StoreError::Refused(format!("{key} {}: {e}", crate::saml::error::clip(field)))
            })
    }

    /// A deleted name as the log carries it: sealed, hex.
    fn seal_log_name(&self, name: &str) -> String {
        hex(&self
            .shared
            .keys
            .seal(&Self::aad(&self.log, "name"), name.as_bytes()))
    }

    /// The script's (op, field, value) triples and log entries for `batch`.
    fn encode(&self, batch: &[Write]) -> (Vec<[Vec<u8>; 3]>, Vec<String>) {
        let mut ops = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for w in batch {
            match w {
                Write::Put(kind, id, bytes) => {
                    let sealed = self
                        .shared
                        .keys
                        .seal(&Self::aad(self.hash(*kind), id), bytes);
                    ops.push([op('S', *kind), id.clone().into_bytes(), sealed]);
                    entries.push(entry(*kind, id));
                }
                Write::Delete(kind, id) => {
                    ops.push([op('D', *kind), id.clone().into_bytes(), Vec::new()]);
                    entries.push(entry(*kind, id));
                }
                Write::Deleted(name, on) => {
                    let tag = self.tag(name);
                    let (code, value) = if *on {
                        let aad = Self::aad(&self.deleted, &tag);
                        (b"S3".to_vec(), self.shared.keys.seal(&aad, name.as_bytes()))
                    } else {
                        (b"D3".to_vec(), Vec::new())
                    };
                    ops.push([code, tag.into_bytes(), value]);
                    entries.push(format!("d:{}", self.seal_log_name(name)));
                }
            }
        }
        (ops, entries)
    }

    /// Runs the write script.
    async fn run_write(
        &self,
        ops: &[[Vec<u8>; 3]],
        entries: &str,
        expected: u64,
        reset: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut call = self.write.key(&self.users);
        call.key(&self.groups)
            .key(&self.deleted)
            .key(&self.version)
            .key(&self.log)
            .arg(expected)
            .arg(&self.shared.channel)
            .arg(entries)
            .arg(LOG_KEEP)
            .arg(reset.map_or(String::new(), |v| v.to_string()));
        for [o, field, value] in ops {
            call.arg(o).arg(field).arg(value);
        }
        let call = &call;
        let v: i64 = self
            .shared
            .run("scim_write", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await
            .map_err(unavailable)?;
        u64::try_from(v).map_err(|_| StoreError::Conflict)
    }

    async fn current_version(&self) -> Result<u64, StoreError> {
        let key = &self.version;
        let v: Option<u64> = self
            .shared
            .run("scim_version", |mut c| async move {
                redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    /// Every field and value of `key` (HSCAN: no single huge reply).
    async fn scan(&self, key: &str) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let mut out = HashMap::new();
        let mut cursor = 0u64;
        loop {
            let (next, flat): (u64, Vec<Vec<u8>>) = self
                .shared
                .run("scim_scan", |mut c| async move {
                    redis::cmd("HSCAN")
                        .arg(key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                })
                .await
                .map_err(unavailable)?;
            for pair in flat.chunks_exact(2) {
                let field = String::from_utf8_lossy(&pair[0]).into_owned();
                out.insert(field, pair[1].clone());
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Everything, as of `version` (read before the scan: anything changed during it comes
    /// again with the next sync, whose entries are fetched whole).
    async fn snapshot(&self, version: u64) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot {
            version,
            ..Snapshot::default()
        };
        for (kind, rows) in [
            (Kind::User, &mut snap.users),
            (Kind::Group, &mut snap.groups),
        ] {
            let key = self.hash(kind);
            for (id, sealed) in self.scan(key).await? {
                let plain = self.open(key, &id, &sealed)?;
                rows.push((id, plain));
            }
        }
        for (tag, sealed) in self.scan(&self.deleted).await? {
            let name = self.open(&self.deleted, &tag, &sealed)?;
            snap.deleted
                .push(String::from_utf8_lossy(&name).into_owned());
        }
        Ok(snap)
    }

    /// The version and the log entries after `since` (atomically), or `None` when the log
    /// no longer covers them all (or holds a reset).
    async fn log_since(&self, since: u64, seen: u64) -> Result<Option<(u64, Touched)>, StoreError> {
        // Room for changes made between the two reads.
        let want = (seen - since).saturating_add(64).min(LOG_KEEP);
        let (version, log) = (&self.version, &self.log);
        let (now, lines): (Option<u64>, Vec<String>) = self
            .shared
            .run("scim_log", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(version)
                    .cmd("LRANGE")
                    .arg(log)
                    .arg(0)
                    .arg(want - 1)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(unavailable)?;
        let now = now.unwrap_or(0);
        if now < since {
            return Ok(None);
        }
        let parsed = parse_log(&lines, since, now);
        let Some(raw) = parsed else { return Ok(None) };
        let mut touched = Touched {
            users: raw.users,
            groups: raw.groups,
            names: BTreeSet::new(),
        };
        for sealed in raw.names {
            let bytes = unhex(&sealed).ok_or_else(|| StoreError::Refused("log entry".into()))?;
            let name = self.open(&self.log, "name", &bytes)?;
            touched
                .names
                .insert(String::from_utf8_lossy(&name).into_owned());
        }
        Ok(Some((now, touched)))
    }

    /// The current value of every touched entry, as writes.
    async fn fetch(&self, t: &Touched) -> Result<Vec<Write>, StoreError> {
        let users: Vec<&String> = t.users.iter().collect();
        let groups: Vec<&String> = t.groups.iter().collect();
        let names: Vec<&String> = t.names.iter().collect();
        let tags: Vec<String> = names.iter().map(|n| self.tag(n)).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        // HMGET needs a field: an empty list asks for "" (never a field) instead.
        let none = [String::new()];
        let list = |v: Vec<&String>| -> Vec<String> {
            if v.is_empty() {
                none.to_vec()
            } else {
                v.into_iter().cloned().collect()
            }
        };
        pipe.cmd("HMGET").arg(&self.users).arg(list(users.clone()));
        pipe.cmd("HMGET")
            .arg(&self.groups)
            .arg(list(groups.clone()));
        pipe.cmd("HMGET")
            .arg(&self.deleted)
            .arg(list(tags.iter().collect()));
        let pipe = &pipe;
        let (u, g, d): (Values, Values, Values) = self
            .shared
            .run("scim_fetch", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for (kind, ids, values) in [(Kind::User, &users, u), (Kind::Group, &groups, g)] {
            let key = self.hash(kind);
            for (id, value) in ids.iter().zip(values) {
                out.push(match value {
                    Some(sealed) => Write::Put(kind, (*id).clone(), self.open(key, id, &sealed)?),
                    None => Write::Delete(kind, (*id).clone()),
                });
            }
        }
        for ((name, tag), value) in names.iter().zip(&tags).zip(d) {
            if let Some(sealed) = &value {
                // Opening proves the entry is ours and bound to this name's tag.
                self.open(&self.deleted, tag, sealed)?;
            }
            out.push(Write::Deleted((*name).clone(), value.is_some()));
        }
        Ok(out)
    }
}

/// An HMGET's answer: each field's value, if it is there.
type Values = Vec<Option<Vec<u8>>>;

fn unavailable(e: crate::state::StateError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn op(code: char, kind: Kind) -> Vec<u8> {
    let n = match kind {
        Kind::User => '1',
        Kind::Group => '2',
    };
    format!("{code}{n}").into_bytes()
}

/// A log entry for a resource: kind and hex id (ids never break the space-separated list).
fn entry(kind: Kind, id: &str) -> String {
    let k = match kind {
        Kind::User => 'u',
        Kind::Group => 'g',
    };
    format!("{k}:{}", hex(id.as_bytes()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Pure: what the log lines (newest first) name for versions `since + 1 ..= now`, or `None`
/// when one of those versions is missing, a line does not parse, or one is a reset (`*`).
/// Deleted names stay sealed (hex) here.
fn parse_log(lines: &[String], since: u64, now: u64) -> Option<Touched> {
    let mut t = Touched::default();
    let mut expect = now;
    for line in lines {
        if expect == since {
            break;
        }
        let mut parts = line.split(' ');
        let v: u64 = parts.next()?.parse().ok()?;
        if v > expect {
            continue;
        }
        if v != expect {
            return None;
        }
        for item in parts.filter(|p| !p.is_empty()) {
            let (k, rest) = item.split_once(':')?;
            match k {
                "u" => t.users.insert(String::from_utf8(unhex(rest)?).ok()?),
                "g" => t.groups.insert(String::from_utf8(unhex(rest)?).ok()?),
                "d" => t.names.insert(rest.to_string()),
                _ => return None,
            };
        }
        expect -= 1;
    }
    (expect == since).then_some(t)
}

#[async_trait]
impl Backend for RedisBackend {
    fn load_at_start(&self) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }

    async fn write(&self, batch: &[Write], expected: u64) -> Result<u64, StoreError> {
        let (ops, entries) = self.encode(batch);
        self.run_write(&ops, &entries.join(" "), expected, None)
            .await
    }

    async fn changes(&self, since: u64, full: bool) -> Result<Changes, StoreError> {
        self.shared.start_watcher();
        let seen = self.current_version().await?;
        if seen < since {
            return Ok(Changes::Behind(seen));
        }
        if full {
            return Ok(Changes::Reload(self.snapshot(seen).await?));
        }
        if seen == since {
            return Ok(Changes::UpToDate);
        }
        match self.log_since(since, seen).await? {
            Some((now, touched)) => Ok(Changes::Entries(now, self.fetch(&touched).await?)),
            None => {
                let now = self.current_version().await?;
                if now < since {
                    return Ok(Changes::Behind(now));
                }
                Ok(Changes::Reload(self.snapshot(now).await?))
            }
        }
    }

    async fn reseed(
        &self,
        snap: &Snapshot,
        expected: u64,
        new_version: u64,
    ) -> Result<(), StoreError> {
        let mut batch: Vec<Write> = Vec::new();
        for (kind, rows) in [(Kind::User, &snap.users), (Kind::Group, &snap.groups)] {
            for (id, bytes) in rows {
                batch.push(Write::Put(kind, id.clone(), bytes.clone()));
            }
        }
        for name in &snap.deleted {
            batch.push(Write::Deleted(name.clone(), true));
        }
        let (ops, _) = self.encode(&batch);
        self.run_write(&ops, "*", expected, Some(new_version))
            .await
            .map(drop)
    }

    fn signal(&self) -> Option<Arc<SyncSignal>> {
        Some(self.signal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_keys_share_one_hash_tag_and_join_the_gateways_on_a_cluster() {
        assert_eq!(scim_key_base("samlgate:"), "{samlgate:scim}");
        assert_eq!(scim_key_base("{samlgate:}"), "{samlgate:}scim");
    }

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn log_lines_cover_exactly_the_missing_versions_or_ask_for_a_reload() {
        let u1 = entry(Kind::User, "u-1");
        let g1 = entry(Kind::Group, "g 1");
        let log = lines(&[
            &format!("7 {u1} d:abcd"),
            &format!("6 {g1} {u1}"),
            "5 ",
            &format!("4 {u1}"),
        ]);
        let t = parse_log(&log, 5, 7).expect("covered");
        assert_eq!(t.users, BTreeSet::from(["u-1".to_string()]));
        assert_eq!(t.groups, BTreeSet::from(["g 1".to_string()]));
        assert_eq!(t.names, BTreeSet::from(["abcd".to_string()]));
        // Newer lines than the version read are skipped; an empty batch is fine.
        assert_eq!(parse_log(&log, 4, 5), Some(Touched::default()));
        let table: &[(&[String], u64, u64)] = &[
            // Version 3 is no longer in the log.
            (&log, 2, 7),
            // A gap.
            (&lines(&["7 ", "5 "]), 4, 7),
            // A reset (another replica restored the data).
            (&lines(&["8 *"]), 7, 8),
            // Garbage.
            (&lines(&["x u:00"]), 0, 1),
            (&lines(&["1 q:00"]), 0, 1),
            (&lines(&["1 u:zz"]), 0, 1),
        ];
        for (log, since, now) in table {
            assert_eq!(parse_log(log, *since, *now), None, "{log:?} {since} {now}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(unhex(&hex(b"a b\n")), Some(b"a b\n".to_vec()));
        for bad in ["0", "zz", "0g"] {
            assert_eq!(unhex(bad), None);
        }
    }
}

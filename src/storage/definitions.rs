//! The definitions log: vhosts, users, permissions, durable exchanges,
//! queues and bindings.
//!
//! An append-only file of CRC-checked records, one per change, written and
//! fdatasync'd by the leader before the change's `-ok` goes out. At start
//! it is replayed into a topology, and rewritten as a compact snapshot
//! (write a new file, sync, rename over the old one, sync the directory).
use bytes::{BufMut, Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::record::{self, Item};
use crate::access::{AccessChange, PasswordHash, PermissionSpec, User};
use crate::codec::{put_longstr, put_shortstr, put_table, FieldTable, Reader, ShortStr};
use crate::ids::{QueueId, ShardId};
use crate::routing::{Binding, Destination, ExchangeKind};
use crate::topology::policy::{ApplyTo, Policy, PolicyKind};
use crate::topology::{ExchangeMeta, QueueMeta, Topology, TopologyChange};

pub const FILE_NAME: &str = "definitions.wlog";

mod kind {
    pub const EXCHANGE_ADDED: u8 = 16;
    pub const EXCHANGE_REMOVED: u8 = 17;
    pub const QUEUE_ADDED: u8 = 18;
    pub const QUEUE_REMOVED: u8 = 19;
    pub const BINDING_ADDED: u8 = 20;
    pub const BINDING_REMOVED: u8 = 21;
    pub const NEXT_QUEUE_ID: u8 = 22;
    pub const VHOST_ADDED: u8 = 23;
    pub const VHOST_REMOVED: u8 = 24;
    pub const USER_PUT: u8 = 25;
    pub const USER_REMOVED: u8 = 26;
    pub const PERMISSION_SET: u8 = 27;
    pub const PERMISSION_CLEARED: u8 = 28;
    /// The default user, vhost and permissions were created once: a broker
    /// whose operator deleted them does not get them back at a restart.
    pub const SEEDED: u8 = 29;
    pub const POLICY_SET: u8 = 30;
    pub const POLICY_CLEARED: u8 = 31;
}

/// What the definitions log holds, ready to replay.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Durable exchanges, then queues, then bindings. Queue owners are
    /// placeholders: the caller recomputes them for its shard count.
    pub changes: Vec<TopologyChange>,
    /// Queue ids are never reused, so a deleted queue's records in a message
    /// log can never be mistaken for a new queue's.
    pub next_queue_id: u64,
    pub corrupt: u64,
    /// The defaults were created (see [`Definitions::mark_seeded`]).
    pub seeded: bool,
}

pub struct Definitions {
    file: File,
}

impl Definitions {
    /// Loads `dir/definitions.wlog` (if any), rewrites it compacted and
    /// opens it for appending.
    pub fn open(dir: &Path) -> io::Result<(Definitions, Loaded)> {
        let path = dir.join(FILE_NAME);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut topo = Topology::empty();
        let mut loaded = Loaded {
            next_queue_id: 1,
            ..Loaded::default()
        };
        let mut changes = Vec::new();
        let mut scan = record::Scan::new(&data);
        for item in scan.by_ref() {
            match item {
                Item::Record {
                    at, kind, payload, ..
                } => match decode(kind, payload) {
                    Some(Decoded::Change(c)) => {
                        if let TopologyChange::QueueAdded(_, q) = &c {
                            loaded.next_queue_id = loaded.next_queue_id.max(q.id.0 + 1);
                        }
                        changes.push(c);
                    }
                    Some(Decoded::NextQueueId(n)) => {
                        loaded.next_queue_id = loaded.next_queue_id.max(n)
                    }
                    Some(Decoded::Seeded) => loaded.seeded = true,
                    None => {
                        loaded.corrupt += 1;
                        tracing::warn!(
                            "corrupt record in {} at offset {at}: undecodable definition, skipped",
                            path.display()
                        );
                    }
                },
                Item::Corrupt { at, reason } => {
                    loaded.corrupt += 1;
                    tracing::warn!(
                        "corrupt record in {} at offset {at}: {reason}, skipped",
                        path.display()
                    );
                }
            }
        }
        // A log written before vhosts were recorded had `/` implicitly.
        if !loaded.seeded && !changes.is_empty() {
            topo.apply(&TopologyChange::VhostAdded(ShortStr::from_static("/")));
        }
        for c in &changes {
            topo.apply(c);
        }
        if scan.has_torn_tail() {
            let end = scan.valid_end();
            tracing::warn!("truncated torn tail of {} at offset {end}", path.display());
        }
        loaded.changes = snapshot(&topo);
        let valid_end = scan.valid_end() as u64;
        if let Err(e) = rewrite(dir, &path, &loaded) {
            // A full disk must not keep the broker down (consumers are what
            // frees space): keep the file as it is, cut after its last
            // whole record so that appends follow it. Truncating frees
            // space, so it works when writing does not.
            tracing::error!(
                "cannot compact {}: {e}; going on with it as it is",
                path.display()
            );
            let _ = std::fs::remove_file(dir.join(format!("{FILE_NAME}.tmp")));
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)?;
            if f.metadata()?.len() > valid_end {
                f.set_len(valid_end)?;
            }
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok((Definitions { file }, loaded))
    }

    /// Appends one change (the caller then syncs [`file`](Self::file));
    /// returns the file's length before it, for [`undo`](Self::undo). A
    /// failed write is undone here: no torn record is left for later
    /// appends to follow (recovery would stop there).
    pub fn append(&mut self, change: &TopologyChange) -> io::Result<u64> {
        let before = self.file.metadata()?.len();
        if let Err(e) = self.file.write_all(&encode_change(change)) {
            let _ = self.file.set_len(before);
            return Err(e);
        }
        Ok(before)
    }

    /// Takes back what was appended after `len` (a change whose sync
    /// failed is not to reappear at the next start).
    pub fn undo(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Records that the defaults exist (appended and synced now: start-up
    /// only).
    pub fn mark_seeded(&mut self) -> io::Result<()> {
        self.file.write_all(&encode(kind::SEEDED, |_| {}))?;
        self.file.sync_data()
    }
}

/// Replaces the file at `path` with the compacted state in `loaded`.
fn rewrite(dir: &Path, path: &Path, loaded: &Loaded) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(kind::NEXT_QUEUE_ID, |b| {
            b.put_u64(loaded.next_queue_id)
        }))?;
        if loaded.seeded {
            f.write_all(&encode(kind::SEEDED, |_| {}))?;
        }
        for c in &loaded.changes {
            f.write_all(&encode_change(c))?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The durable state of `topo` as changes that rebuild it: vhosts, users
/// and permissions first, then exchanges, queues, bindings.
fn snapshot(topo: &Topology) -> Vec<TopologyChange> {
    let mut access: Vec<TopologyChange> = topo
        .vhost_names()
        .into_iter()
        .map(TopologyChange::VhostAdded)
        .collect();
    for u in topo.access.users() {
        access.push(TopologyChange::Access(AccessChange::UserPut(u.clone())));
    }
    for (user, vhost, p) in topo.access.all_permissions() {
        access.push(TopologyChange::Access(AccessChange::PermissionSet {
            user: user.to_string(),
            vhost: vhost.to_string(),
            spec: p.spec.clone(),
        }));
    }
    let mut exchanges = Vec::new();
    let mut queues = Vec::new();
    for name in topo.vhost_names() {
        let v = &topo.vhosts[&name];
        for kind in [PolicyKind::User, PolicyKind::Operator] {
            for p in crate::topology::policy::sorted(v.policies_of(kind).values()) {
                access.push(TopologyChange::PolicySet(name.clone(), Box::new(p.clone())));
            }
        }
    }
    let mut bindings = Vec::new();
    let mut vhosts: Vec<_> = topo.vhosts.iter().collect();
    vhosts.sort_by(|a, b| a.0.cmp(b.0));
    for (name, v) in vhosts {
        let defaults = crate::topology::VHost::predeclared();
        for e in v.exchanges.values() {
            if !defaults.exchanges.contains_key(&e.name) {
                exchanges.push(TopologyChange::ExchangeAdded(name.clone(), e.clone()));
            }
        }
        for q in v.queues.values() {
            queues.push(TopologyChange::QueueAdded(name.clone(), q.clone()));
        }
        for b in v.routing.bindings() {
            bindings.push(TopologyChange::BindingAdded(name.clone(), b.clone()));
        }
    }
    // Queue order by id keeps replays deterministic.
    queues.sort_by_key(|c| match c {
        TopologyChange::QueueAdded(_, q) => q.id,
        _ => QueueId(0),
    });
    access.extend(exchanges);
    access.extend(queues);
    access.extend(bindings);
    access
}

fn encode(kind: u8, fill: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    fill(&mut b);
    record::to_vec(kind, 0, &[&b])
}

fn put_binding(b: &mut BytesMut, vhost: &str, x: &Binding) {
    put_shortstr(b, vhost);
    put_shortstr(b, &x.source);
    match &x.destination {
        Destination::Queue(q) => {
            b.put_u8(0);
            put_shortstr(b, q);
        }
        Destination::Exchange(e) => {
            b.put_u8(1);
            put_shortstr(b, e);
        }
    }
    put_shortstr(b, &x.routing_key);
    put_table(b, &x.arguments);
}

fn put_str(b: &mut BytesMut, s: &str) {
    put_longstr(b, s.as_bytes());
}

fn get_str(r: &mut Reader) -> Result<String, crate::codec::CodecError> {
    let b = r.longstr()?;
    String::from_utf8(b.to_vec()).map_err(|_| {
        crate::codec::CodecError::new(
            crate::codec::reply_code::SYNTAX_ERROR,
            "string is not UTF-8".to_string(),
        )
    })
}

pub fn encode_change(change: &TopologyChange) -> Vec<u8> {
    use TopologyChange as C;
    match change {
        C::VhostAdded(v) => encode(kind::VHOST_ADDED, |b| put_shortstr(b, v)),
        C::VhostRemoved(v) => encode(kind::VHOST_REMOVED, |b| put_shortstr(b, v)),
        C::Access(AccessChange::UserPut(u)) => encode(kind::USER_PUT, |b| {
            put_str(b, &u.name);
            put_longstr(b, &u.hash.to_bytes());
            b.put_u32(u.tags.len() as u32);
            for t in &u.tags {
                put_str(b, t);
            }
        }),
        C::Access(AccessChange::UserRemoved(name)) => {
            encode(kind::USER_REMOVED, |b| put_str(b, name))
        }
        C::Access(AccessChange::PermissionSet { user, vhost, spec }) => {
            encode(kind::PERMISSION_SET, |b| {
                put_str(b, user);
                put_str(b, vhost);
                put_str(b, &spec.configure);
                put_str(b, &spec.write);
                put_str(b, &spec.read);
            })
        }
        C::Access(AccessChange::PermissionCleared { user, vhost }) => {
            encode(kind::PERMISSION_CLEARED, |b| {
                put_str(b, user);
                put_str(b, vhost);
            })
        }
        C::ExchangeAdded(v, e) => encode(kind::EXCHANGE_ADDED, |b| {
            put_shortstr(b, v);
            put_shortstr(b, &e.name);
            put_shortstr(b, e.kind.as_str());
            b.put_u8(e.durable as u8 | (e.auto_delete as u8) << 1 | (e.internal as u8) << 2);
            put_table(b, &e.arguments);
        }),
        C::ExchangeRemoved(v, name) => encode(kind::EXCHANGE_REMOVED, |b| {
            put_shortstr(b, v);
            put_shortstr(b, name);
        }),
        C::QueueAdded(v, q) => encode(kind::QUEUE_ADDED, |b| {
            put_shortstr(b, v);
            put_shortstr(b, &q.name);
            b.put_u64(q.id.0);
            b.put_u8(q.durable as u8 | (q.auto_delete as u8) << 1);
            put_table(b, &q.arguments);
        }),
        C::QueueRemoved(v, name) => encode(kind::QUEUE_REMOVED, |b| {
            put_shortstr(b, v);
            put_shortstr(b, name);
        }),
        C::BindingAdded(v, x) => encode(kind::BINDING_ADDED, |b| put_binding(b, v, x)),
        C::BindingRemoved(v, x) => encode(kind::BINDING_REMOVED, |b| put_binding(b, v, x)),
        C::PolicySet(v, p) => encode(kind::POLICY_SET, |b| {
            put_shortstr(b, v);
            b.put_u8(policy_kind_code(p.kind));
            put_str(b, &p.name);
            put_str(b, &p.pattern);
            put_str(b, p.apply_to.as_str());
            b.put_i64(p.priority);
            put_str(b, &p.definition_text());
        }),
        C::PolicyCleared(v, k, name) => encode(kind::POLICY_CLEARED, |b| {
            put_shortstr(b, v);
            b.put_u8(policy_kind_code(*k));
            put_str(b, name);
        }),
    }
}

fn policy_kind_code(k: PolicyKind) -> u8 {
    match k {
        PolicyKind::User => 0,
        PolicyKind::Operator => 1,
    }
}

fn policy_kind(code: u8) -> Option<PolicyKind> {
    match code {
        0 => Some(PolicyKind::User),
        1 => Some(PolicyKind::Operator),
        _ => None,
    }
}

enum Decoded {
    Change(TopologyChange),
    NextQueueId(u64),
    Seeded,
}

fn decode(kind: u8, payload: &[u8]) -> Option<Decoded> {
    let mut r = Reader::new(Bytes::copy_from_slice(payload));
    let out = decode_with(kind, &mut r).ok()?;
    r.finish().ok()?;
    out
}

fn decode_with(kind: u8, r: &mut Reader) -> Result<Option<Decoded>, crate::codec::CodecError> {
    use TopologyChange as C;
    let binding = |r: &mut Reader| -> Result<Option<(ShortStr, Binding)>, _> {
        let vhost = r.shortstr()?;
        let source = r.shortstr()?;
        let destination = match r.u8()? {
            0 => Destination::Queue(r.shortstr()?),
            1 => Destination::Exchange(r.shortstr()?),
            _ => return Ok(None),
        };
        let routing_key = r.shortstr()?;
        let arguments = r.table()?;
        Ok(Some((
            vhost,
            Binding {
                source,
                destination,
                routing_key,
                arguments,
            },
        )))
    };
    Ok(Some(Decoded::Change(match kind {
        kind::VHOST_ADDED => C::VhostAdded(r.shortstr()?),
        kind::VHOST_REMOVED => C::VhostRemoved(r.shortstr()?),
        kind::USER_PUT => {
            let name = get_str(r)?;
            let Ok(hash) = PasswordHash::from_bytes(&r.longstr()?) else {
                return Ok(None);
            };
            let n = r.u32()?;
            let mut tags = Vec::new();
            for _ in 0..n {
                tags.push(get_str(r)?);
            }
            C::Access(AccessChange::UserPut(User { name, hash, tags }))
        }
        kind::USER_REMOVED => C::Access(AccessChange::UserRemoved(get_str(r)?)),
        kind::PERMISSION_SET => C::Access(AccessChange::PermissionSet {
            user: get_str(r)?,
            vhost: get_str(r)?,
            spec: PermissionSpec {
                configure: get_str(r)?,
                write: get_str(r)?,
                read: get_str(r)?,
            },
        }),
        kind::PERMISSION_CLEARED => C::Access(AccessChange::PermissionCleared {
            user: get_str(r)?,
            vhost: get_str(r)?,
        }),
        kind::SEEDED => return Ok(Some(Decoded::Seeded)),
        kind::EXCHANGE_ADDED => {
            let vhost = r.shortstr()?;
            let name = r.shortstr()?;
            let Some(kind) = ExchangeKind::parse(&r.shortstr()?) else {
                return Ok(None);
            };
            let flags = r.u8()?;
            let arguments: FieldTable = r.table()?;
            C::ExchangeAdded(
                vhost,
                ExchangeMeta {
                    name,
                    kind,
                    durable: flags & 1 != 0,
                    auto_delete: flags & 2 != 0,
                    internal: flags & 4 != 0,
                    arguments,
                },
            )
        }
        kind::EXCHANGE_REMOVED => C::ExchangeRemoved(r.shortstr()?, r.shortstr()?),
        kind::QUEUE_ADDED => {
            let vhost = r.shortstr()?;
            let name = r.shortstr()?;
            let id = r.u64()?;
            let flags = r.u8()?;
            let arguments = r.table()?;
            C::QueueAdded(
                vhost,
                QueueMeta {
                    id: QueueId(id),
                    name,
                    // Placed by the shard count at start-up.
                    owner_shard: ShardId(0),
                    durable: flags & 1 != 0,
                    exclusive: None,
                    auto_delete: flags & 2 != 0,
                    arguments,
                },
            )
        }
        kind::QUEUE_REMOVED => C::QueueRemoved(r.shortstr()?, r.shortstr()?),
        kind::BINDING_ADDED => match binding(r)? {
            Some((v, b)) => C::BindingAdded(v, b),
            None => return Ok(None),
        },
        kind::BINDING_REMOVED => match binding(r)? {
            Some((v, b)) => C::BindingRemoved(v, b),
            None => return Ok(None),
        },
        kind::POLICY_SET => {
            let vhost = r.shortstr()?;
            let Some(k) = policy_kind(r.u8()?) else {
                return Ok(None);
            };
            let name = get_str(r)?;
            let pattern = get_str(r)?;
            let Some(apply_to) = ApplyTo::parse(&get_str(r)?) else {
                return Ok(None);
            };
            let priority = r.u64()? as i64;
            let Ok(serde_json::Value::Object(definition)) =
                serde_json::from_str::<serde_json::Value>(&get_str(r)?)
            else {
                return Ok(None);
            };
            match Policy::new(k, &name, &pattern, apply_to, priority, definition) {
                Ok(p) => C::PolicySet(vhost, Box::new(p)),
                Err(_) => return Ok(None),
            }
        }
        kind::POLICY_CLEARED => {
            let vhost = r.shortstr()?;
            let Some(k) = policy_kind(r.u8()?) else {
                return Ok(None);
            };
            C::PolicyCleared(vhost, k, get_str(r)?)
        }
        kind::NEXT_QUEUE_ID => return Ok(Some(Decoded::NextQueueId(r.u64()?))),
        _ => return Ok(None),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, id: u64) -> QueueMeta {
        QueueMeta {
            id: QueueId(id),
            name: name.into(),
            owner_shard: ShardId(0),
            durable: true,
            exclusive: None,
            auto_delete: false,
            arguments: FieldTable::new(),
        }
    }

    #[test]
    fn replay_survives_reopen_and_compaction() {
        let dir = std::env::temp_dir().join(format!("warren-defs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let v: ShortStr = "/".into();
        let ex = ExchangeMeta {
            name: "logs".into(),
            kind: ExchangeKind::Topic,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        let bind = Binding {
            source: "logs".into(),
            destination: Destination::Queue("q1".into()),
            routing_key: "a.#".into(),
            arguments: FieldTable::new(),
        };
        {
            let (mut d, loaded) = Definitions::open(&dir).unwrap();
            assert!(loaded.changes.is_empty());
            for c in [
                TopologyChange::ExchangeAdded(v.clone(), ex.clone()),
                TopologyChange::QueueAdded(v.clone(), queue("q1", 7)),
                TopologyChange::QueueAdded(v.clone(), queue("q2", 9)),
                TopologyChange::BindingAdded(v.clone(), bind.clone()),
                TopologyChange::QueueRemoved(v.clone(), "q2".into()),
            ] {
                d.append(&c).unwrap();
            }
        }
        for _ in 0..2 {
            let (_, loaded) = Definitions::open(&dir).unwrap();
            assert_eq!(
                loaded.next_queue_id, 10,
                "a deleted queue's id is not reused"
            );
            // A log from before vhosts were recorded had `/` implicitly.
            assert_eq!(loaded.changes.len(), 4);
            assert!(matches!(&loaded.changes[0], TopologyChange::VhostAdded(v) if v == "/"));
            assert!(matches!(&loaded.changes[1], TopologyChange::ExchangeAdded(_, e) if *e == ex));
            assert!(
                matches!(&loaded.changes[2], TopologyChange::QueueAdded(_, q) if q.name == "q1" && q.id == QueueId(7))
            );
            assert!(matches!(&loaded.changes[3], TopologyChange::BindingAdded(_, b) if *b == bind));
        }
        // A torn last record is dropped, the rest kept.
        let path = dir.join(FILE_NAME);
        {
            let (mut d, _) = Definitions::open(&dir).unwrap();
            d.append(&TopologyChange::QueueAdded(v.clone(), queue("q3", 11)))
                .unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_, loaded) = Definitions::open(&dir).unwrap();
        assert_eq!(loaded.changes.len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_vhosts_and_permissions_survive() {
        let dir = std::env::temp_dir().join(format!("warren-defs-acc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = User {
            name: "admin".into(),
            hash: PasswordHash::new("s3cret"),
            tags: vec!["administrator".into(), "monitoring".into()],
        };
        let spec = PermissionSpec {
            configure: "^amq\\.gen-.*".into(),
            write: "".into(),
            read: ".*".into(),
        };
        {
            let (mut d, loaded) = Definitions::open(&dir).unwrap();
            assert!(!loaded.seeded);
            for c in [
                TopologyChange::VhostAdded("/".into()),
                TopologyChange::VhostAdded("v1".into()),
                TopologyChange::VhostAdded("gone".into()),
                TopologyChange::Access(AccessChange::UserPut(user.clone())),
                TopologyChange::Access(AccessChange::PermissionSet {
                    user: "admin".into(),
                    vhost: "v1".into(),
                    spec: spec.clone(),
                }),
                TopologyChange::Access(AccessChange::PermissionSet {
                    user: "admin".into(),
                    vhost: "gone".into(),
                    spec: spec.clone(),
                }),
                TopologyChange::VhostRemoved("gone".into()),
            ] {
                d.append(&c).unwrap();
            }
            d.mark_seeded().unwrap();
        }
        for _ in 0..2 {
            let (_, loaded) = Definitions::open(&dir).unwrap();
            assert!(loaded.seeded, "the seeded mark survives compaction");
            let mut t = Topology::empty();
            for c in &loaded.changes {
                t.apply(c);
            }
            assert_eq!(t.vhost_names(), vec![ShortStr::from("/"), "v1".into()]);
            let u = t.access.user("admin").unwrap();
            assert_eq!(u.tags, user.tags);
            assert!(u.hash.verify("s3cret") && !u.hash.verify("other"));
            assert_eq!(t.access.permission("admin", "v1").unwrap().spec, spec);
            assert!(t.access.permission("admin", "gone").is_none());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn policies_survive() {
        use serde_json::json;
        let dir = std::env::temp_dir().join(format!("warren-defs-pol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let def = |v: serde_json::Value| v.as_object().unwrap().clone();
        let p1 = Policy::new(
            PolicyKind::User,
            "ttl",
            "^q\\.",
            ApplyTo::Queues,
            -3,
            def(json!({"message-ttl": 1000, "ha-mode": "all", "dead-letter-exchange": "dlx"})),
        )
        .unwrap();
        let op = Policy::new(
            PolicyKind::Operator,
            "ttl",
            ".*",
            ApplyTo::All,
            7,
            def(json!({"max-length": 10})),
        )
        .unwrap();
        let gone = Policy::new(
            PolicyKind::User,
            "gone",
            ".",
            ApplyTo::Exchanges,
            0,
            def(json!({"alternate-exchange": "ae"})),
        )
        .unwrap();
        let mut in_gone_vhost = gone.clone();
        in_gone_vhost.name = "other".into();
        {
            let (mut d, _) = Definitions::open(&dir).unwrap();
            for c in [
                TopologyChange::VhostAdded("/".into()),
                TopologyChange::VhostAdded("v2".into()),
                TopologyChange::PolicySet("/".into(), Box::new(p1.clone())),
                TopologyChange::PolicySet("/".into(), Box::new(op.clone())),
                TopologyChange::PolicySet("/".into(), Box::new(gone.clone())),
                TopologyChange::PolicyCleared("/".into(), PolicyKind::User, "gone".into()),
                TopologyChange::PolicySet("v2".into(), Box::new(in_gone_vhost)),
                TopologyChange::VhostRemoved("v2".into()),
            ] {
                d.append(&c).unwrap();
            }
            d.mark_seeded().unwrap();
        }
        for _ in 0..2 {
            let (_, loaded) = Definitions::open(&dir).unwrap();
            assert_eq!(loaded.corrupt, 0);
            let mut t = Topology::empty();
            for c in &loaded.changes {
                t.apply(c);
            }
            let v = t.vhost("/").unwrap();
            assert_eq!(v.policies.len(), 1);
            assert_eq!(v.policies["ttl"], p1);
            assert_eq!(v.policies["ttl"].parsed.message_ttl, Some(1000));
            assert_eq!(v.operator_policies["ttl"], op);
            assert!(t.vhost("v2").is_none());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The ordered key-value engine under [`super::Store`]: sled or redb, one byte-keyed
//! table either way, so that the store's layout (the key table in `mod.rs`) and every
//! rule above it are the same on both.
//!
//! Why two: sled 0.34 keeps about five bytes of file per live byte under the store's
//! write pattern (docs/decisions.md, "Store engine"), and its cache does not bound the
//! process's memory; redb is a copy-on-write B-tree whose file tracks its live pages,
//! whose cache has a byte budget, and whose commit is a real fsync. A store directory
//! holds one or the other: which one is decided when it is created and read from the
//! files at every open.
//!
//! Atomicity and durability are the same contract on both: [`Kv::apply`] applies a batch
//! atomically and visibly (not yet durably); [`Kv::sync`] makes everything applied so
//! far durable. sled: `apply_batch`, then flush and fsync (sled's flush alone is not an
//! fsync). redb: a commit without durability per batch, then an empty commit with
//! immediate durability, which persists every commit before it.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

/// The one redb table: byte keys, byte values.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("credfed");

/// How long applied writes may wait for a durable commit (sled's flusher runs every
/// 500 ms; the same here).
const DURABLE_EVERY: Duration = Duration::from_millis(500);

/// The redb file in a store directory.
pub const REDB_FILE: &str = "store.redb";

/// The directory of a fjall store, in the store's directory.
pub const FJALL_DIR: &str = "fjall";

/// The one keyspace of a fjall store.
const FJALL_KEYSPACE: &str = "credfed";

/// Which engine a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// sled 0.34 (a log-structured tree): the embedded default.
    #[default]
    Sled,
    /// redb (a copy-on-write B-tree, fsync per durable commit).
    Redb,
    /// fjall (an LSM tree: a journal, sorted tables written whole and merged in the
    /// background).
    Fjall,
}

impl Engine {
    /// Every engine (what the engine contract's tests run on).
    pub const ALL: [Engine; 3] = [Engine::Sled, Engine::Redb, Engine::Fjall];

    /// The engine of the store already in `dir`, if there is one.
    pub fn in_dir(dir: &Path) -> Option<Engine> {
        if dir.join(REDB_FILE).exists() {
            Some(Engine::Redb)
        } else if dir.join(FJALL_DIR).exists() {
            Some(Engine::Fjall)
        } else if dir.join("db").exists() || dir.join("conf").exists() {
            Some(Engine::Sled)
        } else {
            None
        }
    }

    /// Its name in the config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            "fjall" => Ok(Engine::Fjall),
            other => Err(format!(
                "store.engine: '{other}' is not an engine; use 'redb', 'sled' or 'fjall'"
            )),
        }
    }
}

/// A set of writes applied together.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl AsRef<[u8]>) {
        self.ops.push((key.into(), Some(value.as_ref().to_vec())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Pairs in key order; also walkable from the end.
pub type Pairs<'a> = Box<dyn DoubleEndedIterator<Item = Result<Pair, StoreError>> + 'a>;

/// The engine, opened.
///
/// The engine's handle sits behind a lock so that [`Kv::reopen`] can replace it while
/// the node runs: after a failed write (a full disk, an I/O error) both engines refuse
/// every later write until they are opened again (sled keeps the first I/O error as a
/// global error; redb answers `PreviousIo`). Calls take a clone of the handle and let
/// the lock go at once, so a reader never holds it across its work.
pub enum Kv {
    /// sled: the database (flushes) and the one tree.
    Sled {
        /// For flush and size, and every key's tree; `None` while being reopened.
        open: RwLock<Option<(sled::Db, sled::Tree)>>,
        /// The directory, for the fsyncs sled does not do.
        dir: PathBuf,
        /// The page cache budget it was opened with.
        cache_bytes: u64,
    },
    /// redb: the database file.
    Redb {
        /// The database; `None` while being reopened.
        open: RwLock<Option<Arc<redb::Database>>>,
        /// Its file, for its size.
        file: PathBuf,
        /// The page cache budget it was opened with.
        cache_bytes: u64,
        /// Batches applied and not yet committed, and when a commit was last durable.
        pending: Mutex<Pending>,
        /// Held by whoever commits: one commit at a time, in the order writes were
        /// applied (readers take only `pending`'s lock, never this one).
        commit_lock: Mutex<()>,
    },
    /// fjall: the database and its one keyspace. Batches go to its journal (atomic,
    /// in order) and its memtable; [`Kv::sync`] fsyncs the journal.
    Fjall {
        /// `None` while being reopened.
        open: RwLock<Option<(fjall::Database, fjall::Keyspace)>>,
        /// The store's directory (the engine's own is [`FJALL_DIR`] in it).
        dir: PathBuf,
        /// The block cache budget it was opened with.
        cache_bytes: u64,
    },
}

fn fjall_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) => StoreError::Io(e),
        other => StoreError::Engine(format!("fjall: {other}")),
    }
}

fn open_fjall(
    dir: &Path,
    cache_bytes: u64,
    wait: Duration,
) -> Result<(fjall::Database, fjall::Keyspace), StoreError> {
    let db = open_waiting(dir, wait, || {
        match fjall::Database::builder(dir.join(FJALL_DIR))
            .cache_size(cache_bytes)
            .open()
        {
            Ok(db) => OpenTry::Opened(db),
            Err(fjall::Error::Locked) => OpenTry::Locked,
            Err(e) => OpenTry::Failed(fjall_err(e)),
        }
    })?;
    let keyspace = db
        .keyspace(FJALL_KEYSPACE, fjall_keyspace_options)
        .map_err(fjall_err)?;
    Ok((db, keyspace))
}

/// The table's layout on disk, where it departs from fjall's defaults (docs/decisions.md,
/// decision 111). fjall records these when it creates the keyspace and keeps them: a
/// store made before a change here keeps the layout it was made with.
fn fjall_keyspace_options() -> fjall::KeyspaceCreateOptions {
    use fjall::config::{BlockSizePolicy, CompressionPolicy};
    fjall::KeyspaceCreateOptions::default()
        // fjall compresses only levels 2 and deeper; a store's index keys, folds and
        // map pages repeat long prefixes and compress on every level (at 3 × 10^5
        // records the tables were 1.55 × the live bytes with the defaults, 1.08 × so).
        .data_block_compression_policy(CompressionPolicy::all(fjall::CompressionType::Lz4))
        // Blocks of 16 KiB instead of 4: a quarter of the index entries, and lz4 finds
        // more to share in a larger block; a point read decompresses 16 KiB (a few
        // microseconds) where the check's budget is milliseconds.
        .data_block_size_policy(BlockSizePolicy::all(FJALL_DATA_BLOCK_BYTES))
}

/// The size of fjall's data blocks (see [`fjall_keyspace_options`]).
const FJALL_DATA_BLOCK_BYTES: u32 = 16 * 1024;

/// How long a reopen waits for the engine to let go of its files (sled's background
/// threads, a reader still holding the old handle).
const REOPEN_WAIT: Duration = Duration::from_secs(10);

fn closed_for_reopen() -> StoreError {
    StoreError::Io(std::io::Error::other(
        "the store is closed after a failure and is being reopened; retry shortly",
    ))
}

/// A clone of the engine's handle, the lock let go at once (`None`: being reopened).
fn handle<T: Clone>(open: &RwLock<Option<T>>) -> Result<T, StoreError> {
    match open.read() {
        Ok(g) => g.clone().ok_or_else(closed_for_reopen),
        Err(p) => p.into_inner().clone().ok_or_else(closed_for_reopen),
    }
}

/// Drops the engine's handle (calls meanwhile are told the store is being reopened)
/// and puts the one `open` gives in its place; if opening fails the store stays closed.
fn replace_handle<T>(
    slot: &RwLock<Option<T>>,
    open: impl FnOnce() -> Result<T, StoreError>,
) -> Result<(), StoreError> {
    let mut g = slot.write().unwrap_or_else(|p| p.into_inner());
    drop(g.take());
    *g = Some(open()?);
    Ok(())
}

/// What one try to open an engine's files gave.
enum OpenTry<T> {
    Opened(T),
    /// Another instance holds the files' lock.
    Locked,
    Failed(StoreError),
}

/// Opens with `try_open`, trying again while another instance holds the lock — a
/// dropped instance's background threads (sled, fjall) or a reader still holding the
/// old handle (redb) can trail the drop on a loaded machine — until `wait` has passed;
/// then the store is in use (`dir` names it).
fn open_waiting<T>(
    dir: &Path,
    wait: Duration,
    mut try_open: impl FnMut() -> OpenTry<T>,
) -> Result<T, StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        match try_open() {
            OpenTry::Opened(t) => return Ok(t),
            OpenTry::Failed(e) => return Err(e),
            OpenTry::Locked if Instant::now() >= deadline => {
                return Err(StoreError::InUse(dir.display().to_string()));
            }
            OpenTry::Locked => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn open_sled(
    dir: &Path,
    cache_bytes: u64,
    wait: Duration,
) -> Result<(sled::Db, sled::Tree), StoreError> {
    let db = open_waiting(dir, wait, || {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => OpenTry::Opened(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                OpenTry::Locked
            }
            Err(e) => OpenTry::Failed(e.into()),
        }
    })?;
    let tree = db.open_tree("credfed")?;
    Ok((db, tree))
}

fn open_redb(file: &Path, cache_bytes: u64, wait: Duration) -> Result<redb::Database, StoreError> {
    let db = open_waiting(file, wait, || {
        match redb::Builder::new()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(file)
        {
            Ok(db) => OpenTry::Opened(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => OpenTry::Locked,
            Err(e) => OpenTry::Failed(redb_err(e)),
        }
    })?;
    // The table exists from the start, so that readers never meet its absence.
    let txn = db.begin_write().map_err(redb_err)?;
    txn.open_table(TABLE).map_err(redb_err)?;
    txn.commit().map_err(redb_err)?;
    Ok(db)
}

/// Writes applied to a redb store and not yet committed to it: what readers see on top
/// of the file (gets and ranges alike), committed in one transaction once
/// [`PENDING_MAX_BYTES`] gather, at every [`Kv::sync`] and at least every
/// [`DURABLE_EVERY`]. While a commit runs its writes stay visible as `committing`, so
/// that readers never wait for it.
///
/// Why: a redb commit costs far more than the inserts in it (dirty-page checksums,
/// allocator state), and the writer applies one small batch per envelope — two commits
/// per envelope made redb two thirds of the writer's time in catch-up. A commit without
/// durability was never persistent before the next durable one, so holding its writes
/// here instead loses nothing a crash would not have lost; each batch still lands in
/// one commit, so after a crash it is all there or not at all.
pub struct Pending {
    ops: Ops,
    bytes: usize,
    /// The writes of the commit in progress (older than `ops`), until it ends.
    committing: Option<Arc<Ops>>,
    /// Their bytes.
    committing_bytes: usize,
    /// Bytes committed without durability since the last durable commit.
    since_durable: usize,
    /// When a commit was last durable.
    last_durable: Instant,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            ops: Ops::new(),
            bytes: 0,
            committing: None,
            committing_bytes: 0,
            since_durable: 0,
            last_durable: Instant::now(),
        }
    }
}

/// Bytes committed without durability after which the next commit is durable. redb
/// cannot reuse a page that a commit without durability freed before a durable commit
/// follows (a crash could still return to it), so under heavy writing the garbage
/// between durable commits is what the file grows by; a durable commit per few MiB
/// keeps that small, at one fsync per few MiB.
const DURABLE_AFTER_BYTES: usize = 4 << 20;

/// How long opening a sled or fjall store waits for its lock: what a dropped
/// instance's background threads need to let go of it; another process holding it is
/// an error.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Pending writes beyond which they are committed: large enough that a commit carries
/// thousands of envelopes — at national scale most keys of a record (folds, indexes)
/// land on random pages of the tree, and every page a commit touches is written whole,
/// so fewer, larger commits write each page for more keys (1 MiB gave catch-up ingest
/// 0.42 × the raw verify-pair rate at 10^6 records, 16 MiB 0.59, docs/performance.md) —
/// and small enough to bound the memory (it adds to the page cache's budget). Readers
/// do not wait for a commit (see [`Pending`]).
pub const PENDING_MAX_BYTES: usize = 16 << 20;

fn lock_pending(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding the lock leaves only whole batches in it (they are merged
    // after every check that can fail), so the contents are still good.
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes applied and not committed, by key; `None` removes the key.
type Ops = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Commits the pending writes in one transaction and forgets them; on failure they go
/// back under any written since (still visible) and the error is returned. The commit
/// is durable when asked, and whenever [`DURABLE_EVERY`] has passed or
/// [`DURABLE_AFTER_BYTES`] were committed without durability since the last durable
/// one. `pending`'s lock is held only to take the writes out and to settle after, so
/// readers go on (they see the writes as `committing`) and writers go on applying.
fn commit_pending(
    db: &redb::Database,
    pending: &Mutex<Pending>,
    commit_lock: &Mutex<()>,
    durable: bool,
) -> Result<(), StoreError> {
    // One commit at a time: a later commit overtaking an earlier one would put older
    // values over newer ones.
    let _one_at_a_time = commit_lock.lock().unwrap_or_else(|p| p.into_inner());
    let (ops, bytes, durable) = {
        let mut p = lock_pending(pending);
        let durable = durable
            || p.last_durable.elapsed() >= DURABLE_EVERY
            || p.since_durable + p.bytes >= DURABLE_AFTER_BYTES;
        if p.ops.is_empty() && !durable {
            return Ok(());
        }
        let ops = Arc::new(std::mem::take(&mut p.ops));
        p.committing = Some(ops.clone());
        p.committing_bytes = p.bytes;
        (ops, std::mem::take(&mut p.bytes), durable)
    };
    let written = write_ops(db, &ops, durable);
    let mut p = lock_pending(pending);
    p.committing = None;
    p.committing_bytes = 0;
    match written {
        Ok(()) => {
            if durable {
                p.since_durable = 0;
                p.last_durable = Instant::now();
            } else {
                p.since_durable += bytes;
            }
            Ok(())
        }
        Err(e) => {
            let newer = std::mem::take(&mut p.ops);
            let mut back = Arc::try_unwrap(ops).unwrap_or_else(|shared| (*shared).clone());
            back.extend(newer);
            p.ops = back;
            p.bytes += bytes;
            Err(e)
        }
    }
}

/// One transaction with `ops`, durable or not.
fn write_ops(db: &redb::Database, ops: &Ops, durable: bool) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(redb_err)?;
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(redb_err)?;
    }
    {
        let mut table = txn.open_table(TABLE).map_err(redb_err)?;
        for (k, v) in ops {
            match v {
                Some(v) => {
                    table.insert(k.as_slice(), v.as_slice()).map_err(redb_err)?;
                }
                None => {
                    table.remove(k.as_slice()).map_err(redb_err)?;
                }
            }
        }
    }
    txn.commit().map_err(redb_err)
}

/// A range of the file with the writes not yet in it laid over (a removal hides the
/// file's pair): the state at the moment the range was asked for, both ways.
struct Overlaid<'a> {
    /// Writes in the range, in key order.
    writes: std::collections::VecDeque<(Vec<u8>, Option<Vec<u8>>)>,
    file: Pairs<'a>,
    /// The file's next pair from the front and from the back, once read.
    file_front: Option<Pair>,
    file_back: Option<Pair>,
    /// The file's iterator has ended (it is not asked again).
    file_ended: bool,
}

impl Overlaid<'_> {
    /// Fills `file_front` (`back`: `file_back`), taking the other end's pair when the
    /// file has nothing else; a read error is returned.
    fn peek_file(&mut self, back: bool) -> Result<(), StoreError> {
        let (slot, other) = if back {
            (&mut self.file_back, &mut self.file_front)
        } else {
            (&mut self.file_front, &mut self.file_back)
        };
        if slot.is_some() {
            return Ok(());
        }
        let read = if self.file_ended {
            None
        } else if back {
            self.file.next_back()
        } else {
            self.file.next()
        };
        match read {
            Some(pair) => *slot = Some(pair?),
            None => {
                self.file_ended = true;
                *slot = other.take();
            }
        }
        Ok(())
    }

    fn step(&mut self, back: bool) -> Option<Result<Pair, StoreError>> {
        loop {
            if let Err(e) = self.peek_file(back) {
                return Some(Err(e));
            }
            let write = if back {
                self.writes.back()
            } else {
                self.writes.front()
            };
            let file = if back {
                &mut self.file_back
            } else {
                &mut self.file_front
            };
            // Which comes first in this direction: the write, the file's pair, or both
            // (same key: the write wins and the file's pair is dropped).
            let take_write = match (write, file.as_ref()) {
                (None, None) => return None,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (Some((wk, _)), Some((fk, _))) => {
                    let order = wk.cmp(fk);
                    if order == std::cmp::Ordering::Equal {
                        *file = None;
                        true
                    } else {
                        (order == std::cmp::Ordering::Less) != back
                    }
                }
            };
            if !take_write {
                return file.take().map(Ok);
            }
            let taken = if back {
                self.writes.pop_back()
            } else {
                self.writes.pop_front()
            };
            if let Some((k, Some(v))) = taken {
                return Some(Ok((k, v)));
            }
            // A removal: nothing to give, go on.
        }
    }
}

impl Iterator for Overlaid<'_> {
    type Item = Result<Pair, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl DoubleEndedIterator for Overlaid<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl Drop for Kv {
    fn drop(&mut self) {
        if let Kv::Redb {
            open,
            pending,
            commit_lock,
            ..
        } = self
            && let Ok(db) = handle(open)
        {
            let any = !lock_pending(pending).ops.is_empty();
            if any && let Err(e) = commit_pending(&db, pending, commit_lock, true) {
                tracing::warn!(error = %e, "store closed with writes not committed (they are pulled again from peers)");
            }
        }
    }
}

fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Engine(e.into().to_string())
}

impl Kv {
    /// Opens (or creates) the engine's files in `dir`. `cache_bytes` is the engine's
    /// page cache budget.
    pub fn open(dir: &Path, engine: Engine, cache_bytes: u64) -> Result<Kv, StoreError> {
        std::fs::create_dir_all(dir)?;
        match engine {
            Engine::Sled => Ok(Kv::Sled {
                open: RwLock::new(Some(open_sled(dir, cache_bytes, LOCK_WAIT)?)),
                dir: dir.to_path_buf(),
                cache_bytes,
            }),
            Engine::Redb => {
                let file = dir.join(REDB_FILE);
                let db = open_redb(&file, cache_bytes, Duration::ZERO)?;
                Ok(Kv::Redb {
                    open: RwLock::new(Some(Arc::new(db))),
                    file,
                    cache_bytes,
                    pending: Mutex::new(Pending::new()),
                    commit_lock: Mutex::new(()),
                })
            }
            Engine::Fjall => Ok(Kv::Fjall {
                open: RwLock::new(Some(open_fjall(dir, cache_bytes, LOCK_WAIT)?)),
                dir: dir.to_path_buf(),
                cache_bytes,
            }),
        }
    }

    /// Writes `bytes` into a scratch file in the store's directory, syncs and removes it.
    pub fn probe_writable(&self, bytes: usize) -> Result<(), StoreError> {
        use std::io::Write;
        let dir = match self {
            Kv::Sled { dir, .. } | Kv::Fjall { dir, .. } => dir.clone(),
            Kv::Redb { file, .. } => file.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let path = dir.join("write-probe");
        let result = (|| {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&vec![0u8; bytes])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        Ok(result?)
    }

    /// Closes the engine and opens it again: what clears an engine's memory of a failed
    /// write once its cause (a full disk) is gone. Writes applied and not yet durable
    /// may be lost (sled) or are kept to be committed (redb): either way whole batches.
    /// Calls meanwhile fail with a clear error; if opening fails the store stays closed
    /// and the next reopen tries again.
    pub fn reopen(&self) -> Result<(), StoreError> {
        match self {
            Kv::Sled {
                open,
                dir,
                cache_bytes,
            } => replace_handle(open, || open_sled(dir, *cache_bytes, REOPEN_WAIT)),
            Kv::Redb {
                open,
                file,
                cache_bytes,
                ..
            } => replace_handle(open, || {
                open_redb(file, *cache_bytes, REOPEN_WAIT).map(Arc::new)
            }),
            Kv::Fjall {
                open,
                dir,
                cache_bytes,
            } => replace_handle(open, || open_fjall(dir, *cache_bytes, REOPEN_WAIT)),
        }
    }

    /// Which engine this is.
    pub fn engine(&self) -> Engine {
        match self {
            Kv::Sled { .. } => Engine::Sled,
            Kv::Redb { .. } => Engine::Redb,
            Kv::Fjall { .. } => Engine::Fjall,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Kv::Sled { open, .. } => Ok(handle(open)?.1.get(key)?.map(|v| v.to_vec())),
            Kv::Fjall { open, .. } => Ok(handle(open)?
                .1
                .get(key)
                .map_err(fjall_err)?
                .map(|v| v.to_vec())),
            Kv::Redb { open, pending, .. } => {
                {
                    let p = lock_pending(pending);
                    if let Some(v) = p.ops.get(key) {
                        return Ok(v.clone());
                    }
                    if let Some(v) = p.committing.as_ref().and_then(|c| c.get(key)) {
                        return Ok(v.clone());
                    }
                }
                let db = handle(open)?;
                let txn = db.begin_read().map_err(redb_err)?;
                let table = txn.open_table(TABLE).map_err(redb_err)?;
                Ok(table
                    .get(key)
                    .map_err(redb_err)?
                    .map(|v| v.value().to_vec()))
            }
        }
    }

    /// Sets one key (applied, not yet durable).
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(key, value);
        self.apply(batch)
    }

    /// Removes one key (applied, not yet durable).
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.remove(key);
        self.apply(batch)
    }

    /// Applies `batch` atomically: after a crash, all of it or none of it.
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        match self {
            Kv::Sled { open, .. } => {
                let (_, tree) = handle(open)?;
                let mut b = sled::Batch::default();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => b.insert(k, v),
                        None => b.remove(k),
                    }
                }
                tree.apply_batch(b)?;
                Ok(())
            }
            Kv::Fjall { open, .. } => {
                let (db, keyspace) = handle(open)?;
                let mut b = db.batch();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => b.insert(&keyspace, k, v),
                        None => b.remove(&keyspace, k),
                    }
                }
                b.commit().map_err(fjall_err)
            }
            Kv::Redb {
                open,
                pending,
                commit_lock,
                ..
            } => {
                // Like sled's flusher, applied writes are made durable at least every
                // DURABLE_EVERY, so that what a node replicates without appending is
                // not held back from the disk indefinitely. What is already pending is
                // committed before this batch joins, so that a failed commit refuses
                // this batch (not applied) and keeps the earlier ones pending.
                let due = {
                    let p = lock_pending(pending);
                    p.last_durable.elapsed() >= DURABLE_EVERY || p.bytes >= PENDING_MAX_BYTES
                };
                if due {
                    commit_pending(&*handle(open)?, pending, commit_lock, false)?;
                }
                let mut p = lock_pending(pending);
                for (k, v) in batch.ops {
                    p.bytes += k.len() + v.as_ref().map_or(0, Vec::len);
                    p.ops.insert(k, v);
                }
                Ok(())
            }
        }
    }

    /// Makes everything applied so far durable (a real fsync).
    pub fn sync(&self) -> Result<(), StoreError> {
        match self {
            Kv::Sled { open, dir, .. } => {
                let (db, _) = handle(open)?;
                db.flush()?;
                std::fs::File::open(dir.join("db"))?.sync_all()?;
                let blobs = dir.join("blobs");
                if let Ok(entries) = std::fs::read_dir(&blobs) {
                    for e in entries.flatten() {
                        std::fs::File::open(e.path())?.sync_all()?;
                    }
                    std::fs::File::open(&blobs)?.sync_all()?;
                }
                Ok(())
            }
            Kv::Redb {
                open,
                pending,
                commit_lock,
                ..
            } => commit_pending(&*handle(open)?, pending, commit_lock, true),
            Kv::Fjall { open, .. } => handle(open)?
                .0
                .persist(fjall::PersistMode::SyncAll)
                .map_err(fjall_err),
        }
    }

    /// Pairs with keys in `(lo, hi)`.
    pub fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Result<Pairs<'_>, StoreError> {
        // A range whose start lies past its end holds nothing, whatever an engine's own
        // range call would make of it (a bound can come from a client's cursor).
        let inverted = match (&lo, &hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
            _ => false,
        };
        if inverted {
            return Ok(Box::new(std::iter::empty()));
        }
        match self {
            Kv::Sled { open, .. } => Ok(Box::new(
                handle(open)?.1.range::<Vec<u8>, _>((lo, hi)).map(|kv| {
                    kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(Into::into)
                }),
            )),
            // An iterator over one snapshot: the state of one moment.
            Kv::Fjall { open, .. } => Ok(Box::new(
                handle(open)?.1.range::<Vec<u8>, _>((lo, hi)).map(|guard| {
                    guard
                        .into_inner()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(fjall_err)
                }),
            )),
            Kv::Redb { open, pending, .. } => {
                let db = handle(open)?;
                fn bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
                    match b {
                        Bound::Included(k) => Bound::Included(k.as_slice()),
                        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
                        Bound::Unbounded => Bound::Unbounded,
                    }
                }
                let bounds = (bound(&lo), bound(&hi));
                // The writes not in the file and the file's snapshot are taken under
                // one lock, so that together they are the state of one moment (a
                // commit that ends meanwhile only moves writes from the one to the
                // other). Ranges used to commit what was pending first: at national
                // scale that made every map read a commit of a few hundred records.
                let (writes, txn) = {
                    let p = lock_pending(pending);
                    let mut writes = Ops::new();
                    if let Some(c) = &p.committing {
                        for (k, v) in c.range::<[u8], _>(bounds) {
                            writes.insert(k.clone(), v.clone());
                        }
                    }
                    for (k, v) in p.ops.range::<[u8], _>(bounds) {
                        writes.insert(k.clone(), v.clone());
                    }
                    (writes, db.begin_read().map_err(redb_err)?)
                };
                let table = txn.open_table(TABLE).map_err(redb_err)?;
                let range = table.range_owned(bounds).map_err(redb_err)?;
                let file: Pairs<'_> = Box::new(range.map(|kv| {
                    kv.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                        .map_err(redb_err)
                }));
                if writes.is_empty() {
                    return Ok(file);
                }
                Ok(Box::new(Overlaid {
                    writes: writes.into_iter().collect(),
                    file,
                    file_front: None,
                    file_back: None,
                    file_ended: false,
                }))
            }
        }
    }

    /// Pairs whose key starts with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs<'_>, StoreError> {
        let hi = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.range(Bound::Included(prefix.to_vec()), hi)
    }

    /// Pairs with keys from `lo` to `hi`, both included.
    pub fn range_inclusive(&self, lo: Vec<u8>, hi: Vec<u8>) -> Result<Pairs<'_>, StoreError> {
        self.range(Bound::Included(lo), Bound::Included(hi))
    }

    /// Gives the engine's free space back to the file system where it can (redb: a
    /// compaction, which needs no other transaction open; sled cannot). Returns
    /// whether anything was done.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        match self {
            // fjall merges its tables in the background as it writes.
            Kv::Sled { .. } | Kv::Fjall { .. } => Ok(false),
            Kv::Redb {
                open,
                pending,
                commit_lock,
                ..
            } => {
                let Some(db) = open
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .and_then(Arc::get_mut)
                else {
                    return Ok(false);
                };
                commit_pending(db, pending, commit_lock, true)?;
                let mut any = false;
                while db
                    .compact(redb::CompactionMode::default())
                    .map_err(redb_err)?
                {
                    any = true;
                }
                Ok(any)
            }
        }
    }

    /// Bytes the engine's files occupy.
    pub fn size_on_disk(&self) -> u64 {
        match self {
            Kv::Sled { open, .. } => {
                handle(open).map_or(0, |(db, _)| db.size_on_disk().unwrap_or(0))
            }
            Kv::Redb { file, .. } => std::fs::metadata(file).map_or(0, |m| m.len()),
            Kv::Fjall { open, .. } => {
                handle(open).map_or(0, |(db, _)| db.disk_space().unwrap_or(0))
            }
        }
    }

    /// Bytes of writes applied and not yet in the file (redb; sled keeps its own and
    /// does not say: `None`).
    pub fn pending_bytes(&self) -> Option<u64> {
        match self {
            // fjall bounds its memtables by its own write buffer size, not by the limit
            // this figure is exported beside.
            Kv::Sled { .. } | Kv::Fjall { .. } => None,
            Kv::Redb { pending, .. } => {
                let p = lock_pending(pending);
                Some((p.bytes + p.committing_bytes) as u64)
            }
        }
    }

    /// Bytes the engine's page cache holds now (sled does not say: `None`).
    pub fn cache_bytes(&self) -> Option<u64> {
        match self {
            Kv::Sled { .. } => None,
            Kv::Fjall { open, .. } => handle(open).ok().map(|(db, _)| db.cache_size()),
            Kv::Redb { open, .. } => handle(open)
                .ok()
                .map(|db| db.cache_stats().used_bytes() as u64),
        }
    }
}

/// The smallest key above every key that starts with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine keeps the same contract: ordered ranges both ways, prefixes, batches
    /// with removals, and what was synced survives a reopen.
    #[test]
    fn reopening_keeps_what_was_synced_on_every_engine() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let kv = Kv::open(dir.path(), engine, 1 << 20).unwrap();
            kv.insert(b"a", b"1").unwrap();
            kv.sync().unwrap();
            kv.probe_writable(4096).unwrap();
            assert!(!dir.path().join("write-probe").exists(), "{engine:?}");
            kv.reopen().unwrap();
            assert_eq!(kv.get(b"a").unwrap(), Some(b"1".to_vec()), "{engine:?}");
            kv.insert(b"b", b"2").unwrap();
            kv.sync().unwrap();
            kv.reopen().unwrap();
            let keys: Vec<Vec<u8>> = kv.scan_prefix(b"").unwrap().map(|p| p.unwrap().0).collect();
            assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()], "{engine:?}");
        }
    }

    #[test]
    fn every_engine_keeps_the_same_contract() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            {
                let kv = Kv::open(dir.path(), engine, 1 << 20).unwrap();
                let mut batch = Batch::default();
                for k in [b"a1".as_slice(), b"a2", b"a\xff", b"b", b"\xff\xff"] {
                    batch.insert(k, k);
                }
                kv.apply(batch).unwrap();
                kv.remove(b"a2").unwrap();
                kv.sync().unwrap();
                assert_eq!(Engine::in_dir(dir.path()), Some(engine));
            }
            let kv = Kv::open(dir.path(), engine, 1 << 20).unwrap();
            let keys = |it: Pairs<'_>| -> Vec<Vec<u8>> { it.map(|kv| kv.unwrap().0).collect() };
            assert_eq!(
                keys(kv.scan_prefix(b"a").unwrap()),
                [b"a1".to_vec(), b"a\xff".to_vec()],
                "{engine:?}"
            );
            assert_eq!(
                keys(kv.scan_prefix(b"\xff").unwrap()),
                [b"\xff\xff".to_vec()]
            );
            assert_eq!(
                kv.scan_prefix(b"").unwrap().next_back().unwrap().unwrap().0,
                b"\xff\xff"
            );
            assert_eq!(
                keys(kv.range_inclusive(b"a2".to_vec(), b"b".to_vec()).unwrap()),
                [b"a\xff".to_vec(), b"b".to_vec()]
            );
            assert_eq!(kv.get(b"b").unwrap().as_deref(), Some(&b"b"[..]));
            assert_eq!(kv.get(b"a2").unwrap(), None);
        }
    }

    /// redb ranges give the file with the writes not yet committed laid over it
    /// (inserts, overwrites and removals, across commits), read forwards, backwards or
    /// from both ends, as a map of every write would; fjall's ranges (memtables over
    /// sorted tables) likewise.
    #[test]
    fn ranges_lay_pending_writes_over_the_file_both_ways() {
        ranges_match_a_model_of_every_write(Engine::Redb);
        ranges_match_a_model_of_every_write(Engine::Fjall);
    }

    fn ranges_match_a_model_of_every_write(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path(), engine, 1 << 20).unwrap();
        let mut model: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        // A fixed sequence from a small generator: inserts, removals, commits.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let key = |i: u64| format!("k{i:03}").into_bytes();
        for step in 0..600u64 {
            let mut batch = Batch::default();
            for _ in 0..1 + next(4) {
                let k = key(next(120));
                if next(3) == 0 {
                    batch.remove(k.clone());
                    model.remove(&k);
                } else {
                    let v = step.to_be_bytes().to_vec();
                    batch.insert(k.clone(), &v);
                    model.insert(k, v);
                }
            }
            kv.apply(batch).unwrap();
            if next(7) == 0 {
                kv.sync().unwrap();
            }
            // A range with random ends, read forwards, backwards and from both ends
            // in turn, against the model.
            let (a, b) = (key(next(130)), key(next(130)));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let want: Vec<(Vec<u8>, Vec<u8>)> = model
                .range(lo.clone()..=hi.clone())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let forwards: Vec<_> = kv
                .range_inclusive(lo.clone(), hi.clone())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(forwards, want, "step {step}");
            let mut backwards: Vec<_> = kv
                .range_inclusive(lo.clone(), hi.clone())
                .unwrap()
                .rev()
                .map(Result::unwrap)
                .collect();
            backwards.reverse();
            assert_eq!(backwards, want, "step {step} backwards");
            let mut both = kv.range_inclusive(lo, hi).unwrap();
            let (mut front, mut back) = (Vec::new(), Vec::new());
            loop {
                let got = if next(2) == 0 {
                    both.next().map(|p| front.push(p.unwrap()))
                } else {
                    both.next_back().map(|p| back.push(p.unwrap()))
                };
                if got.is_none() {
                    break;
                }
            }
            back.reverse();
            front.extend(back);
            assert_eq!(front, want, "step {step} from both ends");
        }
    }

    /// The writes held in memory stay within their limit however much is written, and
    /// a sync leaves none; sled does not report any.
    #[test]
    fn pending_writes_stay_within_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path(), Engine::Redb, 1 << 20).unwrap();
        let batch_bytes = 64 * 1024;
        let mut most = 0;
        for i in 0..(3 * PENDING_MAX_BYTES / batch_bytes) {
            let mut batch = Batch::default();
            batch.insert(format!("k{i:08}").into_bytes(), vec![7u8; batch_bytes]);
            kv.apply(batch).unwrap();
            most = most.max(kv.pending_bytes().unwrap());
        }
        assert!(
            most <= (PENDING_MAX_BYTES + 2 * batch_bytes) as u64,
            "{most} bytes held, limit {PENDING_MAX_BYTES}"
        );
        assert!(most > 0);
        kv.sync().unwrap();
        assert_eq!(kv.pending_bytes(), Some(0));
        let sled_dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Kv::open(sled_dir.path(), Engine::Sled, 1 << 20)
                .unwrap()
                .pending_bytes(),
            None
        );
    }

    /// A range read while commits run is the state of one moment: two keys written in
    /// one batch are always seen together.
    #[test]
    fn a_range_read_during_commits_sees_whole_batches() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let dir = tempfile::tempdir().unwrap();
        let kv = std::sync::Arc::new(Kv::open(dir.path(), Engine::Redb, 1 << 20).unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let reader = {
            let (kv, stop) = (kv.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u32;
                while !stop.load(Relaxed) || seen < 100 {
                    let pairs: Vec<_> = kv
                        .scan_prefix(b"pair-")
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    if pairs.len() == 2 {
                        assert_eq!(pairs[0].1, pairs[1].1, "half a batch in a range");
                        seen += 1;
                    }
                }
                seen
            })
        };
        for i in 0..3000u32 {
            let mut batch = Batch::default();
            batch.insert(b"pair-a".as_slice(), i.to_be_bytes());
            batch.insert(b"pair-b".as_slice(), i.to_be_bytes());
            kv.apply(batch).unwrap();
            if i % 50 == 0 {
                kv.sync().unwrap();
            }
        }
        stop.store(true, Relaxed);
        assert!(reader.join().unwrap() >= 100);
    }

    /// redb's pending writes: visible to every reader before any commit (point reads and
    /// ranges alike), each batch all at once, committed on a clean close, and what was
    /// synced survives.
    #[test]
    fn pending_writes_are_visible_whole_and_kept() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        let dir = tempfile::tempdir().unwrap();
        let written;
        {
            let kv = std::sync::Arc::new(Kv::open(dir.path(), Engine::Redb, 1 << 20).unwrap());
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let observed = std::sync::Arc::new(AtomicU64::new(0));
            // A reader on another thread never sees half a batch.
            let reader = {
                let (kv, stop, observed) = (kv.clone(), stop.clone(), observed.clone());
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        let a = kv.get(b"pair-a").unwrap();
                        let b = kv.get(b"pair-b").unwrap();
                        // b is written with a in one batch and read after it: it is
                        // never older than a.
                        if let (Some(a), Some(b)) = (&a, &b) {
                            assert!(b >= a, "half a batch: a {a:?} b {b:?}");
                            observed.fetch_add(1, Relaxed);
                        }
                    }
                })
            };
            // Writes go on until the reader has looked many times (a loaded machine may
            // schedule it late), within a deadline.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0u32;
            while i < 2000 || observed.load(Relaxed) < 100 {
                assert!(Instant::now() < deadline, "the reader never ran");
                let mut batch = Batch::default();
                batch.insert(b"pair-a".as_slice(), i.to_be_bytes());
                batch.insert(b"pair-b".as_slice(), i.to_be_bytes());
                batch.insert(format!("k{i:08}").into_bytes(), [1u8; 100]);
                kv.apply(batch).unwrap();
                assert_eq!(
                    kv.get(format!("k{i:08}").as_bytes()).unwrap(),
                    Some(vec![1u8; 100])
                );
                i += 1;
            }
            written = i;
            stop.store(true, Relaxed);
            reader.join().unwrap();
            assert_eq!(kv.scan_prefix(b"k").unwrap().count(), written as usize);
            kv.remove(b"k00000000").unwrap();
            assert_eq!(kv.get(b"k00000000").unwrap(), None);
            kv.sync().unwrap();
            // Applied after the last sync: committed when the store closes.
            kv.insert(b"late", b"1").unwrap();
        }
        let kv = Kv::open(dir.path(), Engine::Redb, 1 << 20).unwrap();
        assert_eq!(kv.scan_prefix(b"k").unwrap().count(), written as usize - 1);
        assert_eq!(kv.get(b"late").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            kv.get(b"pair-a").unwrap(),
            Some((written - 1).to_be_bytes().to_vec())
        );
    }

    /// Syncs a fjall store, flushes its memtable into a table and gives the bytes its
    /// tables occupy.
    fn fjall_tables_after_flush(kv: &Kv) -> u64 {
        kv.sync().unwrap();
        let Kv::Fjall { open, .. } = kv else {
            unreachable!("opened as fjall")
        };
        let (_, keyspace) = handle(open).unwrap();
        keyspace.rotate_memtable_and_wait().unwrap();
        assert!(keyspace.table_count() >= 1, "the memtable was flushed");
        keyspace.disk_space()
    }

    /// fjall's tables are compressed on every level, the first included (its default
    /// leaves levels 0 and 1 raw): 6.7 MB of keys and values that repeat like a store's
    /// index keys, flushed into a level-0 table, occupy well under half of that.
    #[test]
    fn fjall_compresses_its_first_level() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path(), Engine::Fjall, 1 << 20).unwrap();
        let mut written = 0u64;
        for chunk in 0..64u32 {
            let mut batch = Batch::default();
            for i in 0..1024u32 {
                let key = format!("Zregion-110000/listing/name/{chunk:04}{i:06}");
                let value = format!("subject 91110000{chunk:04}{i:06} trade 7 measure 12");
                written += (key.len() + 64) as u64;
                batch.insert(key.into_bytes(), format!("{value:<64}").into_bytes());
            }
            kv.apply(batch).unwrap();
        }
        let tables = fjall_tables_after_flush(&kv);
        assert!(
            tables * 2 < written,
            "{tables} bytes of tables for {written} bytes written: not compressed"
        );
        assert_eq!(kv.scan_prefix(b"Z").unwrap().count(), 64 * 1024);
    }

    /// A fjall store made before the layout changed (fjall's own defaults) opens with
    /// this build, keeps what it held, takes writes, and keeps its recorded layout:
    /// its new tables stay uncompressed at level 0, as that layout says.
    #[test]
    fn a_fjall_store_made_with_the_defaults_opens_and_keeps_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = fjall::Database::builder(dir.path().join(FJALL_DIR))
                .open()
                .unwrap();
            let keyspace = db
                .keyspace(FJALL_KEYSPACE, fjall::KeyspaceCreateOptions::default)
                .unwrap();
            keyspace.insert("before", "kept").unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        assert_eq!(Engine::in_dir(dir.path()), Some(Engine::Fjall));
        let kv = Kv::open(dir.path(), Engine::Fjall, 1 << 20).unwrap();
        assert_eq!(kv.get(b"before").unwrap(), Some(b"kept".to_vec()));
        let mut written = 0u64;
        let mut batch = Batch::default();
        for i in 0..32 * 1024u32 {
            let key = format!("Zregion-110000/listing/name/{i:08}");
            written += (key.len() + 64) as u64;
            batch.insert(key.into_bytes(), vec![b'x'; 64]);
        }
        kv.apply(batch).unwrap();
        assert!(
            fjall_tables_after_flush(&kv) * 2 > written,
            "the old store's level 0 was compressed: its recorded layout was not kept"
        );
        kv.reopen().unwrap();
        assert_eq!(kv.get(b"before").unwrap(), Some(b"kept".to_vec()));
        assert_eq!(kv.scan_prefix(b"Z").unwrap().count(), 32 * 1024);
    }
}

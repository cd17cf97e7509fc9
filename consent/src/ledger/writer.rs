//! The writer task: one per process. It takes the records handed over, numbers and
//! chains them, writes each batch with one statement on a connection of its own, signs
//! the head now and then, and syncs to disk in groups (see the module above).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use warrant_idp::db::Db;

use super::chain::{CheckpointKey, GENESIS, Record};
use super::store::{Store, StoreError, Target};
use super::{Entry, Kind, Ledger, LedgerError, Msg, Options, Pending, Shared, Written, now_micros};

struct Writer {
    target: Target,
    conn: Option<Store>,
    key: CheckpointKey,
    options: Options,
    shared: Arc<Shared>,
    /// The last record written: its number and hash. `None` after a failed write: read
    /// again from the database before the next one.
    head: Option<(i64, String)>,
    signed_seq: i64,
    last_signed: Instant,
    synced_seq: i64,
    last_synced: Instant,
    /// Records nobody waits for that could not be written yet, oldest first.
    retry: VecDeque<Pending>,
    /// While records cannot be written: when to try again.
    retry_at: Option<Instant>,
    /// Records nobody waits for (outcomes, refusals), held up to `sync_interval` to go
    /// with the next record someone waits for: one commit per call instead of two.
    held: Vec<Pending>,
    /// When the oldest of them was handed over.
    held_since: Option<Instant>,
}

pub(super) async fn start(
    db: &Db,
    key: CheckpointKey,
    options: Options,
) -> Result<Ledger, LedgerError> {
    let writer_id = uuid::Uuid::now_v7().to_string();
    let shared = Arc::new(Shared {
        writer: writer_id.clone(),
        key_id: key.public().id().to_owned(),
        healthy: std::sync::atomic::AtomicBool::new(true),
        failure: Mutex::new(String::new()),
        backlog: Default::default(),
        written: Default::default(),
        dropped: Default::default(),
    });
    let now = Instant::now();
    let mut writer = Writer {
        target: Target::of(db),
        conn: None,
        key,
        options,
        shared: shared.clone(),
        head: Some((0, GENESIS.to_owned())),
        signed_seq: 0,
        last_signed: now,
        synced_seq: 0,
        last_synced: now,
        retry: VecDeque::new(),
        retry_at: None,
        held: Vec::new(),
        held_since: None,
    };
    writer.open().await.map_err(unavailable)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(writer.run(rx));
    Ok(Ledger { tx, shared })
}

fn unavailable(e: StoreError) -> LedgerError {
    LedgerError::Unavailable(e.0)
}

impl Writer {
    fn writer(&self) -> &str {
        &self.shared.writer
    }

    async fn conn(&mut self) -> Result<&mut Store, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(self.target.connect(self.options.write_timeout).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError("no connection".into()))
    }

    /// Registers this writer and writes its first record: who it is, and the heads of
    /// the writers before it (so that none of their chains can disappear unseen).
    async fn open(&mut self) -> Result<(), StoreError> {
        let writer = self.writer().to_owned();
        let (label, key_id) = (self.options.label.clone(), self.shared.key_id.clone());
        let conn = self.conn().await?;
        let heads = conn.heads().await?;
        conn.register(&writer, &label, &key_id, now_micros())
            .await?;
        let previous: Vec<_> = heads
            .into_iter()
            .map(|(writer, seq, hash)| serde_json::json!({"writer": writer, "seq": seq, "hash": hash}))
            .collect();
        let mut entry = Entry::new(Kind::Opened);
        entry.detail.more = Some(serde_json::json!({
            "label": label,
            "version": env!("CARGO_PKG_VERSION"),
            "key_id": key_id,
            "previous": previous,
        }));
        let pending = Pending {
            entry,
            at: now_micros(),
            ack: None,
        };
        let rows = self.rows(std::slice::from_ref(&pending));
        self.conn().await?.insert(&rows).await?;
        self.head = rows.last().map(|r| (r.seq, r.hash.clone()));
        self.shared.written.fetch_add(1, Ordering::Relaxed);
        self.checkpoint().await?;
        self.sync().await
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut closing = None;
        while closing.is_none() {
            let mut batch = Vec::new();
            let msg = match self.deadline() {
                Some(deadline) => tokio::select! {
                    msg = rx.recv() => Some(msg),
                    () = tokio::time::sleep_until(deadline) => None,
                },
                None => Some(rx.recv().await),
            };
            match msg {
                Some(Some(Msg::Record(p))) => batch.push(*p),
                Some(Some(Msg::Close(tell))) => closing = Some(Some(tell)),
                // Every handle is gone.
                Some(None) => closing = Some(None),
                None => {}
            }
            while closing.is_none() && batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Record(p)) => batch.push(*p),
                    Ok(Msg::Close(tell)) => closing = Some(Some(tell)),
                    Err(_) => break,
                }
            }
            self.shared
                .backlog
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            if let Some(batch) = self.hold(batch, closing.is_some()) {
                self.write(batch).await;
            }
            self.upkeep(closing.is_some()).await;
        }
        // Closing: what is left, then the closing marks.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Record(p) = msg {
                rest.push(*p);
            }
        }
        let mut rest_all = std::mem::take(&mut self.held);
        rest_all.extend(rest);
        self.write(rest_all).await;
        self.retry_at = None;
        self.write(Vec::new()).await;
        self.upkeep(true).await;
        let writer = self.writer().to_owned();
        if let Ok(conn) = self.conn().await {
            let _ = conn.close(&writer, now_micros()).await;
        }
        if let Some(Some(tell)) = closing {
            let _ = tell.send(());
        }
    }

    /// Adds `batch` to what is held; what to write now, if anything: everything held
    /// once someone waits for a record of it, once it is a batch's worth, once the
    /// oldest has waited `sync_interval`, or when closing.
    fn hold(&mut self, batch: Vec<Pending>, closing: bool) -> Option<Vec<Pending>> {
        let now = Instant::now();
        if !batch.is_empty() && self.held.is_empty() {
            self.held_since = Some(now);
        }
        self.held.extend(batch);
        let due = self
            .held_since
            .is_some_and(|since| now >= since + self.options.sync_interval);
        let write = closing
            || due
            || self.held.len() >= self.options.max_batch
            || self.held.iter().any(|p| p.ack.is_some())
            // Records to try again go with the next write anyway.
            || (!self.retry.is_empty() && self.retry_at.is_none_or(|at| now >= at));
        if write && !self.held.is_empty() {
            self.held_since = None;
            Some(std::mem::take(&mut self.held))
        } else if write {
            Some(Vec::new())
        } else {
            None
        }
    }

    /// When the task must wake without a record: to write what is held, to sync, to
    /// sign, to try again.
    fn deadline(&self) -> Option<Instant> {
        let head = self.head.as_ref().map_or(0, |h| h.0);
        [
            self.held_since
                .map(|since| since + self.options.sync_interval),
            (head > self.synced_seq).then(|| self.last_synced + self.options.sync_interval),
            (head > self.signed_seq).then(|| self.last_signed + self.options.checkpoint_interval),
            (!self.retry.is_empty()).then_some(self.retry_at).flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Signs and syncs when due (`now`: regardless of the time).
    async fn upkeep(&mut self, now: bool) {
        if self.retry_at.is_some() {
            return;
        }
        let head = self.head.as_ref().map_or(0, |h| h.0);
        let at = Instant::now();
        let sign = head > self.signed_seq
            && (now
                || head - self.signed_seq >= self.options.checkpoint_records as i64
                || at >= self.last_signed + self.options.checkpoint_interval);
        if sign && let Err(e) = within(self.options.write_timeout, self.checkpoint()).await {
            self.failed(e);
            return;
        }
        let sync =
            head > self.synced_seq && (now || at >= self.last_synced + self.options.sync_interval);
        if sync && let Err(e) = within(self.options.write_timeout, self.sync()).await {
            self.failed(e);
        }
    }

    /// Writes the records waiting to be tried again and `batch`; answers whoever waits.
    async fn write(&mut self, batch: Vec<Pending>) {
        if let Some(at) = self.retry_at
            && Instant::now() < at
        {
            self.keep(batch);
            return;
        }
        let mut pending: Vec<Pending> = self.retry.drain(..).collect();
        pending.extend(batch);
        if pending.is_empty() {
            return;
        }
        for chunk in chunks(pending, self.options.max_batch) {
            let result = within(self.options.write_timeout, self.write_chunk(&chunk)).await;
            match result {
                Ok(()) => {
                    let last = self.head.as_ref().map_or(0, |h| h.0);
                    let first = last - chunk.len() as i64 + 1;
                    self.shared
                        .written
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    self.recovered();
                    for (i, p) in chunk.into_iter().enumerate() {
                        if let Some(ack) = p.ack {
                            let _ = ack.send(Ok(Written {
                                seq: first + i as i64,
                            }));
                        }
                    }
                }
                Err(e) => {
                    self.failed(e);
                    self.keep(chunk);
                }
            }
        }
    }

    async fn write_chunk(&mut self, chunk: &[Pending]) -> Result<(), StoreError> {
        if self.head.is_none() {
            self.head = Some(self.read_head().await?);
        }
        let rows = self.rows(chunk);
        self.conn().await?.insert(&rows).await?;
        self.head = rows.last().map(|r| (r.seq, r.hash.clone()));
        Ok(())
    }

    /// Fails whoever waits for one of `batch` (what they were about to do does not
    /// happen: their records are not kept); keeps the others to try again.
    fn keep(&mut self, batch: Vec<Pending>) {
        let reason = self.failure();
        for p in batch {
            match p.ack {
                Some(ack) => {
                    let _ = ack.send(Err(LedgerError::Unavailable(reason.clone())));
                }
                None => self.retry.push_back(p),
            }
        }
        let over = self.retry.len().saturating_sub(self.options.max_backlog);
        if over > 0 {
            self.retry.drain(..over);
            let total = self
                .shared
                .dropped
                .fetch_add(over as u64, Ordering::Relaxed)
                + over as u64;
            tracing::error!(
                dropped = over,
                total,
                "the audit ledger's backlog is full: the oldest records waiting to be written were dropped"
            );
        }
    }

    fn failure(&self) -> String {
        self.shared.failure()
    }

    fn failed(&mut self, e: StoreError) {
        // The connection and the head are read again before the next write: a write
        // that timed out may have landed after all.
        self.conn = None;
        self.head = None;
        self.retry_at = Some(Instant::now() + self.options.retry_interval);
        let reason = e.0;
        if self.shared.healthy.swap(false, Ordering::AcqRel) {
            tracing::error!(error = %reason, "the audit ledger cannot be written: calls are refused until it can");
        }
        *self
            .shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }

    fn recovered(&mut self) {
        self.retry_at = None;
        if !self.shared.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("the audit ledger is written again: calls are served");
        }
    }

    async fn read_head(&mut self) -> Result<(i64, String), StoreError> {
        let writer = self.writer().to_owned();
        let head = self.conn().await?.head(&writer).await?;
        Ok(head.unwrap_or_else(|| (0, GENESIS.to_owned())))
    }

    /// The rows of `pending`, numbered and chained after the head.
    fn rows(&self, pending: &[Pending]) -> Vec<Record> {
        let (mut seq, mut prev) = self.head.clone().unwrap_or_else(|| (0, GENESIS.to_owned()));
        pending
            .iter()
            .map(|p| {
                seq += 1;
                let mut record = to_record(self.writer(), seq, p, prev.clone());
                record.hash = record.computed_hash();
                prev.clone_from(&record.hash);
                record
            })
            .collect()
    }

    async fn checkpoint(&mut self) -> Result<(), StoreError> {
        let Some((seq, hash)) = self.head.clone() else {
            return Ok(());
        };
        if seq <= self.signed_seq {
            return Ok(());
        }
        let writer = self.writer().to_owned();
        let at = now_micros();
        let signature = self.key.sign(&writer, seq, &hash, at);
        let key_id = self.shared.key_id.clone();
        self.conn()
            .await?
            .checkpoint(&writer, (seq, &hash), at, &key_id, &signature)
            .await?;
        self.signed_seq = seq;
        self.last_signed = Instant::now();
        Ok(())
    }

    /// Makes every record written so far durable (see `store`).
    async fn sync(&mut self) -> Result<(), StoreError> {
        let Some((seq, _)) = self.head.clone() else {
            return Ok(());
        };
        let writer = self.writer().to_owned();
        self.conn().await?.sync(&writer, seq).await?;
        self.synced_seq = seq;
        self.last_synced = Instant::now();
        Ok(())
    }
}

/// `step`, failing as a timeout when the database does not answer within `limit`.
async fn within(
    limit: std::time::Duration,
    step: impl Future<Output = Result<(), StoreError>>,
) -> Result<(), StoreError> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(StoreError(format!(
            "the database did not answer within {limit:?}"
        ))),
    }
}

fn chunks(mut all: Vec<Pending>, size: usize) -> Vec<Vec<Pending>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(all.len().div_ceil(size));
    while all.len() > size {
        let rest = all.split_off(size);
        out.push(std::mem::replace(&mut all, rest));
    }
    out.push(all);
    out
}

/// One record's columns from what was handed over.
fn to_record(writer: &str, seq: i64, p: &Pending, prev_hash: String) -> Record {
    let e = &p.entry;
    let identity = e.token.as_ref().map(|t| &t.identity);
    let user = identity
        .map(|i| i.user.clone())
        .or_else(|| e.user.as_deref().map(str::to_owned));
    let agent = identity
        .map(|i| i.agent.clone())
        .or_else(|| e.agent.as_deref().map(str::to_owned));
    let mut facts = e.detail.clone();
    if let Some(args) = &e.args {
        facts.args_bytes = Some(args.len() as u64);
        facts.args_sha256 = Some(crate::hex(&Sha256::digest(args.as_bytes())));
    }
    let mut detail = serde_json::to_value(&facts).unwrap_or_default();
    if let (Some(identity), Some(map)) = (identity, detail.as_object_mut()) {
        map.insert("grant".into(), identity.grant.clone().into());
        // The narrowings after the person's consent: the subagents' own blocks.
        if identity.chain.len() > 2 {
            map.insert(
                "chain".into(),
                serde_json::to_value(&identity.chain[2..]).unwrap_or_default(),
            );
        }
    }
    Record {
        writer: writer.to_owned(),
        seq,
        at: p.at,
        kind: e.kind.name().to_owned(),
        user_id: user,
        agent,
        upstream: e.upstream.as_deref().map(str::to_owned),
        tool: e.tool.as_deref().map(str::to_owned),
        decision: e
            .allowed
            .map(|a| if a { "allow" } else { "deny" }.to_owned()),
        risk: e.risk.map(|r| r.name().to_owned()),
        detail: detail.to_string(),
        prev_hash,
        hash: String::new(),
    }
}

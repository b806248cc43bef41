//! Who submits a line: closing a batch claims its lines under the registry's lock (lines
//! already in a pending batch of this cache directory, submitted by a killed run or by
//! another live process, are left to that batch and waited for), and following a batch
//! this process did not submit, including one still being created elsewhere or by a run
//! killed meanwhile.

use std::time::Duration;

use super::*;

/// How long a `creating` record may wait for its batch's id before it counts as never
/// created (a live process records the id within seconds of `POST /batches`).
const CREATE_GRACE_S: u64 = 120;

/// Notes a pending record's keys as in its batch.
pub(super) fn mark(st: &mut QueueState, r: &Record) {
    st.known.insert(r.id.clone());
    for k in &r.keys {
        st.in_batch.insert(k.clone(), r.id.clone());
    }
}

/// Follows a batch this process did not submit (its keys already marked).
pub(super) fn follow_theirs(shared: &Arc<Shared>, q: &Arc<Queue>, r: Record) {
    eprintln!(
        "batch {} (model `{}`, {} requests, submitted by an earlier or another run): waiting for it instead of submitting again",
        r.id,
        r.model,
        r.keys.len()
    );
    shared.picked_up.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(adopt(shared.clone(), q.clone(), r));
}

/// Claims `lines` for a new batch: under the registry's lock, pending batches of other
/// processes are taken up (their lines dropped from this batch, their waiters answered
/// when those batches are read back) and the rest recorded `creating` under a fresh claim
/// id. `None`: nothing is left to submit.
pub(super) fn claim(
    shared: &Arc<Shared>,
    q: &Arc<Queue>,
    mut lines: Vec<Line>,
) -> Option<(Vec<Line>, Record)> {
    let _lock = shared.registry.lock();
    let pending =
        shared
            .registry
            .pending(q.api.base_url(), q.api.endpoint_path(), &q.provider_model);
    let theirs: Vec<Record> = {
        let mut st = q.state.lock().ok()?;
        let new: Vec<Record> = pending
            .into_iter()
            .filter(|r| !st.known.contains(&r.id) && !st.known.contains(&r.claim))
            .collect();
        for r in &new {
            mark(&mut st, r);
        }
        lines.retain(|l| !st.in_batch.contains_key(&l.key));
        new
    };
    for r in theirs {
        follow_theirs(shared, q, r);
    }
    if lines.is_empty() {
        return None;
    }
    let id = format!("claim-{:016x}", rand::random::<u64>());
    let record = Record {
        id: id.clone(),
        model: q.name.clone(),
        provider_model: q.provider_model.clone(),
        base_url: q.api.base_url().to_string(),
        endpoint: q.api.endpoint_path().to_string(),
        input_file_id: String::new(),
        submitted_at: unix_now(),
        state: "creating".into(),
        keys: lines.iter().map(|l| l.key.clone()).collect(),
        estimate_usd: lines.iter().map(|l| l.est_micro).sum::<u64>() as f64 / 1e6,
        claim: id.clone(),
        pid: std::process::id(),
    };
    if let Ok(mut st) = q.state.lock() {
        st.known.insert(id);
    }
    if let Err(e) = shared.registry.write(&record) {
        tracing::warn!("batch claim {}: {e:#}", record.id);
    }
    Some((lines, record))
}

/// Follows a batch of an earlier run or of another process. One recorded while it was
/// being created is looked up by its input file in the provider's list, or waited for
/// while its creator may still record its id; not found after that, it never existed and
/// its lines are resubmitted.
pub(super) async fn adopt(shared: Arc<Shared>, q: Arc<Queue>, mut record: Record) {
    if record.creating() {
        match created(&shared, &q, &record).await {
            Created::Found(r) => record = *r,
            Created::Stopped => {
                answer_not_sent(&q, &record, NotSent::BatchPending);
                return;
            }
            Created::Never => {
                shared.registry.remove(&record.id);
                if let Ok(mut st) = q.state.lock() {
                    for k in &record.keys {
                        st.in_batch.remove(k);
                        deliver(&mut st, k, || {
                            Got::Error(format!(
                                "the batch of claim {} was never created",
                                record.id
                            ))
                        });
                    }
                }
                return;
            }
        }
        if let Ok(mut st) = q.state.lock() {
            mark(&mut st, &record);
        }
    }
    follow(shared, q, record).await;
}

enum Created {
    Found(Box<Record>),
    Stopped,
    Never,
}

/// The batch a `creating` record became: recorded under its claim by its creator, or
/// found by its input file in the provider's list (a creator killed before it learned the
/// id). Waits up to `CREATE_GRACE_S` after the claim while its creator still runs.
async fn created(shared: &Shared, q: &Queue, record: &Record) -> Created {
    let claim = if record.claim.is_empty() {
        record.id.clone()
    } else {
        record.claim.clone()
    };
    let poll = q.cfg.poll_min.max(Duration::from_millis(50));
    loop {
        if let Some(r) = shared.registry.by_claim(&claim) {
            return Created::Found(Box::new(r));
        }
        let file = record.input_file_id.clone();
        if !file.is_empty() {
            match q.api.list().await {
                Ok(list) => {
                    if let Some(b) = list
                        .into_iter()
                        .find(|b| b.input_file_id.as_deref() == Some(file.as_str()))
                    {
                        eprintln!(
                            "batch {} found by its input file {file} (the run that created it was stopped before it could record its id)",
                            b.id
                        );
                        let mut r = record.clone();
                        r.id = b.id;
                        r.state = "submitted".into();
                        if let Err(e) = shared.registry.write(&r) {
                            tracing::warn!("batch {}: {e:#}", r.id);
                        }
                        shared.registry.remove(&record.id);
                        return Created::Found(Box::new(r));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "batch of input file {file}: cannot list the provider's batches ({e:#}); its requests wait for a later run"
                    );
                    return Created::Stopped;
                }
            }
        }
        // gone without a batch (its creator failed to create it), or too old to be alive
        if !shared.registry.exists(&record.id) {
            // its creator writes the batch's record before it removes the claim
            return shared
                .registry
                .by_claim(&claim)
                .map_or(Created::Never, |r| Created::Found(Box::new(r)));
        }
        let old = unix_now().saturating_sub(record.submitted_at) >= CREATE_GRACE_S;
        if old || !record.writer_alive() {
            return Created::Never;
        }
        if *shared.stop.borrow() {
            return Created::Stopped;
        }
        tokio::time::sleep(poll).await;
    }
}

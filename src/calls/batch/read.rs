//! Reading a finished batch back: its output and error files, each line to its call by
//! `custom_id` (the cache key), answers stored as direct ones are, the rest queued again
//! or sent directly. The answers of a batch another live process submitted are cache hits
//! here (that process pays for them); those of a killed run's batch are this run's.

use super::*;

/// Reads an ended batch's output and error files and answers every line's waiters; lines
/// without a result (a failed, expired or cancelled batch) are errors they may resubmit.
pub(super) async fn read_back(shared: &Shared, q: &Queue, info: &BatchInfo, record: &mut Record) {
    let mut results: HashMap<String, LineResult> = HashMap::new();
    let mut read_error = None;
    for f in [&info.output_file_id, &info.error_file_id]
        .into_iter()
        .flatten()
    {
        match q.api.results(f).await {
            Ok(lines) => results.extend(lines),
            Err(e) => read_error = Some(format!("{e:#}")),
        }
    }
    let (mut answered, mut failed) = (0usize, 0usize);
    // a batch another live process submitted is its to pay: here its answers are read as
    // cache hits (stored all the same, should that process die before it reads them)
    let theirs = record.pid != 0 && record.pid != std::process::id() && record.writer_alive();
    if let Ok(mut st) = q.state.lock() {
        for k in &record.keys {
            st.in_batch.remove(k);
            let got = match results.remove(k) {
                Some(LineResult::Answer(r)) if complete::response(&r).is_ok() => {
                    answered += 1;
                    // no node waits for it (a batch of a killed run), or its submitter
                    // counts it: stored here
                    if (theirs || !st.waiters.contains_key(k)) && r.usage.is_some() {
                        let _ = shared.cache.put_first(
                            &Key(k.clone()),
                            "call",
                            with_batch(r.clone(), &record.id),
                            |x: &CallResponse| complete::response(x).is_ok(),
                        );
                    }
                    Got::Answer(r, record.id.clone())
                }
                Some(LineResult::Answer(r)) => {
                    failed += 1;
                    Got::Error(format!(
                        "batch {}: not a complete answer (finish_reason `{}`)",
                        record.id, r.finish_reason
                    ))
                }
                Some(LineResult::Error(e)) => {
                    failed += 1;
                    Got::Error(format!("batch {}: {e}", record.id))
                }
                None => {
                    failed += 1;
                    Got::Error(format!(
                        "batch {} ended `{}` without a result for this request{}",
                        record.id,
                        info.status,
                        match (&info.errors, &read_error) {
                            (Some(e), _) | (None, Some(e)) => format!(" ({e})"),
                            _ => String::new(),
                        }
                    ))
                }
            };
            // one answer is one call: the first waiter stores and pays for it, the others
            // (nodes with the same request) read it as a cache hit would
            for (n, tx) in st
                .waiters
                .remove(k)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let g = match (&got, n) {
                    (Got::Answer(r, id), 1..) => Got::Stored(with_batch(r.clone(), id)),
                    (Got::Answer(r, id), _) if theirs => Got::Stored(with_batch(r.clone(), id)),
                    _ => got.clone(),
                };
                let _ = tx.send(g);
            }
        }
    }
    eprintln!(
        "batch {} (model `{}`) {}: {answered} answered, {failed} to resubmit or send directly",
        record.id, q.name, info.status
    );
    record.state = info.status.clone();
    if let Err(e) = shared.registry.write(record) {
        tracing::warn!("batch {}: {e:#}", record.id);
    }
    if let Ok(mut g) = shared.in_flight.lock() {
        g.remove(&record.id);
    }
}

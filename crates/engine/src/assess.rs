//! Check runs: read each instance once, evaluate every applicable check item on it.

use std::collections::BTreeMap;

use catalog::{evaluate, CheckDef, Outcome};
use connectors::{CloudCredentials, ConnectorError, Target};
use model::{CheckStatus, Document, LiveReader, RunDetailStatus, LIVE, LIVE_ERROR, LIVE_SYSTEM};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use store::{CheckRun, CheckRunDetail, DetailOutcome, Instance, ResultUpdate};

/// Instances of a check run written per commit.
const CHUNK: usize = 256;

/// Instances of a check run read from the store at a time.
const PAGE: i64 = 4096;

/// Instances a reader thread reads and evaluates at a time.
const PART: usize = 32;

/// Parts read and waiting to be written, at most: the readers stop when the writer is this
/// far behind. It bounds a run's memory (a demo host's outcomes take about 40 KB: 512 hosts
/// wait at most, and [`CHUNK`] are being written).
const QUEUED_PARTS: usize = 16;

use crate::custom::AccountChecks;
use crate::Engine;

/// The result of `check` on `instance`, as the document shows it; `live`: whether the
/// document holds values in effect ([`catalog::has_live_values`], looked for once per
/// document rather than per result).
fn result_update(
    check: &CheckDef,
    instance: &Instance,
    status: CheckStatus,
    doc: &Document,
    live: bool,
    run_id: &str,
) -> ResultUpdate {
    // A file that says one thing while the service runs another: evidence of both (or why
    // the value in effect could not be read).
    let differences = if live { catalog::live_differences(check, doc) } else { Vec::new() };
    ResultUpdate {
        check_id: check.id,
        instance_pk: instance.pk,
        vendor: instance.vendor,
        status,
        status_message: differences.into_iter().chain(live_unread(check, doc)).collect::<Vec<_>>().join("; "),
        config: check.shown_json(doc, live),
        run_id: run_id.to_string(),
    }
}

/// On a live system, an item whose value in effect is read back but was not: why (the
/// reader's own error when it gave one).
pub(crate) fn live_unread(check: &CheckDef, doc: &Document) -> Option<String> {
    let reader = check.effect()?.live?;
    if !doc.contains_key(LIVE_SYSTEM) {
        return None;
    }
    let missing: Vec<&str> =
        check.rule.iter().map(|c| c.key.as_str()).filter(|k| !doc.contains_key(&format!("{LIVE}{k}"))).collect();
    if missing.is_empty() {
        return None;
    }
    let service = match reader {
        LiveReader::SshdEffective => "sshd",
        LiveReader::ProcSys => "sysctl",
        LiveReader::RedisConfigGet => "redis",
    };
    let why = doc.get(&format!("{LIVE_ERROR}{service}")).map_or("it is not there", String::as_str);
    Some(format!("the value in effect of {} could not be read: {why}", missing.join(", ")))
}

/// A detail that could not be checked.
fn failed(d: &CheckRunDetail) -> DetailOutcome {
    DetailOutcome {
        detail_id: d.id.clone(),
        instance_pk: d.instance_pk,
        status: RunDetailStatus::Failed,
        results: Vec::new(),
        removed: Vec::new(),
    }
}

/// Evaluates check items on a fetched document: the results to store and the items that no
/// longer apply (their stale results are removed).
pub fn evaluate_instance<'a>(
    checks: impl Iterator<Item = &'a CheckDef>,
    instance: &Instance,
    doc: &Document,
    run_id: &str,
) -> (Vec<ResultUpdate>, Vec<(i64, i64)>) {
    let mut results = Vec::new();
    let mut removed = Vec::new();
    let live = catalog::has_live_values(doc);
    for check in checks {
        let outcome = evaluate(check, doc);
        match outcome.status() {
            None => removed.push((check.id, instance.pk)),
            Some(status) => results.push(result_update(check, instance, status, doc, live, run_id)),
        }
    }
    (results, removed)
}

impl Engine {
    /// What a connector needs to reach an instance: for one found through a cloud account,
    /// that account's keys (opened here, for this call only).
    pub(crate) fn target(&self, instance: &Instance) -> Result<Target, ConnectorError> {
        let credentials = match instance.cloud_auth_id {
            None => None,
            Some(auth_id) => {
                let keys = self
                    .store
                    .cloud_keys(&instance.account_id, auth_id)
                    .map_err(|e| ConnectorError::transient("StoreError", e.to_string()))?;
                match keys {
                    None => {
                        return Err(ConnectorError::new(
                            "CloudAccountNotFound",
                            format!("cloud account {auth_id}, through which this instance was found, was deleted"),
                        ))
                    }
                    Some((a, ..)) if a.status != 0 => {
                        return Err(ConnectorError::new(
                            "CloudAccountDisabled",
                            format!("cloud account {auth_id} is disabled; enable it with ModifyCloudVendorAccountAK"),
                        ))
                    }
                    Some((a, secret_key)) => Some(CloudCredentials { secret_id: a.secret_id, secret_key }),
                }
            }
        };
        Ok(Target {
            live: instance.live.clone(),
            instance_id: instance.instance_id.clone(),
            region_id: instance.region_id.clone(),
            locator: instance.locator.clone(),
            credentials,
        })
    }

    /// Evaluates one check item on a document read now (verification steps).
    pub(crate) fn evaluate_doc(
        &self,
        check: &CheckDef,
        instance: &Instance,
        doc: &Document,
        run_id: &str,
    ) -> (Outcome, ResultUpdate) {
        let outcome = evaluate(check, doc);
        let status = outcome.status().unwrap_or(CheckStatus::Pass);
        let update = result_update(check, instance, status, doc, catalog::has_live_values(doc), run_id);
        (outcome, update)
    }

    /// Carries out a claimed check run (resumable: finished instances are skipped).
    pub(crate) fn run_check(&self, run: &CheckRun) {
        if let Err(e) = self.try_run_check(run) {
            tracing::error!(run = %run.id, error = %e, stage = "check_run", "check run failed; it will be retried when its lease expires");
        }
    }

    fn try_run_check(&self, run: &CheckRun) -> store::Result<()> {
        // A full check first brings the inventory of the account's clouds up to date.
        if run.instance_pks.is_empty() {
            self.discover(&run.account_id)?;
            self.store.extend_run_lease(run, self.config.lease_ms)?;
        }
        // The plan: a key and a shared list of items per instance (a few bytes each, however
        // large the fleet); instances are then read a page of details at a time.
        let only: HashSet<i64> = run.instance_pks.iter().copied().collect();
        let mut items_of: HashMap<String, Arc<[i64]>> = HashMap::new();
        let mut plan: Vec<(i64, Arc<[i64]>)> = Vec::new();
        for (pk, connector) in self.store.instance_connectors(&run.account_id)? {
            if !only.is_empty() && !only.contains(&pk) {
                continue;
            }
            let items = items_of.entry(connector).or_insert_with_key(|connector| {
                self.catalog
                    .for_asset(connector)
                    .filter(|c| run.check_ids.is_empty() || run.check_ids.contains(&c.id))
                    .map(|c| c.id)
                    .collect()
            });
            if !items.is_empty() {
                plan.push((pk, items.clone()));
            }
        }
        self.store.set_run_details(run, plan)?;
        // The account's thresholds, read once for the run.
        let checks = self.account_checks(&run.account_id)?;
        // Agents waiting for work may have details in this run now.
        self.wake();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut after = 0;
        let now = store::now_ms();
        let (mut waiting, mut overdue) = (i64::MAX, Vec::new());
        loop {
            let page = self.store.pending_details(run, after, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            let pending: Vec<CheckRunDetail> = page.into_iter().map(|(_, d)| d).collect();
            let pks: Vec<i64> = pending.iter().map(|d| d.instance_pk).collect();
            let instances = self.store.instances_by_pks(&run.account_id, &pks)?;
            let by_pk: HashMap<i64, &Instance> = instances.iter().filter(|i| !i.freed).map(|i| (i.pk, i)).collect();
            // Servers reached through their agents are checked by their agents (as they poll);
            // the run waits for them until the deadline, then their details fail.
            let (agents, direct): (Vec<CheckRunDetail>, Vec<CheckRunDetail>) =
                pending.into_iter().partition(|d| by_pk.get(&d.instance_pk).is_some_and(|i| i.via_agent()));
            for d in agents {
                if now - d.created_ms >= self.config.agent_deadline_ms {
                    overdue.push((failed(&d), None));
                } else {
                    waiting = waiting.min(d.created_ms);
                }
            }
            if overdue.len() >= CHUNK {
                self.write_outcomes(run, std::mem::take(&mut overdue))?;
            }
            self.check_page(run, &checks, &by_pk, &direct, threads)?;
        }
        if !overdue.is_empty() {
            self.write_outcomes(run, overdue)?;
        }
        if waiting < i64::MAX {
            // The last agent to report ends the run; if one does not, the run is taken again
            // when this lease runs out, at the deadline.
            let left = waiting + self.config.agent_deadline_ms - now;
            return self.store.extend_run_lease(run, left.max(self.config.lease_ms));
        }
        self.store.finish_run(run)
    }

    /// Checks a page of a run's instances: `threads` readers read and evaluate parts of it
    /// (reading files is the cost) while this thread writes their outcomes, a commit per
    /// [`CHUNK`] instances — reading goes on during the commits, and a crash loses at most
    /// the chunk under way, which the next lease holder redoes. The readers live for the page.
    fn check_page(
        &self,
        run: &CheckRun,
        checks: &AccountChecks,
        by_pk: &HashMap<i64, &Instance>,
        pending: &[CheckRunDetail],
        threads: usize,
    ) -> store::Result<()> {
        let parts: Vec<&[CheckRunDetail]> = pending.chunks(PART).collect();
        let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUED_PARTS);
            for _ in 0..threads {
                let (tx, parts, next, stop) = (tx.clone(), &parts, &next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(part) = parts.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        // A part whose evaluation panicked is left unfinished, as a crash would.
                        let outcomes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.assess_part(run, checks, by_pk, part)
                        }))
                        .unwrap_or_default();
                        if tx.send(outcomes).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let result = self.write_all(run, rx);
            // On an error the readers stop (the receiver is gone: one waiting to send stops too).
            stop.store(true, Ordering::Relaxed);
            result
        })
    }

    /// Writes the outcomes the readers send, a commit per [`CHUNK`] instances at most: each
    /// commit takes what the readers sent while the one before it ran (at least one part), so
    /// writing starts with the first part read and keeps pace with the readers, who go on
    /// reading during commits until [`QUEUED_PARTS`] wait.
    fn write_all(&self, run: &CheckRun, rx: Receiver<Vec<(DetailOutcome, Option<i64>)>>) -> store::Result<()> {
        while let Ok(mut batch) = rx.recv() {
            while batch.len() < CHUNK {
                let Ok(more) = rx.try_recv() else { break };
                batch.extend(more);
            }
            // A commit that panics fails the run's lease holder as an error would (the run is
            // taken again when its lease runs out), not the worker thread.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_outcomes(run, batch)))
                .unwrap_or_else(|_| Err(store::StoreError::Db("a commit of a check run panicked".into())))?;
        }
        Ok(())
    }

    /// Commits the outcomes of some instances of a run, and extends the run's lease.
    fn write_outcomes(&self, run: &CheckRun, outcomes: Vec<(DetailOutcome, Option<i64>)>) -> store::Result<()> {
        for pk in outcomes.iter().filter_map(|(_, freed)| *freed) {
            self.store.mark_freed(&run.account_id, pk)?;
        }
        self.store.finish_details(run, outcomes.into_iter().map(|(o, _)| o).collect())?;
        self.store.extend_run_lease(run, self.config.lease_ms)
    }

    /// Reads (a batch per connector) and evaluates the instances of part of a run.
    fn assess_part(
        &self,
        run: &CheckRun,
        checks: &AccountChecks,
        by_pk: &HashMap<i64, &Instance>,
        part: &[CheckRunDetail],
    ) -> Vec<(DetailOutcome, Option<i64>)> {
        let mut docs: Vec<Option<Result<Document, ConnectorError>>> = part.iter().map(|_| None).collect();
        let mut by_kind: BTreeMap<&str, Vec<(usize, Target)>> = BTreeMap::new();
        for (i, d) in part.iter().enumerate() {
            let Some(instance) = by_pk.get(&d.instance_pk) else { continue };
            match (self.connector(&instance.connector), self.target(instance)) {
                (Some(_), Ok(t)) => by_kind.entry(instance.connector.as_str()).or_default().push((i, t)),
                (None, _) => {
                    let e =
                        ConnectorError::new("ConnectorNotFound", format!("no connector for {}", instance.connector));
                    docs[i] = Some(Err(e));
                }
                (_, Err(e)) => docs[i] = Some(Err(e)),
            }
        }
        for (kind, items) in by_kind {
            let Some(connector) = self.connector(kind) else { continue };
            let targets: Vec<Target> = items.iter().map(|(_, t)| t.clone()).collect();
            for ((i, _), doc) in items.iter().zip(connector.fetch_each(&targets)) {
                docs[*i] = Some(doc);
            }
        }
        part.iter()
            .zip(docs)
            .map(|(d, doc)| self.assess_one(run, checks, by_pk.get(&d.instance_pk).copied(), d, doc))
            .collect()
    }

    /// Evaluates one instance of a run on what was read of it; the second value is its key if
    /// it is gone.
    pub(crate) fn assess_one(
        &self,
        run: &CheckRun,
        checks: &AccountChecks,
        instance: Option<&Instance>,
        d: &CheckRunDetail,
        doc: Option<Result<Document, ConnectorError>>,
    ) -> (DetailOutcome, Option<i64>) {
        let failed = failed(d);
        let (Some(instance), Some(doc)) = (instance, doc) else { return (failed, None) };
        match doc {
            Ok(doc) => {
                let items = d.check_ids.iter().filter_map(|id| checks.get(&self.catalog, *id));
                let (results, removed) = evaluate_instance(items, instance, &doc, &run.id);
                (DetailOutcome { status: RunDetailStatus::Succeeded, results, removed, ..failed }, None)
            }
            Err(e) => {
                tracing::warn!(run = %run.id, instance = %instance.instance_id, error = %e, stage = "fetch", "could not read an instance");
                (failed, e.freed.then_some(instance.pk))
            }
        }
    }
}

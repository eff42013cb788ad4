//! The registry finds out by itself whether each instance is alive.
//!
//! One scheduler task keeps a timer per instance in a [`DelayQueue`]. A newly registered
//! (or moved) instance is checked at once, as the original does on registration, and its
//! second check comes at a random point of its interval, so that many registered together
//! drift apart after their first check. The instances that start together without a
//! registration (at daemon start, or when this node takes over another's share) are
//! first checked at a random point of their interval, so 10,000 of them are spread
//! evenly. Each later check comes one interval (less up to 5%) after the previous one
//! ended. Timers are rounded up to a grid of at most [`TIMER_GRID`], so
//! the checks due close together start in one wake-up rather than one each.
//!
//! Probes run inside the scheduler task, at most [`MAX_IN_FLIGHT`] at a time, each
//! bounded by its timeout, so a hanging check never holds up the others. Keeping them in
//! one task (rather than a task each) spares a spawn, a cross-thread wake-up and a
//! channel send per check, which would otherwise cost more than many checks do.
//!
//! Results go through a `Machine` per instance. Only a status *change* is a durable
//! write (a change, announced to watchers); the details and last heartbeat of every
//! check are kept in memory and written as notes within seconds (`state::notes`). The
//! scheduler learns of registrations, changes and removals from the writer's
//! announcements, so a change made by any path (API, TTL heartbeat, deregistration) is
//! seen the same way.
//!
//! When several daemons share one store, each checks only its share (`assign`): an
//! instance is checked by exactly one online node, and a node that goes silent has its
//! share taken over as soon as it counts as Offline (the checker looks again when the
//! next node would fall silent, not at its own pace).

mod assign;
mod counts;
mod machine;
mod plan;
mod probe;

pub(crate) use counts::HealthMetrics;
pub(crate) use plan::{CheckPlan, Probe};

use crate::check_allow::AllowedNetworks;
use crate::feed::{Announcement, Feed};
use crate::nodes::ThisNode;
use crate::state::{Command, Registry, Writer};
use chrono::Utc;
use counts::CheckType;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use machine::{is_alive, Machine};
use probe::Outcome;
use rand::Rng;
use registry_store::Kind;
use registry_types::InstanceStatus;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

/// Most checks running at once.
pub(crate) const MAX_IN_FLIGHT: usize = 512;

/// How long after a node would go silent the checks are shared anew: enough for the
/// clock to be past its last moment Online.
const SILENCE_MARGIN: Duration = Duration::from_millis(10);

/// The coarsest grid timers are rounded up to; an interval shorter than 40 grid steps
/// gets a grid of 1/40 of it, so rounding never adds more than 2.5% to an interval.
pub(crate) const TIMER_GRID: Duration = Duration::from_millis(25);

/// The longest timer set.
const MAX_TIMER: Duration = Duration::from_secs(365 * 86_400);

/// What the scheduler knows of one instance.
struct Entry {
    url: String,
    plan: CheckPlan,
    machine: Machine,
    /// The pending timer; `None` while a probe runs or when nothing is checked.
    timer: Option<delay_queue::Key>,
    /// Start of the TTL clock for an instance that never heartbeated.
    seen_at: Instant,
    /// Whether the next check comes at a random point of the interval rather than one
    /// interval on: after a first check made at once.
    spread_next: bool,
}

/// When the first check of an instance comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstCheck {
    /// At once: the instance was just registered or changed.
    AtOnce,
    /// At a random point of its interval: many instances start together.
    Spread,
}

/// A finished probe: instance id, the URL it was checked at, what it saw, and what kind
/// of probe it was and how long it took.
type Finished = (String, String, Outcome, (CheckType, Duration));

/// A probe, run by polling it from the scheduler task.
type Running = BoxFuture<'static, Finished>;

/// A status change the writer refused (the store was unavailable): instance id, URL,
/// details and heartbeat of the check that made it.
type Unrecorded = (String, String, String, Option<chrono::DateTime<Utc>>);

pub(crate) struct HealthChecker {
    registry: Arc<Registry>,
    this_node: Arc<ThisNode>,
    /// Whether other daemons share the store (and so the checks).
    shared: bool,
    /// URLs of the online nodes, sorted; the instances are shared among them.
    online: Vec<String>,
    writer: Writer,
    /// The networks checks may dial; `None` for any.
    allowed: Option<Arc<AllowedNetworks>>,
    http: reqwest::Client,
    entries: HashMap<String, Entry>,
    timers: GridTimers,
    running: FuturesUnordered<Running>,
    /// Probes that came due while [`MAX_IN_FLIGHT`] were running, oldest first.
    waiting: VecDeque<Running>,
    /// Status changes that could not be written.
    unrecorded_tx: mpsc::UnboundedSender<Unrecorded>,
    counts: Arc<HealthMetrics>,
}

/// Instance timers, each rounded up to a grid.
struct GridTimers {
    queue: DelayQueue<String>,
    origin: tokio::time::Instant,
}

impl GridTimers {
    fn new() -> GridTimers {
        GridTimers {
            queue: DelayQueue::new(),
            origin: tokio::time::Instant::now(),
        }
    }

    /// A timer for `id` in `delay`, rounded up to the grid for checks every `period`.
    /// Plans keep delays within the API's ranges; the bound here keeps a delay from
    /// anywhere else within what the queue can hold, which panics past about two years.
    fn insert(&mut self, id: String, delay: Duration, period: Duration) -> delay_queue::Key {
        let delay = delay.min(MAX_TIMER);
        let grid = TIMER_GRID.min(period / 40).as_nanos().max(1);
        let since_origin = (tokio::time::Instant::now() + delay - self.origin).as_nanos();
        let deadline =
            self.origin + Duration::from_nanos((since_origin.div_ceil(grid) * grid) as u64);
        self.queue.insert_at(id, deadline)
    }

    fn remove(&mut self, key: &delay_queue::Key) {
        self.queue.remove(key);
    }

    /// The id of the next timer to fire, once it fires; `None` while there are none.
    async fn next_due(&mut self) -> Option<String> {
        std::future::poll_fn(|cx| self.queue.poll_expired(cx))
            .await
            .map(|expired| expired.into_inner())
    }
}

/// A random point of `interval`.
fn spread(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
}

/// `interval` less up to 5%, so instances checked in step drift apart while a status
/// still follows within interval × threshold (plus the timeout).
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::thread_rng().gen_range(0.95..=1.0))
}

/// How this node checks, the same through every restart of the checker.
#[derive(Clone)]
pub(crate) struct Checks {
    /// Whether other daemons share the store (and so the checks). With a store of its
    /// own the share is everything, whatever old node records say.
    pub(crate) shared: bool,
    /// The networks checks may dial; `None` for any.
    pub(crate) allowed: Option<Arc<AllowedNetworks>>,
    /// What the checker counts, for `/metrics`.
    pub(crate) counts: Arc<HealthMetrics>,
}

impl HealthChecker {
    /// Checks this node's share of the instances until `shutdown`.
    pub(crate) async fn run(
        registry: Arc<Registry>,
        feed: Arc<Feed>,
        writer: Writer,
        this_node: Arc<ThisNode>,
        checks: Checks,
        shutdown: CancellationToken,
    ) {
        let Checks {
            shared,
            allowed,
            counts,
        } = checks;
        // Subscribe before the first read of the tables, so no change falls in between.
        let mut changes = feed.subscribe();
        let (unrecorded_tx, mut unrecorded_rx) = mpsc::unbounded_channel();
        // Nodes go offline by staying silent, which no change announces: look again when
        // the first of them would go silent, and at least every heartbeat interval.
        let reassess = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(reassess);
        let mut checker = HealthChecker {
            online: vec![this_node.url.clone()],
            shared,
            this_node,
            registry,
            writer,
            http: probe::http_client(allowed.clone()),
            allowed,
            entries: HashMap::new(),
            timers: GridTimers::new(),
            running: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            unrecorded_tx,
            counts,
        };
        let (online, next) = checker.look();
        checker.online = online;
        checker.reconcile_all();
        reassess.as_mut().reset(tokio::time::Instant::now() + next);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(id) = checker.timers.next_due() => checker.due(id),
                Some((id, url, outcome, (kind, took))) = checker.running.next() => {
                    if let Some(next) = checker.waiting.pop_front() {
                        checker.running.push(next);
                        checker.counts.overdue(checker.waiting.len());
                    }
                    checker.counts.checked(kind, outcome.status, Some(took));
                    checker.finished(id, url, outcome);
                }
                Some(unrecorded) = unrecorded_rx.recv() => checker.unrecorded(unrecorded),
                _ = &mut reassess => checker.reassess(reassess.as_mut()),
                change = changes.recv() => match change {
                    Ok(Announcement::Changes(batch)) => {
                        if batch.iter().any(|c| c.kind == Kind::Node) {
                            checker.reassess(reassess.as_mut());
                        }
                        for c in batch.iter().filter(|c| c.kind == Kind::Instance) {
                            checker.reconcile(&c.key, FirstCheck::AtOnce);
                        }
                    }
                    Ok(Announcement::Reloaded) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        checker.reassess(reassess.as_mut());
                        checker.reconcile_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Re-reads which nodes are online (every online one when the store is shared, else
    /// this one alone); a different set re-divides the instances. Sets `again` to when to
    /// look again.
    fn reassess(&mut self, again: Pin<&mut Sleep>) {
        let (online, next) = self.look();
        again.reset(tokio::time::Instant::now() + next);
        if online != self.online {
            tracing::info!(nodes = ?online, "online nodes changed; sharing the checks anew");
            self.online = online;
            self.reconcile_all();
        }
    }

    /// The nodes online now, and when to look again: just after the first other node
    /// would go silent, and within this node's heartbeat interval.
    fn look(&self) -> (Vec<String>, Duration) {
        let interval = self.this_node.interval();
        let (online, next_silence) = if self.shared {
            self.this_node
                .online_nodes(&self.registry.read(), Utc::now())
        } else {
            (vec![self.this_node.url.clone()], None)
        };
        let next = next_silence.map_or(interval, |left| (left + SILENCE_MARGIN).min(interval));
        (online, next)
    }

    fn reconcile_all(&mut self) {
        let ids: Vec<String> = {
            let tables = self.registry.read();
            let mut ids: Vec<String> = tables
                .instances(&Default::default(), None)
                .map(|(id, _)| id.to_string())
                .collect();
            ids.extend(
                self.entries
                    .keys()
                    .filter(|id| !tables.has_instance(id))
                    .cloned(),
            );
            ids
        };
        for id in ids {
            self.reconcile(&id, FirstCheck::Spread);
        }
    }

    /// Brings the entry of `id` in line with the tables: new, changed or gone. A new or
    /// changed entry is first checked as `first` says.
    fn reconcile(&mut self, id: &str, first: FirstCheck) {
        let instance = self.registry.read().instance(id);
        let ours = instance.as_ref().is_some_and(|i| {
            assign::checker(&self.online, &i.id, &i.node_url) == self.this_node.url
        });
        let plan = instance.as_ref().map(CheckPlan::for_instance);
        // An instance nobody checks needs no entry: no timer, nothing to judge.
        let checked = plan.as_ref().is_some_and(|p| p.probe != Probe::None);
        let (Some(instance), Some(plan)) = (instance.filter(|_| ours && checked), plan) else {
            if let Some(entry) = self.entries.remove(id) {
                if let Some(timer) = entry.timer {
                    self.timers.remove(&timer);
                }
            }
            return;
        };
        if let Some(entry) = self.entries.get_mut(id) {
            if entry.url == instance.url && entry.plan == plan {
                // Same checks; the store may have a status set elsewhere (a TTL heartbeat).
                entry.machine.set(instance.status);
                return;
            }
            if let Some(timer) = entry.timer.take() {
                self.timers.remove(&timer);
            }
        }
        let at_once = first == FirstCheck::AtOnce && !matches!(plan.probe, Probe::Ttl(_));
        let delay = match plan.probe {
            Probe::Ttl(ttl) => ttl,
            _ if at_once => Duration::ZERO,
            _ => spread(plan.interval),
        };
        let timer = Some(self.timers.insert(id.to_string(), delay, plan.period()));
        self.entries.insert(
            id.to_string(),
            Entry {
                url: instance.url.clone(),
                plan,
                machine: Machine::new(instance.status),
                timer,
                seen_at: Instant::now(),
                spread_next: at_once,
            },
        );
    }

    /// A timer fired: start a probe, or judge a TTL.
    fn due(&mut self, id: String) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.timer = None;
        let (url, plan) = (entry.url.clone(), entry.plan.clone());
        let probe: Running = match plan.probe.clone() {
            Probe::Ttl(ttl) => return self.judge_ttl(id, ttl),
            Probe::None => return,
            // Timed from the probe's first poll: a wait for a slot is not its latency.
            Probe::Tcp { target } => {
                let allowed = self.allowed.clone();
                Box::pin(async move {
                    let started = Instant::now();
                    let outcome = probe::tcp(&plan, &target, allowed.as_deref()).await;
                    (id, url, outcome, (CheckType::Tcp, started.elapsed()))
                })
            }
            Probe::Http { url: check_url } => {
                let (http, allowed) = (self.http.clone(), self.allowed.clone());
                Box::pin(async move {
                    let started = Instant::now();
                    let outcome = probe::http(&plan, &http, &check_url, allowed.as_deref()).await;
                    (id, url, outcome, (CheckType::Http, started.elapsed()))
                })
            }
        };
        if self.running.len() < MAX_IN_FLIGHT {
            self.running.push(probe);
        } else {
            self.waiting.push_back(probe);
            self.counts.overdue(self.waiting.len());
        }
    }

    /// A probe finished: count it, record it, maybe deregister, and plan the next one.
    fn finished(&mut self, id: String, url: String, outcome: Outcome) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.url != url || entry.timer.is_some() {
            return; // the instance moved or was re-planned while this check ran
        }
        let heartbeat = is_alive(outcome.status).then(Utc::now);
        let plan = &entry.plan;
        match entry.machine.observe(
            outcome.status,
            plan.healthy_threshold,
            plan.unhealthy_threshold,
        ) {
            Some(status) => self.report(&id, &url, status, outcome.details, heartbeat),
            None => {
                self.registry
                    .touch_instance(&id, &url, Some(outcome.details), heartbeat);
            }
        }
        self.deregister_if_due(&id);
        if let Some(entry) = self.entries.get_mut(&id) {
            let interval = entry.plan.interval;
            let next = if std::mem::take(&mut entry.spread_next) {
                spread(interval)
            } else {
                jittered(interval)
            };
            entry.timer = Some(self.timers.insert(id, next, interval));
        }
    }

    /// An instance with a TTL: Unreachable once it has been silent for longer.
    fn judge_ttl(&mut self, id: String, ttl: Duration) {
        let last_heartbeat = self
            .registry
            .read()
            .instance(&id)
            .and_then(|i| i.last_heartbeat);
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let silent_for = match last_heartbeat {
            Some(beat) => (Utc::now() - beat).to_std().unwrap_or_default(),
            None => entry.seen_at.elapsed(),
        };
        let expired = silent_for >= ttl;
        self.counts.checked(
            CheckType::Ttl,
            if expired {
                InstanceStatus::Unreachable
            } else {
                InstanceStatus::Healthy
            },
            None,
        );
        let next = if expired {
            if entry.machine.status() != InstanceStatus::Unreachable {
                entry.machine.set(InstanceStatus::Unreachable);
                let details = format!(
                    "TTL of {} expired: no heartbeat for {}",
                    humantime::format_duration(ttl),
                    humantime::format_duration(
                        Duration::from_millis(silent_for.as_millis() as u64)
                    )
                );
                let url = entry.url.clone();
                self.report(&id, &url, InstanceStatus::Unreachable, details, None);
            }
            self.deregister_if_due(&id);
            ttl
        } else {
            ttl - silent_for
        };
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.timer = Some(self.timers.insert(id, next, ttl));
        }
    }

    fn deregister_if_due(&mut self, id: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        let (Some(after), Some(since)) = (
            entry.plan.deregister_after,
            entry.machine.unreachable_since(),
        ) else {
            return;
        };
        if since.elapsed() >= after {
            tracing::info!(instance = id, url = %entry.url, "deregistering: unreachable for longer than {}", humantime::format_duration(after));
            self.submit(Command::Deregister {
                id: id.to_string(),
                url: entry.url.clone(),
            });
        }
    }

    fn report(
        &self,
        id: &str,
        url: &str,
        status: InstanceStatus,
        details: String,
        last_heartbeat: Option<chrono::DateTime<Utc>>,
    ) {
        tracing::debug!(instance = id, %url, %status, %details, "health changed");
        let command = Command::SetHealth {
            id: id.to_string(),
            url: url.to_string(),
            status,
            details: details.clone(),
            last_heartbeat,
        };
        let (writer, unrecorded) = (self.writer.clone(), self.unrecorded_tx.clone());
        let (id, url) = (id.to_string(), url.to_string());
        let actor = self.this_node.actor.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.submit(&actor, command).await {
                tracing::warn!(error = &e as &dyn std::error::Error, instance = %id, "could not record a health change; the next check reports it again");
                let _ = unrecorded.send((id, url, details, last_heartbeat));
            }
        });
    }

    /// A status change could not be written (the store was unavailable). The machine
    /// takes back the status the tables have, so the next check that agrees with the
    /// change reports it again; otherwise it would wait for some other write of the
    /// instance, since later checks that agree with it are no change. What the check saw
    /// is kept in memory, as for any check that changes nothing.
    fn unrecorded(&mut self, (id, url, details, last_heartbeat): Unrecorded) {
        let Some(status) = self.registry.read().instance(&id).map(|i| i.status) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.url != url {
            return; // the instance moved since; its checks started anew
        }
        entry.machine.set(status);
        self.registry
            .touch_instance(&id, &url, Some(details), last_heartbeat);
    }

    /// Durable writes go through the writer without holding up the scheduler; many
    /// land in one group commit.
    fn submit(&self, command: Command) {
        let (writer, actor) = (self.writer.clone(), self.this_node.actor.clone());
        tokio::spawn(async move {
            if let Err(e) = writer.submit(&actor, command).await {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "could not record a health change"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timers_fall_on_the_grid_never_early_and_at_most_one_step_late() {
        let ms = Duration::from_millis;
        let mut timers = GridTimers::new();
        // (delay, period, the grid that period gets)
        for (delay, period, grid) in [
            (ms(1234), ms(10_000), ms(25)),
            (ms(7), ms(1_000), ms(25)),
            (ms(3), ms(200), ms(5)),
        ] {
            let before = tokio::time::Instant::now();
            let key = timers.insert("inst_a".into(), delay, period);
            let after = tokio::time::Instant::now();
            // The queue keeps deadlines in whole milliseconds: allow one more.
            let deadline = timers.queue.deadline(&key);
            assert!(deadline >= before + delay, "early for {delay:?}");
            assert!(
                deadline < after + delay + grid + ms(1),
                "late for {delay:?}"
            );
            let off_grid = (deadline - timers.origin).as_nanos() % grid.as_nanos();
            assert!(
                off_grid <= ms(1).as_nanos() || off_grid >= (grid - ms(1)).as_nanos(),
                "{off_grid} ns off the grid for {period:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_timer_past_what_the_queue_holds_is_set_at_the_bound() {
        let mut timers = GridTimers::new();
        let forever = Duration::from_secs(300_000 * 3600);
        let key = timers.insert("inst_a".into(), forever, forever);
        // Rounded up to the grid, and the queue keeps whole milliseconds.
        let latest =
            tokio::time::Instant::now() + MAX_TIMER + TIMER_GRID + Duration::from_millis(1);
        let deadline = timers.queue.deadline(&key);
        assert!(deadline <= latest, "{:?} past", deadline - latest);
    }
}

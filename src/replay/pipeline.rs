//! The threads of a parallel replay and what they send each other.
//!
//! ```text
//!   reading thread ── Vec<Routed> per shard ──> shard threads ── Vec<Scored> ──┐
//!    (read, enrich,                              (score users,                 │
//!     order, route)  ── Vec<Route> ───────────────────────────────> collector <─┘
//!                                                                 (calling thread)
//! ```
//! Order is what makes a parallel replay give the same output as a sequential one. Each
//! shard scores its events in the order they were routed, and the collector takes results
//! in exactly the routing order the reading thread wrote down, so summaries and `--out`
//! lines come out in event-time order whatever the thread count. Channels are bounded: a
//! slow collector or shard holds the reader back instead of letting batches pile up.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::collector::Collector;
use super::readers::ReadError;
use super::router::{Routed, Router};
use super::shard::{Scored, Shard};
use super::{ReplayError, ReplayItem, enrich};
use crate::engine::Engine;

/// Events routed between two hand-overs to the shards.
const BATCH: usize = 2048;
/// Batches in flight to and from each shard.
const SHARD_QUEUE: usize = 16;
/// Batches of routes in flight to the collector.
const ROUTE_QUEUE: usize = 32;

/// Reading thread → one shard: the shard's events of one hand-over, in routing order.
type EventBatch = Vec<Routed>;
/// Shard → collector: the results of one [`EventBatch`], in the same order; an error is the
/// shard's last message.
type ResultBatch = Result<Vec<Scored>, ReplayError>;
/// Reading thread → collector: the routing order of one hand-over.
type RouteBatch = Vec<Route>;

/// One step of the routing order, sent by the reading thread to the collector.
enum Route {
    /// Take the next result of this shard: the shard got the event in the same hand-over.
    Shard(usize),
    /// Count a row that could not be read, at its place in the order.
    Skipped(ReadError),
}

/// Reads, enriches, orders and routes on one thread, scores on one thread per shard, and
/// collects results on the calling thread in routing order; returns the out-of-order count.
pub(super) fn run(
    engine: &Engine,
    events: Box<dyn Iterator<Item = ReplayItem> + Send>,
    mut router: Router,
    shards: Vec<Shard>,
    collector: &mut Collector<'_, '_>,
) -> Result<u64, ReplayError> {
    std::thread::scope(|scope| {
        let mut to_shards = Vec::new();
        let mut from_shards = Vec::new();
        for shard in shards {
            let (events_tx, events_rx) = sync_channel::<EventBatch>(SHARD_QUEUE);
            let (results_tx, results_rx) = sync_channel(SHARD_QUEUE);
            scope.spawn(move || score(shard, &events_rx, &results_tx));
            to_shards.push(events_tx);
            from_shards.push(results_rx);
        }

        let (route_tx, route_rx) = sync_channel::<RouteBatch>(ROUTE_QUEUE);
        let routing = scope.spawn(move || {
            let mut dispatch = Dispatch {
                batches: to_shards.iter().map(|_| Vec::new()).collect(),
                routes: Vec::with_capacity(BATCH),
                to_shards,
                route_tx,
            };
            for item in events {
                let open = match enrich(engine, item) {
                    Ok(event) => router
                        .push(event)
                        .is_none_or(|(shard, routed)| dispatch.send(shard, routed)),
                    Err(e) => dispatch.push(Route::Skipped(e)),
                };
                if !open {
                    return router.out_of_order;
                }
            }
            while let Some((shard, routed)) = router.pop() {
                if !dispatch.send(shard, routed) {
                    return router.out_of_order;
                }
            }
            dispatch.hand_over();
            router.out_of_order
        });

        collect(&route_rx, &from_shards, collector)?;
        routing.join().map_err(|_| ReplayError::Stopped)
    })
}

/// A shard thread: scores each batch in order and sends the results back as one batch. It
/// stops at its first error (the collector reports it) or when the collector is gone.
fn score(mut shard: Shard, events: &Receiver<EventBatch>, results: &SyncSender<ResultBatch>) {
    for batch in events {
        let scored: ResultBatch = batch.into_iter().map(|r| shard.process(r)).collect();
        let failed = scored.is_err();
        if results.send(scored).is_err() || failed {
            return;
        }
    }
}

/// The collector: follows the routing order, taking each shard's results as they come.
fn collect(
    routes: &Receiver<RouteBatch>,
    from_shards: &[Receiver<ResultBatch>],
    collector: &mut Collector<'_, '_>,
) -> Result<(), ReplayError> {
    let mut ready: Vec<VecDeque<Scored>> = from_shards.iter().map(|_| VecDeque::new()).collect();
    for batch in routes {
        for route in batch {
            let shard = match route {
                Route::Skipped(e) => {
                    collector.summary.skip(&e);
                    continue;
                }
                Route::Shard(shard) => shard,
            };
            let (Some(queue), Some(results)) = (ready.get_mut(shard), from_shards.get(shard))
            else {
                return Err(ReplayError::Stopped);
            };
            if queue.is_empty() {
                let batch = results.recv().map_err(|_| ReplayError::Stopped)??;
                queue.extend(batch);
            }
            collector.add(queue.pop_front().ok_or(ReplayError::Stopped)?)?;
        }
    }
    Ok(())
}

/// The reading thread's outbox: events batched per shard, and their order for the collector.
struct Dispatch {
    /// Each shard's events since the last hand-over.
    batches: Vec<EventBatch>,
    /// Their order since the last hand-over.
    routes: RouteBatch,
    /// One channel per shard.
    to_shards: Vec<SyncSender<EventBatch>>,
    /// The channel to the collector.
    route_tx: SyncSender<RouteBatch>,
}

impl Dispatch {
    /// Queues `routed` for `shard`; false once the replay has stopped.
    fn send(&mut self, shard: usize, routed: Routed) -> bool {
        let Some(batch) = self.batches.get_mut(shard) else {
            return false;
        };
        batch.push(routed);
        self.push(Route::Shard(shard))
    }

    /// Queues a step for the collector, handing over full batches; false once stopped.
    fn push(&mut self, route: Route) -> bool {
        self.routes.push(route);
        self.routes.len() < BATCH || self.hand_over()
    }

    /// Every shard gets its events before the collector learns their order, so the
    /// collector only ever waits for results already on their way (never a deadlock).
    fn hand_over(&mut self) -> bool {
        for (tx, batch) in self.to_shards.iter().zip(&mut self.batches) {
            if !batch.is_empty() && tx.send(std::mem::take(batch)).is_err() {
                return false;
            }
        }
        self.route_tx.send(std::mem::take(&mut self.routes)).is_ok()
    }
}

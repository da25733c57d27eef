//! The bounded hand-over from inference (a plain thread) to the publisher (a tokio task).
//!
//! `push` never blocks: when the queue is full the OLDEST entry is dropped and counted
//! (`reason="queue_full"`): for live video the newest result is worth more, and a local Redis
//! that is down must never stall inference or capture.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::frame::{Detection, Detections, ObjectPool, Objects};
use crate::telemetry::DropReason;

struct State {
    items: VecDeque<Detections>,
    closed: bool,
}

/// Results waiting for Redis.
pub(crate) struct PublishQueue {
    state: Mutex<State>,
    capacity: usize,
    notify: Notify,
    objects: Arc<ObjectPool>,
}

/// Spare object vectors kept: more than a publisher batch, so a backlog being drained still
/// recycles; in steady state a handful are in flight.
const SPARE_OBJECT_VECS: usize = 2 * super::MAX_BATCH;

impl PublishQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        // One over: `push` adds before it drops the oldest.
        let state = State { items: VecDeque::with_capacity(capacity.max(1) + 1), closed: false };
        Self {
            state: Mutex::new(state),
            capacity: capacity.max(1),
            notify: Notify::new(),
            objects: ObjectPool::new(SPARE_OBJECT_VECS),
        }
    }

    /// A result's objects, copied into a recycled vector.
    pub(crate) fn objects(&self, objects: &[Detection]) -> Objects {
        self.objects.objects(objects)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one result; drops (and counts) the oldest when full.
    pub(crate) fn push(&self, item: Detections) {
        let mut state = self.lock();
        state.items.push_back(item);
        self.drop_oldest_over_capacity(&mut state);
        drop(state);
        self.notify.notify_one();
    }

    fn drop_oldest_over_capacity(&self, state: &mut State) {
        while state.items.len() > self.capacity {
            if let Some(old) = state.items.pop_front() {
                old.camera.metrics.drop(DropReason::QueueFull, 1);
            }
        }
    }

    /// Puts `items` (taken by [`PublishQueue::next_batch`], not sent) back at the front, in
    /// order; if that overfills the queue, the oldest go (counted `queue_full`), as on `push`.
    pub(crate) fn put_back(&self, items: &mut Vec<Detections>) {
        let mut state = self.lock();
        for item in items.drain(..).rev() {
            state.items.push_front(item);
        }
        self.drop_oldest_over_capacity(&mut state);
    }

    /// No more pushes will come; the publisher drains what is left, then stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Moves up to `max` results into `out`, waiting while the queue is empty. Returns `false`
    /// once the queue is closed and empty.
    pub(crate) async fn next_batch(&self, max: usize, out: &mut Vec<Detections>) -> bool {
        loop {
            {
                let mut state = self.lock();
                if !state.items.is_empty() {
                    let n = state.items.len().min(max);
                    out.extend(state.items.drain(..n));
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Drops everything still queued, counting it under `reason`; returns how many.
    pub(crate) fn discard(&self, reason: DropReason) -> usize {
        let items: Vec<Detections> = self.lock().items.drain(..).collect();
        for d in &items {
            d.camera.metrics.drop(reason, 1);
        }
        items.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::frame::{CameraInfo, ClockSource};
    use crate::mailbox::tests::camera;

    fn result(camera: &Arc<CameraInfo>, seq: u64) -> Detections {
        Detections {
            camera: Arc::clone(camera),
            seq,
            ts_us: 0,
            clock: ClockSource::Arrival,
            width: 1,
            height: 1,
            inference_us: 0,
            arrived: Instant::now(),
            handed_over: Instant::now(),
            objects: Objects::unpooled(Vec::new()),
        }
    }

    fn seqs(batch: &[Detections]) -> Vec<u64> {
        batch.iter().map(|d| d.seq).collect()
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let q = PublishQueue::new(3);
        let cam = camera("a");
        for seq in 0..5 {
            q.push(result(&cam, seq));
        }
        assert_eq!(cam.metrics.dropped(DropReason::QueueFull), 2);
        let mut batch = Vec::new();
        assert!(q.next_batch(10, &mut batch).await);
        assert_eq!(seqs(&batch), [2, 3, 4]);
    }

    #[tokio::test]
    async fn batches_are_bounded_and_close_drains_first() {
        let q = Arc::new(PublishQueue::new(10));
        let cam = camera("a");
        for seq in 0..5 {
            q.push(result(&cam, seq));
        }
        q.close();
        let mut batch = Vec::new();
        assert!(q.next_batch(3, &mut batch).await);
        assert_eq!(seqs(&batch), [0, 1, 2]);
        batch.clear();
        assert!(q.next_batch(3, &mut batch).await);
        assert_eq!(seqs(&batch), [3, 4]);
        assert!(!q.next_batch(3, &mut batch).await, "closed and empty");
    }

    #[tokio::test]
    async fn the_publisher_wakes_up_on_push_from_another_thread() {
        let q = Arc::new(PublishQueue::new(4));
        let cam = camera("a");
        let producer = Arc::clone(&q);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            producer.push(result(&cam, 7));
        });
        let mut batch = Vec::new();
        assert!(q.next_batch(4, &mut batch).await);
        assert_eq!(seqs(&batch), [7]);
    }

    #[test]
    fn discard_counts_what_was_left() {
        let q = PublishQueue::new(4);
        let cam = camera("a");
        q.push(result(&cam, 1));
        q.push(result(&cam, 2));
        assert_eq!(q.discard(DropReason::Shutdown), 2);
        assert_eq!(cam.metrics.dropped(DropReason::Shutdown), 2);
    }

    #[test]
    fn object_vectors_come_back_and_are_reused() {
        let q = PublishQueue::new(4);
        let cam = camera("a");
        let car = crate::frame::Detection { class: 2, confidence: 0.9, bbox: [1.0, 2.0, 3.0, 4.0] };
        // Filled up front: the first results allocate nothing either.
        assert_eq!(q.objects.spare(), SPARE_OBJECT_VECS);
        let mut first = result(&cam, 1);
        first.objects = q.objects(&[car, car]);
        let address = first.objects.as_ptr();
        assert_eq!(q.objects.spare(), SPARE_OBJECT_VECS - 1);
        // Dropped from a full queue, published or discarded: the vector goes back to the pool.
        q.push(first);
        assert_eq!(q.discard(DropReason::Shutdown), 1);
        assert_eq!(q.objects.spare(), SPARE_OBJECT_VECS);
        let again = q.objects(&[car]);
        assert_eq!(again.as_ptr(), address, "the spare vector is reused");
        assert_eq!(&*again, &[car]);
        assert_eq!(q.objects.spare(), SPARE_OBJECT_VECS - 1);
        drop(again);
        // The pool keeps at most its capacity; the rest are freed.
        let many: Vec<_> = (0..SPARE_OBJECT_VECS + 5).map(|_| q.objects(&[car])).collect();
        drop(many);
        assert_eq!(q.objects.spare(), SPARE_OBJECT_VECS);
    }

    #[tokio::test]
    async fn entries_put_back_go_first_and_respect_the_capacity() {
        let q = PublishQueue::new(3);
        let cam = camera("a");
        q.push(result(&cam, 1));
        q.push(result(&cam, 2));
        let mut batch = Vec::new();
        assert!(q.next_batch(10, &mut batch).await);
        q.push(result(&cam, 3));
        q.push(result(&cam, 4));
        q.put_back(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(cam.metrics.dropped(DropReason::QueueFull), 1, "the oldest went");
        assert!(q.next_batch(10, &mut batch).await);
        assert_eq!(seqs(&batch), [2, 3, 4]);
    }
}

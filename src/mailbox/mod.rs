//! The hand-over from capture to inference: one slot per camera, newest frame wins.
//!
//! This is the inference scheduler every camera shares. Each camera's capture callback
//! [`Mailboxes::put`]s its newest frame (capture has already applied the camera's fps cap, before
//! scaling, where dropping is cheapest); a frame that was not taken yet is replaced and returned
//! to the caller, which counts it as stale. Inference workers [`Mailboxes::take_into`] a batch of
//! what is ready *now*: at most one frame per camera, up to the batch size, round-robin from
//! where the last batch stopped, so a fast camera cannot starve a slow one. A batch never waits
//! to fill; a worker blocks only while every slot is empty. Nothing here allocates per frame.
//!
//! Slots come and go with the camera set (a reload adds and removes cameras): there is one per
//! running camera, and a freed slot is reused by the next camera added.
//!
//! A frame that waits behind a running model ages. Rather than scale every decoded frame to
//! replace it, capture asks [`Mailboxes::refresh_due`] whether the model is about to take the
//! waiting frame ([`forecast`]), and only then hands over a newer one: the frame the model gets
//! is usually at most about two source frames old, for about two extra scales per processed frame.

mod forecast;

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use forecast::Forecast;

use crate::frame::{CameraSlot, Frame};

/// A waiting frame is refreshed when the model is forecast to take it within this many source
/// frame intervals: about two refreshes per processed frame under load.
const REFRESH_WINDOW_FRAMES: u32 = 2;

/// What [`Mailboxes::take_into`] returns.
pub(crate) enum Take {
    /// At least one frame was appended to the batch; its run started at `started` (hand it
    /// back to [`Mailboxes::run_finished`]).
    Ready { started: Instant },
    /// Nothing arrived within the timeout (the caller checks for shutdown and heartbeats).
    Idle,
    /// [`Mailboxes::close`] was called and every slot is empty.
    Closed,
}

struct Slots {
    frames: Vec<Option<Frame>>,
    /// Whether a camera owns the slot; frames for a free slot are refused.
    owned: Vec<bool>,
    /// Owned by a camera that was told to stop but has not yet: its frames are refused, and
    /// the slot is not given to another camera until [`Mailboxes::remove`].
    retired: Vec<bool>,
    /// Where the next round-robin scan starts.
    next: usize,
    closed: bool,
    /// The largest batch a worker asked for (the model's batch size).
    max_batch: usize,
    forecast: Forecast,
}

/// One-slot mailboxes, one per running camera.
pub(crate) struct Mailboxes {
    slots: Mutex<Slots>,
    ready: Condvar,
}

impl Mailboxes {
    pub(crate) fn new() -> Self {
        let slots = Slots {
            frames: Vec::new(),
            owned: Vec::new(),
            retired: Vec::new(),
            next: 0,
            closed: false,
            max_batch: 1,
            forecast: Forecast::default(),
        };
        Self { slots: Mutex::new(slots), ready: Condvar::new() }
    }

    /// A slot for a new camera: a free one, else a new one.
    pub(crate) fn add(&self) -> CameraSlot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(free) = slots.owned.iter().position(|owned| !owned) {
            slots.owned[free] = true;
            return free;
        }
        slots.frames.push(None);
        slots.owned.push(true);
        slots.retired.push(false);
        slots.frames.len() - 1
    }

    /// Refuses the slot's frames from now on but keeps it reserved, for a camera whose capture
    /// did not stop in time; returns the frame it still held. [`Mailboxes::remove`] frees it.
    pub(crate) fn retire(&self, slot: CameraSlot) -> Option<Frame> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retired[slot] = true;
        slots.frames[slot].take()
    }

    /// Frees a camera's slot once its capture has stopped; returns the frame it still held.
    pub(crate) fn remove(&self, slot: CameraSlot) -> Option<Frame> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.owned[slot] = false;
        slots.retired[slot] = false;
        slots.frames[slot].take()
    }

    /// Leaves `frame` for the inference thread; returns the unprocessed frame it replaced.
    ///
    /// # Errors
    /// After [`Mailboxes::close`], or for a freed or retired slot, the frame is refused and
    /// handed back.
    // The refused frame comes back by value: boxing it would cost an allocation per frame.
    #[allow(clippy::result_large_err)]
    pub(crate) fn put(&self, slot: CameraSlot, frame: Frame) -> Result<Option<Frame>, Frame> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.closed || !slots.owned[slot] || slots.retired[slot] {
            return Err(frame);
        }
        let stale = slots.frames[slot].replace(frame);
        drop(slots);
        self.ready.notify_one();
        Ok(stale)
    }

    /// Appends to `batch` (expected empty) the frames ready now, at most `max` and one per
    /// camera, round-robin; waits up to `timeout` while there is none.
    pub(crate) fn take_into(&self, max: usize, timeout: Duration, batch: &mut Vec<Frame>) -> Take {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let n = slots.frames.len();
            let start = slots.next;
            for i in 0..n {
                if batch.len() >= max {
                    break;
                }
                let idx = (start + i) % n;
                if let Some(frame) = slots.frames[idx].take() {
                    slots.next = (idx + 1) % n;
                    batch.push(frame);
                }
            }
            if !batch.is_empty() {
                slots.max_batch = slots.max_batch.max(max);
                let started = Instant::now();
                slots.forecast.started(started);
                return Take::Ready { started };
            }
            if slots.closed {
                return Take::Closed;
            }
            let (guard, wait) = self
                .ready
                .wait_timeout(slots, timeout)
                .unwrap_or_else(PoisonError::into_inner);
            slots = guard;
            if wait.timed_out() && slots.frames.iter().all(Option::is_none) && !slots.closed {
                return Take::Idle;
            }
        }
    }

    /// A worker's run of the batch it took at `started` ended (results handed on or dropped).
    pub(crate) fn run_finished(&self, started: Instant) {
        let took = started.elapsed();
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).forecast.finished(started, took);
    }

    /// Whether `slot` holds a frame that is still waiting for the model.
    pub(crate) fn is_waiting(&self, slot: CameraSlot) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.frames.get(slot).is_some_and(Option::is_some)
    }

    /// For a camera whose frames come every `interval`: `Some(true)` if a frame waits in `slot`
    /// and the model will take it before a later frame could replace it in time (so a newer
    /// frame is worth scaling now), `Some(false)` if a later frame can still replace it;
    /// `None` when nothing waits or there is no estimate (none yet, or the run ahead is longer
    /// than runs go): the fps cap decides alone.
    pub(crate) fn refresh_due(&self, slot: CameraSlot, interval: Duration) -> Option<bool> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.closed || slots.frames.get(slot).is_none_or(Option::is_none) {
            return None;
        }
        // Frames ahead in the round-robin, from where the next batch starts.
        let n = slots.frames.len();
        let ahead = (0..n)
            .map(|i| (slots.next + i) % n)
            .take_while(|&idx| idx != slot)
            .filter(|&idx| slots.frames[idx].is_some())
            .count();
        let until = slots.forecast.until_taken(ahead / slots.max_batch, Instant::now())?;
        // Due within two frames rather than one: a refresh must also be scaled before the take,
        // which on a saturated CPU can take most of a frame interval; a refresh that arrives
        // after the take is dropped, and the frame taken is the one that waited all along.
        Some(until < interval * REFRESH_WINDOW_FRAMES)
    }

    /// Refuses new frames; frames already waiting are still handed out, then `take` says
    /// [`Take::Closed`]. Used on shutdown so in-flight frames drain.
    pub(crate) fn close(&self) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use gstreamer as gst;

    use super::*;
    use crate::frame::{CameraInfo, ClockSource, FrameMemory};
    use crate::infer::Letterbox;
    use crate::telemetry::Metrics;

    pub(crate) fn camera(id: &str) -> Arc<CameraInfo> {
        Arc::new(CameraInfo {
            id: id.into(),
            stream_key: format!("k:{id}"),
            classes: None,
            confidence: 0.5,
            publish_empty: true,
            metrics: Metrics::new().camera(id),
        })
    }

    pub(crate) fn frame(camera: &Arc<CameraInfo>, seq: u64) -> Frame {
        gst::init().unwrap();
        let pixels = gst::Buffer::from_slice(vec![0u8; 12]).into_mapped_buffer_readable().unwrap();
        Frame {
            camera: Arc::clone(camera),
            seq,
            ts_us: 0,
            clock: ClockSource::Arrival,
            arrived: Instant::now(),
            letterbox: Letterbox::centered(2, 2, 2, 2),
            pixels: FrameMemory::Host(pixels),
        }
    }

    impl Mailboxes {
        /// One frame, as a batch-1 worker takes it.
        fn take(&self, timeout: Duration) -> Take1 {
            let mut batch = Vec::new();
            match self.take_into(1, timeout, &mut batch) {
                Take::Ready { .. } => Take1::Frame(batch.pop().unwrap()),
                Take::Idle => Take1::Idle,
                Take::Closed => Take1::Closed,
            }
        }
    }

    enum Take1 {
        Frame(Frame),
        Idle,
        Closed,
    }

    fn seq(take: Take1) -> Option<(String, u64)> {
        match take {
            Take1::Frame(f) => Some((f.camera.id.clone(), f.seq)),
            _ => None,
        }
    }

    fn mailboxes(cameras: usize) -> Mailboxes {
        let boxes = Mailboxes::new();
        for expected in 0..cameras {
            assert_eq!(boxes.add(), expected);
        }
        boxes
    }

    #[test]
    fn a_newer_frame_replaces_an_unprocessed_one() {
        let boxes = mailboxes(1);
        let cam = camera("a");
        assert!(boxes.put(0, frame(&cam, 1)).unwrap().is_none());
        let stale = boxes.put(0, frame(&cam, 2)).unwrap().expect("the first frame comes back");
        assert_eq!(stale.seq, 1);
        assert_eq!(seq(boxes.take(Duration::ZERO)), Some(("a".into(), 2)));
        assert!(matches!(boxes.take(Duration::from_millis(10)), Take1::Idle));
    }

    #[test]
    fn cameras_are_served_round_robin() {
        let boxes = mailboxes(3);
        let cams = [camera("a"), camera("b"), camera("c")];
        let mut order = Vec::new();
        for round in 0..2 {
            for (slot, cam) in cams.iter().enumerate() {
                boxes.put(slot, frame(cam, round)).unwrap();
            }
            for _ in 0..3 {
                order.push(seq(boxes.take(Duration::ZERO)).unwrap().0);
            }
        }
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
        // A busy camera cannot starve a slow one: after serving `a`, `b` comes next.
        boxes.put(0, frame(&cams[0], 9)).unwrap();
        boxes.put(1, frame(&cams[1], 9)).unwrap();
        assert_eq!(seq(boxes.take(Duration::ZERO)).unwrap().0, "a");
        boxes.put(0, frame(&cams[0], 10)).unwrap();
        assert_eq!(seq(boxes.take(Duration::ZERO)).unwrap().0, "b");
    }

    #[test]
    fn a_batch_takes_what_is_ready_now_one_frame_per_camera() {
        let boxes = mailboxes(4);
        let cams = [camera("a"), camera("b"), camera("c"), camera("d")];
        let ids = |batch: &[Frame]| batch.iter().map(|f| f.camera.id.clone()).collect::<Vec<_>>();
        let mut batch = Vec::new();
        // Only one camera ready: a batch of one, at once.
        boxes.put(2, frame(&cams[2], 1)).unwrap();
        assert!(matches!(boxes.take_into(4, Duration::ZERO, &mut batch), Take::Ready { .. }));
        assert_eq!(ids(&batch), ["c"]);
        batch.clear();
        // Three ready, batch size 2: the first two from where the last batch stopped (after c).
        for slot in [0, 1, 3] {
            boxes.put(slot, frame(&cams[slot], 2)).unwrap();
        }
        assert!(matches!(boxes.take_into(2, Duration::ZERO, &mut batch), Take::Ready { .. }));
        assert_eq!(ids(&batch), ["d", "a"]);
        batch.clear();
        assert!(matches!(boxes.take_into(2, Duration::ZERO, &mut batch), Take::Ready { .. }));
        assert_eq!(ids(&batch), ["b"], "never more than one frame per camera, never waits to fill");
        batch.clear();
        assert!(matches!(boxes.take_into(2, Duration::ZERO, &mut batch), Take::Idle));
    }

    #[test]
    fn close_drains_waiting_frames_then_reports_closed() {
        let boxes = Arc::new(mailboxes(2));
        let cam = camera("a");
        boxes.put(1, frame(&cam, 5)).unwrap();
        boxes.close();
        assert!(boxes.put(0, frame(&cam, 6)).is_err(), "refused after close");
        assert_eq!(seq(boxes.take(Duration::ZERO)), Some(("a".into(), 5)));
        assert!(matches!(boxes.take(Duration::ZERO), Take1::Closed));
    }

    #[test]
    fn a_removed_camera_frees_its_slot_for_the_next_one() {
        let boxes = mailboxes(2);
        let (a, b) = (camera("a"), camera("b"));
        boxes.put(0, frame(&a, 1)).unwrap();
        assert_eq!(boxes.remove(0).map(|f| f.seq), Some(1), "the waiting frame comes back");
        assert!(boxes.put(0, frame(&a, 2)).is_err(), "a freed slot refuses frames");
        assert!(matches!(boxes.take(Duration::ZERO), Take1::Idle));
        assert_eq!(boxes.add(), 0, "the freed slot is reused");
        boxes.put(0, frame(&b, 7)).unwrap();
        assert_eq!(seq(boxes.take(Duration::ZERO)), Some(("b".into(), 7)));
        assert_eq!(boxes.add(), 2);
    }

    #[test]
    fn a_retired_slot_refuses_frames_and_is_not_reused_until_removed() {
        let boxes = mailboxes(2);
        let a = camera("a");
        boxes.put(0, frame(&a, 1)).unwrap();
        assert_eq!(boxes.retire(0).map(|f| f.seq), Some(1), "the waiting frame comes back");
        assert!(boxes.put(0, frame(&a, 2)).is_err(), "late frames are refused");
        assert_eq!(boxes.add(), 2, "not given to a new camera");
        assert!(boxes.remove(0).is_none());
        assert_eq!(boxes.add(), 0, "free once removed");
    }

    #[test]
    fn a_waiting_frame_is_due_for_a_refresh_just_before_its_turn() {
        let boxes = mailboxes(2);
        let cams = [camera("a"), camera("b")];
        let ms = Duration::from_millis;
        boxes.put(0, frame(&cams[0], 1)).unwrap();
        boxes.put(1, frame(&cams[1], 1)).unwrap();
        let _a = boxes.take(Duration::ZERO);
        assert_eq!(boxes.refresh_due(0, ms(400)), None, "nothing waits in a's slot");
        assert_eq!(boxes.refresh_due(1, ms(400)), None, "no run has ended yet: no estimate");
        // A run of one second ended (wide margins: the test reads the real clock).
        let t0 = Instant::now();
        boxes.run_finished(t0.checked_sub(ms(1000)).unwrap_or(t0));
        assert_eq!(boxes.refresh_due(1, ms(400)), Some(true), "an idle worker takes it now");
        let _b = boxes.take(Duration::ZERO);
        boxes.put(0, frame(&cams[0], 2)).unwrap();
        boxes.put(1, frame(&cams[1], 2)).unwrap();
        // A one-second run just started; a is next, then b. Due when taken within two frames.
        assert_eq!(boxes.refresh_due(0, ms(400)), Some(false), "a's later frames come in time");
        assert_eq!(boxes.refresh_due(0, ms(600)), Some(true), "a's next-but-one would come too late");
        assert_eq!(boxes.refresh_due(1, ms(600)), Some(false), "b waits for a's run too");
        assert_eq!(boxes.refresh_due(1, ms(1100)), Some(true));
    }

    #[test]
    fn take_wakes_up_when_a_frame_arrives() {
        let boxes = Arc::new(mailboxes(1));
        let cam = camera("a");
        let b = Arc::clone(&boxes);
        let waiter = std::thread::spawn(move || seq(b.take(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        boxes.put(0, frame(&cam, 3)).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(("a".into(), 3)));
    }
}

//! The hand-over from capture to inference: one slot per camera, newest frame wins.
//!
//! Each camera's capture callback [`Mailboxes::put`]s its newest frame; a frame that was not
//! taken yet is replaced and returned to the caller, which counts it as stale. The inference
//! thread [`Mailboxes::take`]s frames round-robin across cameras, so a fast camera cannot
//! starve a slow one, and blocks while every slot is empty. Nothing here allocates per frame.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::frame::{CameraSlot, Frame};

/// What [`Mailboxes::take`] returns.
pub(crate) enum Take {
    Frame(Frame),
    /// Nothing arrived within the timeout (the caller checks for shutdown and heartbeats).
    Idle,
    /// [`Mailboxes::close`] was called and every slot is empty.
    Closed,
}

struct Slots {
    frames: Vec<Option<Frame>>,
    /// Where the next round-robin scan starts.
    next: usize,
    closed: bool,
}

/// One-slot mailboxes for a fixed number of camera slots.
pub(crate) struct Mailboxes {
    slots: Mutex<Slots>,
    ready: Condvar,
}

impl Mailboxes {
    pub(crate) fn new(cameras: usize) -> Self {
        let frames = (0..cameras).map(|_| None).collect();
        Self { slots: Mutex::new(Slots { frames, next: 0, closed: false }), ready: Condvar::new() }
    }

    /// Leaves `frame` for the inference thread; returns the unprocessed frame it replaced.
    /// After [`Mailboxes::close`] the frame is handed straight back.
    pub(crate) fn put(&self, slot: CameraSlot, frame: Frame) -> Option<Frame> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.closed {
            return Some(frame);
        }
        let stale = slots.frames[slot].replace(frame);
        drop(slots);
        self.ready.notify_one();
        stale
    }

    /// Takes the next frame, round-robin over cameras, waiting up to `timeout` for one.
    pub(crate) fn take(&self, timeout: Duration) -> Take {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let n = slots.frames.len();
            for i in 0..n {
                let idx = (slots.next + i) % n;
                if let Some(frame) = slots.frames[idx].take() {
                    slots.next = (idx + 1) % n;
                    return Take::Frame(frame);
                }
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

    /// Refuses new frames; frames already waiting are still handed out, then `take` says
    /// [`Take::Closed`]. Used on shutdown so in-flight frames drain.
    pub(crate) fn close(&self) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.ready.notify_all();
    }
}

//! Types that cross stages: capture → infer → publish.
//!
//! A [`Frame`] owns the mapped GStreamer buffer that the appsink produced; the inference
//! stage reads it in place (zero copy) and drops it as soon as the model has run, which
//! returns the buffer to GStreamer's pool. A [`Detections`] is what the publisher turns into
//! one stream entry.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::infer::{Letterbox, Pixels};
use crate::telemetry::CameraMetrics;

/// Index of a camera in the running set; stable for the life of the camera.
pub(crate) type CameraSlot = usize;

/// Where a frame's capture time came from (`clock` field of the stream entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The camera's clock, from RTCP sender reports (reference timestamp meta).
    Ntp,
    /// The arrival time of the decoded frame at the box.
    Arrival,
}

impl ClockSource {
    /// Value of the `clock` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::Ntp => "ntp",
            ClockSource::Arrival => "arrival",
        }
    }
}

/// Per-camera facts that do not change from frame to frame.
#[derive(Debug)]
pub struct CameraInfo {
    /// Camera id from its config file.
    pub id: String,
    /// Redis stream key, `roadsight:{<site>:<camera>}:detections`.
    pub stream_key: String,
    /// Indices of the classes this camera publishes (`None`: all).
    pub classes: Option<Vec<u32>>,
    /// Confidence threshold for this camera.
    pub confidence: f32,
    /// Publish frames with no detection.
    pub publish_empty: bool,
    /// This camera's counters, shared by every stage.
    pub metrics: CameraMetrics,
}

/// A decoded, letterboxed frame, ready to be the model input.
pub struct Frame {
    pub camera: Arc<CameraInfo>,
    /// Frame number in this run, per camera (`seq`).
    pub seq: u64,
    /// Capture time, µs since the Unix epoch (`ts`).
    pub ts_us: i64,
    pub clock: ClockSource,
    /// When the frame reached the appsink, for stage latencies.
    pub arrived: Instant,
    /// Source frame size and its placement in the model input.
    pub letterbox: Letterbox,
    /// The appsink buffer, mapped: tightly packed RGB, model width × height.
    pub pixels: FrameMemory,
}

/// A frame's appsink buffer, mapped where its memory is.
pub enum FrameMemory {
    /// System memory, mapped readable.
    Host(gstreamer::MappedBuffer<gstreamer::buffer::Readable>),
    /// CUDA device memory, mapped for its device address (cargo feature `cuda`).
    #[cfg(feature = "cuda")]
    Device(crate::cuda::DeviceFrame),
}

impl FrameMemory {
    /// The pixels as the detector reads them.
    pub fn as_input(&self) -> Pixels<'_> {
        match self {
            FrameMemory::Host(mapped) => Pixels::Host(mapped.as_slice()),
            #[cfg(feature = "cuda")]
            FrameMemory::Device(frame) => Pixels::Device(frame.slice()),
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera.id)
            .field("seq", &self.seq)
            .field("ts_us", &self.ts_us)
            .field("clock", &self.clock)
            .field("letterbox", &self.letterbox)
            .field("bytes", &self.pixels.as_input().len())
            .finish()
    }
}

/// One detected object, box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class: u32,
    pub confidence: f32,
    /// x1, y1, x2, y2 in source pixels.
    pub bbox: [f32; 4],
}

/// The result of one processed frame, handed to the publisher.
#[derive(Debug)]
pub struct Detections {
    pub camera: Arc<CameraInfo>,
    pub seq: u64,
    pub ts_us: i64,
    pub clock: ClockSource,
    /// Source frame size.
    pub width: u32,
    pub height: u32,
    /// Inference time (model run only), µs.
    pub inference_us: u64,
    /// When capture handed the frame over (appsink), for the daemon's overhead.
    pub arrived: Instant,
    /// When inference handed the result to the publisher (the publish stage starts).
    pub handed_over: Instant,
    pub objects: Objects,
}

/// The objects of one result, in a vector that goes back to its [`ObjectPool`] when the result
/// is published or dropped: after warm-up no frame allocates one.
pub struct Objects {
    items: Vec<Detection>,
    pool: Option<Arc<ObjectPool>>,
}

impl Objects {
    /// Objects outside any pool (tests, tools).
    pub fn unpooled(items: Vec<Detection>) -> Self {
        Objects { items, pool: None }
    }
}

impl std::ops::Deref for Objects {
    type Target = [Detection];

    fn deref(&self) -> &[Detection] {
        &self.items
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.items.fmt(f)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(std::mem::take(&mut self.items));
        }
    }
}

/// Spare object vectors shared by the inference workers (which fill them) and the publisher
/// (whose results give them back); holds at most `capacity`, the rest are freed.
#[derive(Debug)]
pub struct ObjectPool {
    spare: Mutex<Vec<Vec<Detection>>>,
    capacity: usize,
}

/// Room for the objects of a busy street scene; a vector that needed more keeps its growth.
const OBJECTS_ROOM: usize = 32;

impl ObjectPool {
    /// A pool filled with `capacity` vectors up front, so that taking one allocates nothing while
    /// no more than `capacity` are in flight.
    pub fn new(capacity: usize) -> Arc<Self> {
        let spare = (0..capacity).map(|_| Vec::with_capacity(OBJECTS_ROOM)).collect();
        Arc::new(ObjectPool { spare: Mutex::new(spare), capacity })
    }

    /// A copy of `objects` in a spare vector (a new one when none is left).
    pub fn objects(self: &Arc<Self>, objects: &[Detection]) -> Objects {
        let spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut items = spare.unwrap_or_else(|| Vec::with_capacity(OBJECTS_ROOM.max(objects.len())));
        items.clear();
        items.extend_from_slice(objects);
        Objects { items, pool: Some(Arc::clone(self)) }
    }

    fn put(&self, items: Vec<Detection>) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.capacity {
            spare.push(items);
        }
    }

    /// Vectors waiting to be reused.
    pub fn spare(&self) -> usize {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

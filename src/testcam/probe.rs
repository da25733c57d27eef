//! Finds out what the source file is before serving it: a still image or a video, and its
//! decoded size. A throwaway `filesrc ! typefind ! decodebin` pipeline is prerolled once, so a
//! file that does not decode fails here, with GStreamer's reason, before anything listens.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use super::TestCamError;
use super::options::even_size;

const PREROLL_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the file is one picture (served with `imagefreeze`) or a clip (looped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Still,
    Video,
}

/// What preroll found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceInfo {
    pub(crate) kind: SourceKind,
    width: u32,
    height: u32,
    par: (i32, i32),
}

impl SourceInfo {
    /// The size to serve when none is asked for: square pixels, even sides.
    pub(crate) fn natural_size(&self) -> (u32, u32) {
        let (n, d) = self.par;
        let width = if n > 0 && d > 0 && n != d {
            (u64::from(self.width) * n as u64 / d as u64) as u32
        } else {
            self.width
        };
        even_size(width, self.height)
    }
}

/// Builds a launch line whose `filesrc` is named `file` and points it at `path`; `what`
/// names the pipeline in the error.
pub(super) fn file_pipeline(line: &str, path: &Path, what: &str) -> Result<gst::Pipeline, TestCamError> {
    let pipeline = gst::parse::launch(line)
        .map_err(|e| TestCamError::Gstreamer(format!("{what} pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .expect("a launch line with several elements is a pipeline");
    named(&pipeline, "file").set_property("location", path.to_string_lossy().as_ref());
    Ok(pipeline)
}

/// An element the launch line names.
pub(super) fn named(pipeline: &gst::Pipeline, name: &str) -> gst::Element {
    pipeline.by_name(name).expect("element named in the launch line")
}

/// Prerolls the file and reports its kind (by the type-found caps: `image/*` is a still) and
/// its decoded size.
pub(crate) fn probe(path: &Path) -> Result<SourceInfo, TestCamError> {
    let undecodable = |reason: String| TestCamError::Undecodable {
        path: path.to_owned(),
        reason,
    };
    let pipeline = file_pipeline(
        "filesrc name=file ! typefind name=typefind ! decodebin ! videoconvert ! fakesink name=sink",
        path,
        "probe",
    )?;
    let by_name = |name| named(&pipeline, name);

    let prerolled = pipeline.set_state(gst::State::Paused).is_ok()
        && pipeline
            .state(gst::ClockTime::from_nseconds(
                PREROLL_TIMEOUT.as_nanos() as u64
            ))
            .0
            .is_ok();
    let result = if prerolled {
        let found = by_name("typefind").property::<Option<gst::Caps>>("caps");
        let decoded = by_name("sink")
            .static_pad("sink")
            .and_then(|pad| pad.current_caps());
        match (found, decoded) {
            (Some(found), Some(decoded)) => describe(&found, &decoded).map_err(undecodable),
            _ => Err(undecodable("no video stream found".to_owned())),
        }
    } else {
        Err(undecodable(
            first_error(&pipeline).unwrap_or_else(|| "preroll timed out".to_owned()),
        ))
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn describe(found: &gst::Caps, decoded: &gst::Caps) -> Result<SourceInfo, String> {
    let still = found
        .structure(0)
        .is_some_and(|s| s.name().starts_with("image/"));
    let video = gst_video::VideoInfo::from_caps(decoded)
        .map_err(|e| format!("unexpected decoded caps {decoded}: {e}"))?;
    let par = video.par();
    Ok(SourceInfo {
        kind: if still {
            SourceKind::Still
        } else {
            SourceKind::Video
        },
        width: video.width(),
        height: video.height(),
        par: (par.numer(), par.denom()),
    })
}

/// The first error message on the bus, as "text (debug)".
fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
    let gst::MessageView::Error(err) = msg.view() else {
        return None;
    };
    Some(match err.debug() {
        Some(debug) => format!("{} ({debug})", err.error()),
        None => err.error().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_square_pixels_widen_the_natural_size() {
        let info = SourceInfo {
            kind: SourceKind::Video,
            width: 720,
            height: 576,
            par: (16, 15),
        };
        assert_eq!(info.natural_size(), (768, 576));
    }

    #[test]
    fn odd_image_sizes_become_even() {
        let info = SourceInfo {
            kind: SourceKind::Still,
            width: 950,
            height: 245,
            par: (1, 1),
        };
        assert_eq!(info.natural_size(), (950, 244));
    }
}

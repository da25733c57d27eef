//! Capture time: the camera's NTP clock (RTCP sender reports) when known, else arrival time.

use gstreamer as gst;

use crate::frame::ClockSource;

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_TO_UNIX_SECS: u64 = 2_208_988_800;

/// Converts an NTP timestamp in ns since 1900 to µs since the Unix epoch.
pub(crate) fn ntp_ns_to_unix_us(ntp_ns: u64) -> Option<i64> {
    let unix_ns = ntp_ns.checked_sub(NTP_TO_UNIX_SECS * 1_000_000_000)?;
    i64::try_from(unix_ns / 1_000).ok()
}

/// The capture time of a buffer: its `timestamp/x-ntp` reference timestamp meta (added by
/// rtspsrc's jitter buffer once the camera's first RTCP sender report arrived), else
/// `arrival_us`.
pub(crate) fn capture_time(buffer: &gst::BufferRef, arrival_us: i64) -> (i64, ClockSource) {
    let ntp = buffer.iter_meta::<gst::ReferenceTimestampMeta>().find_map(|meta| {
        let is_ntp = meta.reference().structure(0).is_some_and(|s| s.name() == "timestamp/x-ntp");
        is_ntp.then(|| ntp_ns_to_unix_us(meta.timestamp().nseconds())).flatten()
    });
    match ntp {
        Some(us) => (us, ClockSource::Ntp),
        None => (arrival_us, ClockSource::Arrival),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_ntp_era_to_unix() {
        assert_eq!(ntp_ns_to_unix_us(NTP_TO_UNIX_SECS * 1_000_000_000), Some(0));
        let t = (NTP_TO_UNIX_SECS + 1_700_000_000) * 1_000_000_000 + 123_456_000;
        assert_eq!(ntp_ns_to_unix_us(t), Some(1_700_000_000_123_456));
        assert_eq!(ntp_ns_to_unix_us(5), None);
    }

    #[test]
    fn prefers_the_ntp_reference_meta() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        assert_eq!(capture_time(&buffer, 99), (99, ClockSource::Arrival));
        let ntp = gst::Caps::new_empty_simple("timestamp/x-ntp");
        let other = gst::Caps::new_empty_simple("timestamp/x-unix");
        let t = (NTP_TO_UNIX_SECS + 10) * 1_000_000_000;
        {
            let b = buffer.get_mut().unwrap();
            gst::ReferenceTimestampMeta::add(b, &other, gst::ClockTime::from_nseconds(1), gst::ClockTime::NONE);
            gst::ReferenceTimestampMeta::add(b, &ntp, gst::ClockTime::from_nseconds(t), gst::ClockTime::NONE);
        }
        assert_eq!(capture_time(&buffer, 99), (10_000_000, ClockSource::Ntp));
    }
}

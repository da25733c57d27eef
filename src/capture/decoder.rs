//! Decoder choice: hardware first where its element exists, libav last.

/// Video encodings the capture pipeline accepts (RTP `encoding-name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    H264,
    H265,
}

impl Codec {
    pub(crate) fn from_encoding_name(name: &str) -> Option<Codec> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(Codec::H264),
            "H265" | "HEVC" => Some(Codec::H265),
            _ => None,
        }
    }

    pub(crate) fn depayloader(self) -> &'static str {
        match self {
            Codec::H264 => "rtph264depay",
            Codec::H265 => "rtph265depay",
        }
    }

    pub(crate) fn parser(self) -> &'static str {
        match self {
            Codec::H264 => "h264parse",
            Codec::H265 => "h265parse",
        }
    }

    /// Decoders in order of preference: Jetson (V4L2 NVDEC), NVIDIA desktop (NVDEC), VA-API
    /// (new `va` plugin, then gstreamer-vaapi), then software.
    fn preference(self) -> &'static [&'static str] {
        match self {
            Codec::H264 => &["nvv4l2decoder", "nvh264dec", "vah264dec", "vaapih264dec", "avdec_h264"],
            Codec::H265 => &["nvv4l2decoder", "nvh265dec", "vah265dec", "vaapih265dec", "avdec_h265"],
        }
    }
}

/// The chosen decoder element and what must follow it to reach system memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecoderChoice {
    pub element: String,
    /// Jetson's decoder outputs NVMM buffers: `nvvidconv` brings them to system memory.
    pub converter: Option<&'static str>,
}

/// Picks the decoder: the camera's override when given, else the first available element.
pub(crate) fn choose(codec: Codec, override_element: Option<&str>, exists: impl Fn(&str) -> bool) -> Option<DecoderChoice> {
    let element = match override_element {
        Some(name) => exists(name).then(|| name.to_owned())?,
        None => codec.preference().iter().find(|name| exists(name))?.to_string(),
    };
    let converter = (element == "nvv4l2decoder").then_some("nvvidconv");
    Some(DecoderChoice { element, converter })
}

/// Whether GStreamer knows an element factory of that name.
pub(crate) fn element_exists(name: &str) -> bool {
    gstreamer::ElementFactory::find(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_hardware_and_falls_back_to_libav() {
        let cpu_only = |n: &str| n.starts_with("avdec_");
        assert_eq!(choose(Codec::H264, None, cpu_only).unwrap().element, "avdec_h264");
        assert_eq!(choose(Codec::H265, None, cpu_only).unwrap().element, "avdec_h265");
        let jetson = |n: &str| n == "nvv4l2decoder" || n.starts_with("avdec_");
        let c = choose(Codec::H264, None, jetson).unwrap();
        assert_eq!((c.element.as_str(), c.converter), ("nvv4l2decoder", Some("nvvidconv")));
        let x86 = |n: &str| n == "nvh265dec" || n.starts_with("avdec_");
        assert_eq!(choose(Codec::H265, None, x86).unwrap().element, "nvh265dec");
    }

    #[test]
    fn honours_an_existing_override_only() {
        let all = |_: &str| true;
        assert_eq!(choose(Codec::H264, Some("avdec_h264"), all).unwrap().element, "avdec_h264");
        assert_eq!(choose(Codec::H264, Some("nosuchdec"), |n: &str| n != "nosuchdec"), None);
        assert_eq!(choose(Codec::H264, None, |_: &str| false), None);
    }

    #[test]
    fn reads_rtp_encoding_names() {
        assert_eq!(Codec::from_encoding_name("h264"), Some(Codec::H264));
        assert_eq!(Codec::from_encoding_name("H265"), Some(Codec::H265));
        assert_eq!(Codec::from_encoding_name("JPEG"), None);
    }
}

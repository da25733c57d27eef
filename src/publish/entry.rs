//! Stream entry encoding, schema version 1 (see README "Stream schema").

use std::fmt::Write as _;

use crate::config::Encoding;
use crate::frame::{Detection, Detections};

/// Facts shared by every entry of this daemon run.
#[derive(Debug, Clone)]
pub(crate) struct EntryContext {
    pub site: String,
    /// Id of this daemon run (`run`).
    pub run: String,
    /// Model name + short hash (`model`).
    pub model: String,
    /// Class names, already JSON-quoted, index = class id.
    pub labels_json: Vec<String>,
    pub encoding: Encoding,
    /// Approximate cap of each stream (`MAXLEN ~`).
    pub maxlen: u64,
}

impl EntryContext {
    pub(crate) fn new(site: &str, run: &str, model: &str, labels: &[String], encoding: Encoding, maxlen: u64) -> Self {
        let labels_json = labels
            .iter()
            .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "\"?\"".to_owned()))
            .collect();
        Self { site: site.to_owned(), run: run.to_owned(), model: model.to_owned(), labels_json, encoding, maxlen }
    }
}

/// Writes the `det` JSON array into `out` (cleared first): one object per detection,
/// `{"cls":"car","id":2,"conf":0.912,"box":[x1,y1,x2,y2]}`, box with one decimal.
pub(crate) fn write_det_json(objects: &[Detection], labels_json: &[String], out: &mut String) {
    out.clear();
    out.push('[');
    for (i, d) in objects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cls = labels_json.get(d.class as usize).map_or("\"?\"", String::as_str);
        let [x1, y1, x2, y2] = d.bbox;
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            r#"{{"cls":{cls},"id":{},"conf":{:.3},"box":[{x1:.1},{y1:.1},{x2:.1},{y2:.1}]}}"#,
            d.class, d.confidence
        );
    }
    out.push(']');
}

/// Appends the `XADD` of one entry to `pipe`. `lat_us` is capture → now; `json` is scratch.
pub(crate) fn add_xadd(pipe: &mut redis::Pipeline, ctx: &EntryContext, d: &Detections, lat_us: i64, json: &mut String) {
    write_det_json(&d.objects, &ctx.labels_json, json);
    // Sized up front: growing the argument buffers push by push cost ~11 reallocations per
    // entry (heaptrack), the largest share of the daemon's Rust allocations per frame.
    let bytes = XADD_FIXED_BYTES + d.camera.stream_key.len() + ctx.site.len() + d.camera.id.len() + ctx.run.len() + ctx.model.len() + json.len();
    let mut cmd = redis::Cmd::with_capacity(XADD_ARGS, bytes);
    cmd.arg("XADD")
        .arg(&d.camera.stream_key)
        .arg("MAXLEN")
        .arg("~")
        .arg(ctx.maxlen)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("site")
        .arg(&ctx.site)
        .arg("cam")
        .arg(&d.camera.id)
        .arg("run")
        .arg(&ctx.run)
        .arg("seq")
        .arg(d.seq)
        .arg("ts")
        .arg(d.ts_us)
        .arg("clock")
        .arg(d.clock.as_str())
        .arg("lat")
        .arg(lat_us)
        .arg("inf")
        .arg(d.inference_us)
        .arg("w")
        .arg(d.width)
        .arg("h")
        .arg(d.height)
        .arg("model")
        .arg(&ctx.model)
        .arg("n")
        .arg(d.objects.len());
    match ctx.encoding {
        Encoding::Json => {
            cmd.arg("det").arg(json.as_str());
        }
        Encoding::JsonLz4 => {
            cmd.arg("det").arg(lz4_flex::compress_prepend_size(json.as_bytes())).arg("enc").arg("json+lz4");
        }
    }
    pipe.add_command(cmd);
}

/// Arguments of one entry's XADD (with `enc`), and a bound on the bytes of its fixed parts
/// (names, numbers) for sizing the command once.
const XADD_ARGS: usize = 36;
const XADD_FIXED_BYTES: usize = 256;

/// The stream key of a camera: the braces make `<site>:<camera>` the Redis Cluster hash tag.
pub(crate) fn stream_key(site: &str, camera: &str) -> String {
    format!("roadsight:{{{site}:{camera}}}:detections")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::frame::{CameraInfo, ClockSource};
    use crate::telemetry::Metrics;

    fn detections(objects: Vec<Detection>) -> Detections {
        let camera = Arc::new(CameraInfo {
            id: "north".into(),
            stream_key: stream_key("rsu-1", "north"),
            classes: None,
            confidence: 0.3,
            publish_empty: true,
            metrics: Metrics::new().camera("north"),
        });
        Detections {
            camera,
            seq: 7,
            ts_us: 1_700_000_000_000_000,
            clock: ClockSource::Ntp,
            width: 800,
            height: 600,
            inference_us: 31_000,
            arrived: Instant::now(),
            handed_over: Instant::now(),
            objects,
        }
    }

    fn args(pipe: &redis::Pipeline) -> Vec<Vec<u8>> {
        let cmd = pipe.cmd_iter().next().unwrap();
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => b"<other>".to_vec(),
            })
            .collect()
    }

    fn ctx(encoding: Encoding) -> EntryContext {
        let labels = ["person".to_owned(), "bicycle".to_owned(), "car".to_owned()];
        EntryContext::new("rsu-1", "run1", "centernet@abcd1234", &labels, encoding, 100_000)
    }

    #[test]
    fn key_uses_site_and_camera_as_hash_tag() {
        assert_eq!(stream_key("rsu-0042", "north"), "roadsight:{rsu-0042:north}:detections");
    }

    #[test]
    fn det_json_is_valid_and_rounded() {
        let mut out = String::new();
        let d = Detection { class: 2, confidence: 0.91234, bbox: [400.04, 423.06, 697.25, 585.0] };
        write_det_json(&[d, d], &ctx(Encoding::Json).labels_json, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["cls"], "car");
        assert_eq!(v[0]["id"], 2);
        assert_eq!(v[1]["conf"], 0.912);
        assert_eq!(v[0]["box"], serde_json::json!([400.0, 423.1, 697.2, 585.0]));
        write_det_json(&[], &[], &mut out);
        assert_eq!(out, "[]");
    }

    #[test]
    fn entry_has_exactly_the_schema_1_fields() {
        let mut pipe = redis::pipe();
        let d = detections(vec![Detection { class: 0, confidence: 0.7, bbox: [1.0, 2.0, 3.0, 4.0] }]);
        add_xadd(&mut pipe, &ctx(Encoding::Json), &d, 42_000, &mut String::new());
        let a = args(&pipe);
        let head: Vec<&[u8]> = a[..6].iter().map(Vec::as_slice).collect();
        assert_eq!(head, [&b"XADD"[..], b"roadsight:{rsu-1:north}:detections", b"MAXLEN", b"~", b"100000", b"*"]);
        let fields: Vec<(String, String)> = a[6..]
            .chunks(2)
            .map(|p| (String::from_utf8_lossy(&p[0]).into_owned(), String::from_utf8_lossy(&p[1]).into_owned()))
            .collect();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["v", "site", "cam", "run", "seq", "ts", "clock", "lat", "inf", "w", "h", "model", "n", "det"]);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("v"), "1");
        assert_eq!(get("clock"), "ntp");
        assert_eq!(get("lat"), "42000");
        assert_eq!(get("n"), "1");
        assert_eq!(get("w"), "800");
        assert!(get("det").starts_with(r#"[{"cls":"person","id":0"#));
    }

    #[test]
    fn lz4_entry_round_trips() {
        let mut pipe = redis::pipe();
        let d = detections(vec![Detection { class: 2, confidence: 0.5, bbox: [1.0, 2.0, 3.0, 4.0] }]);
        add_xadd(&mut pipe, &ctx(Encoding::JsonLz4), &d, 1, &mut String::new());
        let a = args(&pipe);
        let det_at = a.iter().position(|x| x == b"det").unwrap();
        let json = lz4_flex::decompress_size_prepended(&a[det_at + 1]).unwrap();
        assert!(String::from_utf8(json).unwrap().contains(r#""cls":"car""#));
        assert_eq!(a[det_at + 2..], [b"enc".to_vec(), b"json+lz4".to_vec()]);
    }
}

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

/// Builds the `XADD` of each entry in buffers kept from entry to entry: the command, the `det`
/// JSON and its lz4 form grow to the largest entry seen, then building an entry allocates
/// nothing (nor does sending it: `link.rs`).
pub(crate) struct XaddWriter {
    cmd: redis::Cmd,
    json: String,
    lz4: Vec<u8>,
    lz4_table: lz4_flex::block::CompressTable,
}

impl XaddWriter {
    pub(crate) fn new() -> Self {
        Self {
            cmd: redis::Cmd::with_capacity(XADD_ARGS, 4096),
            json: String::with_capacity(4096),
            lz4: Vec::new(),
            lz4_table: lz4_flex::block::CompressTable::default(),
        }
    }

    /// The `XADD` of one entry; `lat_us` is capture → now.
    pub(crate) fn xadd(&mut self, ctx: &EntryContext, d: &Detections, lat_us: i64) -> &redis::Cmd {
        write_det_json(&d.objects, &ctx.labels_json, &mut self.json);
        let cmd = &mut self.cmd;
        cmd.clear();
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
                cmd.arg("det").arg(self.json.as_str());
            }
            Encoding::JsonLz4 => {
                lz4_prepend_size(self.json.as_bytes(), &mut self.lz4, &mut self.lz4_table);
                cmd.arg("det").arg(self.lz4.as_slice()).arg("enc").arg("json+lz4");
            }
        }
        &self.cmd
    }
}

/// `input` lz4-compressed into `out` (reused), after its length as 4 little-endian bytes: the
/// format of `lz4_flex::compress_prepend_size`. The compressor's hash table is kept too (it
/// would otherwise be allocated per call).
fn lz4_prepend_size(input: &[u8], out: &mut Vec<u8>, table: &mut lz4_flex::block::CompressTable) {
    out.clear();
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    out.resize(4 + lz4_flex::block::get_maximum_output_size(input.len()), 0);
    match lz4_flex::block::compress_into_with_table(input, &mut out[4..], table) {
        Ok(n) => out.truncate(4 + n),
        // Cannot happen: `out` has the room the format needs at most.
        Err(_) => *out = lz4_flex::compress_prepend_size(input),
    }
}

/// Arguments of one entry's XADD (with `enc`).
const XADD_ARGS: usize = 36;

/// The stream key of a camera: the braces make `<site>:<camera>` the Redis Cluster hash tag.
pub(crate) fn stream_key(site: &str, camera: &str) -> String {
    format!("roadsight:{{{site}:{camera}}}:detections")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::frame::{CameraInfo, ClockSource, Objects};
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
            objects: Objects::unpooled(objects),
        }
    }

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
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
        let mut writer = XaddWriter::new();
        let d = detections(vec![Detection { class: 0, confidence: 0.7, bbox: [1.0, 2.0, 3.0, 4.0] }]);
        let a = args(writer.xadd(&ctx(Encoding::Json), &d, 42_000));
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
        let mut writer = XaddWriter::new();
        let d = detections(vec![Detection { class: 2, confidence: 0.5, bbox: [1.0, 2.0, 3.0, 4.0] }]);
        let a = args(writer.xadd(&ctx(Encoding::JsonLz4), &d, 1));
        let det_at = a.iter().position(|x| x == b"det").unwrap();
        let json = lz4_flex::decompress_size_prepended(&a[det_at + 1]).unwrap();
        assert!(String::from_utf8(json).unwrap().contains(r#""cls":"car""#));
        assert_eq!(a[det_at + 2..], [b"enc".to_vec(), b"json+lz4".to_vec()]);
        let mut once = Vec::new();
        // The kept hash table is cleared between calls: the second, after other input, gives
        // the same bytes as a fresh compressor.
        let mut table = lz4_flex::block::CompressTable::default();
        for input in [&b"the same bytes, the same format"[..], b"other bytes first", b"the same bytes, the same format"] {
            lz4_prepend_size(input, &mut once, &mut table);
            assert_eq!(once, lz4_flex::compress_prepend_size(input));
        }
    }

    #[test]
    fn writer_reuses_its_buffers() {
        let mut writer = XaddWriter::new();
        let big = detections(vec![Detection { class: 1, confidence: 0.5, bbox: [1.0, 2.0, 3.0, 4.0] }; 40]);
        let small = detections(vec![Detection { class: 0, confidence: 0.9, bbox: [5.0, 6.0, 7.0, 8.0] }]);
        writer.xadd(&ctx(Encoding::Json), &big, 1);
        let a = args(writer.xadd(&ctx(Encoding::Json), &small, 2));
        // Nothing of the bigger entry is left behind.
        assert_eq!(a.len(), 34);
        assert_eq!(a[33], br#"[{"cls":"person","id":0,"conf":0.900,"box":[5.0,6.0,7.0,8.0]}]"#);
    }
}

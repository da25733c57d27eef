//! The RTSP side: one shared media factory whose pipeline is a live `appsrc` (fed by
//! [`super::source`]) → `x264enc` or `x265enc` (zerolatency, ultrafast) → `rtph26xpay name=pay0`.
//!
//! The media pipeline runs on a dedicated `CLOCK_REALTIME` system clock, so running time and
//! wall-clock time advance together; rtpbin's RTCP sender reports (on by default) map RTP time
//! to NTP from the wall clock, which gives clients wall-clock capture times.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

use super::options::{VideoCodec, key_int_max};
use super::source::AppSrcTarget;
use super::{TestCamError, TestCamOptions};

/// Minimum interval between RTCP sender reports.
const RTCP_INTERVAL: Duration = Duration::from_secs(1);

/// A listening RTSP server attached to a main context.
pub(crate) struct Server {
    server: rtsp::RTSPServer,
    context: glib::MainContext,
    sources: Vec<glib::SourceId>,
    port: u16,
}

impl Server {
    /// Mounts the shared factory at `opts.path` and binds `opts.listen`.
    pub(crate) fn start(
        opts: &TestCamOptions,
        caps: &gst::Caps,
        target: AppSrcTarget,
        context: &glib::MainContext,
    ) -> Result<Self, TestCamError> {
        for element in ["appsrc"].into_iter().chain(opts.codec.elements()) {
            if gst::ElementFactory::find(element).is_none() {
                return Err(TestCamError::Gstreamer(format!(
                    "element {element} is not installed"
                )));
            }
        }
        let factory = media_factory(opts, caps.clone(), target);
        let server = rtsp::RTSPServer::new();
        if let Some((user, password)) = &opts.auth {
            require_login(&server, &factory, user, password);
        }
        server.set_address(&opts.listen.ip().to_string());
        server.set_service(&opts.listen.port().to_string());
        server
            .mount_points()
            .expect("a new server has mount points")
            .add_factory(&opts.path, factory);

        let bind_err = |reason: String| TestCamError::Bind {
            addr: opts.listen,
            reason,
        };
        let listening = server
            .attach(Some(context))
            .map_err(|_| bind_err("the address is in use or not local".to_owned()))?;
        let port = u16::try_from(server.bound_port())
            .map_err(|_| bind_err(format!("bound port {} reported", server.bound_port())))?;

        // Sessions of clients that vanished without a TEARDOWN expire here.
        let pool = server
            .session_pool()
            .expect("a new server has a session pool");
        let reaper = pool.create_watch(Some("testcam-sessions"), glib::Priority::DEFAULT, |pool| {
            pool.cleanup();
            glib::ControlFlow::Continue
        });
        let reaper = reaper.attach(Some(context));
        tracing::debug!(port, path = %opts.path, "RTSP server is listening.");
        Ok(Self {
            server,
            context: context.clone(),
            sources: vec![listening, reaper],
            port,
        })
    }

    /// The TCP port actually bound.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting and closes every client connection. Idempotent.
    pub(crate) fn stop(&mut self) {
        // `SourceId::remove` only looks in the global default context; these are in ours.
        for id in self.sources.drain(..) {
            if let Some(source) = self.context.find_source_by_id(&id) {
                source.destroy();
            }
        }
        self.server.client_filter(Some(&mut |_, client| {
            client.close();
            rtsp::RTSPFilterResult::Remove
        }));
    }
}

fn media_factory(
    opts: &TestCamOptions,
    caps: gst::Caps,
    target: AppSrcTarget,
) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    let (key_int, bitrate) = (key_int_max(opts.fps), opts.bitrate_kbps);
    // x264enc threads=1: one slice per picture, as most cameras send. With zerolatency's
    // sliced threads an IDR picture has several slices, and rtph264pay config-interval=-1 puts
    // SPS/PPS before each of them, which ends the access unit mid-picture (H.264 7.4.1.2.3):
    // FFmpeg (OpenCV) then conceals half of every IDR picture; GStreamer's h264parse copes.
    let encode = match opts.codec {
        VideoCodec::H264 => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={key_int} \
             bitrate={bitrate} byte-stream=true ! rtph264pay name=pay0 pt=96 config-interval=-1"
        ),
        VideoCodec::H265 => format!(
            "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} \
             bitrate={bitrate} ! video/x-h265,stream-format=byte-stream \
             ! rtph265pay name=pay0 pt=96 config-interval=-1"
        ),
    };
    factory.set_launch(&format!(
        "( appsrc name=src is-live=true format=time do-timestamp=true max-buffers=2 \
         leaky-type=downstream ! {encode} )"
    ));
    // One live stream for every client, as a real camera has.
    factory.set_shared(true);
    factory.set_clock(Some(&wall_clock()));
    factory.connect_media_configure(move |_, media| attach_media(media, &caps, &target));
    factory
}

/// Basic auth: only `user` with `password` may see and play the stream, as on a real camera.
fn require_login(server: &rtsp::RTSPServer, factory: &rtsp::RTSPMediaFactory, user: &str, password: &str) {
    const ROLE: &str = "viewer";
    let auth = rtsp::RTSPAuth::new();
    let token = rtsp::RTSPToken::builder().field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE).build();
    auth.add_basic(&rtsp::RTSPAuth::make_basic(user, password), &token);
    server.set_auth(Some(&auth));
    let role = gst::Structure::builder(ROLE)
        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
        .build();
    factory.add_role_from_structure(&role);
}

/// A system clock of its own on `CLOCK_REALTIME` (the global default clock stays monotonic).
fn wall_clock() -> gst::Clock {
    glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build()
        .upcast()
}

/// Points the feeder at a new media's `appsrc`, and away from it once the media is unprepared.
fn attach_media(media: &rtsp::RTSPMedia, caps: &gst::Caps, target: &AppSrcTarget) {
    let element = media.element();
    let appsrc = element
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name("src"))
        .and_then(|src| src.downcast::<gst_app::AppSrc>().ok())
        .expect("the factory's launch line has an appsrc named src");
    appsrc.set_caps(Some(caps));
    *target.lock().expect("appsrc target") = Some(appsrc.clone());
    tracing::info!("A new shared media is being prepared.");

    let target = target.clone();
    media.connect_unprepared(move |_| {
        let mut current = target.lock().expect("appsrc target");
        if current.as_ref() == Some(&appsrc) {
            *current = None;
        }
        tracing::info!("The shared media is unprepared (no clients left).");
    });
    media.connect_new_state(|_, state| tracing::debug!(state, "Media state changed."));
    media.connect_prepared(shorten_rtcp_interval);

    // The media's rtpbin is added to this pipeline when the media is prepared.
    match element.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) {
        Some(pipeline) => {
            pipeline.connect_element_added(|_, child| {
                if child.factory().is_some_and(|f| f.name() == "rtpbin") {
                    tune_rtpbin(child);
                }
            });
        }
        None => tracing::warn!("Media element has no pipeline yet; RTCP keeps its defaults."),
    }
}

/// Sender reports map RTP time to the capture time (the `appsrc` timestamp) rather than to
/// the time the packet left, which the default adds the pipeline latency to.
fn tune_rtpbin(rtpbin: &gst::Element) {
    rtpbin.set_property("rtcp-sync-send-time", false);
    tracing::debug!(rtpbin = %rtpbin.name(), "RTCP sync set to capture time.");
}

/// Sender reports every [`RTCP_INTERVAL`] rather than every 5 s, so a client that joins the
/// shared stream late gets reference timestamps within about a second.
fn shorten_rtcp_interval(media: &rtsp::RTSPMedia) {
    for stream in (0..media.n_streams()).filter_map(|i| media.stream(i)) {
        if let Some(session) = stream.rtpsession() {
            session.set_property("rtcp-min-interval", RTCP_INTERVAL.as_nanos() as u64);
            tracing::debug!(interval = ?RTCP_INTERVAL, "RTCP interval shortened.");
        }
    }
}

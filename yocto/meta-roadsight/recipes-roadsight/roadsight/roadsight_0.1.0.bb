# nooelint: oelint.var.mandatoryvar.HOMEPAGE - no public home page: the docs ship in roadsight-doc
SUMMARY = "Roadside camera box daemon: RTSP capture, object detection, Redis Streams"
DESCRIPTION = "roadsightd pulls each camera's RTSP stream through GStreamer, detects \
               objects with ONNX Runtime (TensorRT or CUDA on a GPU, the CPU elsewhere) and \
               writes one Redis Streams entry per processed frame into the box's own Redis, \
               from where it forwards them to a central Redis. Packages: roadsight (the \
               daemon, its unit, users and configuration), roadsight-models (the default \
               detector), roadsight-redis (the box's local Redis: unit and configuration)."
SECTION = "multimedia"
# The daemon and the rest of the repository: MIT or Apache-2.0 (Cargo.toml). The default
# model: MIT (models/PROVENANCE.md). The crates linked into roadsightd carry their own licenses
# (yocto/README.md). scripts/check-yocto.sh recomputes these checksums.
LICENSE = "(MIT | Apache-2.0) & MIT"
LICENSE:${PN}-models = "MIT"
LIC_FILES_CHKSUM = "\
    file://Cargo.toml;beginline=9;endline=9;md5=86b31c7756a1a7962f28b62856ed4f05 \
    file://models/PROVENANCE.md;beginline=6;endline=9;md5=6a180a1d13003236acd43660ff67674f \
"

# gstreamer-rs links libgstreamer, libgstapp, libgstvideo and, through the library's test
# camera module, libgstrtspserver (found with pkg-config). ONNX Runtime is not linked: it is
# loaded at run time (ort's load-dynamic).
DEPENDS = "gstreamer1.0 gstreamer1.0-plugins-base gstreamer1.0-rtsp-server"

# Every crate of Cargo.lock as a crate:// URL with its checksum: fetched by do_fetch, built
# offline (cargo --frozen, no network in do_compile). Regenerate with
# `scripts/yocto-crates.py --write` (the same text as `bitbake -c update_crates roadsight`);
# CI fails when it is stale.
require ${BPN}-crates.inc

# The source is the checkout this layer lives in (four levels up), and only what the build
# and the packages use is fetched from it, so a build directory anywhere, even inside the
# checkout, stays out of the checksums. scripts/check-yocto.sh fails when one is missing.
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext - the sources are this repository, not files/ beside the recipe
FILESEXTRAPATHS:prepend := "${@os.path.normpath('${THISDIR}/../../../..')}:"
SRC_URI += "\
    file://Cargo.toml;subdir=roadsight \
    file://Cargo.lock;subdir=roadsight \
    file://src;subdir=roadsight \
    file://benches;subdir=roadsight \
    file://configs/roadsight.toml;subdir=roadsight \
    file://configs/cameras.d/north.toml.example;subdir=roadsight \
    file://configs/redis/roadsight-redis.conf;subdir=roadsight \
    file://models/centernet_mnv3_coco_512_u8.onnx;subdir=roadsight \
    file://models/coco80.names;subdir=roadsight \
    file://models/PROVENANCE.md;subdir=roadsight \
    file://systemd/roadsightd.service;subdir=roadsight \
    file://systemd/roadsight-redis.service;subdir=roadsight \
    file://systemd/sysusers.d/roadsight.conf;subdir=roadsight \
    file://systemd/tmpfiles.d/roadsight.conf;subdir=roadsight \
    file://README.md;subdir=roadsight \
    file://roadsight-image-config.py \
"

S = "${WORKDIR}/roadsight"

inherit cargo cargo-update-recipe-crates pkgconfig python3native systemd useradd

# Only the daemon: the package also has roadsight-testcam (the RTSP test camera), and
# cargo_do_install installs every executable it finds.
CARGO_BUILD_FLAGS += "--bin roadsightd"

# ONNX Runtime >= 1.23, loaded with dlopen from ROADSIGHT_ORT_LIBRARY (written into the
# image's roadsight.toml), so no shared-library dependency points at it: name the package.
# onnxruntime-prebuilt (this layer): the CPU provider only. "onnxruntime": meta-tegra-community's
# recipe with the TensorRT and CUDA providers, where a >= 1.23 one exists (yocto/README.md).
ROADSIGHT_ONNXRUNTIME ?= "onnxruntime-prebuilt"
ROADSIGHT_ORT_LIBRARY ?= "${libdir}/libonnxruntime.so"
# model.providers in the image's roadsight.toml. A provider the library lacks is logged once
# and skipped, so one list serves the CPU and the GPU builds; '["cpu"]' keeps a CPU-only box
# quiet about it.
ROADSIGHT_PROVIDERS ?= '[{ name = "tensorrt", fp16 = true }, "cuda", "cpu"]'
ROADSIGHT_MODELDIR = "${datadir}/roadsight/models"

PACKAGES =+ "${PN}-redis ${PN}-models"
FILES:${PN} += "\
    ${nonarch_libdir}/sysusers.d/roadsight.conf \
    ${nonarch_libdir}/tmpfiles.d/roadsight.conf \
"
FILES:${PN}-models += "${ROADSIGHT_MODELDIR}"
FILES:${PN}-redis += "${sysconfdir}/roadsight/redis.conf"

# The elements src/capture builds: rtspsrc (rtsp, with rtpbin from rtpmanager and udpsrc from
# udp), rtph264depay/rtph265depay (rtp), h264parse/h265parse (videoparsersbad),
# videoconvertscale (gst-plugins-base >= 1.22), appsink (app), avdec_h264/avdec_h265 (libav:
# the decoder every machine can fall back to). capsfilter is in gstreamer1.0 itself. Hardware
# decoders (Jetson's nvv4l2decoder + nvvidconv, VA-API) are machine-specific: see
# packagegroup-roadsight.
RDEPENDS:${PN} += "\
    ${ROADSIGHT_ONNXRUNTIME} \
    gstreamer1.0-libav \
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-good-rtp \
    gstreamer1.0-plugins-good-rtpmanager \
    gstreamer1.0-plugins-good-rtsp \
    gstreamer1.0-plugins-good-udp \
"
# redis-server >= 7.0 (meta-oe's redis); the daemon package brings the tmpfiles.d entry that
# creates /run/roadsight, where this Redis puts its socket.
RDEPENDS:${PN}-redis += "${PN} redis"
RRECOMMENDS:${PN} += "${PN}-models ${PN}-redis"

CONFFILES:${PN} = "\
    ${sysconfdir}/roadsight/roadsight.toml \
    ${sysconfdir}/roadsight/cameras.d/north.toml.example \
"
CONFFILES:${PN}-redis = "${sysconfdir}/roadsight/redis.conf"

SYSTEMD_PACKAGES = "${PN} ${PN}-redis"
SYSTEMD_SERVICE:${PN} = "roadsightd.service"
SYSTEMD_SERVICE:${PN}-redis = "roadsight-redis.service"
SYSTEMD_AUTO_ENABLE = "enable"

# The users of systemd/sysusers.d/roadsight.conf (installed too, so systemd-sysusers finds
# them present), created when the image is built, where no sysusers runs.
USERADD_PACKAGES = "${PN} ${PN}-redis"
GROUPADD_PARAM:${PN} = "--system roadsight; --system render"
USERADD_PARAM:${PN} = "--system --gid roadsight --groups video,render --home-dir / \
                       --no-create-home --shell ${base_sbindir}/nologin \
                       --comment 'roadsight camera daemon' roadsight"
GROUPADD_PARAM:${PN}-redis = "--system roadsight"
USERADD_PARAM:${PN}-redis = "--system --gid roadsight --home-dir / --no-create-home \
                             --shell ${base_sbindir}/nologin \
                             --comment 'roadsight local Redis' roadsight-redis"

# meta-oe's redis enables its own redis.service, also on port 6379: the box runs only
# roadsight-redis.service (systemd/README.md). Runs after redis' own postinst (a dependency).
pkg_postinst:${PN}-redis() {
    if [ -n "$D" ]; then
        OPTS="--root=$D"
    else
        OPTS=""
    fi
    systemctl $OPTS disable redis.service
    systemctl $OPTS mask redis.service
}

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/roadsightd.service ${D}${systemd_system_unitdir}/roadsightd.service
    install -m 0644 ${S}/systemd/roadsight-redis.service ${D}${systemd_system_unitdir}/roadsight-redis.service
    install -d ${D}${nonarch_libdir}/sysusers.d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/systemd/sysusers.d/roadsight.conf ${D}${nonarch_libdir}/sysusers.d/roadsight.conf
    install -m 0644 ${S}/systemd/tmpfiles.d/roadsight.conf ${D}${nonarch_libdir}/tmpfiles.d/roadsight.conf

    # Relative paths in roadsight.toml resolve against /etc/roadsight: the image's copy points
    # at the installed model and ONNX Runtime, and at the local Redis' unix socket.
    install -d ${D}${sysconfdir}/roadsight/cameras.d
    nativepython3 ${WORKDIR}/roadsight-image-config.py \
        ${S}/configs/roadsight.toml ${D}${sysconfdir}/roadsight/roadsight.toml \
        --str model.path=${ROADSIGHT_MODELDIR}/centernet_mnv3_coco_512_u8.onnx \
        --str model.labels=${ROADSIGHT_MODELDIR}/coco80.names \
        --str model.ort_library=${ROADSIGHT_ORT_LIBRARY} \
        --str redis.url=unix:///run/roadsight/redis.sock \
        --raw 'model.providers=${ROADSIGHT_PROVIDERS}'
    chmod 0644 ${D}${sysconfdir}/roadsight/roadsight.toml
    # An example only: the daemon reads *.toml, so no camera is configured at first boot.
    install -m 0644 ${S}/configs/cameras.d/north.toml.example ${D}${sysconfdir}/roadsight/cameras.d/north.toml.example
    install -m 0644 ${S}/configs/redis/roadsight-redis.conf ${D}${sysconfdir}/roadsight/redis.conf
    # LoadCredential= fails the unit when this is missing; tmpfiles.d makes it too, but not on
    # a read-only /etc.
    install -d -m 0700 ${D}${sysconfdir}/credstore/roadsight

    install -d ${D}${ROADSIGHT_MODELDIR}
    install -m 0644 ${S}/models/centernet_mnv3_coco_512_u8.onnx ${D}${ROADSIGHT_MODELDIR}/centernet_mnv3_coco_512_u8.onnx
    install -m 0644 ${S}/models/coco80.names ${D}${ROADSIGHT_MODELDIR}/coco80.names
    install -m 0644 ${S}/models/PROVENANCE.md ${D}${ROADSIGHT_MODELDIR}/PROVENANCE.md

    # The units' Documentation= points here.
    install -d ${D}${docdir}/roadsight
    install -m 0644 ${S}/README.md ${D}${docdir}/roadsight/README.md
}

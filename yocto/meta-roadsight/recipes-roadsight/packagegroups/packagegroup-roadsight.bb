SUMMARY = "Everything a roadside unit runs: roadsightd, its local Redis, the default model"
DESCRIPTION = "The roadsight daemon, its default model and the box's own Redis, plus the \
               hardware video decoders the daemon probes first on this machine: Jetson's \
               nvv4l2decoder and nvvidconv (meta-tegra), VA-API on x86-64."
# Machine-specific: what it pulls in depends on the machine (tegra override).
PACKAGE_ARCH = "${MACHINE_ARCH}"

inherit packagegroup

RDEPENDS:${PN} = "\
    roadsight \
    roadsight-models \
    roadsight-redis \
"
# Jetson: nvv4l2decoder (NVDEC through V4L2) and nvvidconv (NVMM to system memory), the pair
# src/capture/decoder.rs picks first.
RDEPENDS:${PN}:append:tegra = " \
    gstreamer1.0-plugins-nvvidconv \
    gstreamer1.0-plugins-nvvideo4linux2 \
"
# x86-64: vah264dec/vah265dec where gstreamer1.0-plugins-bad is built with its va
# PACKAGECONFIG and the box has a VA-API driver; libav decodes otherwise.
RRECOMMENDS:${PN}:append:x86-64 = " gstreamer1.0-plugins-bad-va"

SUMMARY = "Roadside unit image: roadsightd with its local Redis, units and default model"
DESCRIPTION = "A console image with systemd that starts the box's Redis and roadsightd at \
               boot (yocto/README.md: what is where, first boot, credentials)."
LICENSE = "MIT"

inherit core-image

# MACHINE_EXTRA_RRECOMMENDS: on Jetson, the NVIDIA kernel modules (nvgpu, nvidia, ...) that
# GPU decoding and inference need; packagegroup-core-boot leaves them out.
IMAGE_INSTALL = "\
    packagegroup-core-boot \
    packagegroup-roadsight \
    ${MACHINE_EXTRA_RRECOMMENDS} \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"
# Room for the local Redis' append-only file (maxmemory 1100mb in its config) and the
# TensorRT engine cache: 2 GiB beyond what the packages take.
IMAGE_ROOTFS_EXTRA_SPACE = "2097152"

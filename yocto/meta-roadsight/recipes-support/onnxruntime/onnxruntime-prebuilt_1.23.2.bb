SUMMARY = "ONNX Runtime shared library, CPU execution provider only (upstream build)"
DESCRIPTION = "libonnxruntime.so as Microsoft builds it for the PyPI onnxruntime wheel \
               (manylinux, glibc >= 2.28), for x86-64 and aarch64. roadsightd loads it with \
               dlopen (ort's load-dynamic); it needs ONNX Runtime >= 1.23. No TensorRT or \
               CUDA provider: on Jetson, meta-tegra-community's onnxruntime recipe builds \
               those (yocto/README.md)."
HOMEPAGE = "https://onnxruntime.ai"
SECTION = "libs"
LICENSE = "MIT"
# ThirdPartyNotices.txt: the licenses of what Microsoft links into the library (protobuf,
# abseil, ...); listed so it lands in the image's license manifest.
LIC_FILES_CHKSUM = "\
    file://onnxruntime/LICENSE;md5=0f7e3b1308cb5c00b372a6e78835732d \
    file://onnxruntime/ThirdPartyNotices.txt;md5=e958043c29fba872f89cf708cdd1178d \
"

# The wheels are zip files: saved as .zip so do_unpack extracts them. Same upstream build as
# scripts/setup.sh installs for the tests (ORT_VERSION there).
ORT_WHEEL_URI = "https://files.pythonhosted.org/packages"
SRC_URI:x86-64 = "${ORT_WHEEL_URI}/ef/88/9cc25d2bafe6bc0d4d3c1db3ade98196d5b355c0b273e6a5dc09c5d5d0d5/onnxruntime-${PV}-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl;downloadfilename=onnxruntime-${PV}-x86_64.zip;subdir=ort;name=x86-64"
SRC_URI:aarch64 = "${ORT_WHEEL_URI}/3c/35/4e40f2fba272a6698d62be2cd21ddc3675edfc1a4b9ddefcc4648f115315/onnxruntime-${PV}-cp312-cp312-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl;downloadfilename=onnxruntime-${PV}-aarch64.zip;subdir=ort;name=aarch64"
SRC_URI[x86-64.sha256sum] = "0f9b4ae77f8e3c9bee50c27bc1beede83f786fe1d52e99ac85aa8d65a01e9b77"
SRC_URI[aarch64.sha256sum] = "76ff670550dc23e58ea9bc53b5149b99a44e63b34b524f7b8547469aaa0dcb8c"

S = "${WORKDIR}/ort"

# Built for glibc: no musl.
COMPATIBLE_HOST = "(x86_64|aarch64).*-linux"
COMPATIBLE_HOST:libc-musl = "null"
# CVE entries are filed against ONNX Runtime, not this recipe's name.
CVE_PRODUCT = "onnxruntime"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${libdir}
    install -m 0755 ${S}/onnxruntime/capi/libonnxruntime.so.${PV} ${D}${libdir}/libonnxruntime.so.${PV}
    ln -sf libonnxruntime.so.${PV} ${D}${libdir}/libonnxruntime.so.1
    ln -sf libonnxruntime.so.${PV} ${D}${libdir}/libonnxruntime.so
    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/onnxruntime/ThirdPartyNotices.txt ${D}${docdir}/${BPN}/ThirdPartyNotices.txt
}

# roadsightd opens the unversioned name (model.ort_library), so it belongs in the runtime
# package, not in -dev.
FILES_SOLIBSDEV = ""
FILES:${PN} += "${libdir}/libonnxruntime.so"

# Upstream ships the library stripped, with RUNPATH $ORIGIN: nothing to split or strip.
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
# nooelint: oelint.vars.insaneskip - a prebuilt, stripped upstream library opened by its unversioned name
INSANE_SKIP:${PN} += "already-stripped dev-so"

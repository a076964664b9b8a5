#!/usr/bin/env bash
# Real DICOM software for the hospital tests (tests/hospital/, tests of issue 13):
# Orthanc with its DICOMweb plugin (started by the tests on loopback, never as a system
# service), dcmtk (storescu), dicom3tools (dciodvfy) and dcm2niix. Debian's packages.
set -euo pipefail
have_all() {
    command -v storescu >/dev/null 2>&1 &&
        command -v dciodvfy >/dev/null 2>&1 &&
        command -v dcm2niix >/dev/null 2>&1 &&
        [ -x /usr/sbin/Orthanc ] &&
        compgen -G "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*" >/dev/null
}
if have_all; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-dicom-tools: missing DICOM tools and no apt-get; install orthanc," \
        "orthanc-dicomweb, dcmtk, dicom3tools and dcm2niix by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "ensure-dicom-tools: installing Debian's orthanc, orthanc-dicomweb, dcmtk, dicom3tools, dcm2niix" >&2
$SUDO apt-get update -qq
# policy-rc.d may refuse to start the orthanc service in a container: that is fine,
# the tests start their own Orthanc
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    orthanc orthanc-dicomweb dcmtk dicom3tools dcm2niix >/dev/null
have_all

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
"$(dirname "$0")/apt-install.sh" ensure-dicom-tools \
    orthanc orthanc-dicomweb dcmtk dicom3tools dcm2niix
have_all

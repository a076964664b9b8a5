"""Hospital integration: the DICOM node (scandx listen) and the DICOMweb loop (scandx pacs)."""

"""Results back as DICOM (issue 13): a prediction as objects a PACS and a viewer display.

- ``results_as_dicom(prediction, source_datasets, model, overlay=None)``: a TID 1500
  Structured Report (findings, probabilities, the operating point, volumes, the report
  text, the algorithm as IHE AIR asks), a DICOM SEG for segmentations and an RGB
  Secondary Capture of the overlay, all in the source study;
- ``predict_study(run_or_predictor, series_inputs, out_dir)``: one series through the
  Predictor, its result objects written as ``<SOP Instance UID>.dcm``;
- ``ResultModel``: the model's identity (name, version, weights sha256), vocabulary and
  the model card's limitations.
"""

from scandx.dicom_out.model_info import ResultModel
from scandx.dicom_out.results import results_as_dicom
from scandx.dicom_out.study import predict_study

__all__ = ["ResultModel", "predict_study", "results_as_dicom"]

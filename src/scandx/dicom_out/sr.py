"""The Structured Report: TID 1500 Measurement Report in a Comprehensive 3D SR (highdicom).

Tree (root: Imaging Measurement Report):

- language, observation context: a *device* observer (TID 1004: Device Observer UID
  derived from the weights' sha256, name = model name, manufacturer scandx, model name =
  "<name> <version>", serial number = the weights' sha256), procedure reported;
- Imaging Measurements: measurement groups (TID 1501 / 1411), each with the Algorithm
  Identification (TID 4019: name, version, parameters ``weights_sha256=...``,
  ``scandx_version=...``, family Artificial Intelligence):
  classification: one group on the source image: the probability of each class (UCUM
  ``{ratio}``), the decision threshold, the TTA spread, the OOD score (numeric); the
  label at the operating point (CODE, concept Finding), one CODE per label for a
  multi-label task, the OOD flag (Yes/No);
  segmentation: one volumetric group per label (TID 1411) referencing its SEG segment:
  its volume (SCT Volume, UCUM ``ml``; a 2D mask: SCT Area, ``mm2``); a label with no
  voxels (no segment in the SEG) gets a group on the source images with volume 0;
- Qualitative Evaluations (TID 1500 row 12): the report text as TEXT items: Finding,
  Impression, "What the model cannot see", "Model limitations".

Concepts DICOM has no code for (a class probability, the threshold, ...) use the private
coding scheme ``99SCANDX``, declared in the Coding Scheme Identification Sequence. The SR
is complete, preliminary and unverified: no person has read it.
"""

from __future__ import annotations

from typing import Any

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from scandx.dicom_out.model_info import MANUFACTURER, ResultModel
from scandx.dicom_out.report_text import ReportText

SCHEME = "99SCANDX"
RATIO = hd.sr.CodedConcept("{ratio}", "UCUM", "ratio")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
MILLILITRE = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
SQUARE_MM = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")
IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
THRESHOLD = hd.sr.CodedConcept("THRESHOLD", SCHEME, "Decision threshold")
SPREAD = hd.sr.CodedConcept("TTA-SPREAD", SCHEME, "Uncertainty (TTA spread)")
OOD_SCORE = hd.sr.CodedConcept("OOD-SCORE", SCHEME, "Out-of-distribution score")
OOD_FLAG = hd.sr.CodedConcept("OOD-FLAG", SCHEME, "Out-of-distribution")
NOT_SEEN = hd.sr.CodedConcept("NOT-SEEN", SCHEME, "What the model cannot see")
LIMITATIONS = hd.sr.CodedConcept("LIMITATIONS", SCHEME, "Model limitations")
SR_SERIES_NUMBER = 9902


def private(value: str, meaning: str) -> hd.sr.CodedConcept:
    """A concept of scandx's private coding scheme (value <= 16, meaning <= 64 chars)."""
    return hd.sr.CodedConcept(value[:16], SCHEME, meaning[:64])


def probability_concept(i: int, name: str) -> hd.sr.CodedConcept:
    return private(f"PROB-{i}", f"Probability of {name}")


def class_concept(i: int, name: str) -> hd.sr.CodedConcept:
    return private(f"CLASS-{i}", name)


def region_concept(label: int, name: str) -> hd.sr.CodedConcept:
    return private(f"LABEL-{label}", name)


def algorithm_identification(model: ResultModel) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=[f"{k}={v}" for k, v in model.parameters.items()],
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )


def device_uid(model: ResultModel) -> str:
    """A UID fixed by the weights: the same model is the same device in every SR."""
    return generate_uid(prefix=None, entropy_srcs=["scandx-device", model.weights_sha256])


def observation_context(model: ResultModel) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(model),
        name=model.name,
        manufacturer_name=MANUFACTURER,
        model_name=f"{model.name} {model.version}",
        serial_number=model.weights_sha256,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _measurement(name: hd.sr.CodedConcept, value: float, unit: hd.sr.CodedConcept) -> Any:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit)


def classification_group(
    row: dict[str, Any], model: ResultModel, source: Dataset
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One measurement group on the classified image (``row``: the Predictor's output)."""
    measurements = [
        _measurement(probability_concept(i, c), row[f"prob_{c}"], RATIO)
        for i, c in enumerate(model.classes)
    ]
    if model.task == "binary":
        measurements.append(_measurement(THRESHOLD, row["threshold"], RATIO))
    if row.get("uncertainty") is not None:
        measurements.append(_measurement(SPREAD, row["uncertainty"], RATIO))
    if row.get("ood_score") is not None:
        measurements.append(_measurement(OOD_SCORE, row["ood_score"], NO_UNITS))
    index = {c: i for i, c in enumerate(model.classes)}
    if model.task == "multilabel":
        chosen = [c for c in str(row.get("predicted", "")).split(";") if c]
        evaluations = [
            hd.sr.QualitativeEvaluation(
                class_concept(index[c], c), codes.SCT.Yes if c in chosen else codes.SCT.No
            )
            for c in model.classes
        ]
    else:
        label = str(row["predicted"])
        evaluations = [
            hd.sr.QualitativeEvaluation(codes.DCM.Finding, class_concept(index[label], label))
        ]
    if row.get("ood_flag") is not None:
        flag = codes.SCT.Yes if row["ood_flag"] else codes.SCT.No
        evaluations.append(hd.sr.QualitativeEvaluation(OOD_FLAG, flag))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="classification"),
        algorithm_id=algorithm_identification(model),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def region_group(
    label: int,
    name: str,
    size: float,
    unit: str,
    model: ResultModel,
    seg: Dataset | None,
    segment_number: int | None,
    sources: list[Dataset],
) -> Any:
    """A region's volume (``unit`` ml) or area (mm2), on its SEG segment when it has one."""
    measure = (
        _measurement(codes.SCT.Volume, size, MILLILITRE)
        if unit == "ml"
        else _measurement(codes.SCT.Area, size, SQUARE_MM)
    )
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name[:64]),
        "finding_type": region_concept(label, name),
        "algorithm_id": algorithm_identification(model),
        "measurements": [measure],
    }
    if seg is not None and segment_number is not None:
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=segment_reference(seg, segment_number, sources),
            **common,
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in sources],
        **common,
    )


def segment_reference(seg: Dataset, number: int, sources: list[Dataset]) -> hd.sr.ReferencedSegment:
    """The SEG's segment ``number`` (all its frames: a segment number and frame numbers
    may not be given together) and the source images its frames derive from.
    (highdicom's ``ReferencedSegment.from_segmentation`` fails on a one-segment SEG,
    whose segment identification sits in the shared functional groups.)"""
    shared = seg.SharedFunctionalGroupsSequence[0]
    uids = set()
    for group in seg.PerFrameFunctionalGroupsSequence:
        ident = group.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        if int(ident[0].ReferencedSegmentNumber) == number:
            for derivation in group.get("DerivationImageSequence", []):
                uids.update(str(s.ReferencedSOPInstanceUID) for s in derivation.SourceImageSequence)
    images = [s for s in sources if str(s.SOPInstanceUID) in uids] or sources
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation.from_source_image(s) for s in images],
    )


def report_content(
    groups: list[Any], model: ResultModel, text: ReportText
) -> hd.sr.MeasurementReport:
    """TID 1500 with the groups, and the report text as the Qualitative Evaluations."""
    report = hd.sr.MeasurementReport(
        observation_context=observation_context(model),
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    names = {
        "Findings": codes.DCM.Finding,
        "Impression": codes.DCM.Impression,
        "What the model cannot see": NOT_SEEN,
        "Limitations": LIMITATIONS,
    }
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=names[heading],
                value=body,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
            for heading, body in text.sections()
        ]
    )
    report[0].ContentSequence.append(container)
    return report


def structured_report(
    content: hd.sr.MeasurementReport, evidence: list[Dataset], title: str
) -> hd.sr.Comprehensive3DSR:
    """The SR document in a new series of the source study (patient and study copied by
    highdicom from the first evidence dataset)."""
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=title[:64],
    )
    declare_private_scheme(sr)
    return sr


def declare_private_scheme(ds: Dataset) -> None:
    """Coding Scheme Identification Sequence entry for ``99SCANDX``."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "scandx result concepts"
    item.CodingSchemeResponsibleOrganization = "scandx project"
    ds.CodingSchemeIdentificationSequence = [item]

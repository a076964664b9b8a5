"""DICOM studies -> series -> an image or a volume, and a selector of series for a model.

``group_studies(paths)`` groups headers by study, series and time point;
``load_series(series)`` builds a Volume (modality units, RAS affine, slice UIDs) or
refuses with one line; ``load_selector(path)`` / ``select(study, selector)`` choose the
series a model applies to.
"""

from scandx.data.series.grouping import group_studies
from scandx.data.series.loading import load_series
from scandx.data.series.model import Instance, Series, Study, Volume
from scandx.data.series.selector import Selector, load_selector, parse_selector, select

__all__ = [
    "Instance",
    "Selector",
    "Series",
    "Study",
    "Volume",
    "group_studies",
    "load_selector",
    "load_series",
    "parse_selector",
    "select",
]

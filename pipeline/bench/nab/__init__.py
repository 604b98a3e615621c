"""`quietpager bench nab`: the Numenta Anomaly Benchmark through the product's own detectors.

Each NAB file is one series. It is streamed point by point through a fresh detector from
`detectors/` (the classes the detect stage uses), each point scored before it is learned, and
the anomaly scores are scored with NAB's rules (`score`) for NAB's three cost profiles.

NAB series say nothing about which golden signal they are (CPU, traffic, temperature, ad
prices...), and their labelled anomalies go both ways (drops and surges), so NAB is scored
with the `generic` signal, which alarms in both directions.

The modules, one job each:

- `corpus`: the data files, their labelled windows and halves, and the cost profiles.
- `streams`: the detectors the bench runs, by name, as score streams.
- `run`: runs over the files, and their NAB-format result files (written and read back).
- `score`: NAB's scoring rules (windows, probation, sigmoid credit, threshold sweep); pure.
- `published`: the per-file scores NAB publishes for its detectors.
- `report`: a run's or a published detector's scores per column and profile.
- `breakdown`: missed windows, and which part of a likelihood model raised detections.
- `resample`: paired resampling of the files.
- `tables`: what is printed.
- `command`: `run_nab`, the command from end to end.
"""

from pipeline.bench.nab.breakdown import (
    MissedWindow,
    PartCounts,
    count_parts,
    count_parts_by_specification,
    missed_windows,
)
from pipeline.bench.nab.command import run_nab
from pipeline.bench.nab.corpus import NabFile, load_corpus, split_half
from pipeline.bench.nab.report import (
    COLUMN_HELP,
    SHIPPED_THRESHOLD,
    NabReport,
    ProfileScore,
    PublishedReport,
    published_report,
    score_run,
)
from pipeline.bench.nab.resample import Resampled, resample
from pipeline.bench.nab.run import DetectorRun, read_results, run_detector, write_results
from pipeline.bench.nab.streams import DETECTORS, RiverBaseline, StageStream, StreamDetector
from pipeline.bench.nab.tables import (
    PROFILE_HEADINGS,
    REFERENCE_SCORES,
    print_file_differences,
    print_losses,
    print_report,
    print_resampled,
)

__all__ = [
    "COLUMN_HELP",
    "DETECTORS",
    "PROFILE_HEADINGS",
    "REFERENCE_SCORES",
    "SHIPPED_THRESHOLD",
    "DetectorRun",
    "MissedWindow",
    "NabFile",
    "NabReport",
    "PartCounts",
    "ProfileScore",
    "PublishedReport",
    "Resampled",
    "RiverBaseline",
    "StageStream",
    "StreamDetector",
    "count_parts",
    "count_parts_by_specification",
    "load_corpus",
    "missed_windows",
    "print_file_differences",
    "print_losses",
    "print_report",
    "print_resampled",
    "published_report",
    "read_results",
    "resample",
    "run_detector",
    "run_nab",
    "score_run",
    "split_half",
    "write_results",
]

"""Training the gate, calibrating it, and distilling the LLM's logged answers back into it.

* :mod:`.train` -- ``train-gate``: fine-tune a HF backbone, or fit a head on embeddings.
* :mod:`.loop` -- the one training loop (AdamW, warm-up, clipping, Accelerate) that
  ``train-gate`` fine-tuning and 2CD distillation both run.
* :mod:`.targets` -- what δ should achieve (:class:`Budget`, :class:`PrecisionFloor`,
  :class:`MaxAccuracy`), values that round-trip through the policy file as JSON.
* :mod:`.metrics`, :mod:`.thresholds`, :mod:`.calibration` -- NLL/ECE and the temperature,
  the coverage table and δ, and :func:`calibrate` that builds the policy.
* :mod:`.llm_accuracy` -- the LLM's accuracy on a dev sample, through the engine.
* :mod:`.distill` and its parts (``distill_config``, ``distill_data``, ``distill_train``,
  ``distill_report``, ``models``) -- offline 2-Stage Confidence Distillation.
"""

from __future__ import annotations

from .distillation.distill import Distiller
from .distillation.distill_config import DistillConfig
from .distillation.distill_data import LoggedInput, SelectionCounts, StageData, StoreCounts
from .distillation.distill_head import distill_gate
from .distillation.distill_report import DISTILL_REPORT_FILE, DistillReport, SliceFigures
from .distillation.distill_train import StageLoss
from .fitting.loop import OptimConfig, PhaseLoss, TrainingLoop
from .fitting.metrics import (
    class_recall,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    wilson_interval,
)
from .fitting.train import TRAIN_REPORT_FILE, TrainConfig, TrainReport, accuracy, train_gate
from .guarantees.calibration import (
    MIN_CALIBRATION_ROWS,
    RECOMMENDED_CALIBRATION_ROWS,
    CalibrationReport,
    LogitsGate,
    calibrate,
    check_calibration_rows,
)
from .guarantees.certify import Certified, Guarantee, certify_threshold
from .guarantees.conformal import ConformalSets, conformal_set, fit_conformal
from .guarantees.llm_accuracy import LLMMeasurement, measure_llm, measure_llm_sample
from .guarantees.targets import (
    Budget,
    MaxAccuracy,
    PrecisionFloor,
    Target,
    describe_target,
    parse_target,
    target_from_json,
    target_from_policy,
)
from .guarantees.thresholds import CoverageRow, choose_threshold, coverage_table, format_table

__all__ = [
    "DISTILL_REPORT_FILE",
    "MIN_CALIBRATION_ROWS",
    "RECOMMENDED_CALIBRATION_ROWS",
    "TRAIN_REPORT_FILE",
    "Budget",
    "CalibrationReport",
    "Certified",
    "ConformalSets",
    "CoverageRow",
    "DistillConfig",
    "DistillReport",
    "Guarantee",
    "Distiller",
    "LLMMeasurement",
    "LoggedInput",
    "LogitsGate",
    "MaxAccuracy",
    "OptimConfig",
    "PhaseLoss",
    "PrecisionFloor",
    "SelectionCounts",
    "SliceFigures",
    "StageData",
    "StageLoss",
    "StoreCounts",
    "Target",
    "TrainConfig",
    "TrainReport",
    "TrainingLoop",
    "accuracy",
    "calibrate",
    "certify_threshold",
    "check_calibration_rows",
    "choose_threshold",
    "class_recall",
    "conformal_set",
    "coverage_table",
    "describe_target",
    "distill_gate",
    "expected_calibration_error",
    "fit_conformal",
    "fit_temperature",
    "format_table",
    "measure_llm",
    "measure_llm_sample",
    "negative_log_likelihood",
    "parse_target",
    "target_from_json",
    "target_from_policy",
    "train_gate",
    "wilson_interval",
]

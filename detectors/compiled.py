"""The likelihood detector's per-point path, compiled: one series' whole state in one flat
array of floats, stepped by one Numba function.

`LikelihoodDetector` (with its parts in `detectors.likelihood`, `detectors.views` and
`detectors.scoring`) is the model's specification: small readable classes, each with its
own tests. `CompiledLikelihood` runs the same arithmetic, in the same order, over a
`float64` array per series; tests hold its scores and `continues` flags to the reference
point for point, across parameters. Why: in Python each point of each series walks a dozen
objects and costs 8 µs or more on its own and about 16 µs among thousands of series in the
worker; compiled, a point costs about a microsecond, mostly the call itself, and a series'
state is one contiguous block of 474 floats (3.7 KB).

Each part of the specification describes its parameters and its state (`parameter_fields()`,
`state_fields()`, see `detectors.layout`); the parameter vector, the state array and the
kernel's offsets into both are laid out from those descriptions when this module is imported.

The kernel is compiled on first use (a few seconds) and cached next to this module, so later
processes load it. Why one module of about 1,000 lines: Numba compiles the offsets into the
kernel as this module's globals, and keys its cache on this file.

>>> import random
>>> rng = random.Random(7)
>>> fast, reference = CompiledLikelihood(), LikelihoodDetector()
>>> same = True
>>> for step in range(600):
...     value = rng.gauss(100.0, 5.0) if step != 500 else 180.0
...     same = same and fast.step(value, step * 300.0) == reference.step(value, step * 300.0)
>>> same, fast.n_seen
(True, 600)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

from detectors.golden import DIRECTION_CODES, Direction, signal_direction
from detectors.layout import Described, Field, Layout, lay_out
from detectors.likelihood import TAME_SPREADS, LikelihoodDetector, Parts
from detectors.scoring import AnomalyLikelihood, t_confidence
from detectors.views import ABSURD_SPREADS, Gate, SeasonalLikelihood

__all__ = ["CompiledLikelihood", "compiled_layout", "detector_for_signal", "warm_up"]

# --- the layout, generated from the parts' descriptions (`detectors.layout`) ---
# The state array: the slots every series keeps whatever its settings leave out, then a block
# per likelihood (its slots, then its ring) and per seasonal view. The parameter vector: each
# part's `parameter_fields()` (an optional part's behind a `present` flag), where the blocks of
# one series' state start, and the state's size. The offsets below are module constants, so
# Numba compiles them into the kernel; they are computed here from a default model, whose
# parts are all present. Numba's cache is keyed on this file alone: after changing a part's
# fields elsewhere, delete the cached kernel (`__pycache__/compiled.*.nb*`).
_DEFAULT = LikelihoodDetector().parts()


def _group(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _absent(fields: Sequence[Field]) -> tuple[Field, ...]:
    """A left-out part's parameters: there, so that every block keeps its place, but zero."""
    return tuple(Field(field.name, 0.0, field.size) for field in fields)


def _optional(part: Described | None, default: Described | None) -> tuple[Field, ...]:
    """`present` (1 or 0), then the part's parameters (the default part's names, zero, if
    it is left out)."""
    if part is None:
        return (Field("present", 0.0), *_absent(_given(default).parameter_fields()))
    return (Field("present", 1.0), *part.parameter_fields())


_Part = TypeVar("_Part")


def _given(part: _Part | None, default: _Part | None = None) -> _Part:
    """`part`, or where its settings leave it out, the default model's (all are there)."""
    found = part if part is not None else default
    if found is None:
        raise AssertionError("the default model lacks a part")
    return found


def _fixed_state(parts: Parts) -> list[tuple[str, Sequence[Field]]]:
    """The slots every series keeps, a left-out part's as its default's (never read)."""
    return [
        ("golden", parts.golden.state_fields()),
        ("range", _given(parts.breach, _DEFAULT.breach).state_fields()),
        ("refractory", parts.refractory.state_fields()),
        ("drift_gate", parts.drift_gate.state_fields()),
        ("persistence", _given(parts.persistence, _DEFAULT.persistence).state_fields()),
        ("quiet", parts.quiet.state_fields()),
        ("novelty", _given(parts.novelty, _DEFAULT.novelty).state_fields()),
        ("novelty_gate", parts.novelty_gate.state_fields()),
    ]


def _seasonal_state(
    prefix: str, view: SeasonalLikelihood, gate: Gate
) -> list[tuple[str, Sequence[Field]]]:
    """A seasonal view's state: its own slots and its gate's, its likelihood, its profile,
    then its bins' residual powers (where they have always been, so records keep their shape)."""
    own = view.state_fields()
    return [
        (prefix, tuple(field for field in own if field.name != "bin_power")),
        (_group(prefix, "gate"), gate.state_fields()),
        (_group(prefix, "likelihood"), view.likelihood.state_fields()),
        (_group(prefix, "profile"), view.profile.state_fields()),
        (_group(prefix, "bin_spreads"), tuple(field for field in own if field.name == "bin_power")),
    ]


def _state_layout(parts: Parts) -> Layout:
    """One series' state array: fixed slots, then the blocks of the parts that are there."""
    groups = _fixed_state(parts)
    groups.append(("likelihood", parts.likelihood.state_fields()))
    if parts.drift is not None:
        groups.append(("drift.likelihood", parts.drift.likelihood.state_fields()))
    for name, view, gate in (
        ("daily", parts.daily, parts.daily_gate),
        ("weekly", parts.weekly, parts.weekly_gate),
    ):
        if view is not None:
            groups.extend(_seasonal_state(name, view, gate))
    return lay_out(groups)


def _likelihood_parameters(
    prefix: str, likelihood: AnomalyLikelihood, state: Layout
) -> tuple[str, tuple[Field, ...]]:
    """A likelihood's parameter block: where its state starts (0 if not there), its fields."""
    start = state.offsets.get(prefix, 0)
    return prefix, (Field("state", start), *likelihood.parameter_fields())


def _seasonal_parameters(
    prefix: str, view: SeasonalLikelihood | None, gate: Gate, state: Layout
) -> list[tuple[str, Sequence[Field]]]:
    """A seasonal view's parameter block: present, where its state's parts start, its
    profile's, its own and its gate's parameters, its likelihood's block last."""
    part = _given(view, _DEFAULT.daily)
    present = view is not None

    def where(name: str, group: str) -> Field:
        return Field(name, state.offset(group) if present else 0.0)

    def given(fields: tuple[Field, ...]) -> tuple[Field, ...]:
        return fields if present else _absent(fields)

    likelihood = _likelihood_parameters(_group(prefix, "likelihood"), part.likelihood, state)
    return [
        (prefix, (Field("present", 1.0 if present else 0.0), *given(part.parameter_fields()))),
        (
            _group(prefix, "at"),
            (
                where("state", prefix),
                where("means", _group(prefix, "profile.means")),
                where("counts", _group(prefix, "profile.counts")),
                where("bin_power", _group(prefix, "bin_spreads.bin_power")),
            ),
        ),
        (_group(prefix, "profile"), given(part.profile.parameter_fields())),
        (_group(prefix, "gate"), given(gate.parameter_fields())),
        (likelihood[0], given(likelihood[1])),
    ]


def _parameter_layout(model: LikelihoodDetector, state: Layout) -> Layout:
    """The parameter vector of a (fresh) model whose state is laid out as `state`."""
    parts = model.parts()
    drift = _given(parts.drift, _DEFAULT.drift)
    return lay_out(
        [
            ("model", model.parameter_fields()),
            ("golden", parts.golden.parameter_fields()),
            ("range", _optional(parts.breach, _DEFAULT.breach)),
            ("refractory", parts.refractory.parameter_fields()),
            ("quiet", parts.quiet.parameter_fields()),
            ("persistence", _optional(parts.persistence, _DEFAULT.persistence)),
            ("novelty", _optional(parts.novelty, _DEFAULT.novelty)),
            ("novelty_gate", parts.novelty_gate.parameter_fields()),
            ("drift", _optional(parts.drift, _DEFAULT.drift)),
            ("drift_gate", parts.drift_gate.parameter_fields()),
            _likelihood_parameters("likelihood", parts.likelihood, state),
            _likelihood_parameters("drift.likelihood", drift.likelihood, state),
            *_seasonal_parameters("daily", parts.daily, parts.daily_gate, state),
            *_seasonal_parameters("weekly", parts.weekly, parts.weekly_gate, state),
            ("state", (Field("size", state.size),)),
        ]
    )


_STATE = _state_layout(_DEFAULT)
_PARAMETERS = _parameter_layout(LikelihoodDetector(), _STATE)
_state, _param = _STATE.offset, _PARAMETERS.offset

_G_N, _G_EXP = _state("golden.n_seen"), _state("golden.expected")  # golden model
_G_ABOVE, _G_BELOW = _state("golden.spread_above"), _state("golden.spread_below")
_G_PA, _G_PB = _state("golden.power_above"), _state("golden.power_below")
_WL_N, _WL_M = _state("golden.warm_level_n"), _state("golden.warm_level")  # its warm-up means
_WA_N, _WA_M = _state("golden.warm_above_n"), _state("golden.warm_above")
_WB_N, _WB_M = _state("golden.warm_below_n"), _state("golden.warm_below")
_R_LOW, _R_HIGH, _R_N = _state("range.low"), _state("range.high"), _state("range.n_seen")
_REF_QUIET, _DG_LEFT = _state("refractory.quiet"), _state("drift_gate.left")
_AR_PREV, _AR_N = _state("persistence.previous"), _state("persistence.n_seen")
_AR_SXY, _AR_SXX = _state("persistence.sxy"), _state("persistence.sxx")
_AR_BASE, _AR_POWER = _state("persistence.base_power"), _state("persistence.power")
_AR_ABOVE, _AR_BELOW = _state("persistence.above"), _state("persistence.below")
_QUIET = _state("quiet.quiet")  # the whole model's quiet period after an alarm
_NV_ORIGIN, _NV_WIDTH = _state("novelty.origin"), _state("novelty.width")
_NV_LOW, _NV_HIGH = _state("novelty.visited_low"), _state("novelty.visited_high")
_NV_N, _NV_LEFT = _state("novelty.n_seen"), _state("novelty_gate.left")
# Offsets inside a likelihood's state block, and inside a seasonal view's own slots.
_LIKELIHOOD = lay_out([("", _DEFAULT.likelihood.state_fields())])
_L_LEN, _L_NEXT, _L_SUM = (_LIKELIHOOD.offset(n) for n in ("length", "next", "sum"))
_L_N, _L_MEAN, _L_POWER = (_LIKELIHOOD.offset(n) for n in ("n_seen", "mean", "power"))
_L_SPREAD, _L_RING = _LIKELIHOOD.offset("spread"), _LIKELIHOOD.offset("recent")
_SEASONAL = lay_out(_seasonal_state("", _given(_DEFAULT.daily), _DEFAULT.daily_gate))
_SS_POWER, _SS_RESID = _SEASONAL.offset("power"), _SEASONAL.offset("residuals")
_SS_LEFT = _SEASONAL.offset("gate.left")

_P_CAP, _P_HOLD = _param("model.surprise_cap"), _param("model.hold_sigmas")
_P_EARLY, _P_POWER = _param("model.early_scores"), _param("model.power")
_P_DIR, _P_HAS_CEIL = _param("golden.direction"), _param("golden.has_ceiling")
_P_CEIL, _P_WARMUP = _param("golden.ceiling"), _param("golden.warmup")
_P_ALPHA, _P_SPREAD_ALPHA = _param("golden.alpha"), _param("golden.spread_alpha")
_P_CLIP, _P_G_DF = _param("golden.clip_sigmas"), _param("golden.tail_df")
_P_MIN_REL, _P_MIN_SPREAD = _param("golden.min_relative_spread"), _param("golden.min_spread")
_P_CEIL_START = _param("golden.ceiling_start")
_P_HAS_RANGE, _P_RANGE_TOL = _param("range.present"), _param("range.tolerance")
_P_RANGE_YOUNG = _param("range.young")
_P_REF_PERIOD, _P_REF_LEVEL = _param("refractory.period"), _param("refractory.level")
_P_QUIET, _P_QUIET_LEVEL = _param("quiet.period"), _param("quiet.level")
_P_HAS_AR, _P_AR_RATIO = _param("persistence.present"), _param("persistence.ratio")
_P_AR_ALPHA = _param("persistence.alpha")
_P_HAS_NV, _P_NV_BINS, _P_NV_AFTER = (_param(f"novelty.{n}") for n in ("present", "bins", "after"))
_P_NV_LEVEL, _P_NV_QUIET = _param("novelty_gate.level"), _param("novelty_gate.quiet")
_P_HAS_DRIFT, _P_DRIFT_CAP = _param("drift.present"), _param("drift.cap")
_P_DRIFT_SIGN = _param("drift.sign")
_P_DG_LEVEL, _P_DG_QUIET = _param("drift_gate.level"), _param("drift_gate.quiet")
_P_LIK, _P_DRIFT_LIK = _param("likelihood"), _param("drift.likelihood")
_P_DAILY, _P_WEEKLY = _param("daily"), _param("weekly")
_P_SIZE = _param("state.size")  # the state's length
_P_LEN = _PARAMETERS.size


def _within(block: str, name: str) -> int:
    """Where a parameter of the block starting at `_param(block)` lies in that block."""
    return _param(f"{block}.{name}") - _param(block)


# Offsets inside a likelihood's parameter block, and inside a seasonal view's.
_LP_OFF, _LP_RING = _within("likelihood", "state"), _within("likelihood", "capacity")
_LP_WARMUP, _LP_ALPHA = _within("likelihood", "warmup"), _within("likelihood", "alpha")
_LP_MIN_SPREAD = _within("likelihood", "min_spread")
_LP_TWO, _LP_DF = _within("likelihood", "two_sided"), _within("likelihood", "tail_df")
_SP_HAS, _SP_PERIOD = _within("daily", "present"), _within("daily", "profile.period")
_SP_BINS, _SP_ALPHA = _within("daily", "profile.bins"), _within("daily", "profile.alpha")
_SP_SPREAD_ALPHA, _SP_CAP = _within("daily", "spread_alpha"), _within("daily", "cap")
_SP_MIN_RESID = _within("daily", "min_residuals")
_SP_GATE_LEVEL, _SP_GATE_QUIET = _within("daily", "gate.level"), _within("daily", "gate.quiet")
_SP_HAS_BIN, _SP_BIN_PRIOR = _within("daily", "has_bin_prior"), _within("daily", "bin_prior")
_SP_BIN_ALPHA, _SP_STATE = _within("daily", "bin_alpha"), _within("daily", "at.state")
_SP_MEANS, _SP_COUNTS = _within("daily", "at.means"), _within("daily", "at.counts")
_SP_BIN_POWER, _SP_LIK = _within("daily", "at.bin_power"), _within("daily", "likelihood")


def _block_names(block: str) -> list[str]:
    """The names laid out in a block, relative to it."""
    return [name[len(block) + 1 :] for name in _PARAMETERS.offsets if name.startswith(block + ".")]


def _check_blocks() -> None:
    """The kernel reads both views, and every likelihood, through one set of relative
    offsets (those of the daily view and of the point likelihood): they must all agree."""
    for family, blocks in (
        ("daily", ("weekly",)),
        ("likelihood", ("drift.likelihood", "daily.likelihood", "weekly.likelihood")),
    ):
        for block in blocks:
            for name in _block_names(family) + _block_names(block):
                if _within(block, name) != _within(family, name):
                    raise AssertionError(f"{block} and {family} lay out {name} apart")


_check_blocks()
_BOTH, _UP, _DOWN = (DIRECTION_CODES[d] for d in ("both", "up", "down"))


_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(function: _F) -> _F:
    """`numba.njit`, cached on disk where a cache can be written (beside this module, in
    `NUMBA_CACHE_DIR` or the user's cache); where none can (a read-only install run by a user
    without a home), compiled afresh in each process rather than failing the import."""
    try:
        compiled = njit(cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        compiled = njit(function)
    return cast(_F, compiled)


_SIGMAS_AT_CEILING = 6.0  # as in detectors.golden


_two_sided = _jit(t_confidence)  # scoring.t_confidence, compiled


@_jit
def _one_sided(t: float, df: int) -> float:  # scoring.one_sided_confidence
    if df == 2 and math.isfinite(t):
        return 0.5 + 0.5 * t / math.sqrt(t * t + 2.0)
    half = 0.5 * _two_sided(t, df)
    return 0.5 + half if t >= 0 else 0.5 - half


@_jit
def _likelihood_step(p: Any, s: Any, block: int, surprise: float) -> float:
    """AnomalyLikelihood.step on the block whose parameters start at p[block]."""
    if not math.isfinite(surprise):
        return 0.0
    off = int(p[block + _LP_OFF])
    capacity = int(p[block + _LP_RING])
    filled = int(s[off + _L_LEN])
    mean = (s[off + _L_SUM] + surprise) / (filled + 1)
    score = 0.0
    if s[off + _L_N] >= p[block + _LP_WARMUP]:
        z = (mean - s[off + _L_MEAN]) / s[off + _L_SPREAD]
        if p[block + _LP_TWO] != 0.0 and z < 0:
            z = -z
        score = _one_sided(z, int(p[block + _LP_DF]))
    ring = off + _L_RING
    if filled < capacity:
        s[ring + filled] = surprise
        s[off + _L_LEN] = filled + 1
        s[off + _L_SUM] += surprise
    elif filled > 0:
        at = int(s[off + _L_NEXT])
        s[off + _L_SUM] += surprise - s[ring + at]
        s[ring + at] = surprise
        at += 1
        if at == filled:
            at = 0
            total = 0.0
            for i in range(filled):
                total += s[ring + i]
            s[off + _L_SUM] = total
        s[off + _L_NEXT] = at
    n = s[off + _L_N] + 1.0
    alpha = p[block + _LP_ALPHA]
    weight = 1.0 / n if n * alpha < 1.0 else alpha
    deviation = mean - s[off + _L_MEAN]
    increment = weight * deviation
    s[off + _L_MEAN] += increment
    power = (1.0 - weight) * (s[off + _L_POWER] + deviation * increment)
    s[off + _L_POWER] = power
    spread = math.sqrt(power) if power > 0.0 else 0.0
    min_spread = p[block + _LP_MIN_SPREAD]
    s[off + _L_SPREAD] = spread if spread > min_spread else min_spread
    s[off + _L_N] = n
    return score


@_jit
def _ceiling_pressure(p: Any, s: Any, x: float) -> float:  # golden.ceiling_pressure
    if p[_P_HAS_CEIL] == 0.0 or s[_G_N] < p[_P_WARMUP]:
        return 0.0
    start = p[_P_CEIL_START]
    fill = (x / p[_P_CEIL] - start) / (1.0 - start)
    if fill <= 0:
        return 0.0
    return _two_sided(_SIGMAS_AT_CEILING * fill, int(p[_P_G_DF]))


@_jit
def _golden_score(p: Any, s: Any, x: float) -> float:  # golden.score_one
    if s[_G_N] < p[_P_WARMUP]:
        return 0.0
    residual = x - s[_G_EXP]
    direction = p[_P_DIR]
    score = 0.0
    if residual > 0 and direction != _DOWN:
        score = _two_sided(residual / s[_G_ABOVE], int(p[_P_G_DF]))
    elif residual < 0 and direction != _UP:
        score = _two_sided(residual / s[_G_BELOW], int(p[_P_G_DF]))
    if p[_P_HAS_CEIL] != 0.0:
        score = max(score, _ceiling_pressure(p, s, x))
    return score


@_jit
def _refresh(p: Any, s: Any, expected: float, above: float, below: float) -> None:
    floor = max(p[_P_MIN_SPREAD], p[_P_MIN_REL] * abs(expected))
    s[_G_EXP] = expected
    s[_G_ABOVE] = max(math.sqrt(above), floor)
    s[_G_BELOW] = max(math.sqrt(below), floor)


@_jit
def _golden_learn(p: Any, s: Any, x: float) -> None:  # golden.learn_one (x is finite)
    if s[_G_N] < p[_P_WARMUP]:  # the warm-up: River's `stats.Mean` recurrence, three times
        residual = x - s[_WL_M]
        if not math.isfinite(residual):
            return
        if s[_G_N] > 0:
            power = residual * residual
            if math.isfinite(power):
                if residual >= 0:
                    s[_WA_N] += 1.0
                    s[_WA_M] += (1.0 / s[_WA_N]) * (power - s[_WA_M])
                if residual <= 0:
                    s[_WB_N] += 1.0
                    s[_WB_M] += (1.0 / s[_WB_N]) * (power - s[_WB_M])
        s[_WL_N] += 1.0
        s[_WL_M] += (1.0 / s[_WL_N]) * (x - s[_WL_M])
        s[_G_N] += 1.0
        if s[_G_N] >= p[_P_WARMUP]:
            s[_G_PA] = s[_WA_M]
            s[_G_PB] = s[_WB_M]
        _refresh(p, s, s[_WL_M], s[_WA_M], s[_WB_M])
        return
    expected = s[_G_EXP]
    residual = x - expected
    clip = p[_P_CLIP]
    if residual >= 0:
        limit = clip * s[_G_ABOVE]
        clipped = residual if residual < limit else limit
    else:
        limit = -clip * s[_G_BELOW]
        clipped = residual if residual > limit else limit
    power = clipped * clipped
    above = s[_G_PA]
    below = s[_G_PB]
    if math.isfinite(power):
        weight = p[_P_SPREAD_ALPHA]
        if residual >= 0:
            above = weight * power + (1.0 - weight) * above
            s[_G_PA] = above
        if residual <= 0:
            below = weight * power + (1.0 - weight) * below
            s[_G_PB] = below
    level = expected
    if math.isfinite(expected + clipped):
        alpha = p[_P_ALPHA]
        level = alpha * (expected + clipped) + (1.0 - alpha) * expected
    s[_G_N] += 1.0
    floor = p[_P_MIN_REL] * abs(level)
    if floor < p[_P_MIN_SPREAD]:
        floor = p[_P_MIN_SPREAD]
    s[_G_EXP] = level
    spread = math.sqrt(above)
    s[_G_ABOVE] = spread if spread > floor else floor
    spread = math.sqrt(below)
    s[_G_BELOW] = spread if spread > floor else floor


@_jit
def _range_step(p: Any, s: Any, x: float) -> float:  # likelihood.RangeBreach.step
    low = s[_R_LOW]
    high = s[_R_HIGH]
    n = s[_R_N]
    s[_R_N] = n + 1.0
    if not low <= x <= high:  # RangeBreach._widen: an absurd value widens it by a little
        span = high - low
        absurd = ABSURD_SPREADS * span
        if x > high:
            s[_R_HIGH] = high + TAME_SPREADS * span if x - high > absurd and absurd > 0.0 else x
        if x < low:
            s[_R_LOW] = low - TAME_SPREADS * span if low - x > absurd and absurd > 0.0 else x
    if n == 0:
        return 0.0
    margin = max(p[_P_RANGE_TOL], p[_P_RANGE_YOUNG] / n) * (high - low)
    direction = p[_P_DIR]
    if (x > high + margin and direction != _DOWN) or (x < low - margin and direction != _UP):
        return 1.0
    return 0.0


@_jit
def _persistence_phi(s: Any) -> float:  # likelihood.Persistence.phi
    sxx = s[_AR_SXX]
    if not sxx > 0:
        return 0.0
    phi = s[_AR_SXY] / sxx
    return 0.0 if phi < 0 else 1.0 if phi > 1 else phi


@_jit
def _persistence_step(p: Any, s: Any, x: float, expected: float, surprise: float) -> float:
    """likelihood.Persistence.surprise, then its learn_one (x is finite): one residual for both."""
    previous = s[_AR_PREV]
    if math.isnan(previous):
        s[_AR_PREV] = x
        return surprise
    before = previous - expected
    deviation = x - expected
    phi = _persistence_phi(s)
    residual = deviation - phi * before
    learned = s[_AR_N] > 0
    out = surprise
    if learned and s[_AR_POWER] < p[_P_AR_RATIO] * s[_AR_BASE]:  # smooth: it stands in
        power = s[_AR_ABOVE] if residual > 0 else s[_AR_BELOW]
        if power > 0:
            direction = p[_P_DIR]
            z = 0.0
            if residual > 0 and direction != _DOWN:
                z = residual / math.sqrt(power)
            elif residual < 0 and direction != _UP:
                z = -residual / math.sqrt(power)
            cap: float = p[_P_CAP]
            z = z if z < cap else cap
            out = z * z
    tamed = False
    if learned and s[_AR_POWER] > 0:
        spread = math.sqrt(s[_AR_POWER])
        if abs(residual) > ABSURD_SPREADS * spread:
            residual = math.copysign(TAME_SPREADS * spread, residual)
            deviation = phi * before + residual
            tamed = True
    square = residual * residual
    cross = deviation * before
    overflows = deviation * deviation + before * before + abs(cross)
    if not (math.isfinite(square) and math.isfinite(overflows)):
        s[_AR_PREV] = expected + deviation if tamed else x
        return out
    alpha = p[_P_AR_ALPHA]
    keep = 1.0 - alpha
    if not learned:
        s[_AR_BASE] = deviation * deviation
        s[_AR_POWER] = square
    else:
        s[_AR_BASE] = keep * s[_AR_BASE] + alpha * deviation * deviation
        s[_AR_POWER] = keep * s[_AR_POWER] + alpha * square
    if residual > 0:
        above = s[_AR_ABOVE]
        s[_AR_ABOVE] = square if above == 0.0 else keep * above + alpha * square
    elif residual < 0:
        below = s[_AR_BELOW]
        s[_AR_BELOW] = square if below == 0.0 else keep * below + alpha * square
    s[_AR_SXY] = keep * s[_AR_SXY] + alpha * cross
    s[_AR_SXX] = keep * s[_AR_SXX] + alpha * before * before
    s[_AR_N] += 1.0
    s[_AR_PREV] = expected + deviation if tamed else x
    return out


@_jit
def _gate(p: Any, s: Any, slot: int, level: int, quiet: int, score: float) -> float:
    if s[slot] > 0:  # views.Gate.step
        s[slot] -= 1.0
        return 0.0
    if score < p[level]:
        return 0.0
    s[slot] = p[quiet]
    return score


@_jit
def _seasonal_step(p: Any, s: Any, v: int, t: float, x: float) -> float:
    """views.SeasonalLikelihood.step for the view whose parameters start at p[v]."""
    if not (math.isfinite(t) and math.isfinite(x)):
        return 0.0
    out = 0.0
    own = int(p[v + _SP_STATE])
    power = s[own + _SS_POWER]
    spread = math.sqrt(power)
    known = s[own + _SS_RESID] > p[v + _SP_MIN_RESID]
    limit = ABSURD_SPREADS * spread if known and spread > 0.0 else math.inf
    cap = p[v + _SP_CAP]
    clip = cap * spread
    # views.SeasonalProfile._place
    bins = int(p[v + _SP_BINS])
    period = p[v + _SP_PERIOD]
    position = (t % period) / period * bins - 0.5
    low = math.floor(position)
    weight = position - low
    if low < 0:
        low += bins
    high = low + 1
    if high >= bins:
        high = 0
    means = int(p[v + _SP_MEANS])
    counts = int(p[v + _SP_COUNTS])
    seen_low = s[counts + low]
    seen_high = s[counts + high]
    # views.SeasonalLikelihood._scale
    scale = power
    has_bins = p[v + _SP_HAS_BIN] != 0.0
    bin_power = int(p[v + _SP_BIN_POWER])
    if has_bins:
        prior = p[v + _SP_BIN_PRIOR]
        given = seen_low * (1.0 - weight) + seen_high * weight
        mine = s[bin_power + low] * (1.0 - weight) + s[bin_power + high] * weight
        scale = (given * mine + prior * power) / (given + prior)
    # views.SeasonalProfile._step_at
    learn = x
    predicted = 0.0
    has_prediction = False
    if seen_low != 0.0 and (weight == 0.0 or seen_high != 0.0):
        predicted = s[means + low] * (1.0 - weight) + s[means + high] * weight
        has_prediction = True
        if learn > predicted + limit:
            learn = predicted + clip
        elif learn < predicted - limit:
            learn = predicted - clip
    alpha = p[v + _SP_ALPHA]
    share = 1.0 - weight
    if share > 0.0:
        total = seen_low + share
        s[counts + low] = total
        rate = share / total if total * alpha < 1.0 else alpha * share
        s[means + low] += rate * (learn - s[means + low])
    if weight > 0.0:
        total = seen_high + weight
        s[counts + high] = total
        rate = weight / total if total * alpha < 1.0 else alpha * weight
        s[means + high] += rate * (learn - s[means + high])
    if not has_prediction:
        return 0.0
    residual = x - predicted
    if known:
        direction = p[_P_DIR]
        surprise = 0.0
        harmless = (residual > 0 and direction == _DOWN) or (residual < 0 and direction == _UP)
        if not harmless and scale > 0.0:
            z = abs(residual) / math.sqrt(scale)
            z = z if z < cap else cap
            surprise = z * z
        out = _likelihood_step(p, s, v + _SP_LIK, surprise)
    s[own + _SS_RESID] += 1.0
    rate = 1.0 / s[own + _SS_RESID]
    spread_alpha = p[v + _SP_SPREAD_ALPHA]
    rate = rate if rate > spread_alpha else spread_alpha
    learned = residual if -limit <= residual <= limit else math.copysign(clip, residual)
    square = learned * learned
    if math.isfinite(square):
        s[own + _SS_POWER] = (1.0 - rate) * power + rate * square
        if has_bins:  # views.SeasonalLikelihood._learn_bins
            bin_alpha = p[v + _SP_BIN_ALPHA]
            if share > 0.0:
                total = s[counts + low]
                rate = share / total if total * bin_alpha < 1.0 else bin_alpha * share
                s[bin_power + low] += rate * (square - s[bin_power + low])
            if weight > 0.0:
                total = s[counts + high]
                rate = weight / total if total * bin_alpha < 1.0 else bin_alpha * weight
                s[bin_power + high] += rate * (square - s[bin_power + high])
    return out


_WORD = 0xFFFFFFFF  # the visited bits are kept in two 32-bit words


@_jit
def _novelty_step(p: Any, s: Any, x: float) -> float:
    """views.Novelty.step (x finite): score `x`, then learn it, the visited bits unpacked once."""
    bins = int(p[_P_NV_BINS])
    visited = int(s[_NV_LOW]) | (int(s[_NV_HIGH]) << 32)
    n = s[_NV_N]
    origin = s[_NV_ORIGIN]
    width = s[_NV_WIDTH]
    score = 0.0
    if n >= p[_P_NV_AFTER] and width != 0.0:  # Novelty.score_one
        position = (x - origin) / width
        if 0.0 <= position < bins:
            at = int(position)
            low = at - 1 if at > 0 else 0
            high = at + 1 if at + 1 < bins else at
            near = ((1 << (high - low + 1)) - 1) << low
            score = 0.0 if visited & near else 1.0
    # Novelty.learn_one
    if n == 0.0:
        s[_NV_ORIGIN] = x
        s[_NV_N] = 1.0
        return score
    if width == 0.0:
        first = origin
        span = abs(x - first)
        width = 2.0 * span / bins
        if not 0.0 < width < math.inf:
            s[_NV_N] = n + 1.0
            return score
        origin = min(first, x) - 0.5 * span
        visited = 1 << int((first - origin) / width)
    span = bins * width
    if not (x > origin + span + ABSURD_SPREADS * span or x < origin - ABSURD_SPREADS * span):
        position = (x - origin) / width
        while not 0.0 <= position < bins:
            half = bins // 2
            merged = 0
            for pair in range(half):
                if (visited >> (2 * pair)) & 3:
                    merged |= 1 << pair
            if position >= bins:
                visited = merged
            else:
                visited = merged << half
                origin -= bins * width
            width *= 2.0
            position = (x - origin) / width
        visited |= 1 << int(position)
        n += 1.0
    s[_NV_ORIGIN] = origin
    s[_NV_WIDTH] = width
    s[_NV_LOW] = float(visited & _WORD)
    s[_NV_HIGH] = float((visited >> 32) & _WORD)
    s[_NV_N] = n
    return score


@_jit
def _seasonal_opinion(p: Any, s: Any, v: int, t: float, x: float) -> float:
    """A seasonal view's score through its gate."""
    gate = int(p[v + _SP_STATE]) + _SS_LEFT
    return _gate(p, s, gate, v + _SP_GATE_LEVEL, v + _SP_GATE_QUIET, _seasonal_step(p, s, v, t, x))


@_jit
def _step(p: Any, s: Any, x: float, t: float, has_t: bool) -> tuple[float, bool]:
    """LikelihoodDetector.step, over the parameters `p` and one series' state `s`."""
    if not math.isfinite(x):
        return 0.0, False
    learned = s[_G_N] >= p[_P_WARMUP]
    direction = p[_P_DIR]
    surprise = 0.0
    signed = 0.0
    if learned:
        residual = x - s[_G_EXP]
        cap = p[_P_CAP]
        if residual > 0:
            signed = residual / s[_G_ABOVE]
            if direction != _DOWN:
                z = signed if signed < cap else cap
                surprise = z * z
        else:
            signed = residual / s[_G_BELOW]
            if residual < 0 and direction != _UP:
                z = -signed if -signed < cap else cap
                surprise = z * z
    held = surprise  # the baseline's: `continues` reads it
    if p[_P_HAS_AR] != 0.0:
        if learned:
            surprise = _persistence_step(p, s, x, s[_G_EXP], surprise)
        else:
            s[_AR_PREV] = x
    lik = int(p[_P_LIK + _LP_OFF])
    live = s[lik + _L_N] >= p[_P_LIK + _LP_WARMUP]
    score = _likelihood_step(p, s, _P_LIK, surprise) if learned else 0.0
    if not live:
        score = _golden_score(p, s, x) if p[_P_EARLY] != 0.0 else 0.0
    breach = False
    if p[_P_HAS_RANGE] != 0.0 and _range_step(p, s, x) >= 1.0 and live:
        score = 1.0
        breach = True
    muted = s[_REF_QUIET] > 0
    out = 0.0 if muted and not breach else score
    hold = p[_P_HOLD]
    going_on = muted and held >= hold * hold
    if live:
        if breach:
            s[_REF_QUIET] = 0.0
        if s[_REF_QUIET] > 0:
            s[_REF_QUIET] -= 1.0
        elif p[_P_REF_PERIOD] != 0.0 and score >= p[_P_REF_LEVEL]:
            s[_REF_QUIET] = p[_P_REF_PERIOD]
    if p[_P_HAS_DRIFT] != 0.0 and learned:
        drift_cap = p[_P_DRIFT_CAP]
        z = signed * p[_P_DRIFT_SIGN]
        z = drift_cap if z > drift_cap else -drift_cap if z < -drift_cap else z
        opinion = _gate(
            p, s, _DG_LEFT, _P_DG_LEVEL, _P_DG_QUIET, _likelihood_step(p, s, _P_DRIFT_LIK, z)
        )
        out = out if out > opinion else opinion
    if has_t:
        for view in (_P_DAILY, _P_WEEKLY):
            if p[view + _SP_HAS] != 0.0:
                opinion = _seasonal_opinion(p, s, view, t, x)
                out = out if out > opinion else opinion
    if p[_P_HAS_NV] != 0.0:
        fresh = _novelty_step(p, s, x)
        alarming = signed > 0 if direction == _UP else signed < 0
        if not (live and not breach and (direction == _BOTH or alarming)):
            fresh = 0.0
        opinion = _gate(p, s, _NV_LEFT, _P_NV_LEVEL, _P_NV_QUIET, fresh)
        out = out if out > opinion else opinion
    if live:
        if breach:
            s[_QUIET] = 0.0
        elif s[_QUIET] > 0:
            out = 0.0
        if s[_QUIET] > 0:
            s[_QUIET] -= 1.0
        elif p[_P_QUIET] != 0.0 and out >= p[_P_QUIET_LEVEL]:
            s[_QUIET] = p[_P_QUIET]
        out = out ** p[_P_POWER]
    if p[_P_HAS_CEIL] != 0.0:
        out = max(out, _ceiling_pressure(p, s, x))
    _golden_learn(p, s, x)
    return out, going_on


def _parameters(reference: LikelihoodDetector) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The parameter vector of a (fresh) reference model, and its fresh state (both read-only)."""
    state = _state_layout(reference.parts())
    parameters = _parameter_layout(reference, state)
    if parameters.offsets != _PARAMETERS.offsets:  # every setting keeps the kernel's offsets
        raise AssertionError("the parameter layout depends on the settings")
    p = np.array(parameters.values)
    s = np.array(state.values)
    p.setflags(write=False)
    s.setflags(write=False)
    return p, s


Settings = tuple[tuple[str, Any], ...]  # a model's keyword settings, sorted by name


@lru_cache(maxsize=64)
def _parameters_for(settings: Settings) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return _parameters(LikelihoodDetector(**dict(settings)))


@lru_cache(maxsize=64)
def _shared(settings: Settings) -> Settings:
    """The first tuple seen equal to `settings`: series with the same settings hold one
    tuple between them, not one each (168 B a series for a signal's two settings)."""
    return settings


def warm_up() -> None:
    """Compile the kernel now (or load it from the cache), not on a series' first point."""
    CompiledLikelihood().step(0.0, 0.0)


def compiled_layout(**settings: Any) -> tuple[int, int]:
    """(parameters, state floats per series) for a model with these settings.

    >>> compiled_layout()
    (96, 474)
    """
    p, s = _parameters_for(tuple(sorted(settings.items())))
    return len(p), len(s)


class CompiledLikelihood:
    """`LikelihoodDetector`, compiled: the same parameters, scores and `continues`, one
    `step(x, t)` per point (the detect stage's default model).

    `score_one`, `continues` and `learn_one` are there for the `SeriesDetector` protocol;
    they step a copy (or discard the result), so only `step` is fast. Pickles to its
    settings and its state array (about 3.9 KB with the defaults).

    >>> detector = CompiledLikelihood(direction="up")
    >>> for value in [10.0, 11.0, 9.0] * 20:
    ...     _ = detector.step(value)
    >>> detector.n_seen, round(detector.expected, 1), detector.live
    (60, 10.0, False)
    >>> detector.score_one(10.0) == detector.step(10.0)[0]
    True
    """

    __slots__ = ("_p", "_s", "_settings")

    def __init__(self, **settings: Any) -> None:
        self._settings = _shared(tuple(sorted(settings.items())))
        self._p, fresh = _parameters_for(self._settings)  # validates through LikelihoodDetector
        self._s = fresh.copy()

    @property
    def direction(self) -> Direction:
        """Which way the model alarms."""
        value: Direction = dict(self._settings).get("direction", "both")
        return value

    @property
    def ceiling(self) -> float | None:
        """The saturation ceiling, if any."""
        value: float | None = dict(self._settings).get("ceiling")
        return value

    @property
    def expected(self) -> float:
        """The baseline forecast of the next value."""
        return float(self._s[_G_EXP])

    @property
    def n_seen(self) -> int:
        """How many finite values the detector has learned."""
        return int(self._s[_G_N])

    @property
    def live(self) -> bool:
        """Whether the likelihood has warmed up and scores are its own."""
        return bool(self._s[int(self._p[_P_LIK + _LP_OFF]) + _L_N] >= self._p[_P_LIK + _LP_WARMUP])

    def reference(self) -> LikelihoodDetector:
        """A fresh `LikelihoodDetector` with these settings: the Python specification this
        model is compiled from (slower, the same scores; it also says which part gave each)."""
        return LikelihoodDetector(**dict(self._settings))

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """`(score_one(x, t), continues(x))`, then `learn_one(x, t)`, compiled."""
        # float(): an int would make Numba compile (seconds) a second version of the kernel.
        if t is None:
            return _step(self._p, self._s, float(x), 0.0, False)
        return _step(self._p, self._s, float(x), float(t), True)

    def score_one(self, x: float, t: float | None = None) -> float:
        """How unusual `x` (at time `t`, if known) is, in [0, 1]; does not learn it."""
        return self._peek(x, t)[0]

    def continues(self, x: float) -> bool:
        """Whether `x` carries on the event whose alarm muted the score; does not learn it."""
        return self._peek(x, None)[1]

    def learn_one(self, x: float, t: float | None = None) -> None:
        """Learn `x` (at time `t`, if known)."""
        self.step(x, t)

    def _peek(self, x: float, t: float | None) -> tuple[float, bool]:
        saved = self._s.copy()
        try:
            return self.step(x, t)
        finally:
            self._s = saved

    def export_state(self) -> tuple[Settings, np.ndarray[Any, Any]]:
        """(settings, state array): the whole model as plain values, for a checkpoint that
        must not name classes (see `pipeline.codec`)."""
        return self._settings, self._s

    @classmethod
    def from_state(cls, settings: Settings, values: np.ndarray[Any, Any]) -> CompiledLikelihood:
        """Inverse of `export_state`; the settings are validated as by the constructor (only
        `LikelihoodDetector`'s keywords), the array's length against their layout."""
        detector = cls(**dict(settings))
        if len(values) != len(detector._s):
            raise ValueError(
                f"state of {len(values)} floats does not fit this layout ({len(detector._s)})"
            )
        detector._s = np.array(values, dtype=np.float64)
        return detector

    def __getstate__(self) -> tuple[Settings, bytes]:
        return self._settings, self._s.tobytes()

    def __setstate__(self, state: tuple[Settings, bytes]) -> None:
        settings, data = state
        self._settings = _shared(settings)
        self._p, fresh = _parameters_for(self._settings)
        values = np.frombuffer(data, dtype=np.float64).copy()
        if len(values) != len(fresh):
            raise ValueError(
                f"state of {len(values)} floats does not fit this layout ({len(fresh)})"
            )
        self._s = values

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings)
        return f"CompiledLikelihood({settings})"


def detector_for_signal(
    signal: str, *, ceiling: float = 1.0, warmup: int = 30
) -> CompiledLikelihood:
    """The worker's model for one series of a golden signal: a `CompiledLikelihood` alarming
    in the signal's direction, with the `ceiling` for saturation only.

    >>> detector_for_signal("latency").direction, detector_for_signal("traffic").direction
    ('up', 'both')
    >>> detector_for_signal("saturation", ceiling=100.0).ceiling
    100.0
    >>> detector_for_signal("errors").ceiling is None
    True
    """
    direction = signal_direction(signal)
    if signal == "saturation":
        return CompiledLikelihood(direction=direction, ceiling=ceiling, warmup=warmup)
    return CompiledLikelihood(direction=direction, warmup=warmup)

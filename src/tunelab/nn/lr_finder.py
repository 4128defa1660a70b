"""The learning-rate range test: one short training with a rising learning rate, read off a curve.

Smith ("Cyclical Learning Rates for Training Neural Networks", 2017, §3.3) trains while the
learning rate rises from small to large and reads a useful range off the curve: the rate where
training starts to make progress, and the rate where it turns ragged or gets worse. fastai's
``lr_find`` made it one short run of about 100 mini-batches with an exponential ramp, reading the
training loss: flat while the rate is too small to matter, falling once it is useful, blowing up
once it is too large. A good rate lies part-way down the fall. The test costs a fraction of one
training, next to the dozens a search makes.

:func:`range_test` runs it the way torch-lr-finder 0.2 (``LRFinder.range_test``) and fastai
(``Learner.lr_find``) do: an exponential (or linear) ramp, one mini-batch per step, the loss
smoothed by a bias-corrected moving average, a stop once the smoothed loss exceeds ``diverge``
times its best. It trains a copy of the network with an optimizer of its own, under a forked
random-number generator, so the network and the random streams a later search draws from are as
they were. It returns a :class:`RangeTest` with the curve and three suggestions (see
:func:`range_test` for the rules), or refuses with :class:`NoUsableRange` when the curve has no
descent to read: it never invents a learning rate.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.errors import SpecError, TunelabError
from tunelab.nn.data import Scaler, Split, check_task
from tunelab.nn.optimizers import make_loss, make_optimizer
from tunelab.nn.train import _batches, _deterministic, _on_device, resolve_device

__all__ = ["MIN_DECREASE", "MODES", "SUGGESTIONS", "NoUsableRange", "RangeTest", "range_test"]

#: How the learning rate rises from ``start`` to ``end``.
MODES = ("exp", "linear")

#: The suggestion rules, in the order :attr:`RangeTest.suggestions` lists them.
SUGGESTIONS = ("steepest", "valley", "minimum/10")

#: The smoothed loss must fall at least this share below its value at the start of the window the
#: suggestions read, or the curve has no descent worth reading (noise alone moves it by less).
MIN_DECREASE = 0.05

_MIN_STEPS = 20  # fewer leave under a dozen points once the suggestions' skips are taken
_SKIP_END = 5  # fastai drops the last 5 points: they lead into the blow-up
_MIN_DESCENT = 3  # points from the window's start to the minimum, for a slope to read


class NoUsableRange(TunelabError):
    """The range test found no descent of the loss to suggest a learning rate from.

    Attributes:
        lrs, losses, smoothed: the curve that was recorded, to plot and look at.
    """

    def __init__(
        self, message: str, lrs: list[float], losses: list[float], smoothed: list[float]
    ) -> None:
        super().__init__(f"no usable range found: {message}")
        self.lrs, self.losses, self.smoothed = lrs, losses, smoothed


@dataclass(frozen=True)
class RangeTest:
    """The outcome of :func:`range_test`: the curve, the suggestions and how the run ended.

    Plain floats, strings and lists only, so :meth:`to_dict` goes straight into JSON (a study's
    storage, a report) and :meth:`from_dict` brings it back.

    Attributes:
        lrs: the learning rate of each step that ran.
        losses: each step's mini-batch loss, computed before that step's update.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestions: each rule of :data:`SUGGESTIONS` and the learning rate it reads off.
        suggestion: the one tunelab uses: ``suggestions["valley"]`` (fastai's default).
        stopped: ``"end of range"``, or ``"diverged at lr=...: ..."`` with the reason.
        start, end, mode, steps: the ramp asked for.
        optimizer: the optimizer the test trained with.
        batch_size: samples per step.

    Example:
        >>> test = RangeTest([1e-3, 1e-2], [2.0, 1.0], [2.0, 1.5], {"valley": 1e-3}, 1e-3,
        ...                  "end of range", 1e-3, 1e-2, "exp", 2, "sgd", 32)
        >>> RangeTest.from_dict(test.to_dict()) == test
        True
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float]
    suggestion: float
    stopped: str
    start: float
    end: float
    mode: str
    steps: int
    optimizer: str
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (copies of the lists), ready for ``json.dumps``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RangeTest:
        """Rebuild a test from :meth:`to_dict`'s output (or its JSON, loaded).

        Raises:
            KeyError: when a field is missing.
        """
        return cls(**{field.name: copy.deepcopy(data[field.name]) for field in fields(cls)})


def range_test(
    model: nn.Module,
    train: Split,
    *,
    task: str,
    optimizer: str = "adam",
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.05,
    diverge: float = 4.0,
    batch_size: int = 32,
    loss: str | None = None,
    target_scaler: Scaler | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    **options: Any,
) -> RangeTest:
    """Run the learning-rate range test (Smith 2017, §3.3) and suggest a learning rate.

    Step ``i`` trains one mini-batch at ``start * (end / start) ** (i / (steps - 1))`` (``exp``)
    or at evenly spaced rates (``linear``), cycling through the training split in a shuffled
    order that the seed fixes (the order a :class:`~tunelab.nn.Trainer` with that seed takes).
    Each step records the loss of its mini-batch before the update, and its smoothed value
    ``s_i = m_i / (1 - beta ** (i + 1))`` with ``m_i = beta * m_(i-1) + (1 - beta) * loss_i``
    and ``beta = 1 - smoothing`` (the bias-corrected average of fastai's recorder; without the
    correction the first points lean towards zero). The ramp stops early, recorded in
    ``stopped``, when the smoothed loss exceeds ``diverge`` times the best so far or a loss is
    not finite; the non-finite point is not recorded.

    The optimizer and loss are the trainer's (:func:`~tunelab.nn.make_optimizer`,
    :func:`~tunelab.nn.make_loss` with the same names and knobs; regression targets scaled by
    ``target_scaler`` as in training), so the curve is the training loss a search would see.
    A copy of ``model`` is trained; the model itself, its device and mode, and torch's global
    random-number generators are as they were before the call. With the linear scaling rule
    (``reference_batch``), run the test at the reference batch size: the suggestion is then
    the ``lr`` a configuration gives.

    The suggestions read the smoothed curve without its first ``steps // 10`` points (the
    average is still settling) and its last 5 (they lead into the blow-up), as fastai does:

    * ``steepest``: where the smoothed loss falls fastest per decade of learning rate
      (``np.gradient`` against ``log10(lr)``): torch-lr-finder's suggestion, looked for only
      before the minimum (a fall after it, in the ragged blow-up, is no descent).
    * ``valley``: fastai 2.x's ``valley`` (``fastai/callback/schedule.py``): take the longest
      decreasing run of the smoothed loss (a longest decreasing subsequence, ending at index
      ``e`` with length ``L``), and the point ``floor(L/3) + floor(L/6)`` after ``e - L``:
      about half-way down the descent. It is the :attr:`RangeTest.suggestion`: it reads the
      whole descent, where the steepest point can be one lucky batch of a noisy curve; it is
      the most cautious of the three (on the synthetic problem of the tests it sits near the
      low end of the rates that train well, minimum/10 near the best, steepest just above
      them), and a rate a little low costs some speed where one a little high can diverge;
      and it is fastai's default suggestion.
    * ``minimum/10``: the learning rate at the smoothed minimum, divided by 10: at the minimum
      the rate is already on the edge of too large (fastai's ``minimum``).

    Args:
        model: the network (not changed).
        train: training inputs, shaped for the network, and targets.
        task: ``"classification"`` or ``"regression"``.
        optimizer: a name from :data:`~tunelab.nn.OPTIMIZERS`.
        start: the first learning rate (> 0 for ``exp``).
        end: the last learning rate (> ``start``).
        steps: how many mini-batches the ramp takes (at least 20).
        mode: ``"exp"`` (even steps in log scale) or ``"linear"``.
        smoothing: the weight of each new loss in the moving average, in [0, 1); 0 turns the
            smoothing off (torch-lr-finder's ``smooth_f``).
        diverge: stop once the smoothed loss exceeds this many times its best (> 1).
        batch_size: samples per step.
        loss: a name from :data:`~tunelab.nn.LOSSES` for the task; None for its default.
        target_scaler: the fitted scaler of regression targets, as given to the trainer.
        seed: seeds the batch order and dropout.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        **options: the optimizer's and the loss's knobs, e.g. ``momentum=0.9``.

    Returns:
        The curve, the suggestions and how the ramp ended.

    Raises:
        SpecError: on ``start``, ``end``, ``steps``, ``mode``, ``smoothing``, ``diverge`` or
            ``batch_size`` when out of range; on ``space.<name>`` for an optimizer or loss
            setting the trainer refuses too.
        TypeError: for an option the optimizer and loss do not take (schedule options among
            them: the test sets the learning rate itself).
        NoUsableRange: when the curve has no descent to read a learning rate from.

    Example:
        >>> from tunelab.nn import build_mlp, load_dataset, split_dataset
        >>> train, _, _ = split_dataset(load_dataset("iris"), 0.2, 0.2, seed=0)
        >>> test = range_test(build_mlp(4, 3), train, task="classification", end=1.0, steps=50,
        ...                   device="cpu")
        >>> sorted(test.suggestions), test.suggestion == test.suggestions["valley"]
        (['minimum/10', 'steepest', 'valley'], True)
    """
    _check_ramp(start, end, steps, mode, smoothing, diverge, batch_size)
    optimizer_options, loss_options = _route(options)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    loss_fn = make_loss(check_task(task), loss, **loss_options).to(device)
    data = _on_device(train, task, device, target_scaler)
    inputs, targets = data.inputs, data.targets
    lrs = _ramp(start, end, steps, mode)
    work = copy.deepcopy(model).to(device).train()
    opt = make_optimizer(optimizer, work.parameters(), lrs[0], **optimizer_options)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _deterministic(device):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        batches = _cycle(len(inputs), batch_size, seed, device)
        curve, stopped = _run(work, opt, loss_fn, inputs, targets, lrs, batches, smoothing, diverge)
    suggestions = _suggest(*curve, skip_start=steps // 10)
    return RangeTest(
        *curve,
        suggestions=suggestions,
        suggestion=suggestions["valley"],
        stopped=stopped,
        start=float(start),
        end=float(end),
        mode=mode,
        steps=steps,
        optimizer=optimizer,
        batch_size=batch_size,
    )


def _check_ramp(
    start: float,
    end: float,
    steps: int,
    mode: str,
    smoothing: float,
    diverge: float,
    batch_size: int,
) -> None:
    """Refuse a ramp the test cannot run, naming the argument and the fix."""
    if mode not in MODES:
        raise SpecError("mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "exp" and not start > 0:
        raise SpecError(
            "start",
            f"must be > 0 for an exponential ramp, but got {start}; use a small positive rate "
            "such as 1e-7",
        )
    if not start >= 0:
        raise SpecError("start", f"must be >= 0, got {start}")
    if not end > start:
        raise SpecError(
            "end", f"must be > start, but got start={start}, end={end}; a usual range is 1e-7 to 10"
        )
    if steps < _MIN_STEPS:
        raise SpecError(
            "steps",
            f"must be >= {_MIN_STEPS} for a curve to read (the suggestions skip the first tenth "
            f"and the last {_SKIP_END} points), got {steps}; 100 is usual",
        )
    if not 0 <= smoothing < 1:
        raise SpecError(
            "smoothing", f"must be in [0, 1) (0 turns it off), got {smoothing}; 0.05 is usual"
        )
    if not diverge > 1:
        raise SpecError(
            "diverge",
            f"must be > 1 (a multiple of the best smoothed loss), got {diverge}; 4 is usual",
        )
    if batch_size < 1:
        raise SpecError("batch_size", f"must be >= 1, got {batch_size}")


def _keywords(function: Any) -> frozenset[str]:
    parameters = inspect.signature(function).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)


_OPTIMIZER_KNOBS = _keywords(make_optimizer)
_LOSS_KNOBS = _keywords(make_loss)


def _route(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the options between the optimizer and the loss; refuse any other."""
    unknown = sorted(set(options) - _OPTIMIZER_KNOBS - _LOSS_KNOBS)
    if unknown:
        raise TypeError(
            f"range_test() got unexpected keyword arguments {', '.join(map(repr, unknown))}; it "
            f"takes the optimizer's and the loss's options ({', '.join(sorted(_OPTIMIZER_KNOBS))}, "
            f"{', '.join(sorted(_LOSS_KNOBS))}) and sets the learning rate itself (no schedule)"
        )
    optimizer = {name: value for name, value in options.items() if name in _OPTIMIZER_KNOBS}
    return optimizer, {name: value for name, value in options.items() if name in _LOSS_KNOBS}


def _ramp(start: float, end: float, steps: int, mode: str) -> list[float]:
    spaced = np.geomspace if mode == "exp" else np.linspace
    return [float(lr) for lr in spaced(start, end, steps)]


def _cycle(n: int, batch_size: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Mini-batches without end: a fresh shuffle of the ``n`` samples each pass."""
    order = torch.Generator().manual_seed(seed)
    while True:
        yield from _batches(torch.randperm(n, generator=order).to(device), batch_size)


def _run(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lrs: list[float],
    batches: Iterator[torch.Tensor],
    smoothing: float,
    diverge: float,
) -> tuple[tuple[list[float], list[float], list[float]], str]:
    """Train one batch per learning rate; return ``(lrs, losses, smoothed)`` and why it ended."""
    beta = 1.0 - smoothing if smoothing > 0 else 0.0  # smoothing 0: each loss as it is
    ran: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    for lr, batch in zip(lrs, batches, strict=False):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs[batch]), targets[batch])
        loss.backward()
        opt.step()
        value = loss.item()
        if not math.isfinite(value):
            return (ran, losses, smoothed), f"diverged at lr={lr:.3g}: the loss is {value}"
        average = beta * average + (1.0 - beta) * value
        smooth = average / (1.0 - beta ** (len(ran) + 1))
        ran.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > diverge * best:
            return (ran, losses, smoothed), (
                f"diverged at lr={lr:.3g}: the smoothed loss {smooth:.4g} exceeded {diverge:g} "
                f"times its best, {best:.4g}"
            )
    return (ran, losses, smoothed), "end of range"


def _suggest(
    lrs: list[float], losses: list[float], smoothed: list[float], skip_start: int
) -> dict[str, float]:
    """Each rule's learning rate, read from the smoothed curve's window; refuse a flat curve."""
    window = slice(skip_start, len(smoothed) - _SKIP_END)
    rates, curve = np.array(lrs[window]), np.array(smoothed[window])

    def refuse(message: str) -> NoUsableRange:
        return NoUsableRange(message, lrs, losses, smoothed)

    if len(curve) < _MIN_DESCENT + 2:
        reached = f" (up to lr={lrs[-1]:.3g})" if lrs else ""
        raise refuse(
            f"only {len(lrs)} steps ran{reached}, too few to read a curve from once the first "
            f"{skip_start} and the last {_SKIP_END} are left out; start the range lower, or raise "
            "diverge if the loss is noisy"
        )
    lowest = int(np.argmin(curve))
    if lowest < _MIN_DESCENT and curve[lowest:].max() > (1 + MIN_DECREASE) * curve[lowest]:
        raise refuse(
            f"the smoothed loss is lowest at the start of the range (lr={rates[lowest]:.3g}) and "
            "rises after it, so the descent lies below the range; start the range lower"
        )
    decrease = (curve[0] - curve[lowest]) / curve[0] if curve[0] > 0 else 0.0
    if decrease < MIN_DECREASE:
        raise refuse(
            f"the smoothed loss fell by {decrease:.1%} at most between lr={rates[0]:.3g} and "
            f"lr={rates[-1]:.3g}, less than the {MIN_DECREASE:.0%} a descent needs; widen the "
            f"range (a larger end: the last {_SKIP_END} points are not read), try another "
            "optimizer, or check the data (labels, scaling)"
        )
    if lowest < _MIN_DESCENT:
        raise refuse(
            f"the smoothed loss falls only over the first {lowest + 1} points read (to "
            f"lr={rates[lowest]:.3g}), too few for a slope; start the range lower or take more "
            "steps"
        )
    return {
        "steepest": _steepest(rates, curve, lowest),
        "valley": _valley(rates, curve),
        "minimum/10": float(rates[lowest]) / 10,
    }


def _steepest(rates: np.ndarray, curve: np.ndarray, lowest: int) -> float:
    """The rate where the curve falls fastest per decade, before its minimum (at the minimum
    the descent is over; a one-sided slope there would only measure the last drop into it)."""
    slope = np.gradient(curve[: lowest + 1], np.log10(rates[: lowest + 1]))
    return float(rates[int(np.argmin(slope[:lowest]))])


def _valley(rates: np.ndarray, curve: np.ndarray) -> float:
    """fastai's ``valley``: about half-way down the longest decreasing run of the curve."""
    longest = np.ones(len(curve), dtype=int)  # the longest decreasing run ending at each point
    for i in range(1, len(curve)):
        higher = curve[:i] > curve[i]
        if higher.any():
            longest[i] = longest[:i][higher].max() + 1
    end = int(np.argmax(longest))  # the first point where the longest run ends, as in fastai
    begin = end - int(longest[end])
    third = (end - begin) / 3
    return float(rates[max(begin + int(third) + int(third / 2), 0)])  # fastai's -1 would wrap

"""Fused training: trainers of one architecture train their epochs as one computation.

Small networks leave a CPU, and far more a GPU, idle between tiny kernels. K networks of the same
shape, stacked, turn K small matrix products into one batched product (and K convolutions into
one grouped convolution), so an epoch of K costs far less than K epochs (HFTA, MLSys 2021).

Each member stays its own :class:`~tunelab.nn.Trainer`: its weights as built from its seed, its
batch order, its dropout draws (the built-in dropout's from its own stream,
:mod:`tunelab.nn.masks`; ``nn.Dropout``'s from a generator of its own), its optimizer's
hyperparameters and state, its LR schedule, callbacks, validation and history. Only the batches are trained together. So a member ends where it would have alone,
within floating-point rounding, and leaves or joins a group at any epoch: weights and optimizer
state are stacked at the start of each fused epoch and handed back at its end.

What members must share is their :func:`signature`: layer types and shapes, the training data,
the batch size, and the kinds of optimizer and loss. Supported: ``Linear``, ``Conv1d``,
``Conv2d``, max and average pooling, ``Flatten``, ``Unflatten``, the activations of
:data:`~tunelab.nn.ACTIVATIONS` but SELU's alpha dropout, ``Dropout``; SGD, Adam and AdamW;
cross-entropy (with label smoothing), MSE, MAE and Huber. Anything else (batch norm, say) has no
signature and trains alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.nn.callbacks import Callback
from tunelab.nn.data import CLASSIFICATION
from tunelab.nn.masks import MaskGroup, per_member
from tunelab.nn.models import Dropout
from tunelab.nn.train import _EVAL_BATCH_SIZE, Trainer, _batch_bounds, _deterministic

__all__ = ["run_epochs_fused", "signature"]

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SELU, nn.Identity)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
# the builtin models' (their members' masks drawn as one) and torch's (on the CPU: on CUDA it
# draws with a fused kernel of its own, which a member cannot reproduce)
_DROPOUTS = (nn.Dropout, Dropout)
_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
_LOSSES = (nn.CrossEntropyLoss, nn.MSELoss, nn.L1Loss, nn.HuberLoss)


def signature(trainer: Trainer) -> tuple | None:
    """What trainers must share to train as one group; None when this one cannot be fused.

    Layer settings that only change numbers (dropout rates) are left out: they may differ per
    member, as may every optimizer, schedule and loss hyperparameter. The last part is the
    data's identity (the folds of a cross-validation train alike but apart).
    """
    layers = _layers(trainer.model)
    optimizer = trainer.optimizer
    group = optimizer.param_groups
    if (
        layers is None
        or type(optimizer) not in _OPTIMIZERS
        or len(group) != 1
        or any(group[0].get(flag) for flag in ("amsgrad", "maximize", "dampening"))
        or type(trainer.loss_fn) not in _LOSSES
        or getattr(trainer.loss_fn, "weight", None) is not None
    ):
        return None
    return (
        tuple(_layer_key(layer) for layer in layers),
        type(optimizer).__name__,
        type(trainer.loss_fn).__name__,
        trainer.task,
        trainer._batch_size,
        str(trainer.device),
        _fingerprint(trainer),
    )


def run_epochs_fused(trainers: Sequence[Trainer]) -> list[dict[str, float] | BaseException]:
    """Run one epoch of each trainer, the batches of all trained as one computation.

    The trainers must share a :func:`signature` and not be :attr:`~Trainer.done`. A member whose
    epoch raises (a callback's :class:`~tunelab.errors.TrialDiverged`, say) gets that exception
    in its place and takes no further part in the epoch; the others go on.

    Returns:
        Per trainer, in order: the epoch's logs (as :meth:`Trainer.run_epoch` returns them), or
        the exception its epoch raised.
    """
    signatures = {signature(t) for t in trainers}
    if len(signatures) != 1 or None in signatures:
        raise ValueError("fused trainers must share one signature (see tunelab.nn.fused)")
    torchs = any(type(layer) is nn.Dropout for layer in _layers(trainers[0].model))
    for trainer in trainers if torchs else ():
        if trainer.generator is None:  # nn.Dropout draws from the member's own generator
            if trainer._begun:
                raise ValueError(
                    "a trainer joins fused training before it begins (or is resumed): set "
                    "trainer.generator = torch.Generator(trainer.device) right after building it"
                )
            trainer.generator = torch.Generator(trainer.device)
    results: list[Any] = [None] * len(trainers)
    with _deterministic(trainers[0].device):
        orders = {}
        for k, trainer in enumerate(trainers):
            try:
                orders[k] = trainer.begin_epoch()
            except Exception as exc:  # noqa: BLE001 - the member's failure, not the group's
                results[k] = exc
        live = sorted(orders)
        if live:
            epoch = _FusedEpoch([trainers[k] for k in live])
            logs = epoch.run([orders[k] for k in live])
            for i, (k, outcome) in enumerate(zip(live, logs, strict=True)):
                try:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    val_outputs = None if epoch.val_outputs is None else epoch.val_outputs[i]
                    results[k] = trainers[k].end_epoch(outcome, val_outputs)
                except Exception as exc:  # noqa: BLE001
                    results[k] = exc
    return results


class _FusedEpoch:
    """The batches of one epoch of several trainers: stacked weights and optimizer state in,
    each member's training logs out, and its weights and state handed back."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        self.trainers = list(trainers)
        self.layers = [_layers(t.model) for t in self.trainers]
        self.params = [list(t.model.parameters()) for t in self.trainers]
        first = self.trainers[0]
        self.inputs, self.targets = first._inputs, first._targets
        self.task, self.device = first.task, first.device
        self.kind = type(first.optimizer)
        self.failed: dict[int, BaseException] = {}
        self.kept: dict[str, Any] = {}  # see _for_epoch
        #: Each member's outputs on the validation split after the epoch (None without one).
        self.val_outputs: list[torch.Tensor] | None = None

    def run(self, orders: Sequence[torch.Tensor]) -> list[dict[str, float] | BaseException]:
        # every member's parameters as one row of one tensor, and its optimizer state alike: a
        # step is then a handful of operations on (members, parameters), not a handful per layer
        shapes = [p.shape for p in self.params[0]]
        flat = torch.stack([_flat([p.detach() for p in member]) for member in self.params])
        flat.requires_grad_()
        state = self._stack_state()
        self.settings = self._settings()
        K = len(self.trainers)
        order = torch.stack(list(orders))
        totals = torch.zeros(K, 2, device=self.device)
        hooked = [(k, hooks) for k, t in enumerate(self.trainers) if (hooks := _batch_hooks(t))]
        self.rates_move = bool(hooked)  # a learning rate changes only in a per-batch callback
        self.masks = MaskGroup([t.dropout for t in self.trainers], self.device)
        self.keeps = {  # each dropout layer's members' keep rates, for the epoch
            i: self.masks.rates([1 - layers[i].p for layers in self.layers], torch.float32)
            for i, layer in enumerate(self.layers[0])
            if isinstance(layer, nn.Dropout)
        }
        for trainer in self.trainers:  # what torch's schedulers look for, or they warn
            trainer.optimizer._opt_called = True  # that the optimizer never stepped
        bounds = _batch_bounds(len(self.inputs), self.trainers[0]._batch_size)
        self.taken = len(bounds)  # the epoch's steps
        for step, (start, stop) in enumerate(bounds):
            batch = order[:, start:stop]
            inputs, targets = self.inputs[batch], self.targets[batch]
            outputs = self._forward(_unflat(flat, shapes), inputs)
            losses = self._losses(outputs, targets)
            flat.grad = None
            losses.sum().backward()
            with torch.no_grad():
                self._step(flat, state, step)
                totals[:, 0] += losses.detach() * (stop - start)
                if self.task == CLASSIFICATION:
                    totals[:, 1] += (outputs.argmax(-1) == targets).sum(1)
            for k, hooks in hooked:
                if k in self.failed:
                    continue
                try:
                    for hook in hooks:
                        hook.on_batch_end(self.trainers[k], step, losses[k].detach())
                except Exception as exc:  # noqa: BLE001 - this member fails alone
                    self.failed[k] = exc
        self.masks.close()
        self.steps = [s + self.taken for s in self.steps]
        flat = flat.detach()
        self.val_outputs = self._validate(_unflat(flat, shapes))
        self._hand_back(flat, state, shapes)
        n = len(self.inputs)
        results: list[dict[str, float] | BaseException] = []
        for k, (loss_sum, correct) in enumerate(totals.tolist()):
            if k in self.failed:
                results.append(self.failed[k])
                continue
            logs = {"train_loss": loss_sum / n}
            if self.task == CLASSIFICATION:
                logs["train_accuracy"] = correct / n
            results.append(logs)
        return results

    # The network -------------------------------------------------------------------------------
    def _validate(self, weights: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Every member's outputs on the validation split (the same for all: their signature
        holds it), in eval mode as :func:`~tunelab.nn.predict` gives them alone, computed in one
        pass for all members instead of one each, and brought to the CPU once."""
        val = self.trainers[0]._val
        if val is None:
            return None
        K = len(self.trainers)
        x = torch.as_tensor(val.X, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            outputs = torch.cat(
                [
                    self._forward(weights, chunk.expand(K, *chunk.shape), training=False)
                    for chunk in x.split(max(1, _EVAL_BATCH_SIZE // K))
                ],
                dim=1,
            ).cpu()
        return list(outputs.unbind(0))

    def _forward(
        self, stacked: list[torch.Tensor], x: torch.Tensor, training: bool = True
    ) -> torch.Tensor:
        """Every member's network on its own batch: ``x`` is (members, batch, *sample); out of
        ``training``, dropout keeps every unit."""
        K, B = x.shape[:2]
        weights = iter(stacked)
        for i, layer in enumerate(self.layers[0]):
            if isinstance(layer, nn.Linear):
                w = next(weights)
                b = next(weights) if layer.bias is not None else None
                x = (
                    torch.bmm(x, w.transpose(1, 2))
                    if b is None
                    else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
                )
            elif isinstance(layer, nn.Conv1d | nn.Conv2d):
                x = self._conv(
                    layer, x, next(weights), next(weights) if layer.bias is not None else None
                )
            elif isinstance(layer, _POOLS):
                x = layer(x.flatten(0, 1)).unflatten(0, (K, B))
            elif isinstance(layer, nn.Flatten):
                x = x.flatten(
                    layer.start_dim + 1, layer.end_dim if layer.end_dim < 0 else layer.end_dim + 1
                )
            elif isinstance(layer, nn.Unflatten):
                x = x.unflatten(
                    layer.dim + 1 if layer.dim >= 0 else layer.dim, layer.unflattened_size
                )
            elif isinstance(layer, nn.Dropout):
                if training:
                    x = x * self._masks(i, x)
            else:  # an activation
                x = layer(x)
        return x

    @staticmethod
    def _conv(
        layer: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
    ) -> torch.Tensor:
        """K convolutions as one grouped convolution: members' channels side by side."""
        K, B = x.shape[:2]
        grouped = x.transpose(0, 1).flatten(1, 2)  # (batch, members * channels, *space)
        convolve = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
        y = convolve(
            grouped,
            w.flatten(0, 1),
            None if b is None else b.flatten(),
            layer.stride,
            layer.padding,
            layer.dilation,
            groups=K,
        )
        return y.unflatten(1, (K, -1)).transpose(0, 1)

    def _masks(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Dropout's masks, each member's drawn as it would draw them alone, scaled by
        1 / (1 - p): the built-in dropout's all at once from the members' streams
        (:mod:`tunelab.nn.masks`); ``nn.Dropout``'s from each member's generator in turn."""
        keeps = self.keeps[index]
        if isinstance(self.layers[0][index], Dropout):  # a signature does not mix the two
            return self.masks.draw(keeps, x.shape)
        masks = torch.empty_like(x)
        for k, (trainer, keep) in enumerate(zip(self.trainers, keeps.keeps, strict=True)):
            if keep < 1:
                masks[k].bernoulli_(keep, generator=trainer.generator)
            else:
                masks[k].fill_(1)
        return masks.div_(keeps.keep.view(-1, *([1] * (x.dim() - 1))))

    def _losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss over its batch, as its own loss module computes it."""
        first = self.trainers[0].loss_fn
        if isinstance(first, nn.CrossEntropyLoss):
            logp = outputs.log_softmax(-1)
            nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(1)
            smoothing = self._for_epoch("smoothing", lambda: self._smoothing(outputs.shape[-1]))
            if smoothing is None:
                return nll
            keep, spread = smoothing  # torch's order: (1 - e) * nll + smooth * (e / classes)
            return keep * nll + spread * -logp.sum(-1).mean(1)
        error = outputs - targets
        if isinstance(first, nn.MSELoss):
            per = error.square()
        elif isinstance(first, nn.L1Loss):
            per = error.abs()
        else:
            deltas = self._for_epoch("delta", lambda: self._losses_of("delta"))
            delta = deltas.view(-1, *([1] * (error.dim() - 1)))
            size = error.abs()
            per = torch.where(size < delta, 0.5 * error.square(), delta * (size - 0.5 * delta))
        return per.flatten(1).mean(1)

    def _smoothing(self, classes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The members' label smoothing e as (1 - e, e / classes); None when none smooths."""
        smoothing = [t.loss_fn.label_smoothing for t in self.trainers]
        if not any(smoothing):
            return None
        return _values([1 - e for e in smoothing], self.device), _values(
            [e / classes for e in smoothing], self.device
        )

    def _losses_of(self, setting: str) -> torch.Tensor:
        """A setting of the members' loss modules, one value each."""
        return _values([getattr(t.loss_fn, setting) for t in self.trainers], self.device)

    def _for_epoch(self, name: str, make: Callable[[], Any]) -> Any:
        """What holds for the whole epoch, made at its first step (a step is the hot loop)."""
        if name not in self.kept:
            self.kept[name] = make()
        return self.kept[name]

    # The optimizer -----------------------------------------------------------------------------
    def _settings(self) -> dict[str, torch.Tensor]:
        """The members' optimizer settings that hold for the epoch, a column of one value each."""
        groups = [t.optimizer.param_groups[0] for t in self.trainers]
        names = ["weight_decay"]
        names += ["momentum", "nesterov"] if self.kind is torch.optim.SGD else ["eps"]
        settings = {name: _column([g[name] for g in groups], self.device) for name in names}
        self.decays = any(g["weight_decay"] for g in groups)  # in Python: no device sync per step
        if self.kind is not torch.optim.SGD:  # 1 - beta in double, then float32, as torch has it
            settings["beta2"] = _column([g["betas"][1] for g in groups], self.device)
            settings["1-beta1"] = _column([1 - g["betas"][0] for g in groups], self.device)
            settings["1-beta2"] = _column([1 - g["betas"][1] for g in groups], self.device)
        return settings

    def _stack_state(self) -> dict[str, torch.Tensor]:
        """The optimizer state, one row per member as :meth:`run` lays out the parameters;
        zeros where a member has none yet (a momentum buffer of zeros takes the first gradient
        exactly as torch's clone does)."""
        names = ("momentum_buffer",) if self.kind is torch.optim.SGD else ("exp_avg", "exp_avg_sq")
        own = [[t.optimizer.state.get(p, {}) for p in ps] for t, ps in self._members()]
        state = {
            name: torch.stack(
                [
                    _flat(
                        [_or_zeros(kept.get(name), p) for kept, p in zip(member, ps, strict=True)]
                    )
                    for member, ps in zip(own, self.params, strict=True)
                ]
            )
            for name in names
        }
        # Adam's steps so far, per member (torch keeps one count per parameter, all equal)
        self.steps = [float(member[0].get("step", 0)) if member else 0.0 for member in own]
        return state

    def _step(self, flat: torch.Tensor, state: dict[str, torch.Tensor], step: int) -> None:
        """One optimizer step of every member: torch's formulas, with each member's settings
        as a column against its row of parameters."""
        settings, scalars = self.settings, self._scalars(step)
        grad, decay = flat.grad, settings["weight_decay"]
        if self.kind is torch.optim.SGD:
            if self.decays:
                grad = grad + decay * flat
            momentum = settings["momentum"]
            buffer = state["momentum_buffer"].mul_(momentum).add_(grad)
            update = torch.where(settings["nesterov"] > 0, grad + momentum * buffer, buffer)
            flat.sub_(scalars["lr"] * torch.where(momentum == 0, grad, update))
            return
        if self.kind is torch.optim.AdamW:
            flat.mul_(scalars["shrink"])
        elif self.decays:
            grad = grad + decay * flat
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, settings["1-beta1"])
        exp_avg_sq.mul_(settings["beta2"]).addcmul_(grad * settings["1-beta2"], grad)
        update = exp_avg_sq.sqrt().div_(scalars["root2"]).add_(settings["eps"])  # the denominator
        torch.div(exp_avg, update, out=update)  # in place: a group's state outgrows the caches
        flat.sub_(update.mul_(scalars["step_size"]))

    def _scalars(self, step: int) -> dict[str, torch.Tensor]:
        """Step ``step``'s columns of the members' learning rates and what torch derives from
        them and the step count (Adam's step size and bias correction, AdamW's shrink), in
        double as torch has them, then float32. Worked out for the whole epoch at its first
        step, as one copy to the device, unless a member's rate changes between batches."""
        if self.rates_move or step == 0:
            rates = np.array([t.optimizer.param_groups[0]["lr"] for t in self.trainers])
            steps = np.arange(step, step + 1 if self.rates_move else self.taken) + 1.0
            self.table = self._table(rates, steps)
        row = 0 if self.rates_move else step
        return {name: values[row].unsqueeze(1) for name, values in self.table.items()}

    def _table(self, rates: np.ndarray, steps: np.ndarray) -> dict[str, torch.Tensor]:
        """Per step of ``steps`` (counted in this epoch, from 1) and member, as rows and columns."""
        table = {"lr": np.broadcast_to(rates, (len(steps), len(rates)))}
        if self.kind is not torch.optim.SGD:
            groups = [t.optimizer.param_groups[0] for t in self.trainers]
            beta1, beta2 = np.array([g["betas"] for g in groups]).T
            counts = np.array(self.steps) + steps[:, None]  # Adam's step counts
            table["step_size"] = rates / (1 - beta1**counts)
            table["root2"] = (1 - beta2**counts) ** 0.5
            if self.kind is torch.optim.AdamW:
                decay = np.array([g["weight_decay"] for g in groups])
                table["shrink"] = np.broadcast_to(1 - rates * decay, table["root2"].shape)
        return {
            name: per_member(values, torch.float32, self.device) for name, values in table.items()
        }

    def _hand_back(
        self, flat: torch.Tensor, state: dict[str, torch.Tensor], shapes: list[torch.Size]
    ) -> None:
        """Each member's weights and optimizer state back into its own model and optimizer: a
        copy of its row each, its tensors views of it (a copy per member, not one per tensor:
        on a GPU, launches; its own row, not the group's, is what its checkpoint saves)."""
        with torch.no_grad():
            for k, (trainer, member) in enumerate(self._members()):
                momentum = trainer.optimizer.param_groups[0].get("momentum")
                rows = {name: _unflat(values[k].clone(), shapes) for name, values in state.items()}
                for i, (own, p) in enumerate(
                    zip(member, _unflat(flat[k].clone(), shapes), strict=True)
                ):
                    own.data = p
                    kept = trainer.optimizer.state[own]
                    if self.kind is not torch.optim.SGD:
                        kept["step"] = torch.tensor(self.steps[k], dtype=torch.float32)
                        kept["exp_avg"] = rows["exp_avg"][i]
                        kept["exp_avg_sq"] = rows["exp_avg_sq"][i]
                    elif momentum:
                        kept["momentum_buffer"] = rows["momentum_buffer"][i]

    def _members(self) -> list[tuple[Trainer, list[torch.Tensor]]]:
        return list(zip(self.trainers, self.params, strict=True))


def _layers(model: nn.Module) -> list[nn.Module] | None:
    """The model's layers in order, when it is a (nested) Sequential of fusable layers."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[nn.Module] = []
    for layer in model:
        if isinstance(layer, nn.Sequential):
            inner = _layers(layer)
            if inner is None:
                return None
            layers += inner
        elif isinstance(layer, nn.Conv1d | nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros":
                return None
            layers.append(layer)
        elif type(layer) in (
            nn.Linear,
            nn.Flatten,
            nn.Unflatten,
            *_DROPOUTS,
            *_POOLS,
            *_ELEMENTWISE,
        ):
            layers.append(layer)
        else:
            return None
    return layers


def _layer_key(layer: nn.Module) -> str:
    """A layer's type and shape-making settings (a dropout's rate is the member's own)."""
    return type(layer).__module__ if isinstance(layer, nn.Dropout) else repr(layer)


def _fingerprint(trainer: Trainer) -> str:
    """The training and validation data's identity (members must train and be validated on the
    same samples); worked out once for the trainers that share their data."""
    val = trainer._val
    kept = trainer._data.derived.get("fingerprint")
    if kept is None or kept[0] is not val:
        digest = hashlib.blake2b(digest_size=16)
        arrays = () if val is None else (val.X, val.y)
        for array in (trainer._inputs, trainer._targets, *arrays):
            if isinstance(array, torch.Tensor):
                array = array.detach().cpu().numpy()
            array = np.ascontiguousarray(array)
            digest.update(str((array.dtype, array.shape)).encode())
            digest.update(array.tobytes())
        kept = trainer._data.derived["fingerprint"] = (val, digest.hexdigest())
    return kept[1]


def _batch_hooks(trainer: Trainer) -> list[Callback]:
    """The member's callbacks that act after each batch of this epoch (most act per epoch)."""
    return [hook for hook in trainer.callbacks if hook.acts_per_batch()]


def _values(values: Sequence[Any], device: torch.device) -> torch.Tensor:
    """One value per member, as float32 on the device."""
    return per_member([float(v) for v in values], torch.float32, device)


def _column(values: Sequence[Any], device: torch.device) -> torch.Tensor:
    """One value per member, as a column against the members' rows of parameters."""
    return _values(values, device).unsqueeze(1)


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One member's tensors (its parameters, or their optimizer state) as one row."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(rows: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """The members' rows as stacked tensors of ``shapes``: views, (members, *shape) each."""
    sizes = [shape.numel() for shape in shapes]
    parts = rows.split(sizes, dim=-1)
    return [part.view(*rows.shape[:-1], *shape) for part, shape in zip(parts, shapes, strict=True)]


def _or_zeros(value: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if value is None else value

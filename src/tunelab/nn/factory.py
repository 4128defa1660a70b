"""From a configuration to a network: a builtin architecture or your own builder, seeded and
initialised the same way for both, so the trial's seed alone decides the first weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.config import PER_LAYER, is_builtin, unknown_model_message
from tunelab.nn.initializers import init_weights
from tunelab.nn.models import ModelBuilder, build_cnn, build_mlp, builder_path, import_builder
from tunelab.nn.train import seed_everything

__all__ = ["ModelFactory"]

# the sample ranks each CNN takes: (length,) or (channels, length); (h, w) or (channels, h, w)
_CNN_RANKS = {"cnn1d": (1, 2), "cnn2d": (2, 3)}


class ModelFactory:
    """Builds the network of a configuration.

    Args:
        model: ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``; or your builder
            ``build_model(params, input_shape, n_outputs) -> nn.Module``, as the function or as
            ``"package.module:function"`` / ``"path/to/file.py:function"``.
        base_dir: where a relative ``file.py`` path starts (the spec's folder); default the
            current folder.

    Example:
        >>> from tunelab.nn import hyperparameters
        >>> model = ModelFactory("mlp").build(hyperparameters("mlp"), {}, (4,), 3, seed=0)
        >>> [layer.out_features for layer in model if isinstance(layer, nn.Linear)]
        [64, 64, 3]
    """

    def __init__(self, model: str | ModelBuilder = "mlp", base_dir: str | Path | None = None):
        self.model = model
        self.base_dir = base_dir

    def builder(self) -> ModelBuilder | None:
        """Your builder, imported (None for a builtin model).

        Raises:
            SpecError: on ``model`` for an unknown name, or a builder that does not import.
        """
        if is_builtin(self.model):
            return None
        if callable(self.model):
            return self.model
        if not isinstance(self.model, str) or ":" not in self.model:
            raise SpecError("model", unknown_model_message(self.model))
        path, _, function = self.model.rpartition(":")
        if path.endswith(".py") and self.base_dir is not None and not Path(path).is_absolute():
            return import_builder(f"{Path(self.base_dir) / path}:{function}")
        return import_builder(self.model)

    def name(self) -> str:
        """How a saved model names its architecture: the builtin's name, or the builder's
        import path (what :func:`~tunelab.nn.load_model` imports)."""
        return self.model if isinstance(self.model, str) else builder_path(self.model)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """A CNN that cannot take the data's shape fails once, before the search, not per trial.

        Raises:
            SpecError: on ``data.shape``, with an example shape for the model.
        """
        ranks = _CNN_RANKS.get(str(self.model))
        if ranks is not None and len(shape) not in ranks:
            example = "[1, 40] for a sequence" if self.model == "cnn1d" else "[1, 8, 8] for images"
            raise SpecError(
                "data.shape",
                f"model {self.model!r} needs samples of {' or '.join(map(str, ranks))} dimensions, "
                f"but {list(shape)} has {len(shape)}; set data.shape, e.g. {example}",
            )

    def architecture(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        input_shape: tuple[int, ...],
        n_outputs: int,
    ) -> nn.Module:
        """The network with torch's initial weights (to load saved weights into).

        ``config`` is the whole configuration; ``params`` the values given (fixed and the
        trial's), which a builder of your own receives.

        Raises:
            SpecError: on ``model`` when your builder returns something else than an
                ``nn.Module``; on ``space.<name>`` / ``fixed.<name>`` for a per-layer width
                beyond the number of layers.
        """
        builder = self.builder()
        if builder is None:
            return _build_builtin(str(self.model), config, params, input_shape, n_outputs)
        model = builder(dict(params), tuple(input_shape), n_outputs)
        if not isinstance(model, nn.Module):
            raise SpecError(
                "model", f"{self.model!r} returned {type(model).__name__}, not a torch nn.Module"
            )
        return model

    def build(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        input_shape: tuple[int, ...],
        n_outputs: int,
        seed: int,
    ) -> nn.Module:
        """The network of a trial: Python, NumPy and torch seeded with ``seed``, then built and
        initialised with the configuration's ``init`` (see :func:`~tunelab.nn.init_weights`)."""
        seed_everything(seed)
        model = self.architecture(config, params, input_shape, n_outputs)
        return init_weights(
            model, config["init"], config.get("activation", "relu"), config["init_scale"]
        )


def _build_builtin(
    name: str,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    input_shape: tuple[int, ...],
    n_outputs: int,
) -> nn.Module:
    units = _per_layer(config, params, "units", "n_layers")
    dense = {
        "n_layers": config["n_layers"],
        "units": units,
        "activation": config["activation"],
        "dropout": config["dropout"],
        "batch_norm": config["batch_norm"],
    }
    if name == "mlp":
        return build_mlp(input_shape, n_outputs, **dense)
    return build_cnn(
        input_shape,
        n_outputs,
        conv_layers=config["conv_layers"],
        channels=_per_layer(config, params, "channels", "conv_layers"),
        kernel_size=config["kernel_size"],
        pool=config["pool"],
        dims=1 if name == "cnn1d" else 2,
        **dense,
    )


def _per_layer(
    config: Mapping[str, Any], params: Mapping[str, Any], name: str, count_name: str
) -> list[int]:
    """One width per layer: ``<name>_<i>`` where given, else ``<name>``."""
    count = config[count_name]
    for key in config:
        match = PER_LAYER.fullmatch(key)
        if match and match.group(1) == name and int(match.group(2)) > count:
            index = int(match.group(2))
            section = "space" if key in params else "fixed"
            raise SpecError(
                f"{section}.{key}",
                f"is given but {count_name} is {count}; give it the condition "
                f"when: {{{count_name}: {{ge: {index}}}}}",
            )
    return [config.get(f"{name}_{i}", config[name]) for i in range(1, count + 1)]

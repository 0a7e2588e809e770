"""The model contract every family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import Batch, EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.nn.cross import CrossConfig, CrossedEncoder
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.gbdt_leaves import GBDTLeavesConfig
from recsys_mtl.nn.id_dropout import IdDropoutConfig
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig
from recsys_mtl.spec.features import Task


#: task type → LightGBM objective of its GBDT leaf trees
GBDT_OBJECTIVES = {"binary": "binary", "regression": "regression"}


@dataclass(frozen=True)
class ModelContext:
    """What a model is built from besides its own config: the fitted layout and the tasks."""

    layout: Layout
    tasks: Sequence[Task]


class ModelConfig(BaseModel):
    """Parameters shared by every family; each family extends it next to its code."""

    model_config = ConfigDict(extra="forbid")

    tower_hidden: list[int] = Field(default_factory=lambda: [32])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation: str = "relu"
    #: numeric values → per-feature embeddings (null: the standardized numbers as they are)
    numeric_embedding: NumericEmbeddingConfig | None = None
    #: share of training ids mapped to the OOV row (default: 5% on tables of ≥ 1000 rows)
    id_dropout: IdDropoutConfig = Field(default_factory=IdDropoutConfig)
    #: regression heads predict the train-standardized label, mapped back to label units
    standardize_targets: bool = True
    #: GBDT leaf indices as extra inputs (trees fitted on train before training; null: off)
    gbdt_leaves: GBDTLeavesConfig | None = None
    #: a DCN-v2 cross network between the encoder and the model (flat-input models only)
    cross: CrossConfig | None = None


class TaskTowers(nn.Module):
    """One MLP tower + linear output per task: list of (B, in_dim) → {task: logits}.

    Binary and regression tasks give (B,), multiclass tasks (B, C). A regression task found in
    ``targets`` (task → train (mean, std)) has its head predict the standardized label ``z`` and
    outputs ``mean + std · z`` in label units, so the affine map is part of the model (and of its
    ONNX graph); the training loss compares standardized values (see :meth:`standardize`).
    """

    def __init__(self, in_dims: Sequence[int], tasks: Sequence[Task], cfg: ModelConfig,
                 targets: dict[str, tuple[float, float]] | None = None):
        super().__init__()
        self.names = [t.name for t in tasks]
        self.squeeze = [t.output_dim == 1 for t in tasks]
        self.towers = nn.ModuleList()
        for d, task in zip(in_dims, tasks):
            mlp = MLP(d, cfg.tower_hidden, cfg.activation, cfg.dropout)
            self.towers.append(nn.Sequential(mlp, nn.Linear(mlp.out_dim, task.output_dim)))
        scale = [(targets or {}).get(t.name, (0.0, 1.0)) if t.type == "regression" else (0.0, 1.0) for t in tasks]
        self.scaled = [s != (0.0, 1.0) for s in scale]
        # (T,) label mean and std per task (0 and 1 where not standardized); rebuilt from the fitted
        # preprocessing, not stored in checkpoints
        self.register_buffer("target_mean", torch.tensor([m for m, _ in scale], dtype=torch.float32), persistent=False)
        self.register_buffer("target_std", torch.tensor([sd for _, sd in scale], dtype=torch.float32), persistent=False)

    def forward(self, reps: Sequence[Tensor]) -> dict[str, Tensor]:
        out = {}
        for i, (name, squeeze, tower, rep) in enumerate(zip(self.names, self.squeeze, self.towers, reps)):
            logit = tower(rep)
            logit = logit.squeeze(-1) if squeeze else logit
            out[name] = logit * self.target_std[i] + self.target_mean[i] if self.scaled[i] else logit
        return out

    def standardize(self, i: int, values: Tensor) -> Tensor:
        """Label-unit values of task i (predictions or labels) → the standardized scale its loss uses."""
        return (values - self.target_mean[i]) / self.target_std[i] if self.scaled[i] else values


class MultiTaskModel(nn.Module, ABC):
    """The contract: encoded batch in → ``{task name: logits}`` out.

    The minimal base every family shares: the tasks, the towers (:meth:`build_towers`), the shared
    representation gradient balancing acts on, an optional auxiliary loss and extra inputs. How
    the batch is embedded is each family's choice: :class:`FlatInputModel` owns one flat encoder;
    token models (MultiTab-Net, FT-Transformer) build a tokenizer, STEM one encoder per task,
    wrappers (DTRN, preference) read their inner model's.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, context: ModelContext, config: ModelConfig):
        super().__init__()
        self.context = context
        self.config = config
        self.task_names = [t.name for t in context.tasks]

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Encoded batch → ``{task: (B,) or (B, C) logits}``."""

    def make_encoder(self) -> FeatureEncoder:
        """A flat (B, D) encoder with this model's numeric embedding, id dropout, GBDT leaves and
        cross network (each off when the config has no such field)."""
        cfg = self.config
        args = (
            self.context.layout, getattr(cfg, "numeric_embedding", None), getattr(cfg, "id_dropout", None),
            getattr(cfg, "gbdt_leaves", None), len(self.gbdt_tasks()),
        )
        cross = getattr(cfg, "cross", None)
        return FeatureEncoder(*args) if cross is None else CrossedEncoder(cross, *args)

    def gbdt_tasks(self) -> list[int]:
        """Indices of the tasks GBDT leaf features are fitted on (binary and regression)."""
        return [i for i, t in enumerate(self.context.tasks) if t.type in GBDT_OBJECTIVES]

    def fit_inputs(self, train: object) -> None:
        """Fit what the inputs need from the train split (an in-memory EncodedTable) before training:
        GBDT leaf trees; a no-op without them. Every encoder of the model gets the same trees."""
        encoders = [m for m in self.modules() if isinstance(m, FeatureEncoder) and m.gbdt is not None]
        if not encoders:
            return
        if not isinstance(train, EncodedTable):
            raise SpecError("model.params.gbdt_leaves: needs the train split in memory (not a parquet_stream)")
        tasks = self.gbdt_tasks()
        x = encoders[0].gbdt_inputs({"categorical": train.categorical, "numeric": train.numeric}).numpy()
        objectives = [GBDT_OBJECTIVES[self.context.tasks[i].type] for i in tasks]
        encoders[0].gbdt.fit(x, train.labels[:, tasks].numpy(), train.weights[:, tasks].numpy(), objectives)  # type: ignore[union-attr]
        trees = {k: v for k, v in encoders[0].gbdt.state_dict().items() if not k.startswith("embedding.")}  # type: ignore[union-attr]
        for enc in encoders[1:]:
            enc.gbdt.load_state_dict(trees, strict=False)  # type: ignore[union-attr]

    def build_towers(self, in_dims: Sequence[int]) -> None:
        targets = self.context.layout.targets if getattr(self.config, "standardize_targets", True) else {}
        self.towers = TaskTowers(in_dims, self.context.tasks, self.config, targets)

    def shared_module(self) -> nn.Module:
        """The last module every task depends on (single-representation families); the default
        :meth:`shared_modules` is ``[shared_module()]``. A family names its own."""
        raise NotImplementedError(f"{type(self).__name__} names no shared module; override shared_module or shared_modules")

    def shared_modules(self) -> list[nn.Module]:
        """Modules whose outputs together are the shared representation gradient balancing
        strategies differentiate against (``on: representation``): the last blocks read by more
        than one task, none feeding another (nested targets would count a correction twice).
        Multi-level families name their *last* level's shared experts; earlier levels receive the
        balanced gradient through them. Empty: no shared representation exists, and gradient
        methods use :meth:`shared_parameters`. Default: ``[shared_module()]``."""
        return [self.shared_module()]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of every block shared by the tasks, above the embeddings (the target of
        ``on: shared_parameters``): all levels' shared experts and gates in multi-level families.
        Embedding tables are included only when the encoder is the model's sole shared block.
        Default: the parameters of :meth:`shared_modules`."""
        return [p for m in self.shared_modules() for p in m.parameters()]

    def auxiliary_loss(self) -> Tensor | None:
        """A model's own extra training loss from its last forward (e.g. AITM's calibrator), or None.

        The training step adds it to the balanced task loss; it is not a task, so balancers never
        reweight it.
        """
        return None

    def condition_inputs(self) -> dict[str, Tensor]:
        """Extra (B, K) float inputs the model reads from the batch besides the encoded features
        (e.g. a task preference vector), each with its (K,) default; exports make them graph
        inputs. None by default."""
        return {}


class FlatInputModel(MultiTaskModel):
    """A family on the flat encoded vector: encoder (B, D) → :meth:`task_inputs` → towers.

    It owns the encoder (:meth:`MultiTaskModel.make_encoder`); subclasses implement
    :meth:`task_inputs`. Families that keep this ``forward`` can be wrapped by models that work
    between the encoder and the task inputs (DTRN's task bottoms, preference conditioning):
    see :func:`wraps_task_inputs`.
    """

    def __init__(self, context: ModelContext, config: ModelConfig):
        super().__init__(context, config)
        self.encoder = self.make_encoder()

    @abstractmethod
    def task_inputs(self, x: Tensor) -> list[Tensor]:
        """(B, D) encoded features → per-task (B, H_t) tower inputs."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        gbdt = self.encoder.gbdt
        if gbdt is None or not gbdt.cfg.margin:
            return self.towers(self.task_inputs(self.encoder(batch)))
        leaves = self.encoder.gbdt_leaves(batch)  # one walk (or none: precomputed): leaf embeddings and the trees' score
        logits = self.towers(self.task_inputs(self.encoder(batch, leaves)))
        # boosting from the trees' score: binary logits are log-odds, like LightGBM's raw score
        margins = gbdt.margins(leaves)
        for j, i in enumerate(self.gbdt_tasks()):
            task = self.context.tasks[i]
            if task.type == "binary":
                logits[task.name] = logits[task.name] + margins[:, j].to(logits[task.name].dtype)
        return logits

    def shared_module(self) -> nn.Module:
        """Default: the encoder, (B, D); families name a later shared block."""
        return self.encoder


def wraps_task_inputs(cls: type[MultiTaskModel]) -> bool:
    """Whether ``cls`` is encoder → task_inputs → towers with no forward of its own (wrappable)."""
    return issubclass(cls, FlatInputModel) and cls.forward is FlatInputModel.forward

"""The model contract every family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import Batch, EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.nn.cross_network import CrossedEncoder
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.encoder_config import EncoderConfig, encoder_config
from recsys_mtl.nn.wide import WideLogits
from recsys_mtl.spec.features import Task
from recsys_mtl.strict import ParamsModel


#: task type → LightGBM objective of its GBDT leaf trees
GBDT_OBJECTIVES = {"binary": "binary", "regression": "regression"}


#: options of the pipeline's ``encoder:`` section that were model params before it existed
ENCODER_OPTIONS_MOVED = ("numeric_embedding", "id_dropout", "standardize_targets", "gbdt_leaves", "cross")


@dataclass(frozen=True)
class ModelContext:
    """What a model is built from besides its own config: the fitted layout, the tasks and the
    pipeline's ``encoder:`` section."""

    layout: Layout
    tasks: Sequence[Task]
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


def model_context(layout: Layout, tasks: Sequence[Task], encoder: dict[str, Any] | EncoderConfig | None = None) -> ModelContext:
    """The context of a pipeline's model: ``encoder`` validated, and its ``embedding_dim`` rule
    applied to the layout's vocabulary tables (fit and every reload build the same widths)."""
    enc = encoder_config(encoder or {})
    if enc.embedding_dim is not None:
        rule = enc.embedding_dim
        vocab = {t for _, t in layout.categorical if t in layout.table_counts} | {t for _, t, _, _ in layout.sequences}
        layout = replace(layout, tables={t: (n, rule.dim(n) if t in vocab else d) for t, (n, d) in layout.tables.items()})
    return ModelContext(layout=layout, tasks=tasks, encoder=enc)


class ModelConfig(ParamsModel):
    """Parameters shared by every family; each family extends it next to its code."""

    tower_hidden: list[int] = Field(default_factory=lambda: [32])
    """per-task tower widths (the MLP between a task's representation and its output layer)"""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout after each hidden layer (experts, bottoms, towers)"""
    activation: str = "relu"
    """hidden activation: relu, gelu, silu or tanh"""

    @model_validator(mode="before")
    @classmethod
    def _moved_to_encoder(cls, raw: Any) -> Any:
        # pipelines are migrated when read (spec/pipeline.py); params given here directly (a wrapped
        # model's base_params / inner.params, code) are refused with where the option went
        moved = [k for k in ENCODER_OPTIONS_MOVED if isinstance(raw, dict) and k in raw]
        if moved:
            raise ValueError(f"{', '.join(moved)}: moved from the model's params to the pipeline's `encoder:` "
                             f"section (encoder.{moved[0]}), which every wrapped model shares")
        return raw


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
    #: the ``encoder:`` options this family takes (build_model refuses any other one that is set)
    encoder_options: ClassVar[frozenset[str]] = frozenset({"id_dropout", "id_regularization", "embedding_dim", "standardize_targets"})
    #: whether the family adds the encoder's logit options (wide part, trees' margin) without the
    #: standard forward (an ensemble whose members do)
    adds_logit_options: ClassVar[bool] = False

    def __init__(self, context: ModelContext, config: ModelConfig):
        super().__init__()
        self.context = context
        self.config = config
        self.task_names = [t.name for t in context.tasks]

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Encoded batch → ``{task: (B,) or (B, C) logits}``."""

    def make_encoder(self) -> FeatureEncoder:
        """A flat (B, D) encoder with the pipeline's numeric embedding, id dropout and
        regularisation, GBDT leaves and cross network (see :class:`EncoderConfig`)."""
        enc = self.context.encoder
        args = (self.context.layout, enc.numeric_embedding, enc.id_dropout, enc.gbdt_leaves, len(self.gbdt_tasks()), enc.id_counts)
        encoder = FeatureEncoder(*args) if enc.cross is None else CrossedEncoder(enc.cross, *args)
        if enc.id_regularization is not None:
            encoder.regularize_ids(enc.id_regularization)
        return encoder

    def gbdt_tasks(self) -> list[int]:
        """Indices of the tasks GBDT leaf features are fitted on (binary and regression)."""
        return [i for i, t in enumerate(self.context.tasks) if t.type in GBDT_OBJECTIVES]

    def fit_inputs(self, train: object, valid: EncodedTable | None = None) -> None:
        """Fit what the inputs need from the train split (an in-memory EncodedTable) before training:
        GBDT leaf trees (early-stopped on ``valid`` when their config asks); a no-op without them.
        Every encoder of the model gets the same trees."""
        encoders = [m for m in self.modules() if isinstance(m, FeatureEncoder) and m.gbdt is not None]
        if not encoders:
            return
        if not isinstance(train, EncodedTable):
            raise SpecError("encoder.gbdt_leaves: needs the train split in memory (not a parquet_stream)")
        tasks = self.gbdt_tasks()
        x = encoders[0].gbdt_inputs({"categorical": train.categorical, "numeric": train.numeric}).numpy()
        objectives = [GBDT_OBJECTIVES[self.context.tasks[i].type] for i in tasks]
        held = None if valid is None else (
            encoders[0].gbdt_inputs({"categorical": valid.categorical, "numeric": valid.numeric}).numpy(),
            valid.labels[:, tasks].numpy(), valid.weights[:, tasks].numpy())
        encoders[0].gbdt.fit(x, train.labels[:, tasks].numpy(), train.weights[:, tasks].numpy(), objectives, held)  # type: ignore[union-attr]
        trees = {k: v for k, v in encoders[0].gbdt.state_dict().items() if not k.startswith("embedding.")}  # type: ignore[union-attr]
        for enc in encoders[1:]:
            enc.gbdt.load_state_dict(trees, strict=False)  # type: ignore[union-attr]

    def build_towers(self, in_dims: Sequence[int]) -> None:
        targets = self.context.layout.targets if self.context.encoder.standardize_targets else {}
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

    def regularization(self, batch: Batch) -> Tensor | None:
        """Scalar penalty of this training batch on the model's parameters (rarity-aware id L2 of
        every encoder, the wide part's shrinkage), or None when there is none. Added to the loss
        by the training step, like :meth:`auxiliary_loss`; never reweighted by balancers."""
        terms = [p for m in self.modules_of(FeatureEncoder) if (p := m.id_penalty(batch)) is not None]  # type: ignore[operator]
        terms += [m.penalty(batch) for m in self.modules_of(WideLogits) if m.cfg.l2 > 0]  # type: ignore[operator,union-attr]
        return torch.stack(terms).sum() if terms else None

    def after_step(self, batch: Batch) -> None:
        """After an optimizer step on ``batch``: max-norm of the id rows it used (when on)."""
        for m in self.modules_of(FeatureEncoder):
            m.renorm_ids(batch)  # type: ignore[operator]

    def modules_of(self, kind: type[nn.Module]) -> list[nn.Module]:
        """This model's modules that are ``kind``, in :meth:`modules` order. Kept from the first
        call until the next :meth:`train` / ``eval()`` (Lightning calls it at every fit and
        validation start): the training step asks twice per step, and each walk of a census
        MMoE's modules costs ~35 µs of Python (~1.3 % of its step)."""
        cache: dict[type[nn.Module], list[nn.Module]] = self.__dict__.setdefault("_modules_of", {})
        if kind not in cache:
            cache[kind] = [m for m in self.modules() if isinstance(m, kind)]
        return cache[kind]

    def train(self, mode: bool = True) -> MultiTaskModel:
        self.__dict__.pop("_modules_of", None)  # a new phase may follow a change of submodules
        return super().train(mode)

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

    def for_tasks(self, tasks: Sequence[str]) -> MultiTaskModel:
        """This model reduced to what ``tasks`` (a subset of :attr:`task_names`, in model order)
        compute, for a task-sparse export. Called on a deep copy in eval mode, so it may change
        ``self`` in place. Outputs of ``tasks`` stay identical; those of the other tasks may be
        anything and are not read.

        Default: ``self`` unchanged, because tracing only the selected outputs already drops every
        op that only other tasks read. A family overrides it where computation wired into a
        selected task contributes exactly zero (HoME's masked experts on its last level)."""
        return self


class FlatInputModel(MultiTaskModel):
    """A family on the flat encoded vector: encoder (B, D) → :meth:`task_inputs` → towers.

    It owns the encoder (:meth:`MultiTaskModel.make_encoder`); subclasses implement
    :meth:`task_inputs`. Families that keep this ``forward`` can be wrapped by models that work
    between the encoder and the task inputs (DTRN's task bottoms, preference conditioning):
    see :func:`wraps_task_inputs`.
    """

    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding", "gbdt_leaves", "cross", "wide", "id_counts"}

    def __init__(self, context: ModelContext, config: ModelConfig):
        super().__init__(context, config)
        self.encoder = self.make_encoder()
        wide = context.encoder.wide
        #: tasks with one logit (binary, regression) take the wide part's scalars
        self.wide_tasks = [i for i, t in enumerate(context.tasks) if t.output_dim == 1]
        self.wide = WideLogits(context.layout, len(self.wide_tasks), wide) if wide is not None and self.wide_tasks else None

    @abstractmethod
    def task_inputs(self, x: Tensor) -> list[Tensor]:
        """(B, D) encoded features → per-task (B, H_t) tower inputs."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        gbdt = self.encoder.gbdt
        if gbdt is None or not gbdt.cfg.margin:
            return self.add_wide(self.towers(self.task_inputs(self.encoder(batch))), batch)
        # one walk (or none: precomputed) serves the leaf embeddings and the trees' score; pooling none has no leaf
        # inputs, so only the score is read (precomputed in training, walked in the exported graph)
        leaves = self.encoder.gbdt_leaves(batch) if gbdt.cfg.leaf_inputs() else None
        logits = self.towers(self.task_inputs(self.encoder(batch, leaves)))
        margins = self.encoder.gbdt_margins(batch, leaves)
        # boosting from the trees' score: binary logits are log-odds, like LightGBM's raw score
        for j, i in enumerate(self.gbdt_tasks()):
            task = self.context.tasks[i]
            if task.type == "binary":
                logits[task.name] = logits[task.name] + margins[:, j].to(logits[task.name].dtype)
        return self.add_wide(logits, batch)

    def add_wide(self, logits: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """``logits`` with the wide part's (B,) per-id scalar sum added to each one-logit task.

        A regression task adds it in label units times the label std (the standardized scale the
        head learns on), so its shrinkage means the same for every task."""
        if self.wide is None:
            return logits
        wide = self.wide(batch["categorical"])  # (B, T_wide)
        towers = self.towers
        for j, i in enumerate(self.wide_tasks):
            name = self.context.tasks[i].name
            scale = towers.target_std[i] if towers.scaled[i] else 1.0
            logits[name] = logits[name] + (wide[:, j] * scale).to(logits[name].dtype)
        return logits

    def shared_module(self) -> nn.Module:
        """Default: the encoder, (B, D); families name a later shared block."""
        return self.encoder


def wraps_task_inputs(cls: type[MultiTaskModel]) -> bool:
    """Whether ``cls`` is encoder → task_inputs → towers with no forward of its own (wrappable)."""
    return issubclass(cls, FlatInputModel) and cls.forward is FlatInputModel.forward

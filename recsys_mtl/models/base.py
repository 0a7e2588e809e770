"""The model contract every family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import Batch
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.spec.features import Task


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


class TaskTowers(nn.Module):
    """One MLP tower + linear output per task: list of (B, in_dim) → {task: logits}.

    Binary and regression tasks give (B,), multiclass tasks (B, C).
    """

    def __init__(self, in_dims: Sequence[int], tasks: Sequence[Task], cfg: ModelConfig):
        super().__init__()
        self.names = [t.name for t in tasks]
        self.squeeze = [t.output_dim == 1 for t in tasks]
        self.towers = nn.ModuleList()
        for d, task in zip(in_dims, tasks):
            mlp = MLP(d, cfg.tower_hidden, cfg.activation, cfg.dropout)
            self.towers.append(nn.Sequential(mlp, nn.Linear(mlp.out_dim, task.output_dim)))

    def forward(self, reps: Sequence[Tensor]) -> dict[str, Tensor]:
        out = {}
        for name, squeeze, tower, rep in zip(self.names, self.squeeze, self.towers, reps):
            logit = tower(rep)
            out[name] = logit.squeeze(-1) if squeeze else logit
        return out


class MultiTaskModel(nn.Module, ABC):
    """Encoded batch in → ``{task name: logits}`` out.

    Subclasses set ``Config`` (a :class:`ModelConfig`) and implement :meth:`task_inputs`, which
    maps the encoded (B, D) input to one (B, H_t) representation per task; the base class owns
    the encoder and the towers. Families that need feature tokens override :meth:`forward`.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, context: ModelContext, config: ModelConfig):
        super().__init__()
        self.context = context
        self.config = config
        self.task_names = [t.name for t in context.tasks]
        self.encoder = FeatureEncoder(context.layout)

    @abstractmethod
    def task_inputs(self, x: Tensor) -> list[Tensor]:
        """(B, D) encoded features → per-task (B, H_t) tower inputs."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.towers(self.task_inputs(self.encoder(batch)))

    def build_towers(self, in_dims: Sequence[int]) -> None:
        self.towers = TaskTowers(in_dims, self.context.tasks, self.config)

    def shared_module(self) -> nn.Module:
        """The last module every task depends on; its output is the shared representation that
        gradient balancing strategies differentiate against. Default: the encoder, (B, D);
        families override it with a later shared block (e.g. MMoE's experts)."""
        return self.encoder

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

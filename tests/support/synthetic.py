"""Small synthetic specs and model contexts built from the shipped synthetic spec."""

from __future__ import annotations

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.models import ModelContext
from recsys_mtl.spec import FeatureSpec, load_spec
from tests.support.paths import ROOT


def synthetic_spec(num_tasks: int = 2) -> FeatureSpec:
    """The shipped synthetic spec, with ``num_tasks`` binary tasks."""
    base = load_spec(ROOT / "feature_specs" / "synthetic.yaml")
    tasks = [{"name": f"task{k}", "label": f"label{k}", "type": "binary"} for k in range(num_tasks)]
    raw = base.model_dump(mode="json", exclude_defaults=True)
    raw["tasks"] = tasks
    raw["ignore"] = [f"y{k}" for k in range(num_tasks)]
    return FeatureSpec.model_validate(raw)


def make_context(num_tasks: int, rows: int = 600, seed: int = 0) -> tuple[ModelContext, EncodedTable]:
    """A model context and encoded table with ``num_tasks`` binary tasks."""
    spec = synthetic_spec(num_tasks)
    df = generate(SyntheticConfig(rows=rows, num_tasks=num_tasks, seed=seed))
    pre = Preprocessor.fit(spec, df)
    return ModelContext(layout=pre.layout, tasks=spec.tasks), pre.transform(df)

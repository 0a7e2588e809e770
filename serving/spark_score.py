"""Scoring a Spark DataFrame with an export: Arrow-based, through ``DataFrame.mapInArrow``.

Each Spark task receives its partition as Arrow record batches; every batch goes through the
HTTP server's input path (:func:`serving.batch_score.feed_of`) and a
:class:`~serving.predictor.Predictor`, built once per Python worker process and export folder,
so the scores are the server's (``tests/serving/test_score_spark.py``). The export folder must be
readable at the same path on every executor (a shared filesystem, or shipped with
``spark.files`` / ``SparkContext.addFile`` and the path adjusted).

Usage::

    from serving.spark_score import score_dataframe
    scored = score_dataframe(df, "/shared/exports/census", keep=["user_id"], tasks=["income"])
    scored.write.parquet("s3://.../scores")

Needs ``pyspark`` (the ``spark`` extra) and a Java runtime for Spark itself.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import pyarrow as pa

from serving.batch_inputs import Unit
from serving.batch_score import BatchScoreError, _check_tasks, feed_of, output_columns
from serving.metadata import load_metadata
from serving.predictor import Predictor

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@functools.lru_cache(maxsize=4)
def _predictor(export_dir: str, threads: int) -> Predictor:
    """One Predictor per Python worker process and export (Spark reuses its Python workers)."""
    return Predictor(export_dir, provider="cpu", intra_threads=threads)


def _score_batches(batches: Iterator[pa.RecordBatch], export_dir: str, tasks: list[str], keep: list[str],
                   threads: int) -> Iterator[pa.RecordBatch]:
    predictor = _predictor(export_dir, threads)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        outputs = predictor.predict(feed_of(predictor.schema, table, Unit("spark partition", "spark", None, 0)))
        cols = [table.column(c).combine_chunks() for c in keep] + output_columns(outputs, tasks)
        yield pa.RecordBatch.from_arrays(cols, names=[*keep, *tasks])


def output_ddl(df: DataFrame, metadata: dict[str, Any], tasks: Sequence[str], keep: Sequence[str]) -> Any:
    """The Spark schema of the scored frame: the ``keep`` columns as in ``df``, then one float column
    per task (``array<float>`` for a multiclass task's class probabilities)."""
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    shapes = {o["name"]: o.get("shape", ["batch"]) for o in metadata["outputs"]}
    fields = [df.schema[c] for c in keep]
    fields += [StructField(t, ArrayType(FloatType(), False) if len(shapes[t]) == 2 else FloatType(), False) for t in tasks]
    return StructType(fields)


def score_dataframe(df: DataFrame, export_dir: str, keep: Sequence[str] = (), tasks: Sequence[str] | None = None,
                    threads: int = 1) -> DataFrame:
    """``df`` (holding the export's input columns) → a DataFrame of ``keep`` columns and one score column per task."""
    metadata = load_metadata(Path(export_dir))
    wanted = _check_tasks(tasks, [o["name"] for o in metadata["outputs"]])
    keep = list(dict.fromkeys(keep))
    inputs = [i["name"] for i in metadata["inputs"]]
    missing = [c for c in [*inputs, *keep] if c not in df.columns]
    if missing:
        raise BatchScoreError(f"Spark DataFrame: column {missing[0]!r} is missing")
    conditions = [c["name"] for c in metadata.get("conditions") or [] if c["name"] in df.columns]
    selected = df.select(*dict.fromkeys([*inputs, *conditions, *keep]))
    schema = output_ddl(df, metadata, wanted, keep)
    return selected.mapInArrow(functools.partial(_score_batches, export_dir=str(export_dir), tasks=wanted, keep=keep,
                                                 threads=threads), schema)

"""Scoring a Spark DataFrame (local mode) through ``mapInArrow``: the server's scores.

Skips where Spark cannot run, saying why: ``pyspark`` is the optional ``spark`` extra (about
490 MB, not in ``dev``), and Spark needs a Java runtime."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pytest

from serving.predictor import Predictor
from tests.support.export import export_dir, held_out  # noqa: F401  (fixture)

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'recsys-mtl[spark]')")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime and none is on the PATH", allow_module_level=True)

from pyspark.sql import SparkSession  # noqa: E402

from serving.spark_score import score_dataframe  # noqa: E402


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    # the Python workers need this environment's packages (Spark otherwise starts "python3" from the PATH)
    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    # a short-lived JVM: the client compiler only and the serial collector (JIT and GC threads otherwise
    # take half the session's CPU on 2 cores); the driver's options reach the JVM through spark-submit
    session = (SparkSession.builder.master("local[1]").appName("recsys_mtl-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .getOrCreate())
    yield session
    session.stop()
    if saved is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = saved


@pytest.mark.slow
def test_spark_scores_equal_the_predictor(spark: SparkSession, export_dir: Path) -> None:  # noqa: F811
    df = held_out(300, seed=21).with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))
    sdf = spark.createDataFrame(df.to_pandas()).repartition(3)
    scored = score_dataframe(sdf, str(export_dir), keep=["row_id"]).toPandas().sort_values("row_id")
    assert scored["row_id"].tolist() == list(range(300))
    want = Predictor(export_dir, warmup=False).predict_table(df.drop("row_id").to_arrow())
    for t in ("task0", "task1"):
        assert np.abs(scored[t].to_numpy() - want[t]).max() <= 1e-6

"""``trainer.steps_per_execution`` K against K = 1, as Lightning trains them, alternating fits in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python steps_per_execution_ab.py --rounds 5 --epochs 3
    cd benchmarks && OMP_NUM_THREADS=1 python steps_per_execution_ab.py --rounds 4 --epochs 3 --variants \
        'c-k1:trainer.compile=true' 'c-k8:trainer.compile=true;trainer.steps_per_execution=8'

The harness of ``compile_fit_ab.py`` (the census plain MMoE ``rechub_compare.py`` trains, 8 experts × [64],
towers [32], batch 1024, bf16-mixed unless ``--precision``; every fit a deep copy of the same initial module
with its variant's trainer settings; training-batch rows per process-CPU second over the epochs after the
first, per round; every variant / the first per round and the median), with K = 1, 4, 8, 16 eager by default.
A compiled variant compiles in its first fit; later rounds find its graphs in this process's caches (warm).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compile_fit_ab import main  # noqa: E402

DEFAULT_VARIANTS = ["k1:", *(f"k{k}:trainer.steps_per_execution={k}" for k in (4, 8, 16))]

if __name__ == "__main__":
    main(DEFAULT_VARIANTS, __doc__.splitlines()[0])

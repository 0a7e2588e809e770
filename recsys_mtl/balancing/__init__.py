"""Task-balancing strategies behind one interface the training step calls.

Importing this package registers every strategy shipped with recsys_mtl (see docs/balancing.md).
"""

from recsys_mtl.balancing import (  # noqa: F401  (registration side effect)
    aligned_mtl,
    cagrad,
    coba,
    dwa,
    famo,
    gcond,
    gradnorm,
    mgda,
    pcgrad,
    rep_mtl,
    samo,
    static,
    uncertainty,
)
from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext, build_balancer

__all__ = ["BALANCERS", "Balancer", "BalancerConfig", "StepContext", "build_balancer"]

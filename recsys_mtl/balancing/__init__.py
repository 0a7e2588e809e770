"""Task-balancing strategies behind one interface the training step calls.

Importing this package registers every strategy shipped with recsys_mtl.
"""

from recsys_mtl.balancing import static  # noqa: F401  (registration side effect)
from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext, build_balancer

__all__ = ["BALANCERS", "Balancer", "BalancerConfig", "StepContext", "build_balancer"]

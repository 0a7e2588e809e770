"""Task-balancing strategies behind one interface the training step calls.

Importing this package registers every strategy in it (see docs/balancing.md): each module
registers its own classes, and :func:`~recsys_mtl.registry.discover` imports them all.
"""

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext, build_balancer
from recsys_mtl.registry import discover

discover(__name__)

__all__ = ["BALANCERS", "Balancer", "BalancerConfig", "StepContext", "build_balancer"]

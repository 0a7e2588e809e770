"""Task grouping: training-dynamics data maps (STG-MTL) and lookahead inter-task affinity (TAG).

Fit with ``recsys-mtl fit PIPELINE --data-maps [--lookahead]``, then ``recsys-mtl group RUN``.
"""

from recsys_mtl.grouping.cluster import Grouping, group_by_affinity, group_by_data_maps
from recsys_mtl.grouping.datamaps import DataMaps
from recsys_mtl.grouping.lookahead import LookaheadAffinity, lookahead_affinity

__all__ = ["DataMaps", "Grouping", "LookaheadAffinity", "group_by_affinity", "group_by_data_maps", "lookahead_affinity"]

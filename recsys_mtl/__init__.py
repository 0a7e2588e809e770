"""recsys_mtl: describe a table once, get a multitask ranking model that trains, tunes, exports and serves."""

__version__ = "0.1.0"

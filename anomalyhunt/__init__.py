"""anomalyhunt: data-driven searches for new resonances at the LHC.

Data flows one way: files -> ``processors`` -> feature tables -> ``models`` -> ``analysis`` -> hist/plots.
"""

__version__ = "0.1.0"

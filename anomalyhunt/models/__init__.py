"""Template generators and discriminators, found by name in registries.

A new method is one new module in this package that registers itself; nothing else needs editing.
"""

from .base import DISCRIMINATORS, GENERATORS, Discriminator, TemplateGenerator

__all__ = ["GENERATORS", "DISCRIMINATORS", "TemplateGenerator", "Discriminator"]

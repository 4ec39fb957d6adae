"""MASS: masked sequence to sequence pre-training on MindSpore."""
from src.dictionary import Dictionary

__all__ = ["Dictionary"]

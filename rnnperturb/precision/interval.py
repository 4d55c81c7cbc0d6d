"""Interval arithmetic (mpmath.iv) for the rigorous mode of the certified bound."""
__all__ = []

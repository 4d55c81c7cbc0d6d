"""High-precision (mpmath) propagation for ill-conditioned cases."""
__all__ = []

"""Model heads and layers."""

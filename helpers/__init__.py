"""Helpers for the deepfake-detection study notebooks."""

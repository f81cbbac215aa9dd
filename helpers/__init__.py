"""Helpers for the deepfake-detection study notebooks."""
from helpers.runtime import configure_logging

# The study's own notebooks and commands are this package's only users, and each should show a data problem or
# a stage's progress without setting logging up first: INFO and WARNING go to stderr (papermill keeps stderr in
# the executed notebook; notebook.setup moves them to stdout in a live Jupyter session).
configure_logging()

"""Datasets, transforms and safe I/O shared by both tasks."""

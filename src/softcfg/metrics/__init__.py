"""Feature extractors registered with torch-fidelity and metrics from features to numbers."""

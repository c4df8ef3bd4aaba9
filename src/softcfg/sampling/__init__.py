"""Sampling loops that drive any ``ARModel`` with any guidance method, and teacher-forced replay."""

"""Evaluation: regions, CWoLa, metrics (ROC, SIC, template AUC), bump hunts and plots."""

"""Scenario files read and validated into the model (catalogue includes, host captures, templates)."""

"""The checker: every hard rule in its own code, separate from the engine; audits of deployed XML."""

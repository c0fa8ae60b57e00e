"""Files: bounded reading of untrusted input, atomic writing with manifests, plan.json documents."""

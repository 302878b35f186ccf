"""reprokit's bundled example: a tiny model, its paper.yaml and tests that use the plugin.

Run them with ``pytest --pyargs reprokit.examples``.
"""

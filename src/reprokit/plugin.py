"""reprokit's pytest plugin (work in progress: fixtures, markers and options land here)."""

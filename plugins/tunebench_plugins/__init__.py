"""tunebench's built-in plugins, registered through the `tunebench` entry-point group like any
third-party package (see pyproject.toml). One module per plugin:

- `plugins/datasets/`: where a new dataset goes;
- `plugins/models/`: where a new model family goes;
- `plugins/strategies/`: where a new search strategy goes.
"""

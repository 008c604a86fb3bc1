"""One module per experiment of the reports; run any with `python -m recipes.NAME --help`."""

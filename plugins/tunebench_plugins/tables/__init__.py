"""Built-in table plugins: benchmark tables and surrogates that a search runs against on the simulated clock."""

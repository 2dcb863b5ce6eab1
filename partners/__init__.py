"""Partner programs and reward providers: one folder each, with config and connectors."""

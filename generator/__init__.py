"""Deterministic Faker-based generator of ProbablyFresh stores, products, customers and
purchases into MongoDB (and JSON Lines), with a change mode for CDC demos (docs/generator.md)."""

"""Deterministic Faker-based generator of ProbablyFresh stores, products, customers and
purchases into MongoDB, with a change-stream mode. (Not built yet.)"""

"""Seeded synthetic card-fraud data and demo models for the end-to-end promotion story."""

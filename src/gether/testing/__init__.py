"""Gether's public test kit: a seeded simulated network, hypothesis strategies
for ops of every type, and loaders for the shared editing traces."""

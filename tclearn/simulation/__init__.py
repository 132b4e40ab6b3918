"""Simulations: whole coalitions on one machine (the in-process demo and `tclearn coalition up`)."""
